"""The device thread of an emulator: pacing, host commands, hot-plug and timed faults.

:class:`PacedTransport` owns a :class:`~.pty_link.PtyLink` and a thread.  While
streaming it asks its :class:`Producer` for the samples due at absolute deadlines
``start + k / pace_hz`` (late samples are produced at once, never skipped, at most
``max_batch`` per pass so commands stay responsive) and writes the output queue when
``select`` reports the pty writable.  With ``pace_hz`` 0 samples go out only when
asked (:meth:`PacedTransport.step`), for a reader driven in lock-step.  It reads host
command bytes and hands them to the producer, stalls and injects garbage as
:class:`~.faults.Faults` say (or :meth:`PacedTransport.stall` asks), and unplugs (on
request or periodically) and plugs a new pty back in after the pause.

What goes on the wire is the producer's business (an emulator with its encoder); the
transport knows nothing of any protocol.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from typing import Protocol

import numpy as np

from .faults import FaultClock, Faults, garbage
from .pty_link import PtyLink

log = logging.getLogger(__name__)


class Producer(Protocol):
    """What the transport drives (the emulator)."""

    @property
    def garbage_end(self) -> bytes:
        """What ends a garbage burst, so that only the burst is lost."""
        ...

    def power_on(self) -> None:
        """A new pty is open: restart counters, queue any greeting."""

    def command(self, cmd: int) -> None:
        """One host command byte."""

    def produce(self, n: int) -> int:
        """Queue up to ``n`` due samples; returns how many were produced."""
        ...


class PacedTransport:
    """A pty device thread at ``pace_hz`` samples per second of wall time."""

    #: at most this many samples are produced per loop pass (keeps commands responsive)
    max_batch: int = 1000

    def __init__(
        self,
        producer: Producer,
        pace_hz: float,
        link: str | None,
        faults: Faults,
        queue_limit: int,
        rng: np.random.Generator,
    ) -> None:
        self.producer = producer
        self.pace_hz = float(pace_hz)
        self.faults = faults
        self.pty = PtyLink(link, queue_limit, rng)
        self.pty.corrupt_rate = faults.corrupt_rate
        self._rng = rng
        self._lock = threading.Lock()
        self._unplug_request: float | None = None
        self._stall_request: float | None = None
        #: monotonic time a stall asked for by :meth:`stall` ends, once the thread has
        #: taken it up (from then on nothing is written until that time)
        self.stalled_until = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.streaming = False
        #: monotonic time streaming (re)started, and samples produced since
        self.stream_t0 = 0.0
        self._streamed = 0
        self._steps = 0  # samples asked for by step() (pace_hz 0)
        #: monotonic times of the last unplug and replug (None before the first)
        self.unplugged_at: float | None = None
        self.replugged_at: float | None = None
        self.unplugs = 0
        #: the exception that ended the thread, if any
        self.error: BaseException | None = None

    # ------------------------------------------------------------------ control

    def start(self) -> str:
        """Open the pty, start the thread, return the slave path."""
        if self._thread is not None:
            raise RuntimeError("emulator already started")
        port = self._plug()
        self._thread = threading.Thread(target=self._run, name="pty-emulator", daemon=True)
        self._thread.start()
        return port

    @property
    def started(self) -> bool:
        return self._thread is not None

    def stop(self) -> None:
        """Stop the thread, close the pty, remove the link."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        self._unplug()

    def unplug(self, for_s: float) -> None:
        """Pull the cable at the next pass; plug back in after ``for_s`` seconds."""
        with self._lock:
            self._unplug_request = float(for_s)

    def stall(self, for_s: float) -> None:
        """Stop writing for ``for_s`` seconds from the next pass (samples pile up)."""
        with self._lock:
            self._stall_request = float(for_s)

    def step(self, n: int = 1) -> None:
        """With ``pace_hz`` 0: produce ``n`` more samples at the next pass."""
        with self._lock:
            self._steps += n

    def begin_stream(self) -> None:
        """Streaming starts now: sample deadlines count from this moment."""
        self.streaming = True
        self.stream_t0 = time.monotonic()
        self._streamed = 0

    # ------------------------------------------------------------------ plugging

    def _plug(self) -> str:
        port = self.pty.plug()
        self.streaming = False
        self.producer.power_on()
        return port

    def _unplug(self) -> None:
        self.pty.unplug()
        self.streaming = False

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as err:  # a thread never dies silently
            self.error = err
            log.exception("emulator thread failed")

    def _loop(self) -> None:
        clock = FaultClock(self.faults, time.monotonic())
        replug_at: float | None = None
        while not self._stop.is_set():
            now = time.monotonic()
            if replug_at is not None:  # unplugged: wait, then power on again
                if now >= replug_at:
                    self._plug()
                    self.replugged_at = time.monotonic()
                    replug_at = None
                    clock.replugged(self.replugged_at)
                else:
                    self._stop.wait(min(0.05, replug_at - now))
                continue
            with self._lock:
                request, self._unplug_request = self._unplug_request, None
                stall, self._stall_request = self._stall_request, None
            if stall is not None:
                clock.stall_until = self.stalled_until = now + stall
            if request is not None or clock.unplug_due(now):
                self._unplug()
                self.unplugs += 1
                self.unplugged_at = now
                replug_at = now + (self.faults.unplug_s if request is None else request)
                continue
            self._pass(clock, now)

    def _pass(self, clock: FaultClock, now: float) -> None:
        """One turn: wait for a command, the next deadline or room; then act."""
        timeout = 0.05
        if self.streaming and self.pace_hz > 0:
            deadline = self.stream_t0 + self._streamed / self.pace_hz
            timeout = max(0.0, min(timeout, deadline - now))
        elif self.streaming:
            timeout = 0.001  # step() comes from another thread: look again soon
        want_write = self.pty.pending and not clock.stalled(now)
        master = self.pty.master
        r, _, _ = select.select([master], [master] if want_write else [], [], timeout)
        if r:
            for cmd in self.pty.read():
                self.producer.command(cmd)
        now = time.monotonic()
        if self.streaming:
            if clock.streaming_tick(now):
                end = self.producer.garbage_end
                self.pty.queue(garbage(self._rng, self.faults.garbage_max, end))
            due = self._due(now)
            if due > 0:
                self._streamed += self.producer.produce(min(due, self.max_batch))
        if self.pty.pending and not clock.stalled(now):
            self.pty.flush()

    def _due(self, now: float) -> int:
        """Samples due now: behind the deadlines, or asked for by step()."""
        if self.pace_hz > 0:
            return int((now - self.stream_t0) * self.pace_hz) + 1 - self._streamed
        with self._lock:
            due, self._steps = self._steps, 0
        return due
