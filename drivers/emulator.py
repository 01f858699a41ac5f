"""A NIRSB v1 probe on a pseudo-terminal, byte-exact, with fault injection.

The emulator owns a pty pair.  The host opens the slave path (or the ``link`` symlink)
like any serial port; the emulator thread reads host commands from the master
(``b`` start, ``s`` stop, ``?`` INFO) and, while streaming, writes one DATA frame per
sample at absolute deadlines ``start + k / rate`` (late samples are sent at once, never
skipped).  Intensities come from :class:`Physiology`, so tests and the daemon can compare
what they decode with :meth:`Emulator.truth`.

Full pty buffer: the master is non-blocking and the thread only writes when ``select``
reports it writable.  Bytes that cannot be written yet wait in an output queue bounded by
``Emulator.queue_limit`` bytes; a frame that would not fit is discarded whole (as a probe
with a full transmit FIFO loses samples) and counted in ``overflow_frames`` /
``overflow_bytes``.  Its seq is still consumed, so the host sees the loss as lost frames.
"""

from __future__ import annotations

import collections
import logging
import os
import select
import threading
import time
import tty
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import nirsb
from .physiology import Physiology

log = logging.getLogger(__name__)

_CLOCK_MOD = 1 << 32


@dataclass
class Faults:
    """Fault injection.  Rates are probabilities, periods and durations in seconds.

    corrupt_rate: per byte written, probability of flipping one random bit.
    drop_rate: probability a DATA frame is not sent (its seq is consumed all the same).
    garbage_every_s: while streaming, every N s write a burst of 1..garbage_max random
        bytes ended by 0x00 (so only the garbage is lost, not the next frame); 0 = off.
    stall_every_s, stall_s: while streaming, every N s stop writing for stall_s; the
        samples keep being produced and come out in a burst afterwards.
    unplug_every_s, unplug_s: every N s close the pty (the host sees a hang-up), remove
        the link, and after unplug_s open a new pty and re-point the link: a power-cycled
        probe (streaming off unless autostart, frame counter and clock restarted).
    seed: seeds every random choice above.
    """

    corrupt_rate: float = 0.0
    drop_rate: float = 0.0
    garbage_every_s: float = 0.0
    garbage_max: int = 64
    stall_every_s: float = 0.0
    stall_s: float = 0.0
    unplug_every_s: float = 0.0
    unplug_s: float = 0.0
    seed: int = 0


class Emulator:
    """A NIRSB v1 device on a pty.  ``start()`` returns the slave path.

    n_channels, wavelengths_nm (nm), rate_hz (Hz) describe the probe (and build a
    default :class:`Physiology` when none is given); seq0 is the first frame counter,
    t0_us the device clock (µs) at sample 0.
    """

    #: bound of the output queue (bytes) while the pty is full
    queue_limit: int = 1 << 20
    #: at most this many samples are produced per loop pass (keeps commands responsive)
    max_batch: int = 1000
    #: host command bytes (None: the protocol has no such command)
    cmd_start: int | None = 0x62  # b
    cmd_stop: int | None = 0x73  # s
    cmd_info: int | None = 0x3F  # ?
    #: what ends a garbage burst, so that only the burst is lost
    garbage_end: bytes = b"\x00"

    def __init__(
        self,
        n_channels: int = 8,
        rate_hz: float = 10.0,
        wavelengths_nm: Sequence[float] = (760.0, 850.0),
        physiology: Physiology | None = None,
        device_id: str = "nirsd-sim",
        link: str | None = None,
        faults: Faults | None = None,
        autostart: bool = False,
        seq0: int = 0,
        t0_us: int = 0,
    ) -> None:
        if physiology is None:
            physiology = Physiology(n_channels, wavelengths_nm, rate_hz)
        if physiology.n_channels != n_channels or physiology.wavelengths_nm != tuple(
            float(w) for w in wavelengths_nm
        ):
            raise ValueError("physiology does not match n_channels / wavelengths_nm")
        self.n_channels = n_channels
        self.rate_hz = float(rate_hz)
        self.wavelengths_nm = tuple(float(w) for w in wavelengths_nm)
        self.physiology = physiology
        self.device_id = device_id
        self.link = link
        self.faults = faults or Faults()
        self.autostart = autostart
        self.seq0 = seq0
        self.t0_us = t0_us
        self.info_wire = nirsb.encode_info(
            n_channels, self.wavelengths_nm, int(round(self.rate_hz * 1000)), device_id
        )
        self._data_head = nirsb.DATA_HEAD.pack(n_channels, len(self.wavelengths_nm), 0)
        self._rng = np.random.default_rng(self.faults.seed)
        self._lock = threading.Lock()
        self._events: list[tuple[int, str, bool]] = []
        self._unplug_request: float | None = None
        #: monotonic times of the last unplug and replug (None before the first)
        self.unplugged_at: float | None = None
        self.replugged_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._master = self._slave = -1
        self._port: str | None = None
        self._made_link = False
        self._out = bytearray()
        self._k = 0  # next sample index (never reset)
        self._frames = 0  # frames counted since power-on (seq = seq0 + _frames)
        self._k_boot = 0  # sample index at power-on (device clock origin)
        self._streaming = False
        self._stream_t0 = 0.0
        self._stream_k0 = 0
        self._block_k0 = 0
        self._block = np.zeros((0, n_channels, len(self.wavelengths_nm)), np.int32)
        #: (seq, k) of the DATA frames queued for sending, newest last (bounded)
        self.sent_k: collections.deque[tuple[int, int]] = collections.deque(maxlen=100_000)
        self.overflow_frames = 0
        self.overflow_bytes = 0
        self.dropped_frames = 0
        self.unplugs = 0
        #: the exception that ended the thread, if any
        self.error: BaseException | None = None

    # ------------------------------------------------------------------ public API

    def start(self) -> str:
        """Open the pty, start the device thread, return the slave path."""
        if self._thread is not None:
            raise RuntimeError("emulator already started")
        self._plug()
        self._thread = threading.Thread(target=self._run, name="nirsb-emulator", daemon=True)
        self._thread.start()
        assert self._port is not None
        return self._port

    def stop(self) -> None:
        """Stop the thread, close the pty, remove the link this emulator made."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        self._unplug()

    def __enter__(self) -> Emulator:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def unplug(self, for_s: float) -> None:
        """Pull the cable now and plug it back in after ``for_s`` seconds (a power cycle:
        the pty is closed, the link removed, then a new pty behind the same link)."""
        with self._lock:
            self._unplug_request = float(for_s)

    def send_event(self, code: int, label: str, after: bool = False) -> None:
        """Queue an EVENT frame (code 1 trigger, 2 button) stamped with the next sample's
        device time: sent before that sample, or right after it with ``after`` (a
        footswitch pressed at the sample the device has just sent)."""
        with self._lock:
            self._events.append((code, label, after))

    @property
    def port(self) -> str | None:
        """The current slave path (None while unplugged or not started)."""
        return self._port

    @property
    def samples_sent(self) -> int:
        """Samples produced so far: the next sample index k."""
        return self._k

    @property
    def streaming(self) -> bool:
        return self._streaming

    def truth(self, k: np.ndarray) -> np.ndarray:
        """True [ΔHbO, ΔHbR] (µM) at sample indices k, (n, 2, n_channels)."""
        return self.physiology.hb_truth(k)

    # ------------------------------------------------------------------ pty handling

    def _plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline: bytes pass unchanged
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self._port = os.ttyname(slave)  # the slave fd stays open so the pty persists
        self._out.clear()
        self._frames = 0
        self._k_boot = self._k
        self._streaming = False
        greeting = self._greeting()
        if greeting:
            self._queue(greeting)
        if self.link:
            tmp = f"{self.link}.{os.getpid()}.tmp"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(self._port, tmp)
            os.replace(tmp, self.link)  # atomic, also over an existing symlink
            self._made_link = True
        if self.autostart:
            self._start_streaming()

    def _unplug(self) -> None:
        if self._made_link and self.link and os.path.islink(self.link):
            try:
                if os.readlink(self.link) == self._port:
                    os.unlink(self.link)
            except OSError:
                pass
        self._made_link = False
        for fd in (self._master, self._slave):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = -1
        self._port = None
        self._streaming = False

    # ------------------------------------------------------------------ device thread

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as err:  # a thread never dies silently
            self.error = err
            log.exception("emulator thread failed")

    def _loop(self) -> None:
        f = self.faults
        now = time.monotonic()
        next_garbage = now + f.garbage_every_s if f.garbage_every_s > 0 else None
        next_stall = now + f.stall_every_s if f.stall_every_s > 0 and f.stall_s > 0 else None
        next_unplug = now + f.unplug_every_s if f.unplug_every_s > 0 else None
        stall_until = 0.0
        replug_at: float | None = None
        while not self._stop.is_set():
            now = time.monotonic()
            if replug_at is not None:  # unplugged: wait, then power on again
                if now >= replug_at:
                    self._plug()
                    self.replugged_at = time.monotonic()
                    replug_at = None
                    if f.unplug_every_s > 0:
                        next_unplug = time.monotonic() + f.unplug_every_s
                else:
                    self._stop.wait(min(0.05, replug_at - now))
                continue
            with self._lock:
                request, self._unplug_request = self._unplug_request, None
            if request is not None or (next_unplug is not None and now >= next_unplug):
                self._unplug()
                self.unplugs += 1
                self.unplugged_at = now
                replug_at = now + (f.unplug_s if request is None else request)
                continue
            timeout = 0.05
            if self._streaming:
                timeout = max(0.0, min(timeout, self._deadline(self._k) - now))
            stalled = now < stall_until
            want_write = bool(self._out) and not stalled
            r, w, _ = select.select(
                [self._master], [self._master] if want_write else [], [], timeout
            )
            if r:
                self._read_commands()
            now = time.monotonic()
            if self._streaming:
                if next_stall is not None and now >= next_stall:
                    stall_until = now + f.stall_s
                    next_stall = now + f.stall_every_s
                if next_garbage is not None and now >= next_garbage:
                    self._garbage()
                    next_garbage = now + f.garbage_every_s
                due = int((now - self._stream_t0) * self.pace_hz) + 1 - (self._k - self._stream_k0)
                if due > 0:
                    self._emit(min(due, self.max_batch))
            if self._out and now >= stall_until:
                self._flush()

    def _deadline(self, k: int) -> float:
        return self._stream_t0 + (k - self._stream_k0) / self.pace_hz

    @property
    def pace_hz(self) -> float:
        """Samples sent per second of wall time (a replay may run faster than its rate)."""
        return self.rate_hz

    # ------------------------------------------------------------------ protocol hooks

    def _greeting(self) -> bytes:
        """Bytes sent at power-on (a banner, a header line); NIRSB sends none."""
        return b""

    def _preamble(self) -> bytes:
        """Bytes sent when streaming starts (NIRSB: INFO)."""
        return self.info_wire

    def _encode_sample(self, seq: int, t_us: int, counts: np.ndarray) -> bytes:
        """Wire bytes of one sample; ``counts`` is (n_channels, n_wavelengths) int32."""
        return nirsb.to_wire(
            nirsb.encode_frame(nirsb.DATA, 0, seq, t_us, self._data_head + counts.tobytes())
        )

    def _encode_event(self, seq: int, t_us: int, code: int, label: str) -> bytes:
        """Wire bytes of a device event (b"" where the protocol has none)."""
        return nirsb.encode_event(seq, t_us, code, label)

    def _t_us(self, k: int) -> int:
        """Device clock (µs, wrapping) of sample k: counted from power-on at the rate."""
        return (self.t0_us + round((k - self._k_boot) * 1e6 / self.rate_hz)) % _CLOCK_MOD

    def _scheduled_events(self, k: int) -> list[tuple[int, str, int]]:
        """Events (code, label, t_us) the device itself sends just before sample k."""
        return []

    def _start_streaming(self) -> None:
        preamble = self._preamble()
        if preamble:
            self._queue(preamble)
        self._streaming = True
        self._stream_t0 = time.monotonic()
        self._stream_k0 = self._k

    def _read_commands(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # EIO: no reader side; nothing to do
        for cmd in data:
            if cmd == self.cmd_start and not self._streaming:
                self._start_streaming()
            elif cmd == self.cmd_stop:
                self._streaming = False
            elif cmd == self.cmd_info:
                self._queue(self.info_wire)

    def _counts(self, k: int, n: int) -> np.ndarray:
        """Counts for samples k..k+n-1, from a block computed ahead (about 0.1 s)."""
        end = self._block_k0 + self._block.shape[0]
        if k < self._block_k0 or k + n > end:
            size = max(n, int(self.rate_hz * 0.1), 1)
            self._block = self.physiology.counts(np.arange(k, k + size))
            self._block_k0 = k
        i = k - self._block_k0
        return self._block[i : i + n]

    def _emit(self, n: int) -> None:
        """Produce samples k..k+n-1 (and any pending events) into the output queue."""
        counts = self._counts(self._k, n)
        drop = self.faults.drop_rate
        drops = self._rng.random(n) < drop if drop > 0 else None
        with self._lock:
            events, self._events = self._events, []
        for i in range(n):
            k = self._k
            t_us = self._t_us(k)
            self._send_events(events, t_us, after=False)
            for code, label, ev_us in self._scheduled_events(k):  # the device's own
                self._send_events([(code, label, False)], ev_us, after=False)
            after, events = [e for e in events if e[2]], []
            seq = (self.seq0 + self._frames) % 65536
            self._frames += 1
            self._k += 1
            if drops is not None and drops[i]:
                self.dropped_frames += 1
                continue
            if self._queue(self._encode_sample(seq, t_us, counts[i])):
                self.sent_k.append((seq, k))
            self._send_events(after, t_us, after=True)

    def _send_events(self, events: list[tuple[int, str, bool]], t_us: int, after: bool) -> None:
        for code, label, is_after in events:
            if is_after != after:
                continue
            wire = self._encode_event(self.seq0 + self._frames, t_us, code, label)
            if wire:
                self._queue(wire)
                self._frames += 1

    def _garbage(self) -> None:
        n = int(self._rng.integers(1, max(2, self.faults.garbage_max + 1)))
        self._queue(self._rng.bytes(n) + self.garbage_end)

    def _queue(self, wire: bytes) -> bool:
        """Append bytes to the output queue (corrupted if asked); False if it overflowed."""
        if len(self._out) + len(wire) > self.queue_limit:
            self.overflow_frames += 1
            self.overflow_bytes += len(wire)
            return False
        rate = self.faults.corrupt_rate
        if rate > 0:
            flips = int(self._rng.binomial(len(wire), rate))
            if flips:
                buf = bytearray(wire)
                for pos, bit in zip(
                    self._rng.integers(0, len(buf), flips), self._rng.integers(0, 8, flips)
                ):
                    buf[pos] ^= 1 << int(bit)
                wire = bytes(buf)
        self._out += wire
        return True

    def _flush(self) -> None:
        try:
            n = os.write(self._master, self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        del self._out[:n]
