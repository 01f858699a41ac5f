"""The web console under load: sample → page latency, the console's CPU, the daemon's.

A daemon on the simulated probe at ``--load`` (default 64 × 2 @ 100 Hz), a direct
``hb`` subscriber in this process (the moment a sample is published, as close as a
subscriber can see it), ``nirsd console`` on 127.0.0.1, and ``--tabs`` operator pages
in headless Chromium (Debian's ``chromium`` + ``chromium-driver``, through Selenium).

- **page latency**: for each display point the page received, the time it arrived in
  the page (``performance.timeOrigin + performance.now()``, recorded by the page in
  ``window.nirsdArrivals``) minus the time the direct subscriber received the point's
  last sample (``time.time()``; one system clock).  The point leaves the console as
  soon as that sample arrives, so this is the console's whole cost: ZeroMQ to the
  console, decimation, JSON, SSE, the browser's event dispatch.
- **console CPU**: user + system seconds of the console process per second (% of one
  core), over the measured window with every tab open.
- **daemon**: its CPU and the direct subscriber's latency (receipt − sample ``t``) in a
  first phase without the console and in the second with it and the tabs.

    python bench/console.py                      # 64x2@100, 5 tabs, 20 s + 30 s
    python bench/console.py --quick              # shorter phases
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, Load, Proc, parse_load, save_results, stats  # noqa: E402

from nirsd.cli.browser_testing import headless_chromium  # noqa: E402
from nirsd.cli.testing import DaemonProcess, simulated_config, wait_for  # noqa: E402

#: a bedside screen is never "in the background": measure it as it runs there
FOREGROUND_FLAGS = (
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
)


class Published:
    """A direct hb subscriber: receipt time of every sample (by seq), and its latency."""

    def __init__(self, daemon: DaemonProcess) -> None:
        self.sub = daemon.subscriber(("hb",))
        self.recv: dict[int, float] = {}
        self.lat: list[float] = []  # receipt − sample t, s
        self.phase = 0
        self.by_phase: dict[int, list[float]] = {0: [], 1: []}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            msg = self.sub.recv(0.2)
            if msg is None:
                continue
            now = time.time()
            for i, t in enumerate(msg.header.get("t") or []):
                self.recv[msg.seq + i] = now
                self.by_phase[self.phase].append(now - t)
        self.sub.close()


class SseClient:
    """A plain SSE reader of ``/api/stream`` (no browser): arrival time per point's seq."""

    def __init__(self, url: str) -> None:
        import http.client
        import json
        import urllib.parse

        parts = urllib.parse.urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        self.conn.request("GET", "/api/stream?seconds=0")
        self.resp = self.conn.getresponse()
        self.arrivals: list[tuple[int, float]] = []
        self.json = json
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        event = None
        try:
            for raw in self.resp:
                line = raw.decode()
                if line.startswith("event: "):
                    event = line[7:].strip()
                elif line.startswith("data: ") and event == "hb":
                    seq = self.json.loads(line[6:])["seq"]
                    self.arrivals.append((int(seq[-1]), time.time()))
        except (OSError, ValueError, AttributeError):
            return

    def close(self) -> None:
        self.conn.close()


def open_tabs(url: str, tabs: int, profile: Path) -> Any:
    driver = headless_chromium(profile, flags=FOREGROUND_FLAGS, logs=False)
    for i in range(tabs):
        if i:
            driver.switch_to.new_window("window")
        driver.get(url)
    return driver


def browser_cpu_s(profile: Path) -> float:
    """CPU seconds of every Chromium process of this profile (all its renderers)."""
    total = 0.0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if str(profile).encode() in (d / "cmdline").read_bytes():
                total += Proc(int(d.name)).cpu_s()
        except OSError:
            continue
    return total


def page_arrivals(driver: Any) -> list[list[list[float]]]:
    out = []
    for handle in driver.window_handles:
        driver.switch_to.window(handle)
        out.append(driver.execute_script("return window.nirsdArrivals"))
    return out


def measure(load: Load, tabs: int, warm_s: float, phase_s: float, work: Path) -> dict:
    cfg = simulated_config(channels=load.channels, rate_hz=load.rate_hz, baseline_s=2.0)
    daemon = DaemonProcess(work, cfg).start()
    pub = Published(daemon)
    dproc = Proc(daemon.proc.pid)
    console = driver = None
    try:
        time.sleep(warm_s)  # the baseline and the quality window fill
        c0, t0 = dproc.cpu_s(), time.monotonic()
        time.sleep(phase_s)
        daemon_cpu_alone = (dproc.cpu_s() - c0) / (time.monotonic() - t0)
        pub.phase = 1
        console = subprocess.Popen(
            [sys.executable, "-m", "nirsd.cli", "console", "--listen", "127.0.0.1:0"],
            env=daemon.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        url = console.stdout.readline().split(": ", 1)[1].strip()
        driver = open_tabs(url, tabs, work / "profile")
        sse = SseClient(url)
        cproc = Proc(console.pid)
        time.sleep(warm_s)
        wait_for(lambda: all(len(a) > 5 for a in page_arrivals(driver)), 30, what="pages")
        cc0, dc0, t0 = cproc.cpu_s(), dproc.cpu_s(), time.monotonic()
        bc0 = browser_cpu_s(work / "profile")
        start_wall = time.time()
        time.sleep(phase_s)
        end_wall = time.time()
        span = time.monotonic() - t0
        console_cpu = (cproc.cpu_s() - cc0) / span
        browser_cpu = (browser_cpu_s(work / "profile") - bc0) / span
        daemon_cpu_with = (dproc.cpu_s() - dc0) / span
        arrivals = page_arrivals(driver)
        sse.close()
        raw = [[seq, t * 1000.0] for seq, t in sse.arrivals]
    finally:
        if driver is not None:
            driver.quit()
        if console is not None:
            console.terminate()
            console.wait(10)
        pub.stop.set()
        pub.thread.join(5)
        daemon.stop()
    span = (start_wall, end_wall)
    return summarize(load, tabs, phase_s, arrivals, pub, span) | {
        "sse_client_latency": summarize(load, 1, phase_s, [raw], pub, span)["page_latency"],
        "console_cpu_pct": 100 * console_cpu,
        "browser_cpu_pct": 100 * browser_cpu,
        "loadavg_1m_end": os.getloadavg()[0],
        "daemon_cpu_pct": {"alone": 100 * daemon_cpu_alone, "with_console": 100 * daemon_cpu_with},
    }


def summarize(
    load: Load, tabs: int, phase_s: float, arrivals: list, pub: Published, span: tuple
) -> dict:
    """Page latency per tab and overall (within the measured span), subscriber latency."""
    start_wall, end_wall = span
    per_tab, every = [], []
    for rows in arrivals:
        lat = [
            ms / 1000.0 - pub.recv[int(seq)]
            for seq, ms in rows
            if int(seq) in pub.recv and start_wall <= ms / 1000.0 <= end_wall
        ]
        per_tab.append(stats(np.array(lat) * 1e6))
        every += lat
    return {
        "load": load.label,
        "tabs": tabs,
        "phase_s": phase_s,
        "page_latency": stats(np.array(every) * 1e6),
        "page_latency_per_tab": per_tab,
        "subscriber_latency": {
            "alone": stats(np.array(pub.by_phase[0]) * 1e6),
            "with_console": stats(np.array(pub.by_phase[1]) * 1e6),
        },
    }


def report(res: dict) -> None:
    lat = res["page_latency"]
    print(f"\nnirsd console at {res['load']}, {res['tabs']} tabs, {res['phase_s']:g} s measured")
    print("| figure | value |\n|---|---|")
    print(
        f"| sample published → page (all tabs) | p50 {lat['p50_us'] / 1000:.1f} ms, "
        f"p99 {lat['p99_us'] / 1000:.1f} ms, max {lat['max_us'] / 1000:.1f} ms "
        f"({lat['n']} points) |"
    )
    sse = res["sse_client_latency"]
    print(
        f"| sample published → plain SSE client (no browser) | p50 {sse['p50_us'] / 1000:.1f} ms, "
        f"p99 {sse['p99_us'] / 1000:.1f} ms ({sse['n']} points) |"
    )
    worst = max(t["p99_us"] for t in res["page_latency_per_tab"])
    print(f"| worst tab p99 | {worst / 1000:.1f} ms |")
    print(f"| console CPU | {res['console_cpu_pct']:.1f} % of a core |")
    print(f"| Chromium CPU (all tabs) | {res['browser_cpu_pct']:.1f} % of a core |")
    print(f"| load average at the end | {res['loadavg_1m_end']:.1f} |")
    d = res["daemon_cpu_pct"]
    print(f"| daemon CPU | {d['alone']:.1f} % alone, {d['with_console']:.1f} % with the console |")
    s = res["subscriber_latency"]
    print(
        f"| daemon → subscriber p50/p99 | alone {s['alone']['p50_us'] / 1000:.2f}/"
        f"{s['alone']['p99_us'] / 1000:.2f} ms, with the console "
        f"{s['with_console']['p50_us'] / 1000:.2f}/{s['with_console']['p99_us'] / 1000:.2f} ms |"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--load", type=parse_load, default=Load(64, 2, 100))
    p.add_argument("--tabs", type=int, default=5)
    p.add_argument("--seconds", type=float, default=30.0, help="measured seconds per phase")
    p.add_argument("--quick", action="store_true", help="5 s phases")
    a = p.parse_args(argv)
    phase = 5.0 if a.quick else a.seconds
    with tempfile.TemporaryDirectory(prefix="nirsd-bench-console-") as tmp:
        res = measure(a.load, a.tabs, 3.0 if a.quick else 5.0, phase, Path(tmp))
    report(res)
    save_results(RESULTS / "console.json", res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
