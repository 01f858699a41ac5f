"""The marker channel: markers in, epoch tags on every sample, epoch summaries out.

Markers come from control requests (``mark``), timed protocols and device EVENT
frames.  Each is aligned to the first sample whose timestamp is at or after the
marker's time: a marker waits (and its request's reply with it) until that sample
arrives, so tagging is exact to the sample even when the device's bytes are still in
transit.  A marker for a time already published is applied at once to the held
history and published with ``covers``, so recorders can place it exactly.

Epochs do not overlap unless ``markers.allow_overlap``: starting one while another is
open ends the open one at the same sample.  With overlap allowed, a sample carries the
label of the most recently started open epoch.

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

import bisect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog

from nirsd.core.errors import ProtocolError
from nirsd.drivers.base import Event

from .bounded import RateLimitedLog, TokenBucket
from .control import DEFERRED, Reply
from .device import STREAMING
from .epochs import Epoch, summarize, window_pending
from .exercise_protocols import RunningProtocol
from .ringbuffer import NO_EPOCH, Block

log = structlog.get_logger("nirsd.markers")

ACTIONS = ("start", "end", "instant")
#: device EVENT codes that say the action (a SNIRF replay's stim onset and offset)
STIM_CODES = {3: "start", 4: "end"}
FUTURE_TOLERANCE_S = 1.0  # a client clock may run slightly ahead
MAX_PENDING = 1024  # markers waiting for their sample
DEVICE_FUTURE_S = 5.0  # a device event later than this after the newest sample is bogus
SUMMARIES_PER_BLOCK = 16  # epoch summaries computed per published block
MAX_SIMULATED = 16  # exercise responses the embedded simulator keeps
MAX_CLOSED = 1024  # ended epochs waiting for their summary (more: summary dropped)
MARK_RATE_HZ = 50.0  # epoch starts/ends by mark accepted per second (an operator: ~1/s)
MARK_BURST = 100  # ... with bursts of this many
DEVICE_EVENT_RATE_HZ = 50.0  # device events (triggers, buttons) taken per second ...
DEVICE_EVENT_BURST = 100  # ... with bursts of this many


@dataclass(order=True)
class Marker:
    t: float
    id: int
    label: str = field(compare=False)  # "" with action "end": whichever epoch is open
    action: str = field(compare=False)
    source: str = field(compare=False)
    extra: dict[str, Any] = field(compare=False, default_factory=dict)
    token: list[bytes] | None = field(compare=False, default=None)
    #: a device event's own time (unwrapped device clock, s): aligned by it, exactly
    t_dev: float | None = field(compare=False, default=None)


class MarkerChannel:
    def __init__(self, acq: Any) -> None:
        self.acq = acq
        cfg = acq.cfg.markers
        self.labels = list(cfg.labels)
        self.index = {label: i for i, label in enumerate(self.labels)}
        self.allow_overlap = cfg.allow_overlap
        self.baseline_s = cfg.baseline_s
        self.protocols = dict(acq.cfg.protocols)
        self.open: list[Epoch] = []
        self.pending: list[Marker] = []
        self.closed: list[Epoch] = []  # ended, summary not yet published
        # summarised while I0 was provisional, with the msg of that summary (bounded by
        # the epochs of one baseline window; dropped with the pipeline)
        self.provisional: list[tuple[Epoch, int]] = []
        self._singles: dict[int, np.ndarray] = {}  # epoch index -> read-only (1,) tag
        self._last_change_seq = 0  # sample of the latest epoch start or end
        self.next_id = 1
        self.accepted = 0
        self.rejected = 0
        self.device_time_clamped = 0
        self.summaries_dropped = 0
        self._marks = TokenBucket(MARK_RATE_HZ, MARK_BURST)
        self._device_events = TokenBucket(DEVICE_EVENT_RATE_HZ, DEVICE_EVENT_BURST)
        self._log_summary = RateLimitedLog(log, "epoch_summary", burst=20, level="info")
        self.protocol: RunningProtocol | None = None
        self._protocol_step_marked = -1
        #: called with (what, protocol) on every protocol event (started, step, finished,
        #: stopped); sessions started with a protocol end with it
        self.protocol_listeners: list[Callable[[str, RunningProtocol], None]] = []
        self.pipeline = None
        self._simulated: dict[str, Any] = {}  # open exercise responses of the simulator
        acq.control.register("mark", self._cmd_mark)
        acq.control.register("protocol", self._cmd_protocol)
        acq.extensions.append(self)

    # -- hooks called by the acquisition loop ----------------------------------------
    def on_pipeline(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self.provisional = []  # a new probe description: its raw is not comparable
        pipeline.tagger = self.tag

    def _current(self) -> int:
        return self.index[self.open[-1].label] if self.open else NO_EPOCH

    def tag(self, seq0: int, t: np.ndarray, t_dev: np.ndarray | None = None) -> np.ndarray:
        """Epoch label indices for a block of samples (host times ``t``, device times
        ``t_dev``) starting at seq0.  A device event is aligned by device time: the host
        times of later samples come from a newer clock fit than the event's did."""
        self._protocol_markers(float(t[-1]))
        if not self.pending and t.shape[0] == 1:  # streaming, nothing to apply
            return self._single(self._current())
        out = np.full(t.shape[0], self._current(), np.int16)
        while self.pending:
            marker = self.pending[0]
            times, at, by_device = t, marker.t, False
            if marker.t_dev is not None and t_dev is not None:
                times, at, by_device = t_dev, marker.t_dev, True
            if not at <= times[-1]:
                break
            self.pending.pop(0)
            i = int(np.searchsorted(times, at, side="left"))
            if by_device:
                prev = float(t[i - 1]) if i else self._held_t(seq0 - 1)
                marker.t = self._on_sample_clock(at, float(t[i]), float(times[i]), prev)
            self._apply(marker, seq0 + i, t[i], published_upto=seq0)
            out[i:] = self._current()
        return out

    @staticmethod
    def _on_sample_clock(at_dev: float, t: float, t_dev: float, prev: float | None) -> float:
        """The host time of device time ``at_dev`` by the clock fit of the sample it lands
        on (host ``t``, device ``t_dev``), kept after the sample before (host ``prev``):
        the fit moves between blocks, and a marker whose reported time disagreed with
        the sample's would tag that sample differently for a reader aligning by time."""
        host = min(t, at_dev + (t - t_dev))
        return host if prev is None else max(host, min(t, prev + 1e-9))

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

    def on_block(self, block: Block) -> None:
        """Publish the summaries of epochs whose samples are now all in the ring."""
        if self.provisional and self.pipeline is not None:
            self._correct_provisional()
        if not self.closed or self.pipeline is None:
            return
        ring = self.pipeline.ring
        ready = [e for e in self.closed if e.end_seq <= ring.head][:SUMMARIES_PER_BLOCK]
        if not ready:
            return
        done = {id(e) for e in ready}
        self.closed = [e for e in self.closed if id(e) not in done]
        for epoch in ready:
            self._publish_summary(epoch)

    def _correct_provisional(self) -> None:
        """Once I0 is frozen, publish corrected summaries of epochs summarised before."""
        p = self.pipeline
        if not self.provisional or p is None or not p.converter.baseline_ready:
            return
        done, self.provisional = self.provisional, []
        for epoch, msg in done:
            self._publish_summary(epoch, revision=2, replaces=msg)

    def _publish_summary(
        self, epoch: Epoch, revision: int = 1, replaces: int | None = None
    ) -> None:
        """Summarise and publish; a window converted with a provisional I0 is recomputed
        from the held raw intensities once I0 is frozen, else published as provisional
        (and corrected later by :meth:`_correct_provisional`)."""
        from .converter import BASELINE_PENDING

        p = self.pipeline
        assert p is not None  # called from on_block, which has one
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
        header = self.acq.publisher.publish_event("epoch", body)
        if body["provisional"]:
            self.provisional.append((epoch, header["msg"]))
        self._log_summary(
            label=epoch.label,
            onset_seq=epoch.onset_seq,
            end_seq=epoch.end_seq,
            revision=revision,
            provisional=body["provisional"],
        )

    def on_device_event(self, event: Event, arrival: float) -> bool:
        """A device trigger or button: toggles its epoch, or an instant marker; a
        replayed stim's onset/offset (codes 3/4) starts/ends it.

        Its time is mapped to host time by the samples' own clock, so an event stamped
        with a sample's device time lands on that sample, even one already published.
        """
        if not self._device_events.take():
            self.rejected += 1  # a real device triggers a few times a second at most
            return True
        t, t_dev = self._device_time(event, arrival)
        if len(self.pending) >= MAX_PENDING:
            self.rejected += 1  # counted; a device cannot queue without bound
            return True
        if event.label in self.index and event.code in STIM_CODES:
            action = STIM_CODES[event.code]  # a replayed stim says whether it starts or ends
        elif event.label in self.index:
            is_open = any(e.label == event.label for e in self.open) or any(
                m.label == event.label and m.action == "start" for m in self.pending
            )
            action = "end" if is_open else "start"
        else:
            action = "instant"
        marker = Marker(
            t, self._new_id(), event.label, action, "device", {"code": event.code}, t_dev=t_dev
        )
        ring = self.pipeline.ring if self.pipeline is not None else None
        last = ring.last() if ring is not None else None
        if ring is not None and last is not None and t_dev is not None and t_dev <= last[1]:
            # at or before a sample already tagged: the first sample at or after it by
            # device time, exactly (host times of old samples came from an older fit)
            found = ring.first_at_or_after(t_dev, device=True)
            if found is not None and found[0] >= self._last_change_seq:
                (found_dev,) = ring.columns(found[0], found[0] + 1, ("t_dev",))
                prev = self._held_t(found[0] - 1)
                marker.t = self._on_sample_clock(t_dev, found[1], float(found_dev[0]), prev)
                self._apply(marker, found[0], found[1], published_upto=ring.head)
                return True
        self._enqueue(marker)
        return True

    def status(self) -> dict[str, Any]:
        now = time.time()
        return {
            "epoch": (
                {
                    "label": self.open[-1].label,
                    "onset_seq": self.open[-1].onset_seq,
                    "onset_t": self.open[-1].onset_t,
                }
                if self.open
                else None
            ),
            "open_epochs": [e.label for e in self.open],
            "protocol": self.protocol.describe(now) if self.protocol else None,
            "markers": {
                "accepted": self.accepted,
                "rejected": self.rejected,
                "pending": len(self.pending),
                "device_time_clamped": self.device_time_clamped,
                "summaries_dropped": self.summaries_dropped,
            },
        }

    # -- applying markers ------------------------------------------------------------
    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def _enqueue(self, marker: Marker) -> None:
        bisect.insort(self.pending, marker)

    def _apply(self, m: Marker, seq: int, sample_t: float, published_upto: int) -> None:
        """Change the epoch state at sample ``seq`` and publish the marker."""
        error = None
        ended: list[dict[str, Any]] = []  # the epochs this marker ended, for the reply
        if m.action == "start":
            if not self.allow_overlap:
                for ep in list(self.open):
                    ended.append(self._close(ep, seq, m.id, auto=True, t=m.t))
            self.open.append(Epoch(m.label, m.id, seq, float(sample_t)))
        elif m.action == "end":
            # no label: the most recently started open epoch
            match = [e for e in self.open if not m.label or e.label == m.label]
            if match:
                # a stim offset ends the oldest open stim of its label (first in, first out)
                first = m.source == "device" and m.extra.get("code") in STIM_CODES
                target = match[0] if first else match[-1]
                m.label = target.label
                ended.append(self._close(target, seq, m.id))
            elif not m.label:
                error = "no open epoch to end"
            else:
                error = f"no open {m.label!r} epoch to end"
        if error is None and m.action != "instant":
            self._last_change_seq = max(self._last_change_seq, seq)
        if error is not None:
            self.rejected += 1
            if m.token is not None:
                self.acq.control.send_reply(m.token, {"ok": False, "error": error})
            return
        self.accepted += 1
        body = {
            "id": m.id,
            "label": m.label,
            "action": m.action,
            "source": m.source,
            "t": m.t,
            "seq": seq,
            "published_upto": published_upto,
            **m.extra,
        }
        if m.action != "instant":
            # what this marker ended: the epoch an end closed, or the one a start replaced
            body["ended"] = ended[-1] if ended else None
        if seq < published_upto and self.pipeline is not None:
            body["covers"] = [seq, published_upto]
            self.pipeline.ring.set_epoch(seq, published_upto, self._current())
        self.acq.publisher.publish_event("marker", body)
        if m.token is not None:
            self.acq.control.send_reply(m.token, dict(body))
        self._simulate_response(m.label, m.action)

    def _simulate_response(self, label: str, action: str) -> None:
        """With the embedded simulator, let the simulated muscle respond to exercises."""
        emu = getattr(self.acq.device, "emulator", None)
        if emu is None or emu.physiology is None:
            return
        from nirsd.drivers.sim.exercise import AMPLITUDES_UM, ExerciseResponse

        now_s = emu.samples_sent / emu.rate_hz
        for open_label in list(self._simulated):
            if action == "start" and not self.allow_overlap or open_label == label:
                self._simulated.pop(open_label).end_s = now_s
        if action == "start" and label in AMPLITUDES_UM:
            response = ExerciseResponse(now_s, None, emu.n_channels, label)
            kept = [r for r in emu.physiology.responses if r.end_s is None]
            ended = [r for r in emu.physiology.responses if r.end_s is not None]
            # every response costs the emulator thread work per sample: keep the newest
            # (the oldest ended ones have decayed the most); a new list, so the thread
            # iterating the old one is undisturbed
            room = max(0, MAX_SIMULATED - 1 - len(kept))
            emu.physiology.responses = [*kept[-(MAX_SIMULATED - 1) :], *ended[-room:][:room]]
            emu.physiology.responses.append(response)
            self._simulated[label] = response

    def _close(
        self, ep: Epoch, seq: int, end_id: int, auto: bool = False, t: float | None = None
    ) -> dict[str, Any]:
        """End ``ep`` at ``seq``; returns what ended (label, ids, samples) for the reply."""
        self.open.remove(ep)
        ep.end_seq, ep.end_id = seq, end_id
        if len(self.closed) >= MAX_CLOSED:
            self.summaries_dropped += 1
        else:
            self.closed.append(ep)
        rate = self.pipeline.info.rate_hz if self.pipeline is not None else 0.0
        ended = {
            "label": ep.label,
            "start_id": ep.start_id,
            "end_id": end_id,
            "onset_seq": ep.onset_seq,
            "end_seq": seq,
            "duration_s": (seq - ep.onset_seq) / rate if rate else None,
        }
        if auto:  # the implicit end of an epoch replaced by a new start
            ended["end_id"] = self._new_id()
            self.acq.publisher.publish_event(
                "marker",
                {
                    "id": ended["end_id"],
                    "label": ep.label,
                    "action": "end",
                    "source": "auto",
                    "t": t,
                    "seq": seq,
                    "published_upto": seq,
                    "ended_by": end_id,
                },
            )
        return ended

    # -- control requests ------------------------------------------------------------
    def _cmd_mark(self, req: dict[str, Any]) -> Reply:
        label, action = req.get("label"), req.get("action", "start")
        if isinstance(label, str) and len(label) > 256:
            self.rejected += 1
            raise ProtocolError(f"a label has at most 256 characters, got {len(label)}")
        if not isinstance(action, str):
            self.rejected += 1
            raise ProtocolError(f"action must be one of {', '.join(ACTIONS)}")
        if label is None and action == "end":
            pass  # ends the most recently started open epoch, whatever its label
        elif not isinstance(label, str) or label not in self.index:
            if not (isinstance(label, str) and label and action == "instant"):
                self.rejected += 1
                raise ProtocolError(
                    f"unknown label {label!r} (configured: "
                    f"{', '.join(self.labels)}; any label may be instant)"
                )
        if action not in ACTIONS:
            self.rejected += 1
            raise ProtocolError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
        now = time.time()
        t = req.get("t", now)
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not np.isfinite(t):
            raise ProtocolError("'t' must be a time in Unix seconds")
        if t > now + FUTURE_TOLERANCE_S:
            raise ProtocolError(f"marker time is {t - now:.3f} s in the future")
        if len(self.pending) >= MAX_PENDING:
            self.rejected += 1
            raise ProtocolError(
                f"{len(self.pending)} markers already wait for their sample (limit "
                f"{MAX_PENDING}); try again when the device streams"
            )
        if action != "instant":
            self._take_token()
        marker = Marker(float(t), self._new_id(), label or "", action, "control")
        ring = self.pipeline.ring if self.pipeline is not None else None
        last = ring.last() if ring is not None else None
        if last is not None and t <= last[0]:  # late: part of it is already published
            return self._apply_late(marker, ring)
        derived = getattr(self.acq, "derived", None)  # a device of computed values only
        if (ring is None and derived is None) or self.acq.device.state != STREAMING:
            self._enqueue(marker)  # aligned when samples flow again
            return {
                "id": marker.id,
                "label": label,
                "action": action,
                "t": marker.t,
                "seq": None,
                "pending": True,
            }, []
        marker.token = self.acq.control.current
        self._enqueue(marker)
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
        if seq < self._last_change_seq:
            # re-tagging across later epoch changes would rewrite epochs already
            # summarised and published: refuse rather than contradict them
            raise ProtocolError(
                f"marker at sample {seq} is before the last epoch change "
                f"(sample {self._last_change_seq}); late markers may only "
                f"follow it"
            )
        marker.token = self.acq.control.current
        self._apply(marker, seq, sample_t, published_upto=ring.head)
        return DEFERRED

    def _cmd_protocol(self, req: dict[str, Any]) -> Reply:
        action = req.get("action", "status")
        now = time.time()
        if action == "list":
            return {"protocols": {k: [list(s) for s in v] for k, v in self.protocols.items()}}, []
        if action == "status":
            return {"protocol": self.protocol.describe(now) if self.protocol else None}, []
        if action == "start":
            name = req.get("name")
            if not isinstance(name, str) or name not in self.protocols:
                name = name if isinstance(name, str) else type(name).__name__
                name = name[:64]
                raise ProtocolError(
                    f"unknown protocol {name!r} (configured: {', '.join(self.protocols) or 'none'})"
                )
            if self.protocol is not None:
                raise ProtocolError(f"protocol {self.protocol.name!r} is running; stop it first")
            self.protocol = RunningProtocol(name, self.protocols[name], now)
            self._protocol_step_marked = -1
            self._protocol_event("started")
            return {"protocol": self.protocol.describe(now)}, []
        if action in ("stop", "skip"):
            p = self.protocol
            if p is None:
                raise ProtocolError("no protocol is running")
            if self._protocol_step_marked == p.step:
                self._enqueue(
                    Marker(
                        now,
                        self._new_id(),
                        p.label,
                        "end",
                        "protocol",
                        {"protocol": p.name, "step": p.step},
                    )
                )
            if action == "stop":
                self.protocol = None
                self._protocol_event("stopped", p)
                return {"protocol": None}, []
            p.advance(now)
            self._finish_if_done()
            return {"protocol": p.describe(now)}, []
        raise ProtocolError(
            f"protocol action must be start, stop, skip, list or status, got {action!r}"
        )

    def _protocol_markers(self, upto_t: float) -> None:
        """Queue the start/end markers of protocol steps whose time has come."""
        p = self.protocol
        while p is not None and not p.finished:
            if self._protocol_step_marked < p.step:
                if p.step_start_t > upto_t:
                    return
                self._enqueue(
                    Marker(
                        p.step_start_t,
                        self._new_id(),
                        p.label,
                        "start",
                        "protocol",
                        {"protocol": p.name, "step": p.step},
                    )
                )
                self._protocol_step_marked = p.step
                self._protocol_event("step")
            if p.step_end_t > upto_t:
                return
            self._enqueue(
                Marker(
                    p.step_end_t,
                    self._new_id(),
                    p.label,
                    "end",
                    "protocol",
                    {"protocol": p.name, "step": p.step},
                )
            )
            p.advance(p.step_end_t)
            self._finish_if_done()
            p = self.protocol

    def _finish_if_done(self) -> None:
        if self.protocol is not None and self.protocol.finished:
            done, self.protocol = self.protocol, None
            self._protocol_event("finished", done)

    def _protocol_event(self, what: str, p: RunningProtocol | None = None) -> None:
        p = p or self.protocol
        body = p.describe(time.time()) if p is not None else {}
        if p is not None:
            for listener in self.protocol_listeners:
                listener(what, p)
        self.acq.publisher.publish_event(
            "status", {"event": "protocol", "what": what, "protocol": body}
        )

    # -- device time -----------------------------------------------------------------
    def _device_time(self, event: Event, arrival: float) -> tuple[float, float | None]:
        """(host time, unwrapped device time or None) of a device event, by the same
        DeviceClock mapping as the samples."""
        ring = self.pipeline.ring if self.pipeline is not None else None
        last = ring.last() if ring is not None else None
        if last is None:
            return arrival, None
        mapped = None if event.t_dev is None else self.pipeline.clock.event_time(event.t_dev)
        if mapped is None:
            return last[0] + 1e-9, None  # no device clock: the next sample
        if not mapped[1] - last[0] <= DEVICE_FUTURE_S:  # also NaN: no sample comes that late
            self.device_time_clamped += 1
            return max(arrival, last[0] + 1e-9), None
        return mapped[1], mapped[0]
