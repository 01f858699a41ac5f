"""Publishing epoch summaries once an epoch's samples are all in the ring.

A summary whose window was converted with a provisional I0 (the baseline was still
being taken) is recomputed from the held raw intensities if I0 is frozen by then, else
published as provisional and corrected (``revision`` 2, ``replaces_msg``) once it is.
"""

from __future__ import annotations

from typing import Any

import structlog

from .bounded import RateLimitedLog
from .epoch_tracker import EpochTracker
from .epochs import Epoch, summarize, window_pending

log = structlog.get_logger("nirsd.markers")

SUMMARIES_PER_BLOCK = 16  # epoch summaries computed per published block


class SummaryPublisher:
    def __init__(self, publisher: Any, baseline_s: float) -> None:
        self.publisher = publisher
        self.baseline_s = baseline_s
        # summarised while I0 was provisional, with the msg of that summary (bounded by
        # the epochs of one baseline window; dropped with the pipeline)
        self.provisional: list[tuple[Epoch, int]] = []
        self._log = RateLimitedLog(log, "epoch_summary", burst=20, level="info")

    def on_block(self, pipeline: Any, epochs: EpochTracker) -> None:
        """Publish the summaries of ended epochs whose samples are now all held (at most
        SUMMARIES_PER_BLOCK; the rest follow with the next blocks)."""
        if self.provisional:
            self._correct_provisional(pipeline)
        if not epochs.closed:
            return
        for epoch in epochs.take_ended(pipeline.ring.head, SUMMARIES_PER_BLOCK):
            self._publish(pipeline, epoch)

    def _correct_provisional(self, pipeline: Any) -> None:
        """Once I0 is frozen, publish corrected summaries of epochs summarised before."""
        if not pipeline.converter.baseline_ready:
            return
        done, self.provisional = self.provisional, []
        for epoch, msg in done:
            self._publish(pipeline, epoch, revision=2, replaces=msg)

    def _publish(
        self, p: Any, epoch: Epoch, revision: int = 1, replaces: int | None = None
    ) -> None:
        from .converter import BASELINE_PENDING

        rate = p.info.rate_hz
        baseline_n = int(round(self.baseline_s * rate))
        pending = window_pending(epoch, p.ring, baseline_n, BASELINE_PENDING)
        ready = p.converter.baseline_ready
        recompute = p.converter.hb_from_raw if pending and ready else None
        body = summarize(epoch, p.ring, baseline_n, rate, list(p.probe.labels), recompute)
        body["revision"] = revision
        body["provisional"] = pending and not ready
        body["baseline_recomputed"] = recompute is not None
        if replaces is not None:
            body["replaces_msg"] = replaces
        header = self.publisher.publish_event("epoch", body)
        if body["provisional"]:
            self.provisional.append((epoch, header["msg"]))
        self._log(
            label=epoch.label,
            onset_seq=epoch.onset_seq,
            end_seq=epoch.end_seq,
            revision=revision,
            provisional=body["provisional"],
        )
