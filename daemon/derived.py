"""Values the device computed itself (rSO2, TOI, SmO2): published as they are on ``derived``.

They never go through Beer-Lambert: a :class:`DerivedChannel` gives each
:class:`~nirsd.drivers.base.Derived` frame an absolute sample index (the daemon's
``seq``: a device without intensities has only these samples), a host time (the device
clock, or samples counted at ``device.rate_hz``), the open epoch's label (from the
marker channel, as for ``hb``), keeps the recent ones in a ring, publishes them, and
when an epoch ends publishes its summary on ``epoch`` (``"kind": "derived"``): per
column, the mean during the epoch minus the mean over the pre-epoch window.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import structlog

from nirsd.drivers.base import Derived, DerivedLayout

from .clock import DeviceClock
from .epochs import summarize_values
from .ringbuffer import NO_EPOCH, epoch_labels

log = structlog.get_logger("nirsd.derived")


class DerivedChannel:
    def __init__(self, acq: Any, layout: DerivedLayout) -> None:
        cfg = acq.cfg
        self.acq = acq
        self.layout = layout
        self.rate_hz = float(cfg.device.rate_hz)
        self.clock = DeviceClock(None, self.rate_hz, trust=cfg.device.clock == "device")
        n_values = len(layout.names)
        self.capacity = max(16, int(np.ceil(cfg.buffer.seconds * self.rate_hz)))
        self._t = np.zeros(self.capacity)
        self._values = np.full((self.capacity, n_values), np.nan)
        self.first = acq.next_seq  # nothing before this is held
        self.head = acq.next_seq
        self.published = 0

    def describe(self) -> dict[str, Any]:
        return {**self.layout.describe(), "rate_hz": self.rate_hz}

    def ingest(self, frames: list[Derived], arrival: float) -> tuple[int, np.ndarray]:
        """Time, tag, hold and publish a run of frames, then any summaries now due;
        returns the first sample's index and the host times."""
        n = len(frames)
        values = np.stack([f.values for f in frames])
        t_raw = (
            None if any(f.t_dev is None for f in frames) else np.array([f.t_dev for f in frames])
        )
        t_dev = self.clock.unwrap(t_raw, n)
        t = self.clock.to_host(t_dev, arrival)
        seq0 = self.head
        markers = getattr(self.acq, "markers", None)
        epoch = markers.tag(seq0, t) if markers is not None else np.full(n, NO_EPOCH, np.int16)
        if markers is not None and markers.outbox:
            markers.flush()  # the markers due in these values go out before them
        idx = np.arange(seq0, seq0 + n) % self.capacity
        self._t[idx], self._values[idx] = t, values
        self.head += n  # the stream accounting takes it from the returned seq and n
        self.acq.publisher.publish_derived(
            seq0, t, t_dev, epoch_labels(epoch, self.acq.publisher.labels), values, self.layout
        )
        self.published += n
        if markers is not None and markers.closed:
            self._summaries(markers)
        return seq0, t

    def window(self, since: int, until: int) -> np.ndarray:
        """Held values for samples [since, until) (clipped to what is held)."""
        lo = max(since, self.first, self.head - self.capacity)
        return self._values[np.arange(lo, max(lo, min(until, self.head))) % self.capacity]

    def _summaries(self, markers: Any) -> None:
        """Summaries of the epochs that ended and whose samples are all held."""
        ready = markers.epochs.take_ended(self.head)
        if not ready:
            return
        baseline_n = int(round(markers.baseline_s * self.rate_hz))
        for epoch in ready:
            base_from = max(self.first, epoch.onset_seq - baseline_n)
            body = summarize_values(
                epoch,
                self.window(base_from, epoch.onset_seq),
                self.window(epoch.onset_seq, epoch.end_seq),
                self.rate_hz,
                self.layout,
            )
            self.acq.publisher.publish_event("epoch", body)
            log.info("epoch_summary", label=epoch.label, kind="derived", onset_seq=epoch.onset_seq)
