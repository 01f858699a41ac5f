"""The anchors nirsd's latency is measured against (bench/latency.py runs them): the
transport floor, the least relays that speak nirsd's wire format or do its job, a bare
LSL hop and the pyserial → LSL script a user would write; and the pieces every run
shares (waiting for the reader's start command, the result row, the CPU window)."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    BASE_COUNTS,
    MARK,
    Consumer,
    Load,
    Proc,
    PtyDevice,
    latencies,
    paced,
    stats,
    wait_io,
)


def await_command(dev: PtyDevice, alive: Callable[[], None], timeout_s: float = 30.0) -> None:
    """Wait for the reader's ``?b`` on the pty (the emulator answers ``?`` with INFO)."""
    dev.wait_streaming(alive, timeout_s)


def result_row(
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

        await_command(dev, alive)
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
    return result_row(load, name, lat, lost, cpu.fraction)


def run_floor(load: Load, seconds: float, warmup_s: float, workdir: Path) -> dict[str, Any]:
    """pty → a relay that only reads, delimits and publishes (ZeroMQ PUB) → a bare SUB."""
    return _floor(load, "floor", seconds, warmup_s, workdir)


def run_frames_floor(load: Load, seconds: float, warmup_s: float, workdir: Path) -> dict[str, Any]:
    """The floor with ``hb``'s three-frame message (``roles.py frames-relay`` →
    ``frames-sub``): no decoding either side, only the message's shape."""
    return _floor(load, "frames", seconds, warmup_s, workdir)


def _floor(load: Load, kind: str, seconds: float, warmup_s: float, workdir: Path) -> dict:
    """``kind``-relay → ``kind``-sub of roles.py ("floor" or "frames") on a pty."""
    dev = PtyDevice(load)
    endpoint = f"ipc://{workdir / 'floor.ipc'}"
    relay = Consumer(f"{kind}-relay", workdir / "relay.npz", "--port", dev.port, "--data", endpoint)
    return _relayed(
        load,
        "floor" if kind == "floor" else f"{kind}-floor",
        dev,
        relay,
        lambda: Consumer(
            f"{kind}-sub", workdir / "floor.npz", "--data", endpoint, "--rate", repr(load.rate_hz)
        ),
        seconds,
        warmup_s,
    )


def run_hb_floor(load: Load, seconds: float, warmup_s: float, workdir: Path) -> dict[str, Any]:
    """pty → the least relay that publishes hb (``roles.hb_relay``) → ``hb-sub``, the
    subscriber nirsd is measured with: the same job as nirsd with nothing around it."""
    return _hb_relayed(load, "hb-relay", "hb-floor", seconds, warmup_s, workdir)


def run_wire_floor(load: Load, seconds: float, warmup_s: float, workdir: Path) -> dict[str, Any]:
    """pty → the least relay that speaks the ``hb`` wire format (``roles.wire_relay``:
    no CRC, no conversion) → ``hb-sub``: what the wire contract alone costs."""
    return _hb_relayed(load, "wire-relay", "wire-floor", seconds, warmup_s, workdir)


def _hb_relayed(
    load: Load, role: str, name: str, seconds: float, warmup_s: float, workdir: Path
) -> dict[str, Any]:
    dev = PtyDevice(load)
    endpoint = f"ipc://{workdir / 'hbfloor.ipc'}"
    shape = ("--channels", str(load.channels), "--wavelengths", str(load.wavelengths))
    relay = Consumer(role, workdir / "relay.npz", "--port", dev.port, "--data", endpoint, *shape)
    return _relayed(
        load,
        name,
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
    return result_row(load, "lsl", lat, lost, None)


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
