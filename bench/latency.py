"""End-to-end latency: a NIRSB frame written to the device port → ΔHb decoded in a
subscriber process, against the anchors most labs use today, in the same run.

Pipelines, per load (channels x wavelengths @ Hz):

- ``nirsd``: nirsd's NIRSB emulator in this process writes each frame to a pty; ``nirsd run``
  (a subprocess, driver nirsb, port = the pty) reads, converts and publishes; a
  subscriber process decodes ``hb``.  Latency = write start → ``hb`` received.
  The daemon's CPU (time on a CPU per second of data, % of one core) is reported.
- ``nirsd-numpy``: the same with the compiled per-frame kernel off (``NIRSD_KERNEL=0``),
  as on a machine where the install found no C compiler.
- ``floor``: the transport floor under ``nirsd``: the same pty and writer, a relay
  subprocess that only ``poll()``s the pty, ``os.read``s, splits on 0x00 and sends each
  frame as one message on a ZeroMQ PUB ipc socket, and a SUB subprocess that only
  ``recv``s (frames are identified after the run).  The least any pty → ZeroMQ →
  Python subscriber design pays; nirsd − floor is processing.
- ``frames-floor``: the floor with each frame sent as the last of ``hb``'s three frames
  (topic, a header packed once, the frame) and received with ``recv_multipart``: what
  the message's shape costs, with no decoding on either side.
- ``wire-floor``: the floor relay plus nirsd's ``hb`` wire format and nothing else (COBS
  decode, msgpack header, three frames), read by nirsd's decoding subscriber: what the
  wire contract costs with no work behind it.
- ``hb-floor``: the least relay that does nirsd's job in Python and numpy (CRC, ΔOD, one
  einsum on top of ``wire-floor``), read by the same subscriber.
- ``lsl``: a bare Lab Streaming Layer hop of same-size samples (float32) between two
  processes: pylsl StreamOutlet here → StreamInlet in a subprocess (push → pull).
- ``serial-lsl``: a plain pyserial reader → COBS decoder → pylsl outlet (a subprocess,
  as a user would write it), inlet in another process: byte write → inlet receipt.

All times are CLOCK_MONOTONIC (``time.monotonic_ns()``), shared by every process.

    python bench/latency.py                      # the four loads, 15 s each
    python bench/latency.py --quick              # smoke run, under a minute
    python bench/latency.py --loads 64x2@100 --seconds 30
    python bench/latency.py --seconds 10 --rounds 3   # medians of three interleaved rounds
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
from anchors import (  # noqa: E402  (the other pipelines)
    CpuWindow,
    await_command,
    result_row,
    run_floor,
    run_frames_floor,
    run_hb_floor,
    run_lsl,
    run_serial_lsl,
    run_wire_floor,
)
from common import (
    DEFAULT_LOADS,
    RESULTS,
    Consumer,
    Load,  # noqa: E402
    Proc,
    PtyDevice,
    latencies,
    machine,
    parse_load,
    wait_io,
)
from latency_tables import (  # noqa: E402, F401  (report, throughput and load use them from here)
    fmt,
    goals,
    goals_table,
    save,
    split,
    split_table,
    table,
    write_readme,
)

from nirsd.cli.testing import DaemonProcess, device_config, wait_for  # noqa: E402
from nirsd.daemon.config_types import StatusConfig  # noqa: E402

PIPELINES = (
    "nirsd",
    "nirsd-numpy",
    "floor",
    "frames-floor",
    "wire-floor",
    "hb-floor",
    "lsl",
    "serial-lsl",
)


def _hb_consumer(d: DaemonProcess, load: Load, workdir: Path) -> Consumer:
    """The stamping subscriber of the daemon's ``hb`` topic (its own process)."""
    ep = d.endpoints
    return Consumer(
        "hb-sub",
        workdir / "hb.npz",
        *("--data", ep.data, "--control", ep.control, "--rate", repr(load.rate_hz)),
    )


def _caught_up(d: DaemonProcess, written: int) -> dict[str, Any]:
    """The daemon's status once it has taken every written sample (or after 15 s: what
    it has not taken is reported as lost)."""
    try:
        wait_for(
            lambda: d.control(2.0).status().get("samples", 0) >= written,
            15,
            interval=0.05,
            what="daemon caught up",
        )
    except TimeoutError:
        pass
    return d.control(2.0).status()


def run_nirsd(
    load: Load,
    seconds: float,
    warmup_s: float,
    workdir: Path,
    burst_s: float = 0.0,
    extra_cfg: str = "",
    send_hook=None,
    grace_s: float = 1.0,
    max_wait_s: float = 30.0,
    name: str = "nirsd",
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The daemon on a pty this process writes; returns latency, loss, CPU, memory."""
    dev = PtyDevice(load)
    d = _daemon(workdir, dev.port, extra_cfg, env)
    sub = None
    try:
        d.start(wait_streaming=False)
        if hasattr(send_hook, "pid"):
            send_hook.pid = d.proc.pid  # e.g. an RSS sampler

        def alive() -> None:
            if d.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {d.proc.returncode}:\n{d.log()}")

        await_command(dev, alive)
        sub = _hb_consumer(d, load, workdir)
        cpu = CpuWindow(d.proc.pid)

        # the emulator paces the frames and batches late ones itself (burst_s unused)
        p = dev.stream([sub], lambda: sub.ready, seconds, warmup_s, max_wait_s, cpu, send_hook)
        status = _caught_up(d, p.end)
        mem = Proc(d.proc.pid).mem_kb()
        wait_io(time.monotonic_ns() + int(grace_s * 1e9), [])
        idx, ns = sub.finish()
        sub = None
    finally:
        if sub is not None:
            sub.finish()
        d.stop()
        dev.close()
    lat, lost = latencies(p, idx, ns)
    accepted = int(status.get("samples", 0))
    return result_row(
        load,
        name,
        lat,
        lost,
        cpu.fraction,
        daemon_lost=max(0, p.end - accepted),
        rss_kb=mem.get("VmRSS"),
        peak_rss_kb=mem.get("VmHWM"),
        counters=status.get("counters", {}),
        written=p.end,
        wire_bytes=dev.bytes_written,
        window_s=(p.t_end_ns - p.t_start_ns) / 1e9,
    )


def _daemon(workdir: Path, port: str, extra_cfg: str, env: dict[str, str] | None) -> Any:
    """``nirsd run`` on ``port`` as shipped (status every StatusConfig.interval_s), but
    with a 1 s baseline."""
    cfg = device_config(port, baseline_s=1.0, extra=extra_cfg, status_s=StatusConfig().interval_s)
    return DaemonProcess(workdir, cfg, env=env)


def run_nirsd_numpy(load: Load, seconds: float, warmup_s: float, workdir: Path) -> dict[str, Any]:
    """nirsd with its compiled per-frame kernel turned off (``NIRSD_KERNEL=0``): the
    numpy lean path, as where the install found no C compiler."""
    env = {"NIRSD_KERNEL": "0"}
    return run_nirsd(load, seconds, warmup_s, workdir, name="nirsd-numpy", env=env)


RUNNERS = {
    "nirsd": run_nirsd,
    "nirsd-numpy": run_nirsd_numpy,
    "floor": run_floor,
    "frames-floor": run_frames_floor,
    "wire-floor": run_wire_floor,
    "hb-floor": run_hb_floor,
    "lsl": run_lsl,
    "serial-lsl": run_serial_lsl,
}


def run(
    loads: list[Load],
    seconds: float,
    warmup_s: float,
    pipelines: tuple[str, ...] = PIPELINES,
    log=print,
    rounds: int = 1,
) -> list[dict[str, Any]]:
    """Every pipeline at every load, ``rounds`` times over (round after round, so a
    spell of load from elsewhere on the machine falls on one round of a few pipelines,
    not on all rounds of one); a failing run is reported, not fatal."""
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in range(rounds):
        for load in loads:
            for name in pipelines:
                tag = f" round {r + 1}/{rounds}" if rounds > 1 else ""
                log(f"  latency {load.label} {name} ({seconds:g} s){tag} ...", file=sys.stderr)
                runs.setdefault((load.label, name), []).append(
                    _one(RUNNERS[name], load, name, seconds, warmup_s)
                )
    return [combine(rows) for rows in runs.values()]


def _one(runner, load: Load, name: str, seconds: float, warmup_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="nirsdbench") as tmp:
        try:
            return runner(load, seconds, warmup_s, Path(tmp))
        except Exception as err:  # keep going: one broken anchor is a row, not a crash
            return {
                "load": load.label,
                "pipeline": name,
                "error": f"{type(err).__name__}: {err}"[:300],
            }


_MEDIAN_KEYS = ("p50_us", "p90_us", "p99_us", "mean_us", "cpu_pct")
_SUM_KEYS = ("n", "lost", "daemon_lost", "written")


def combine(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from the rounds of a pipeline at a load: the median over the rounds of
    each percentile and of the CPU, samples and losses summed, the longest latency, all
    latencies for the CDF; ``p50_rounds`` / ``p99_rounds`` keep each round's figure."""
    ok = [r for r in rows if "error" not in r]
    if len(rows) == 1 or not ok:
        return rows[0]
    out = dict(ok[-1])
    for key in _MEDIAN_KEYS:
        vals = [r[key] for r in ok if r.get(key) is not None]
        out[key] = float(np.median(vals)) if vals else None
    for key in _SUM_KEYS:
        if all(key in r for r in ok):
            out[key] = int(sum(r[key] for r in ok))
    out["max_us"] = float(max(r["max_us"] for r in ok))
    out["p50_rounds"] = [r["p50_us"] for r in ok]
    out["p99_rounds"] = [r["p99_us"] for r in ok]
    out["rounds"] = len(ok)
    out["_lat"] = np.concatenate([r["_lat"] for r in ok])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--loads",
        nargs="+",
        type=parse_load,
        default=None,
        help="e.g. 8x2@10 64x2@100 (default: the four reference loads)",
    )
    p.add_argument("--seconds", type=float, default=None, help="measured s per run (15)")
    p.add_argument("--warmup", type=float, default=2.0, help="s after the consumer is ready")
    p.add_argument("--pipelines", nargs="+", choices=PIPELINES, default=list(PIPELINES))
    p.add_argument("--quick", action="store_true", help="short smoke run (3 s per run)")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run everything this many times over; medians of the rounds' figures",
    )
    p.add_argument("--json", type=Path, default=RESULTS / "latency.json")
    p.add_argument(
        "--readme", action="store_true", help="write the tables into README.md (Performance)"
    )
    a = p.parse_args(argv)
    seconds = a.seconds if a.seconds is not None else (3.0 if a.quick else 15.0)
    warmup = 1.0 if a.quick else a.warmup
    loads = a.loads or DEFAULT_LOADS
    info = machine()  # the date and load average at the start, for the README
    rows = run(loads, seconds, warmup, tuple(a.pipelines), rounds=max(1, a.rounds))
    print(table(rows))
    if split_table(rows):
        print("\nnirsd = transport floor + processing:\n" + split_table(rows))
    if goals_table(rows):
        print("\nnirsd against the floor and serial-lsl:\n" + goals_table(rows))
    save(rows, a.json)
    print(f"saved {a.json}")
    if a.readme:
        write_readme(rows, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
