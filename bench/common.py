"""Shared helpers for the nirsd benchmarks.

- :class:`Load`: ``"64x2@100"`` = 64 channels x 2 wavelengths at 100 Hz.
- :class:`PtyDevice`: the master side of a pseudo-terminal that speaks NIRSB; the
  benchmark writes every frame itself and stamps it with ``time.monotonic_ns()``
  (CLOCK_MONOTONIC is shared by every process on one machine).
- :class:`Proc`: CPU (utime + stime from ``/proc/PID/stat``, s) and memory
  (``VmRSS``/``VmHWM`` from ``/proc/PID/status``, kB) of a process.
- :class:`Consumer`: a helper role of this file run as a subprocess, which prints
  ``ready`` and, on SIGTERM, saves what it received (frame index, receive time in ns).
- :func:`stats`: percentiles of latencies in µs.

Helper roles (``python bench/common.py ROLE ...``):

- ``hb-sub``: a ZeroMQ SUB on nirsd's ``hb`` that decodes each message as
  docs/protocol.md says (msgpack header, ``numpy.frombuffer`` payload) and nothing
  more; the frame index is ``round(t_dev · rate)``, worked out after the run.
- ``lsl-inlet``: a pylsl StreamInlet; the frame index is in the first value.
- ``serial-lsl``: a plain pyserial reader → COBS decoder → pylsl outlet, as a user
  would write it between a NIRSB device and LSL.
- ``floor-relay``: the transport floor: ``poll()`` on the pty → ``os.read`` → split on
  0x00 → one ZeroMQ PUB message per frame (still COBS-encoded), nothing else.
- ``floor-sub``: a bare ZeroMQ SUB on that relay: ``recv``, stamp, keep the bytes; the
  frame index (``t_us`` of each DATA frame) is decoded after the run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
import tty
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
#: first count of channel 0, wavelength 0; the frame index is added to it so that a
#: consumer that only sees values (LSL) can tell which frame a sample came from
MARK = 100_000
BASE_COUNTS = 30_000
CLK_TCK = os.sysconf("SC_CLK_TCK")


def quiet_lsl() -> None:
    """LSL on this machine only (ResolveScope = machine, KnownPeers 127.0.0.1, no IPv6)
    and errors only in liblsl's log; inherited by the subprocesses."""
    from nirsd.cli.testing import keep_lsl_local

    keep_lsl_local(Path(tempfile.gettempdir()) / "nirsd-bench-lsl")


quiet_lsl()


# --------------------------------------------------------------------------- loads


@dataclass(frozen=True)
class Load:
    channels: int
    wavelengths: int
    rate_hz: float

    @property
    def label(self) -> str:
        return f"{self.channels}x{self.wavelengths}@{self.rate_hz:g}"

    @property
    def values(self) -> int:
        return self.channels * self.wavelengths


def parse_load(text: str) -> Load:
    """``"64x2@100"`` → Load(64, 2, 100.0)."""
    m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*@\s*([0-9.]+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"load {text!r} is not CHANNELSxWAVELENGTHS@HZ")
    return Load(int(m[1]), int(m[2]), float(m[3]))


DEFAULT_LOADS = [Load(8, 2, 10), Load(64, 2, 100), Load(256, 2, 1000), Load(4096, 2, 10)]


def stats(lat_us: np.ndarray) -> dict[str, float]:
    """p50/p90/p99/max/mean of latencies in µs (NaN when empty)."""
    lat = np.asarray(lat_us, dtype=np.float64)
    if lat.size == 0:
        return {
            "n": 0,
            "p50_us": float("nan"),
            "p90_us": float("nan"),
            "p99_us": float("nan"),
            "max_us": float("nan"),
            "mean_us": float("nan"),
        }
    p50, p90, p99 = np.percentile(lat, [50, 90, 99])
    return {
        "n": int(lat.size),
        "p50_us": float(p50),
        "p90_us": float(p90),
        "p99_us": float(p99),
        "max_us": float(lat.max()),
        "mean_us": float(lat.mean()),
    }


def machine() -> dict[str, Any]:
    """The machine a run happened on: CPUs, model, Python, load average, date (UTC)."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_1m": os.getloadavg()[0],
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


# --------------------------------------------------------------------------- processes


class Proc:
    """CPU seconds and memory of one process, read from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu_s(self) -> float:
        """utime + stime in seconds (fields 14 and 15 of /proc/PID/stat)."""
        text = Path(f"/proc/{self.pid}/stat").read_text()
        fields = text[text.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def mem_kb(self) -> dict[str, int]:
        """``VmRSS`` (resident now) and ``VmHWM`` (peak resident) in kB."""
        out = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(line.split()[1])
        return out


def save_results(path: Path, res: dict) -> None:
    """Write a benchmark's results, with the machine description, as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), **res}, indent=1, default=str))
    print(f"saved {path}")


def stop(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` s; reap."""
    if proc is None:
        return
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Consumer:
    """A helper role of this file as a subprocess; ``ready`` once it prints so."""

    def __init__(self, role: str, out: Path, *args: str) -> None:
        self.out = Path(out)
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH / "common.py"), role, "--out", str(out), *args],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        self.ready = False
        self._buf = b""

    def fileno(self) -> int:
        return self.proc.stdout.fileno()

    def on_readable(self) -> None:
        data = os.read(self.fileno(), 4096)
        if not data and self.proc.poll() is not None:
            raise RuntimeError(f"{self.proc.args[2]} exited with {self.proc.returncode}")
        self._buf += data
        if b"ready" in self._buf:
            self.ready = True

    def finish(self, timeout: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
        """Stop it; (frame indices, receive times in ns) of what it received."""
        stop(self.proc, timeout)
        self.proc.stdout.close()
        try:
            with np.load(self.out) as data:
                return data["idx"], data["ns"]
        except OSError:
            return np.empty(0, np.int64), np.empty(0, np.int64)


# --------------------------------------------------------------------------- the device


class PtyDevice:
    """A NIRSB device played by the benchmark on the master side of a pty."""

    def __init__(self, load: Load, device_id: str = "bench") -> None:
        from nirsd.drivers import nirsb

        self._nirsb = nirsb
        self.load = load
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo, no line discipline: bytes pass unchanged
        self.port = os.ttyname(self.slave)
        os.set_blocking(self.master, False)
        self.device_id = device_id
        self.commands = b""
        self._counts = np.full((load.channels, load.wavelengths), BASE_COUNTS, np.int32)
        self._counts += np.arange(load.values, dtype=np.int32).reshape(self._counts.shape) % 97
        self.bytes_written = 0

    def fileno(self) -> int:
        return self.master

    def t_us(self, k: int) -> int:
        return int(round(k * 1e6 / self.load.rate_hz))

    def frame(self, k: int) -> bytes:
        """Wire bytes of DATA frame number ``k`` (device seq k mod 65536)."""
        self._counts[0, 0] = MARK + k
        return self._nirsb.encode_data(k % 65536, self.t_us(k) % (1 << 32), self._counts)

    def info(self) -> bytes:
        return self._nirsb.encode_info(
            self.load.channels,
            [760, 850][: self.load.wavelengths] + [905] * max(0, self.load.wavelengths - 2),
            int(round(self.load.rate_hz * 1000)),
            self.device_id,
        )

    def on_readable(self) -> None:
        try:
            self.commands += os.read(self.master, 4096)
        except OSError:
            pass

    def write(self, data: bytes, stall_s: float = 5.0) -> None:
        """Write all of ``data``; TimeoutError if the reader drains nothing for ``stall_s``."""
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.master, view)
            except BlockingIOError:
                n = 0
            view = view[n:]
            if view and not n:
                _, ok, _ = select.select([], [self.master], [], stall_s)
                if not ok:
                    raise TimeoutError(
                        f"the reader of the port stopped draining it for "
                        f"{stall_s:g} s (it cannot keep up)"
                    )
        self.bytes_written += len(data)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


def wait_io(deadline_ns: int, readers: list[Any]) -> None:
    """Service ``readers`` (objects with fileno/on_readable) until ``deadline_ns``."""
    while True:
        left = deadline_ns - time.monotonic_ns()
        if left <= 0:
            return
        ready, _, _ = select.select(readers, [], [], left / 1e9)
        for r in ready:
            r.on_readable()
        if not ready:
            return


@dataclass
class Paced:
    """Outcome of :func:`paced`: write times (ns) per frame and the measured window."""

    write_ns: np.ndarray
    first: int  # first measured frame
    end: int  # one past the last
    t_start_ns: int  # monotonic time of the first measured write
    t_end_ns: int


def paced(
    load: Load,
    send,
    readers: list[Any],
    is_ready,
    seconds: float,
    warmup_s: float = 1.0,
    burst_s: float = 0.0,
    max_wait_s: float = 30.0,
    on_measure=None,
    flush=None,
) -> Paced:
    """Call ``send(k)`` for frames k = 0, 1, … at ``load.rate_hz``.

    Frames keep flowing until ``is_ready()`` and then ``warmup_s`` more; the next
    ``seconds`` of frames are the measured window (``on_measure(True/False)`` is called
    at its start and end).  ``burst_s`` > 0 sends all frames due every ``burst_s`` s in
    one go (for rates the writer cannot pace one by one), then calls ``flush()``.
    """
    period = 1e9 / load.rate_hz
    total_cap = int((max_wait_s + warmup_s + seconds) * load.rate_hz) + 1
    write_ns = np.zeros(total_cap, np.int64)
    n_measure = max(1, int(round(seconds * load.rate_hz)))
    t0 = time.monotonic_ns()
    first = end = None
    k = 0
    tick = int(burst_s * 1e9)
    prev = t0
    give_up = t0 + int((2 * (max_wait_s + warmup_s + seconds) + 10) * 1e9)
    while True:
        if first is None and is_ready():
            first = k + int(round(warmup_s * load.rate_hz))
            end = first + n_measure
        if end is not None and k >= end:
            break
        if k >= total_cap or time.monotonic_ns() > give_up:
            raise TimeoutError(
                f"consumer not ready within {max_wait_s:g} s, or the writer fell far behind"
            )
        due = t0 + int(k * period)
        wait_io(due if tick == 0 else max(due, prev + tick), readers)
        now = prev = time.monotonic_ns()
        last = k if tick == 0 else min(total_cap - 1, int((now - t0) / period))
        if end is not None:
            last = min(last, end - 1)
        while k <= last:
            if k == first and on_measure:
                on_measure(True)
            write_ns[k] = time.monotonic_ns()
            send(k)
            k += 1
        if flush is not None:
            flush()
    if on_measure:
        on_measure(False)
    return Paced(write_ns, first, end, int(write_ns[first]), int(write_ns[end - 1]))


def latencies(paced_: Paced, idx: np.ndarray, recv_ns: np.ndarray) -> tuple[np.ndarray, int]:
    """Write→receive latencies in µs of the measured frames, and how many were lost."""
    keep = (idx >= paced_.first) & (idx < paced_.end)
    idx, recv_ns = idx[keep], recv_ns[keep]
    idx, where = np.unique(idx, return_index=True)
    lat = (recv_ns[where] - paced_.write_ns[idx]) / 1e3
    return lat, (paced_.end - paced_.first) - idx.size


# --------------------------------------------------------------------------- roles


class _Stop:
    flag = False


def _on_term(*_: object) -> None:
    _Stop.flag = True


def _save(out: str, idx: list, ns: list) -> None:
    i = np.concatenate(idx) if idx else np.empty(0, np.int64)
    t = np.concatenate(ns) if ns else np.empty(0, np.int64)
    with open(out, "wb") as f:
        np.savez(f, idx=i.astype(np.int64), ns=t.astype(np.int64))


def role_hb_sub(a: argparse.Namespace) -> None:
    """A SUB on nirsd's ``hb``: receive, decode as docs/protocol.md says (msgpack header,
    ``numpy.frombuffer`` payload), stamp; the frame index comes from ``t_dev`` after."""
    import msgpack
    import zmq

    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, 100_000)
    sub.setsockopt(zmq.RCVTIMEO, 100)  # to see SIGTERM
    sub.setsockopt(zmq.SUBSCRIBE, b"hb")
    sub.connect(a.data)
    t_dev: list = []
    ns: list[int] = []
    recv, unpackb, frombuffer, stamp = (
        sub.recv_multipart,
        msgpack.unpackb,
        np.frombuffer,
        time.monotonic_ns,
    )
    while not _Stop.flag:
        try:
            _, head, payload = recv()
        except zmq.Again:
            continue
        header = unpackb(head)
        _hb = frombuffer(payload, header["dtype"]).reshape(header["shape"])
        ns.append(stamp())
        t_dev.append(header["t_dev"])
        if len(ns) == 1:
            print("ready", flush=True)
    sub.close()
    ctx.term()
    idx = [
        np.rint(np.atleast_1d(np.asarray(t, np.float64)) * a.rate).astype(np.int64) for t in t_dev
    ]
    _save(a.out, idx, [np.full(k.size, t, np.int64) for k, t in zip(idx, ns)])


def role_lsl_inlet(a: argparse.Namespace) -> None:
    import pylsl

    found = pylsl.resolve_byprop("name", a.name, 1, 30.0)
    if not found:
        raise SystemExit(f"no LSL stream named {a.name}")
    inlet = pylsl.StreamInlet(found[0], max_buflen=60)
    inlet.open_stream(10.0)
    print("ready", flush=True)
    idx: list[int] = []
    ns: list[int] = []
    while not _Stop.flag:
        sample, _ = inlet.pull_sample(timeout=0.1)
        if sample is not None:
            ns.append(time.monotonic_ns())
            idx.append(int(round(sample[0])) - MARK)
    inlet.close_stream()
    _save(a.out, [np.array(idx)], [np.array(ns)])


def role_serial_lsl(a: argparse.Namespace) -> None:
    """What a user writes: read the port, split on 0x00, COBS-decode, push to LSL."""
    import pylsl
    import serial
    from cobs import cobs

    n = a.channels * a.wavelengths
    info = pylsl.StreamInfo(a.name, "NIRS", n, a.rate, pylsl.cf_float32, a.name)
    outlet = pylsl.StreamOutlet(info)
    ser = serial.Serial(a.port, 115200, timeout=0.1)
    ser.write(b"?b")
    buf = b""
    while not _Stop.flag:
        buf += ser.read(ser.in_waiting or 1)
        while b"\x00" in buf:
            chunk, buf = buf.split(b"\x00", 1)
            try:
                raw = cobs.decode(chunk)
            except cobs.DecodeError:
                continue
            if len(raw) < 14 or raw[0] != 1:
                continue  # not a DATA frame
            values = np.frombuffer(raw[12:-2], "<i4")
            if values.size == n:
                outlet.push_sample(values.astype(np.float32))
    ser.close()
    _save(a.out, [], [])


def floor_relay(port: str, endpoint: str, running=lambda: not _Stop.flag) -> None:
    """The least a pty → ZeroMQ relay does: ``poll()`` the port, ``os.read``, split on
    0x00, send each frame (still COBS-encoded) as one message on a PUB ipc socket.

    Nothing else: no pyserial, no decoding, no header.  The subscriber identifies the
    frames after the run (:func:`frame_index`).
    """
    import zmq

    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(endpoint)
    fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    os.write(fd, b"?b")  # as every reader does; the device answers with INFO
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    send, pending = pub.send, b""
    while running():
        if not poller.poll(100):
            continue
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            continue
        except OSError:
            break  # the device side closed
        chunks = (pending + data if pending else data).split(b"\x00")
        pending = chunks.pop()
        for chunk in chunks:
            send(chunk)
    os.close(fd)
    pub.close()
    ctx.term()


def frame_index(chunks: list[bytes], rate_hz: float) -> np.ndarray:
    """Frame numbers (``round(t_us · rate / 1e6)``) of the DATA frames among COBS-encoded
    ``chunks``; -1 for anything else (INFO, EVENT, empty, undecodable)."""
    from nirsd.drivers import nirsb

    out = np.full(len(chunks), -1, np.int64)
    for i, chunk in enumerate(chunks):
        try:
            raw = nirsb.cobs.decode(chunk)
        except nirsb.cobs.DecodeError:
            continue
        if len(raw) >= nirsb.DATA_OVERHEAD and raw[0] == nirsb.DATA:
            t_us = nirsb.HEADER.unpack_from(raw)[3]
            out[i] = int(round(t_us * rate_hz / 1e6))
    return out


def role_floor_relay(a: argparse.Namespace) -> None:
    floor_relay(a.port, a.data)
    _save(a.out, [], [])


def role_floor_sub(a: argparse.Namespace) -> None:
    """A bare SUB on the floor relay: ``recv``, stamp, keep the bytes (decoded after)."""
    import zmq

    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, 100_000)
    sub.setsockopt(zmq.RCVTIMEO, 100)  # to see SIGTERM
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(a.data)
    chunks: list[bytes] = []
    ns: list[int] = []
    recv, stamp, keep, keep_ns = sub.recv, time.monotonic_ns, chunks.append, ns.append
    while not _Stop.flag:
        try:
            msg = recv()
        except zmq.Again:
            continue
        keep_ns(stamp())
        keep(msg)
        if len(ns) == 1:
            print("ready", flush=True)
    sub.close()
    ctx.term()
    idx = frame_index(chunks, a.rate)
    data = idx >= 0
    _save(a.out, [idx[data]], [np.array(ns, np.int64)[data]])


ROLES = {
    "hb-sub": role_hb_sub,
    "lsl-inlet": role_lsl_inlet,
    "serial-lsl": role_serial_lsl,
    "floor-relay": role_floor_relay,
    "floor-sub": role_floor_sub,
}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="benchmark helper roles")
    p.add_argument("role", choices=list(ROLES))
    p.add_argument("--out", required=True)
    p.add_argument("--data")
    p.add_argument("--control")
    p.add_argument("--rate", type=float, default=10.0)
    p.add_argument("--name")
    p.add_argument("--port")
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--wavelengths", type=int, default=2)
    a = p.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_term)
    ROLES[a.role](a)


if __name__ == "__main__":
    main()
