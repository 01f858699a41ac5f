"""Shared helpers for the nirsd benchmarks.

- :class:`Load`: ``"64x2@100"`` = 64 channels x 2 wavelengths at 100 Hz.
- :class:`PtyDevice`: nirsd's own NIRSB emulator (``nirsd.drivers.sim``) on a
  pseudo-terminal, pacing the frames itself; each frame is stamped with
  ``time.monotonic_ns()`` as it is handed to the pty (CLOCK_MONOTONIC is shared by
  every process on one machine).
- :class:`Proc`: CPU (its threads' time on a CPU from ``schedstat``, s) and memory
  (``VmRSS``/``VmHWM`` from ``/proc/PID/status``, kB) of a process.
- :class:`Consumer`: a helper role (``bench/roles.py``) run as a subprocess, which
  prints ``ready`` and, on SIGTERM, saves what it received (frame index, receive time).
- :func:`paced`: calls a sender at a rate (for hops with no pty, such as bare LSL).
- :func:`stats`: percentiles of latencies in µs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import select
import subprocess
import sys
import tempfile
import time
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
        """CPU seconds of all its threads: the time on a CPU from each thread's
        /proc/PID/task/TID/schedstat (nanoseconds), else utime + stime (fields 14 and 15
        of /proc/PID/stat, in clock ticks: 10 ms, a tenth of a quiet relay's CPU over a
        10 s window)."""
        try:
            total = 0
            for task in Path(f"/proc/{self.pid}/task").iterdir():
                total += int((task / "schedstat").read_text().split()[0])
            if total > 0:
                return total / 1e9
        except (OSError, ValueError, IndexError):
            pass  # a thread gone meanwhile, or no schedstat: the coarse figure
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
            [sys.executable, str(BENCH / "roles.py"), role, "--out", str(out), *args],
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


def __getattr__(name: str) -> Any:
    """Names that live beside this module, importable from here too (loaded on first
    use: they import this module): the device in pty_device.py, the relay in roles.py."""
    if name in ("PtyDevice", "MarkedCounts"):
        import pty_device

        return getattr(pty_device, name)
    if name in ("floor_relay", "frame_index"):
        import roles

        return getattr(roles, name)
    raise AttributeError(name)
