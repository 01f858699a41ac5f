"""The marker channel: markers in, epoch tags on every sample, epoch summaries out.

Markers come from control requests (``mark``), timed protocols and device EVENT
frames.  Each is aligned to the first sample whose timestamp is at or after the
marker's time: a marker waits (and its request's reply with it) until that sample
arrives, so tagging is exact to the sample even when the device's bytes are still in
transit.  A marker for a time already published is applied at once to the held
history and published with ``covers``, so recorders can place it exactly.

This module is the owner that wires pure parts to the loop: ``marker_align`` (which
sample a marker lands on), ``epoch_tracker`` (what it does to the open epochs),
``protocol_runner`` (timed protocol steps), ``marker_requests`` (checking ``mark``),
``marker_summaries`` (epoch summaries) and ``marker_sim`` (the simulated muscle).
:meth:`MarkerChannel.tag` runs inside ``Pipeline.ingest`` and only collects what to
publish and reply; the loop calls :meth:`MarkerChannel.flush` after ingest, before it
publishes the block, so the wire order is: protocol status, markers, then the block.

Bounds (docs/security.md "Limits"): at most ``MAX_PENDING`` markers wait for their
sample (more are refused, counted in ``rejected``); a device event dated more than
``DEVICE_FUTURE_S`` after the newest sample is dated at its arrival instead (counted in
``device_time_clamped``); at most ``SUMMARIES_PER_BLOCK`` epoch summaries are computed per
block (the rest follow with the next blocks), and the embedded simulator keeps at most
``MAX_SIMULATED`` exercise responses.  ``mark`` requests that start or end an epoch
(each ends in a summary) are accepted at ``MARK_RATE_HZ`` (bursts of ``MARK_BURST``);
more are refused and counted.  Instant markers are not rate-limited.  Device events
(trigger inputs, buttons) are taken at ``DEVICE_EVENT_RATE_HZ`` (bursts of
``DEVICE_EVENT_BURST``); more are counted in ``rejected``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from nirsd.core.errors import ProtocolError
from nirsd.drivers.base import Event

from .bounded import TokenBucket
from .control import DEFERRED, Reply
from .device import STREAMING
from .epoch_tracker import MAX_CLOSED, STIM_CODES, EpochTracker
from .epochs import Epoch
from .exercise_protocols import RunningProtocol
from .marker_align import DEVICE_FUTURE_S, Marker, align, enqueue, event_time, on_sample_clock
from .marker_requests import ACTIONS, FUTURE_TOLERANCE_S, RefusedMark, check_mark
from .marker_sim import MAX_SIMULATED, SimulatedResponse
from .marker_summaries import SUMMARIES_PER_BLOCK, SummaryPublisher
from .protocol_runner import Happening, ProtocolEvent, ProtocolRunner
from .ringbuffer import Block

__all__ = [
    "ACTIONS",
    "FUTURE_TOLERANCE_S",
    "DEVICE_FUTURE_S",
    "MAX_CLOSED",
    "MAX_SIMULATED",
    "STIM_CODES",
    "SUMMARIES_PER_BLOCK",
    "Marker",
    "MarkerChannel",
]

MAX_PENDING = 1024  # markers waiting for their sample
MARK_RATE_HZ = 50.0  # epoch starts/ends by mark accepted per second (an operator: ~1/s)
MARK_BURST = 100  # ... with bursts of this many
DEVICE_EVENT_RATE_HZ = 50.0  # device events (triggers, buttons) taken per second ...
DEVICE_EVENT_BURST = 100  # ... with bursts of this many

#: what flush does, in order: ("event", topic, body), ("reply", token, body) or
#: ("protocol", what, RunningProtocol) for the protocol listeners
Outgoing = tuple[str, Any, Any]


class MarkerChannel:
    def __init__(self, acq: Any) -> None:
        self.acq = acq
        cfg = acq.cfg.markers
        self.labels = list(cfg.labels)
        self.baseline_s = cfg.baseline_s
        self.epochs = EpochTracker(self.labels, cfg.allow_overlap)
        self.runner = ProtocolRunner(dict(acq.cfg.protocols))
        self.pending: list[Marker] = []
        self.summaries = SummaryPublisher(acq.publisher, self.baseline_s)
        self.outbox: list[Outgoing] = []  # published and replied by flush()
        self._singles: dict[int, np.ndarray] = {}  # epoch index -> read-only (1,) tag
        self.accepted = 0
        self.rejected = 0
        self.device_time_clamped = 0
        self._marks = TokenBucket(MARK_RATE_HZ, MARK_BURST)
        self._device_events = TokenBucket(DEVICE_EVENT_RATE_HZ, DEVICE_EVENT_BURST)
        #: called with (what, protocol) on every protocol event (started, step, finished,
        #: stopped); sessions started with a protocol end with it
        self.protocol_listeners: list[Callable[[str, RunningProtocol], None]] = []
        #: called with (label, action) for every accepted marker (the simulated muscle)
        self.marker_hooks: list[Callable[[str, str], None]] = []
        sim = SimulatedResponse.of(acq.device, cfg.allow_overlap)
        if sim is not None:
            self.marker_hooks.append(sim)
        self.pipeline: Any = None
        acq.control.register("mark", self._cmd_mark)
        acq.control.register("protocol", self.protocol_request)
        acq.extensions.append(self)

    # -- state kept by the parts (names other modules use) ---------------------------
    @property
    def protocols(self) -> dict[str, Any]:
        return self.runner.protocols

    @property
    def protocol(self) -> RunningProtocol | None:
        return self.runner.protocol

    @property
    def open(self) -> list[Epoch]:
        return self.epochs.open

    @property
    def closed(self) -> list[Epoch]:
        return self.epochs.closed

    # -- hooks called by the acquisition loop ----------------------------------------
    def on_pipeline(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self.summaries.provisional = []  # a new probe description: raw not comparable
        pipeline.set_tagger(self.tag)

    def tag(self, seq0: int, t: np.ndarray, t_dev: np.ndarray | None = None) -> np.ndarray:
        """Epoch label indices for a block of samples (host times ``t``, device times
        ``t_dev``) starting at seq0; what the markers due in it publish waits in the
        outbox for :meth:`flush`."""
        if self.runner.protocol is not None:
            self._take_protocol(self.runner.due(float(t[-1]), time.time()))
        if not self.pending and t.shape[0] == 1:  # streaming, nothing to apply
            return self._single(self.epochs.current())
        out = np.full(t.shape[0], self.epochs.current(), np.int16)
        if not self.pending:
            return out
        for placed in align(self.pending, t, t_dev, lambda: self._held_t(seq0 - 1)):
            i = placed.index
            self._apply(placed.marker, seq0 + i, t[i], published_upto=seq0)
            out[i:] = self.epochs.current()
        return out

    def _held_t(self, seq: int) -> float | None:
        """Host time of held sample ``seq``, or None."""
        if self.pipeline is None or seq < 0:
            return None
        (t,) = self.pipeline.ring.columns(seq, seq + 1, ("t",))
        return float(t[0]) if t.shape[0] else None

    def _single(self, epoch: int) -> np.ndarray:
        """A shared read-only one-sample tag (blocks are copied into the ring)."""
        out = self._singles.get(epoch)
        if out is None:
            out = self._singles[epoch] = np.full(1, epoch, np.int16)
            out.flags.writeable = False
        return out

    def flush(self) -> None:
        """Publish, reply and tell the protocol listeners what the parts returned, in
        the order it happened (the loop calls this after ingest)."""
        while self.outbox:
            out, self.outbox = self.outbox, []
            for kind, a, b in out:
                if kind == "event":
                    self.acq.publisher.publish_event(a, b)
                elif kind == "reply":
                    self.acq.control.send_reply(a, b)
                else:
                    for listener in self.protocol_listeners:
                        listener(a, b)

    def on_block(self, block: Block) -> None:
        """Publish the summaries of epochs whose samples are now all in the ring."""
        self.flush()  # normally empty: the loop flushed before publishing the block
        if self.pipeline is not None:
            self.summaries.on_block(self.pipeline, self.epochs)

    def on_device_event(self, event: Event, arrival: float) -> bool:
        """A device trigger or button: toggles its epoch, or an instant marker; a
        replayed stim's onset/offset (codes 3/4) starts/ends it.

        Its time is the samples' own ``DeviceClock`` mapping: an event stamped with a
        sample's device time lands on that sample, even one already published, and
        reports that sample's host time.
        """
        if not self._device_events.take():
            self.rejected += 1  # a real device triggers a few times a second at most
            return True
        t, t_dev = self._event_time(event, arrival)
        if len(self.pending) >= MAX_PENDING:
            self.rejected += 1  # counted; a device cannot queue without bound
            return True
        action = self._event_action(event)
        extra = {"code": event.code}
        marker = Marker(t, self.epochs.new_id(), event.label, action, "device", extra, t_dev=t_dev)
        ring = self.pipeline.ring if self.pipeline is not None else None
        last = ring.last() if ring is not None else None
        if ring is not None and last is not None and t_dev is not None and t_dev <= last[1]:
            # at or before a sample already tagged: the first sample at or after it by
            # device time, exactly (host times of old samples came from an older fit)
            found = ring.first_at_or_after(t_dev, device=True)
            if found is not None and found[0] >= self.epochs.last_change_seq:
                (found_dev,) = ring.columns(found[0], found[0] + 1, ("t_dev",))
                prev = self._held_t(found[0] - 1)
                marker.t = on_sample_clock(t_dev, found[1], float(found_dev[0]), prev)
                self._apply(marker, found[0], found[1], published_upto=ring.head)
                self.flush()
                return True
        enqueue(self.pending, marker)
        return True

    def _event_action(self, event: Event) -> str:
        """A replayed stim says whether it starts or ends; a trigger toggles its label's
        epoch (open, or about to be); any other label is an instant marker."""
        if event.label not in self.epochs.index:
            return "instant"
        if event.code in STIM_CODES:
            return STIM_CODES[event.code]
        is_open = self.epochs.is_open(event.label) or any(
            m.label == event.label and m.action == "start" for m in self.pending
        )
        return "end" if is_open else "start"

    def _event_time(self, event: Event, arrival: float) -> tuple[float, float | None]:
        """(host time, unwrapped device time or None) of a device event, by the same
        DeviceClock as the samples."""
        p = self.pipeline
        last = p.ring.last() if p is not None else None
        if last is None:
            return arrival, None
        mapped = None if event.t_dev is None else p.clock.event_time(event.t_dev)
        t, t_dev, clamped = event_time(mapped, last[0], arrival)
        self.device_time_clamped += clamped
        return t, t_dev

    def status(self) -> dict[str, Any]:
        now = time.time()
        open_ = self.epochs.open
        return {
            "epoch": (
                {
                    "label": open_[-1].label,
                    "onset_seq": open_[-1].onset_seq,
                    "onset_t": open_[-1].onset_t,
                }
                if open_
                else None
            ),
            "open_epochs": [e.label for e in open_],
            "protocol": self.runner.describe(now),
            "markers": {
                "accepted": self.accepted,
                "rejected": self.rejected,
                "pending": len(self.pending),
                "device_time_clamped": self.device_time_clamped,
                "summaries_dropped": self.epochs.summaries_dropped,
            },
        }

    # -- applying markers ------------------------------------------------------------
    def _apply(self, m: Marker, seq: int, sample_t: float, published_upto: int) -> None:
        """Change the epoch state at sample ``seq``; the marker's messages and reply go
        to the outbox."""
        rate = self.pipeline.info.rate_hz if self.pipeline is not None else 0.0
        done = self.epochs.apply(m, seq, float(sample_t), published_upto, rate)
        if done.error is not None:
            self.rejected += 1
            if m.token is not None:
                self.outbox.append(("reply", m.token, {"ok": False, "error": done.error}))
            return
        self.accepted += 1
        if done.covers is not None and self.pipeline is not None:
            self.pipeline.ring.set_epoch(*done.covers, self.epochs.current())
        self.outbox += [("event", "marker", body) for body in done.published]
        if m.token is not None:
            self.outbox.append(("reply", m.token, dict(done.body or {})))
        for hook in self.marker_hooks:
            hook(m.label, m.action)

    # -- control requests ------------------------------------------------------------
    def _cmd_mark(self, req: dict[str, Any]) -> Reply:
        try:
            return self._mark(req)
        finally:
            self.flush()  # a late marker's messages and reply

    def _mark(self, req: dict[str, Any]) -> Reply:
        try:
            label, action, t = check_mark(req, self.labels, time.time())
        except RefusedMark:
            self.rejected += 1
            raise
        if len(self.pending) >= MAX_PENDING:
            self.rejected += 1
            raise ProtocolError(
                f"{len(self.pending)} markers already wait for their sample (limit "
                f"{MAX_PENDING}); try again when the device streams"
            )
        if action != "instant":
            self._take_token()
        marker = Marker(float(t), self.epochs.new_id(), label or "", action, "control")
        ring = self.pipeline.ring if self.pipeline is not None else None
        last = ring.last() if ring is not None else None
        if last is not None and t <= last[0]:  # late: part of it is already published
            return self._apply_late(marker, ring)
        derived = getattr(self.acq, "derived", None)  # a device of computed values only
        if (ring is None and derived is None) or self.acq.device.state != STREAMING:
            enqueue(self.pending, marker)  # aligned when samples flow again
            return {
                "id": marker.id,
                "label": label,
                "action": action,
                "t": marker.t,
                "seq": None,
                "pending": True,
            }, []
        marker.token = self.acq.control.current
        enqueue(self.pending, marker)
        return DEFERRED

    def _take_token(self) -> None:
        """The mark rate limit (a token bucket); ProtocolError when it is spent."""
        if not self._marks.take():
            self.rejected += 1
            raise ProtocolError(
                f"more than {MARK_RATE_HZ:g} markers per second (bursts of {MARK_BURST}): "
                "this one is refused"
            )

    def _apply_late(self, marker: Marker, ring: Any) -> Reply:
        found = ring.first_at_or_after(marker.t)
        if found is None or (found[0] == ring.oldest and marker.t < found[1]):
            raise ProtocolError("marker time is older than the history the daemon holds")
        seq, sample_t = found
        if seq < self.epochs.last_change_seq:
            # re-tagging across later epoch changes would rewrite epochs already
            # summarised and published: refuse rather than contradict them
            raise ProtocolError(
                f"marker at sample {seq} is before the last epoch change "
                f"(sample {self.epochs.last_change_seq}); late markers may only "
                f"follow it"
            )
        marker.token = self.acq.control.current
        self._apply(marker, seq, sample_t, published_upto=ring.head)
        return DEFERRED

    def protocol_request(self, req: dict[str, Any]) -> Reply:
        """``protocol`` requests (also called by sessions): the listeners have heard and
        the status is out when it returns."""
        try:
            return self._protocol_request(req)
        finally:
            self.flush()

    def _protocol_request(self, req: dict[str, Any]) -> Reply:
        action = req.get("action", "status")
        now = time.time()
        runner = self.runner
        if action == "list":
            return {"protocols": runner.listing()}, []
        if action == "status":
            return {"protocol": runner.describe(now)}, []
        if action == "start":
            self._take_protocol(runner.start(req.get("name"), now))
            return {"protocol": runner.describe(now)}, []
        if action == "stop":
            self._take_protocol(runner.stop(now))
            return {"protocol": None}, []
        if action == "skip":
            p = runner.protocol
            self._take_protocol(runner.skip(now))
            assert p is not None  # skip raised otherwise
            return {"protocol": p.describe(now)}, []
        raise ProtocolError(
            f"protocol action must be start, stop, skip, list or status, got {action!r}"
        )

    def _take_protocol(self, happenings: list[Happening]) -> None:
        """Queue the protocol's step markers; its events go to the listeners and out on
        ``status`` at the next flush."""
        for h in happenings:
            if isinstance(h, ProtocolEvent):
                self.outbox.append(("protocol", h.what, h.protocol))
                body = {"event": "protocol", "what": h.what, "protocol": h.body}
                self.outbox.append(("event", "status", body))
            else:
                marker = Marker(h.t, self.epochs.new_id(), h.label, h.action, "protocol", h.extra)
                enqueue(self.pending, marker)
