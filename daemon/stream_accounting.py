"""The stream's accounting: the next sample index, its gaps, its losses, its rates.

One :class:`StreamAccounting` per acquisition owns every figure about the stream as a
whole, so nothing else keeps a second copy of them:

- ``next_seq``: the absolute index the next sample gets (it carries on across pipeline
  rebuilds and reconnects);
- ``gaps``: the newest gap events, appended here only: lost frames (sequence numbers
  the parser saw skipped) and outages (an unplug, reported once samples flow again);
- ``lost_samples``: samples known lost by sequence number;
- two rates, kept apart because they answer different questions: ``rate_hz``, samples
  delivered per wall-clock second between two status messages (status ``rate_hz``), and
  :meth:`device_rate_hz`, the device's pace measured on the host times since the last
  (re)open, which estimates what an outage cost (``lost_samples_estimated``).
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from .bounded import BoundedList

log = structlog.get_logger("nirsd.device")

MAX_GAPS = 100  # gap events kept for status (the rest counted in counters.gaps)


class StreamAccounting:
    def __init__(self, configured_rate_hz: float) -> None:
        self.configured_rate_hz = configured_rate_hz  # until a second of samples is seen
        self.next_seq = 0
        self.gaps = BoundedList(MAX_GAPS)  # the newest gap events (status shows 10)
        self.lost_samples = 0
        self.lost_frames = 0  # the parser's running lost-frame count, accounted so far
        self.rate_hz = 0.0  # delivered, between the last two status messages
        self._rate_mark = (time.monotonic(), 0)
        self.disconnected_at: float | None = None  # wall time of an outage not yet closed
        self._last_t: float | None = None  # host time of the newest sample
        self._rate_t0: float | None = None  # host time of the first sample since (re)open
        self._rate_n = 0  # samples since then (for the measured rate)

    def disconnected(self, at: float) -> None:
        """The port was lost at wall time ``at`` (the first loss counts until samples
        flow again: a reopen that fails or brings nothing does not restart the outage)."""
        if self.disconnected_at is None:
            self.disconnected_at = at

    def note_block(
        self, seq: int, t_first: float, t_last: float, n: int, reconnects: int
    ) -> dict[str, Any] | None:
        """Account a block of ``n`` samples from ``seq`` (host times in s); after an
        outage, the ``gap`` status event to publish (span in s between the samples
        around it), already kept in ``gaps``."""
        gap = None
        if self.disconnected_at is not None and self._last_t is not None:
            span_s = t_first - self._last_t
            rate = self.device_rate_hz()
            gap = {
                "event": "gap",
                "cause": "disconnect",
                "seq": seq,
                "lost_samples": max(0, round(span_s * rate) - 1),
                "lost_samples_estimated": True,
                "rate_hz": round(rate, 6),
                "span_s": round(span_s, 6),
                "t_before": self._last_t,
                "t_after": t_first,
                "disconnected_at": self.disconnected_at,
                "reconnects": reconnects,
            }
            self.gaps.append(gap)
            log.info(
                "device_resumed", seq=seq, span_s=gap["span_s"], lost_samples=gap["lost_samples"]
            )
        if self.disconnected_at is not None or self._rate_t0 is None:
            self._rate_t0, self._rate_n = t_first, 0
        self.disconnected_at = None
        self._rate_n += n
        self._last_t = t_last
        self.next_seq = seq + n
        return gap

    def note_lost(self, lost_frames: int, seq: int, rate_hz: float | None) -> dict[str, Any] | None:
        """The parser's running count of frames lost by sequence number, after a read
        whose samples began at ``seq``; the ``gap`` event for new losses (kept in
        ``gaps``) when the probe's rate is known (``rate_hz``), else None."""
        new = lost_frames - self.lost_frames
        self.lost_frames = lost_frames
        if new <= 0 or rate_hz is None:
            return None
        gap = {"event": "gap", "seq": seq, "lost_samples": new, "span_s": new / rate_hz}
        self.gaps.append(gap)
        self.lost_samples += new
        return gap

    def device_rate_hz(self) -> float:
        """Samples per second measured over the host times since the last (re)open
        (at least 1 s of them), else the configured ``device.rate_hz``."""
        if self._rate_t0 is not None and self._last_t is not None:
            span = self._last_t - self._rate_t0
            if span >= 1.0 and self._rate_n > 1:
                return (self._rate_n - 1) / span
        return self.configured_rate_hz

    def update_rate(self, now: float) -> float:
        """The delivered rate since the previous call (monotonic ``now`` in s)."""
        t0, n0 = self._rate_mark
        if now - t0 > 0:
            self.rate_hz = (self.next_seq - n0) / (now - t0)
        self._rate_mark = (now, self.next_seq)
        return self.rate_hz
