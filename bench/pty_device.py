"""The benchmarks' NIRSB device: nirsd's own emulator (``nirsd.drivers.sim``) on a pty.

Frame k carries ``MARK + k`` in channel 0 / wavelength 0 (so a consumer that only sees
values can tell which frame a sample came from) and the device clock ``k / rate``
(so one that sees ``t_dev`` can).  The emulator paces the frames at absolute deadlines
and its transport stamps each with ``time.monotonic_ns()`` as it is handed to the pty:
the write time the latencies count from.  The bytes on the wire are those of the
NIRSB probe in DEVICES.md: INFO on ``?``, then DATA frames from ``b``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BASE_COUNTS, MARK, Load, Paced, wait_io  # noqa: E402

from nirsd.drivers.sim.truth import Source  # noqa: E402


class MarkedCounts(Source):
    """Constant counts, except channel 0 / wavelength 0 = ``MARK`` + the frame index."""

    def __init__(self, load: Load) -> None:
        super().__init__(load.channels, bench_wavelengths(load), load.rate_hz)
        base = np.full((load.channels, load.wavelengths), BASE_COUNTS, np.int32)
        base += np.arange(load.values, dtype=np.int32).reshape(base.shape) % 97
        self._base = base

    def values(self, k: int, n: int, k_rel: int) -> np.ndarray:
        out = np.repeat(self._base[None], n, axis=0)
        out[:, 0, 0] = MARK + np.arange(k, k + n)
        return out


def bench_wavelengths(load: Load) -> tuple[float, ...]:
    """760 and 850 nm, then 905 nm for any further wavelength."""
    return tuple([760.0, 850.0][: load.wavelengths] + [905.0] * max(0, load.wavelengths - 2))


class PtyDevice:
    """The project's NIRSB emulator on a pty, frame k carrying ``MARK + k`` and the
    device clock ``k / rate``; it records when each frame is handed to the pty.

    The reader's ``?`` gets INFO and its ``b`` starts the stream (no second INFO);
    ``lockstep`` sends a frame only on :meth:`step`.
    """

    def __init__(self, load: Load, device_id: str = "bench", lockstep: bool = False) -> None:
        from nirsd.drivers.sim.emulator import Emulator
        from nirsd.drivers.sim.encoders import NirsbEncoder

        self.load = load
        self.counts = MarkedCounts(load)
        wl = bench_wavelengths(load)
        self.emulator = Emulator(
            load.channels,
            load.rate_hz,
            wl,
            device_id=device_id,
            encoder=NirsbEncoder(load.channels, wl, load.rate_hz, device_id, info_on_start=False),
            source=self.counts,
            speed=0.0 if lockstep else 1.0,
        )
        self.emulator.queue_limit = 64 << 20  # a slow reader shows as latency, not loss
        self._k: list[int] = []
        self._ns: list[int] = []
        self._seen = 0  # frames passed to on_frame
        self.emulator.on_write = self._stamp
        self.port = self.emulator.start()

    def _stamp(self, k: int, ns: int) -> None:
        self._k.append(k)
        self._ns.append(ns)

    @property
    def bytes_written(self) -> int:
        return self.emulator.transport.pty.bytes_written

    @property
    def streaming(self) -> bool:
        return self.emulator.streaming

    def step(self) -> None:
        """``lockstep``: send the next frame now."""
        self.emulator.step(1)

    def wait_streaming(self, alive=lambda: None, timeout_s: float = 30.0) -> None:
        """Wait for the reader's ``b`` (``alive()`` raises if the reader died)."""
        deadline = time.monotonic() + timeout_s
        while not self.emulator.streaming:
            alive()
            if time.monotonic() > deadline:
                raise TimeoutError("the reader never started the stream")
            time.sleep(0.005)

    def write_ns(self, end: int) -> np.ndarray:
        """Monotonic ns at which frames 0..end-1 were handed to the pty (0: never)."""
        out = np.zeros(end, np.int64)
        n = min(len(self._k), len(self._ns))
        k, ns = np.asarray(self._k[:n], np.int64), np.asarray(self._ns[:n], np.int64)
        keep = k < end
        out[k[keep]] = ns[keep]
        return out

    def stream(
        self,
        readers: list[Any],
        is_ready,
        seconds: float,
        warmup_s: float = 1.0,
        max_wait_s: float = 30.0,
        on_measure=None,
        on_frame=None,
    ) -> Paced:
        """Like :func:`paced`, with the emulator pacing the frames: the measured window
        is the ``seconds`` of frames after ``is_ready()`` and ``warmup_s``; the stream
        ends with it.  ``on_frame(k)`` is called (late, from this thread) per frame."""
        rate, emu = self.load.rate_hz, self.emulator
        give_up = time.monotonic_ns() + int(max_wait_s * 1e9)
        while not is_ready():
            if time.monotonic_ns() > give_up or not emu.streaming:
                raise TimeoutError(f"consumer not ready within {max_wait_s:g} s")
            wait_io(time.monotonic_ns() + 10_000_000, readers)
            self._frames_seen(on_frame)
        first = emu.samples_sent + int(round(warmup_s * rate))
        end = first + max(1, int(round(seconds * rate)))
        self.counts.length = end  # the emulator falls silent after frame end - 1
        due = int(emu.stream_t0 * 1e9 + first * 1e9 / rate)
        wait_io(due, readers)
        if on_measure:
            on_measure(True)
        finish_by = time.monotonic_ns() + int((2 * seconds + warmup_s + 10) * 1e9)
        while emu.samples_sent < end:
            if time.monotonic_ns() > finish_by:
                raise TimeoutError("the emulator fell far behind")
            wait_io(time.monotonic_ns() + 10_000_000, readers)
            self._frames_seen(on_frame)
        if on_measure:
            on_measure(False)
        write_ns = self.write_ns(end)
        return Paced(write_ns, first, end, int(write_ns[first]), int(write_ns[end - 1]))

    def _frames_seen(self, on_frame) -> None:
        if on_frame is None:
            return
        for k in range(self._seen, self.emulator.samples_sent):
            on_frame(k)
        self._seen = self.emulator.samples_sent

    def close(self) -> None:
        self.emulator.stop()
