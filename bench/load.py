"""CPU and memory of the daemon at each load, and RSS growth over a soak.

Each load runs ``nirsd run`` on a pty this process writes NIRSB frames to (so the
daemon's figures do not include a device emulator), with one ``hb`` subscriber process
counting what arrives.  Reported per load: CPU as user + system seconds per second of
data (% of one core, from /proc/PID/stat), resident memory now and at peak (VmRSS,
VmHWM), samples lost (by the daemon, and on the way to the subscriber).

The soak runs 64 x 2 @ 100 Hz for ``--soak`` seconds with a 10 s history ring, so the
ring is full (its memory committed) before the growth reference is taken; growth is
RSS at the end minus RSS once the ring is full, plus a least-squares slope.

    python bench/load.py                     # four loads x 20 s, 60 s soak
    python bench/load.py --soak 600          # the full 10-minute soak figure
    python bench/load.py --soak 600 --readme # and into README.md ("Performance")
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    DEFAULT_LOADS,
    RESULTS,
    Load,
    Proc,
    machine,
    parse_load,  # noqa: E402
    save_results,
)
from latency import fmt, run_nirsd  # noqa: E402

SOAK_LOAD = Load(64, 2, 100)
SOAK_RING_S = 10.0


class RssSampler:
    """Samples the daemon's VmRSS about once a second from the writer's send hook."""

    def __init__(self, every: int) -> None:
        self.every = max(1, every)
        self.pid: int | None = None
        self.t: list[float] = []
        self.rss_kb: list[int] = []

    def __call__(self, k: int) -> None:
        if k % self.every or self.pid is None:
            return
        try:
            self.rss_kb.append(Proc(self.pid).mem_kb()["VmRSS"])
            self.t.append(time.monotonic())
        except (OSError, KeyError):
            pass


def run_load(load: Load, seconds: float, warmup_s: float, extra_cfg: str = "") -> dict[str, Any]:
    sampler = RssSampler(int(load.rate_hz))
    with tempfile.TemporaryDirectory(prefix="nirsdbench") as tmp:
        res = run_nirsd(load, seconds, warmup_s, Path(tmp), extra_cfg=extra_cfg, send_hook=sampler)
    res.pop("_lat", None)
    res["rss_series_kb"] = sampler.rss_kb
    res["rss_series_t"] = [t - sampler.t[0] for t in sampler.t] if sampler.t else []
    return res


def soak(seconds: float, warmup_s: float = 2.0) -> dict[str, Any]:
    res = run_load(SOAK_LOAD, seconds, warmup_s, extra_cfg=f"[buffer]\nseconds = {SOAK_RING_S}\n")
    t = np.asarray(res["rss_series_t"])
    rss = np.asarray(res["rss_series_kb"], dtype=np.float64)
    ref_t = min(SOAK_RING_S + 5.0 + warmup_s, t[-1] / 2) if t.size else 0.0
    after = t >= ref_t
    growth_kb = float(rss[-1] - rss[after][0]) if after.any() else float("nan")
    slope = (
        float(np.polyfit(t[after], rss[after], 1)[0]) * 3600 / 1024
        if after.sum() >= 3
        else float("nan")
    )
    return {
        "load": SOAK_LOAD.label,
        "seconds": seconds,
        "ring_s": SOAK_RING_S,
        "ref_t_s": ref_t,
        "rss_ref_kb": float(rss[after][0]) if after.any() else None,
        "rss_end_kb": float(rss[-1]) if rss.size else None,
        "growth_kb": growth_kb,
        "slope_mb_per_h": slope,
        "cpu_pct": res["cpu_pct"],
        "lost": res["lost"],
        "daemon_lost": res["daemon_lost"],
        "rss_series_kb": res["rss_series_kb"],
        "rss_series_t": res["rss_series_t"],
    }


def run(loads: list[Load], seconds: float, soak_s: float, log=print) -> dict[str, Any]:
    rows = []
    for load in loads:
        log(f"  load {load.label} ({seconds:g} s) ...", file=sys.stderr)
        try:
            rows.append(run_load(load, seconds, 2.0))
        except Exception as err:
            rows.append({"load": load.label, "error": f"{type(err).__name__}: {err}"[:300]})
    out: dict[str, Any] = {"rows": rows}
    if soak_s > 0:
        log(f"  soak {SOAK_LOAD.label} ({soak_s:g} s) ...", file=sys.stderr)
        out["soak"] = soak(soak_s)
    return out


def table(res: dict[str, Any]) -> str:
    lines = [
        "| load | s of data | CPU % of a core | RSS MB | peak RSS MB | lost (daemon) "
        "| lost (subscriber) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        if "error" in r:
            lines.append(f"| {r['load']} | error: {r['error']} ||||||")
            continue
        lines.append(
            f"| {r['load']} | {r['window_s']:.1f} | {fmt(r['cpu_pct'], '.2f')} | "
            f"{r['rss_kb'] / 1024:.1f} | {r['peak_rss_kb'] / 1024:.1f} | "
            f"{r['daemon_lost']} | {r['lost']} |"
        )
    s = res.get("soak")
    if s:
        lines.append(
            f"soak {s['load']} for {s['seconds']:g} s (ring {s['ring_s']:g} s): "
            f"RSS {fmt(s['rss_ref_kb'] and s['rss_ref_kb'] / 1024, '.1f')} MB at "
            f"{s['ref_t_s']:.0f} s → {fmt(s['rss_end_kb'] and s['rss_end_kb'] / 1024, '.1f')}"
            f" MB at the end: growth {fmt(s['growth_kb'] / 1024, '.2f')} MB "
            f"(slope {fmt(s['slope_mb_per_h'], '.2f')} MB/h), CPU "
            f"{fmt(s['cpu_pct'], '.2f')} %, lost {s['daemon_lost']}/{s['lost']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--loads", nargs="+", type=parse_load, default=None)
    p.add_argument("--seconds", type=float, default=20.0, help="measured s per load")
    p.add_argument("--soak", type=float, default=60.0, help="soak s (600 for the full figure)")
    p.add_argument("--quick", action="store_true", help="5 s per load, 20 s soak")
    p.add_argument("--json", type=Path, default=RESULTS / "load.json")
    p.add_argument("--readme", action="store_true", help="write the table into README.md")
    a = p.parse_args(argv)
    info = machine()  # the date and load average at the start, for the README
    res = run(a.loads or DEFAULT_LOADS, 5.0 if a.quick else a.seconds, 20.0 if a.quick else a.soak)
    print(table(res))
    save_results(a.json, res)
    if a.readme:
        import readme

        readme.replace_block("load", readme.provenance(info) + "\n\n" + table(res))
        print(f"updated {readme.README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
