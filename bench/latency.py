"""End-to-end latency: a NIRSB frame written to the device port → ΔHb decoded in a
subscriber process, against the anchors most labs use today, in the same run.

Pipelines, per load (channels x wavelengths @ Hz):

- ``nirsd``: nirsd's NIRSB emulator in this process writes each frame to a pty; ``nirsd run``
  (a subprocess, driver nirsb, port = the pty) reads, converts and publishes; a
  subscriber process decodes ``hb``.  Latency = write start → ``hb`` received.
  The daemon's CPU (utime + stime per second of data, % of one core) is reported.
- ``floor``: the transport floor under ``nirsd``: the same pty and writer, a relay
  subprocess that only ``poll()``s the pty, ``os.read``s, splits on 0x00 and sends each
  frame as one message on a ZeroMQ PUB ipc socket, and a SUB subprocess that only
  ``recv``s (frames are identified after the run).  The least any pty → ZeroMQ →
  Python subscriber design pays; nirsd − floor is processing.
- ``lsl``: a bare Lab Streaming Layer hop of same-size samples (float32) between two
  processes: pylsl StreamOutlet here → StreamInlet in a subprocess (push → pull).
- ``serial-lsl``: a plain pyserial reader → COBS decoder → pylsl outlet (a subprocess,
  as a user would write it), inlet in another process: byte write → inlet receipt.

All times are CLOCK_MONOTONIC (``time.monotonic_ns()``), shared by every process.

    python bench/latency.py                      # the four loads, 15 s each
    python bench/latency.py --quick              # smoke run, under a minute
    python bench/latency.py --loads 64x2@100 --seconds 30
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    BASE_COUNTS,
    DEFAULT_LOADS,
    MARK,
    RESULTS,
    Consumer,
    Load,  # noqa: E402
    Proc,
    PtyDevice,
    latencies,
    paced,
    parse_load,
    stats,
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

PIPELINES = ("nirsd", "nirsd-numpy", "floor", "hb-floor", "lsl", "serial-lsl")


def _await_command(dev: PtyDevice, alive: Callable[[], None], timeout_s: float = 30.0) -> None:
    """Wait for the reader's ``?b`` on the pty (the emulator answers ``?`` with INFO)."""
    dev.wait_streaming(alive, timeout_s)


def _result(
    load: Load, pipeline: str, lat: np.ndarray, lost: int, cpu: float | None, **extra: Any
) -> dict[str, Any]:
    return {
        "load": load.label,
        "pipeline": pipeline,
        "lost": int(lost),
        **stats(lat),
        "cpu_pct": None if cpu is None else 100.0 * cpu,
        **extra,
        "_lat": lat,
    }


class CpuWindow:
    """CPU of a process over the measured window: s of CPU per s of wall time."""

    def __init__(self, pid: int) -> None:
        self.proc = Proc(pid)
        self.marks: list[tuple[float, int]] = []

    def __call__(self, _start: bool) -> None:
        self.marks.append((self.proc.cpu_s(), time.monotonic_ns()))

    @property
    def fraction(self) -> float:
        (c0, t0), (c1, t1) = self.marks[0], self.marks[-1]
        return (c1 - c0) / max(1e-9, (t1 - t0) / 1e9)


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
    cfg = device_config(dev.port, baseline_s=1.0, extra=extra_cfg)
    d = DaemonProcess(workdir, cfg, env=env)
    sub = None
    try:
        d.start(wait_streaming=False)
        if hasattr(send_hook, "pid"):
            send_hook.pid = d.proc.pid  # e.g. an RSS sampler

        def alive() -> None:
            if d.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {d.proc.returncode}:\n{d.log()}")

        _await_command(dev, alive)
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
    return _result(
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


def _relayed(
    load: Load,
    name: str,
    dev: PtyDevice,
    middle: Consumer,
    make_sink: Callable[[], Consumer],
    seconds: float,
    warmup_s: float,
) -> dict[str, Any]:
    """pty ``dev`` → ``middle`` (a subprocess reading the port) → the sink ``make_sink``
    starts once the middle asked the device for INFO; latency, loss, the middle's CPU."""
    sink = None
    try:

        def alive() -> None:
            if middle.proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {middle.proc.returncode}")

        _await_command(dev, alive)
        sink = make_sink()
        cpu = CpuWindow(middle.proc.pid)
        p = dev.stream([sink, middle], lambda: sink.ready, seconds, warmup_s, on_measure=cpu)
        wait_io(time.monotonic_ns() + 1_000_000_000, [sink])
        idx, ns = sink.finish()
        sink = None
    finally:
        if sink is not None:
            sink.finish()
        middle.finish()
        dev.close()
    lat, lost = latencies(p, idx, ns)
    return _result(load, name, lat, lost, cpu.fraction)


def run_floor(load: Load, seconds: float, warmup_s: float, workdir: Path) -> dict[str, Any]:
    """pty → a relay that only reads, delimits and publishes (ZeroMQ PUB) → a bare SUB."""
    dev = PtyDevice(load)
    endpoint = f"ipc://{workdir / 'floor.ipc'}"
    relay = Consumer("floor-relay", workdir / "relay.npz", "--port", dev.port, "--data", endpoint)
    return _relayed(
        load,
        "floor",
        dev,
        relay,
        lambda: Consumer(
            "floor-sub", workdir / "floor.npz", "--data", endpoint, "--rate", repr(load.rate_hz)
        ),
        seconds,
        warmup_s,
    )


def run_hb_floor(load: Load, seconds: float, warmup_s: float, workdir: Path) -> dict[str, Any]:
    """pty → the least relay that publishes hb (``roles.hb_relay``) → ``hb-sub``, the
    subscriber nirsd is measured with: the same job as nirsd with nothing around it."""
    dev = PtyDevice(load)
    endpoint = f"ipc://{workdir / 'hbfloor.ipc'}"
    shape = ("--channels", str(load.channels), "--wavelengths", str(load.wavelengths))
    relay = Consumer(
        "hb-relay", workdir / "relay.npz", "--port", dev.port, "--data", endpoint, *shape
    )
    return _relayed(
        load,
        "hb-floor",
        dev,
        relay,
        lambda: Consumer(
            "hb-sub", workdir / "hb.npz", "--data", endpoint, "--rate", repr(load.rate_hz)
        ),
        seconds,
        warmup_s,
    )


def run_lsl(load: Load, seconds: float, warmup_s: float, workdir: Path) -> dict[str, Any]:
    """A bare pylsl outlet (here) → inlet (subprocess) hop of same-size samples."""
    import pylsl

    name = f"nirsdbench{uuid.uuid4().hex[:10]}"
    outlet = pylsl.StreamOutlet(
        pylsl.StreamInfo(name, "NIRS", load.values, load.rate_hz, pylsl.cf_float32, name)
    )
    inlet = Consumer("lsl-inlet", workdir / "lsl.npz", "--name", name)
    sample = np.full(load.values, BASE_COUNTS, np.float32)

    def send(k: int) -> None:
        sample[0] = MARK + k
        outlet.push_sample(sample)

    try:
        p = paced(load, send, [inlet], lambda: inlet.ready, seconds, warmup_s)
        wait_io(time.monotonic_ns() + 1_000_000_000, [inlet])
        idx, ns = inlet.finish()
    finally:
        inlet.finish()
        outlet = None  # close the stream now rather than at collection
    lat, lost = latencies(p, idx, ns)
    return _result(load, "lsl", lat, lost, None)


def run_serial_lsl(load: Load, seconds: float, warmup_s: float, workdir: Path) -> dict[str, Any]:
    """pty → a plain pyserial/pylsl script (subprocess) → inlet (subprocess)."""
    dev = PtyDevice(load)
    name = f"nirsdbench{uuid.uuid4().hex[:10]}"
    user = Consumer(
        "serial-lsl",
        workdir / "user.npz",
        "--port",
        dev.port,
        "--name",
        name,
        "--channels",
        str(load.channels),
        "--wavelengths",
        str(load.wavelengths),
        "--rate",
        repr(load.rate_hz),
    )
    return _relayed(
        load,
        "serial-lsl",
        dev,
        user,
        lambda: Consumer("lsl-inlet", workdir / "lsl.npz", "--name", name),
        seconds,
        warmup_s,
    )


def run_nirsd_numpy(load: Load, seconds: float, warmup_s: float, workdir: Path) -> dict[str, Any]:
    """nirsd with its compiled per-frame kernel turned off (``NIRSD_KERNEL=0``): the
    numpy lean path, as where the install found no C compiler."""
    env = {"NIRSD_KERNEL": "0"}
    return run_nirsd(load, seconds, warmup_s, workdir, name="nirsd-numpy", env=env)


RUNNERS = {
    "nirsd": run_nirsd,
    "nirsd-numpy": run_nirsd_numpy,
    "floor": run_floor,
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
) -> list[dict[str, Any]]:
    """Every pipeline at every load; a failing run is reported, not fatal."""
    out = []
    for load in loads:
        for name in pipelines:
            log(f"  latency {load.label} {name} ({seconds:g} s) ...", file=sys.stderr)
            with tempfile.TemporaryDirectory(prefix="nirsdbench") as tmp:
                try:
                    out.append(RUNNERS[name](load, seconds, warmup_s, Path(tmp)))
                except Exception as err:  # keep going: one broken anchor is a row, not a crash
                    out.append(
                        {
                            "load": load.label,
                            "pipeline": name,
                            "error": f"{type(err).__name__}: {err}"[:300],
                        }
                    )
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
    p.add_argument("--json", type=Path, default=RESULTS / "latency.json")
    p.add_argument(
        "--readme", action="store_true", help="write the tables into README.md (Performance)"
    )
    a = p.parse_args(argv)
    seconds = a.seconds if a.seconds is not None else (3.0 if a.quick else 15.0)
    warmup = 1.0 if a.quick else a.warmup
    loads = a.loads or DEFAULT_LOADS
    rows = run(loads, seconds, warmup, tuple(a.pipelines))
    print(table(rows))
    if split_table(rows):
        print("\nnirsd = transport floor + processing:\n" + split_table(rows))
    if goals_table(rows):
        print("\nnirsd against the floor and serial-lsl:\n" + goals_table(rows))
    save(rows, a.json)
    print(f"saved {a.json}")
    if a.readme:
        write_readme(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
