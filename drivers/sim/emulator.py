"""An emulated device on a pseudo-terminal: a NIRSB v1 probe unless told otherwise.

:class:`Emulator` puts three parts together:

- the transport (:class:`~.transport.PacedTransport`): the pty and its link, hot-plug,
  pacing at absolute deadlines, the bounded output queue and the timed faults;
- the encoder (:mod:`.encoders`): what the protocol puts on the wire and which host
  commands it obeys (NIRSB by default: ``b`` start, ``s`` stop, ``?`` INFO);
- the truth model (:mod:`.truth`): the values of each sample index k (from
  :class:`~.physiology.Physiology` by default), the device clock and the record of what
  was sent, so tests and the daemon can compare what they decode with :meth:`truth`.

The other emulators (HEG, delimited text, Nonin, SNIRF replay) are this class with
another encoder and source.  A dropped frame (``Faults.drop_rate``) or one lost to a
full queue still consumes its seq, so the host sees the loss as lost frames.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from .encoders import Encoder, NirsbEncoder
from .faults import Faults
from .physiology import Physiology
from .pty_link import WriteHook
from .transport import PacedTransport
from .truth import CLOCK_MOD, Ledger, PhysiologySource, Source

#: default bound of the output queue (bytes) while the pty is full
QUEUE_LIMIT = 1 << 20
#: a queued device event: (code, label, sent right after the sample rather than before)
_Event = tuple[int, str, bool]


class Emulator:
    """A device on a pty.  ``start()`` returns the slave path.

    n_channels, wavelengths_nm (nm), rate_hz (Hz) describe the probe (and build a
    default :class:`Physiology` when none is given); seq0 is the first frame counter,
    t0_us the device clock (µs) at sample 0.  ``encoder`` (default NIRSB) and ``source``
    (default the physiology) make it another device; ``speed`` plays that many samples
    per sample period of wall time (0: only when asked, :meth:`step`).
    """

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
        encoder: Encoder | None = None,
        source: Source | None = None,
        speed: float = 1.0,
    ) -> None:
        self.n_channels = n_channels
        self.rate_hz = float(rate_hz)
        self.wavelengths_nm = tuple(float(w) for w in wavelengths_nm)
        if source is None:
            source = PhysiologySource(self._physiology(physiology), self.rate_hz)
        self.source = source
        self.device_id = device_id
        self.link = link
        self.faults = faults or Faults()
        self.autostart = autostart
        self.encoder = encoder or NirsbEncoder(
            n_channels, self.wavelengths_nm, self.rate_hz, device_id
        )
        self.ledger = Ledger(source, seq0, t0_us)
        #: the device fell silent after the last sample of a finite source
        self.finished = False
        self._rng = np.random.default_rng(self.faults.seed)
        self._lock = threading.Lock()
        self._events: list[_Event] = []
        self.transport = PacedTransport(
            self, self.rate_hz * speed, link, self.faults, QUEUE_LIMIT, self._rng
        )

    def _physiology(self, physiology: Physiology | None) -> Physiology:
        if physiology is None:
            return Physiology(self.n_channels, self.wavelengths_nm, self.rate_hz)
        if physiology.n_channels != self.n_channels or physiology.wavelengths_nm != tuple(
            self.wavelengths_nm
        ):
            raise ValueError("physiology does not match n_channels / wavelengths_nm")
        return physiology

    # ------------------------------------------------------------------ public API

    def start(self) -> str:
        """Open the pty, start the device thread, return the slave path."""
        return self.transport.start()

    def stop(self) -> None:
        """Stop the thread, close the pty, remove the link this emulator made."""
        self.transport.stop()

    def __enter__(self) -> Emulator:
        if not self.transport.started:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def unplug(self, for_s: float) -> None:
        """Pull the cable now and plug it back in after ``for_s`` seconds (a power cycle:
        the pty is closed, the link removed, then a new pty behind the same link)."""
        self.transport.unplug(for_s)

    def stall(self, for_s: float) -> None:
        """Stop writing for ``for_s`` seconds; the samples keep coming, in a burst after."""
        self.transport.stall(for_s)

    def send_event(self, code: int, label: str, after: bool = False) -> None:
        """Queue an EVENT frame (code 1 trigger, 2 button) stamped with the next sample's
        device time: sent before that sample, or right after it with ``after`` (a
        footswitch pressed at the sample the device has just sent)."""
        with self._lock:
            self._events.append((code, label, after))

    def step(self, n: int = 1) -> None:
        """With ``speed=0``: send the next ``n`` samples now (a lock-step reader)."""
        self.transport.step(n)

    def truth(self, k: np.ndarray) -> np.ndarray:
        """True [ΔHbO, ΔHbR] (µM) at sample indices k, (n, 2, n_channels)."""
        return self.source.truth(k)

    @property
    def physiology(self) -> Physiology | None:
        """The physiology behind the counts (None for a device without one)."""
        return self.source.physiology

    @property
    def port(self) -> str | None:
        """The current slave path (None while unplugged or not started)."""
        return self.transport.pty.port

    @property
    def samples_sent(self) -> int:
        """Samples produced so far: the next sample index k."""
        return self.ledger.k

    @property
    def streaming(self) -> bool:
        return self.transport.streaming

    @property
    def stream_t0(self) -> float:
        """Monotonic time streaming last (re)started."""
        return self.transport.stream_t0

    @property
    def pace_hz(self) -> float:
        """Samples sent per second of wall time (a replay may run faster than its rate)."""
        return self.transport.pace_hz

    @property
    def on_write(self) -> WriteHook | None:
        """``f(k, time.monotonic_ns())`` as each sample frame is handed to the pty."""
        return self.transport.pty.on_write

    @on_write.setter
    def on_write(self, hook: WriteHook | None) -> None:
        self.transport.pty.on_write = hook

    # the counters tests read, where they are kept
    seq0 = property(lambda self: self.ledger.seq0)
    t0_us = property(lambda self: self.ledger.t0_us)
    sent_k = property(lambda self: self.ledger.sent_k)
    dropped_frames = property(lambda self: self.ledger.dropped_frames)
    overflow_frames = property(lambda self: self.transport.pty.overflow_frames)
    overflow_bytes = property(lambda self: self.transport.pty.overflow_bytes)
    unplugs = property(lambda self: self.transport.unplugs)
    unplugged_at = property(lambda self: self.transport.unplugged_at)
    replugged_at = property(lambda self: self.transport.replugged_at)
    error = property(lambda self: self.transport.error)

    @property
    def queue_limit(self) -> int:
        """Bound of the output queue (bytes) while the pty is full."""
        return self.transport.pty.queue_limit

    @queue_limit.setter
    def queue_limit(self, limit: int) -> None:
        self.transport.pty.queue_limit = int(limit)

    # ------------------------------------------------------------------ the producer

    @property
    def garbage_end(self) -> bytes:
        return self.encoder.garbage_end

    def power_on(self) -> None:
        """A new pty: frame counter and device clock restart, greeting, autostart."""
        self.ledger.power_on()
        greeting = self.encoder.greeting()
        if greeting:
            self.transport.pty.queue(greeting)
        if self.autostart:
            self._start_streaming()

    def command(self, cmd: int) -> None:
        enc = self.encoder
        if cmd == enc.cmd_start and not self.transport.streaming:
            self._start_streaming()
        elif cmd == enc.cmd_stop:
            self.transport.streaming = False
        elif cmd == enc.cmd_info:
            self.transport.pty.queue(enc.info())

    def _start_streaming(self) -> None:
        if self.finished:
            return
        preamble = self.encoder.preamble()
        if preamble:
            self.transport.pty.queue(preamble)
        self.transport.begin_stream()

    def produce(self, n: int) -> int:
        """Samples k..k+n-1 (and any pending events) into the output queue."""
        ledger, length = self.ledger, self.source.length
        if length is not None:
            n = min(n, length - ledger.since_boot)
        if n > 0:
            self._emit(n)
        if length is not None and ledger.since_boot >= length:
            self.finished = True
            self.transport.streaming = False
        return max(n, 0)

    def _emit(self, n: int) -> None:
        ledger, pty, encode = self.ledger, self.transport.pty, self.encoder.sample
        values = self.source.values(ledger.k, n, ledger.since_boot)
        drop = self.faults.drop_rate
        drops = self._rng.random(n) < drop if drop > 0 else None
        with self._lock:
            events, self._events = self._events, []
        for i in range(n):
            k = ledger.k
            t_us = ledger.t_us(k)
            self._send_events(events, t_us, after=False)
            for code, label, dt_us in self.source.events(k - ledger.k_boot):  # the device's
                self._send_events([(code, label, False)], (t_us + dt_us) % CLOCK_MOD, False)
            after, events = [e for e in events if e[2]], []
            seq = ledger.next_seq()
            ledger.k += 1
            if drops is not None and drops[i]:
                ledger.dropped_frames += 1
                continue
            if pty.queue(encode(seq, t_us, values[i]), k):
                ledger.sent_k.append((seq, k))
            self._send_events(after, t_us, after=True)

    def _send_events(self, events: list[_Event], t_us: int, after: bool) -> None:
        for code, label, is_after in events:
            if is_after != after:
                continue
            ledger = self.ledger
            wire = self.encoder.event((ledger.seq0 + ledger.frames) % 65536, t_us, code, label)
            if wire:
                self.transport.pty.queue(wire)
                ledger.frames += 1
