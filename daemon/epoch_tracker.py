"""Epoch state: which epochs are open, what a marker placed at a sample does to them.

Pure: no sockets, no ring.  :meth:`EpochTracker.apply` changes the state and returns
what happened (the ``marker`` bodies to publish, in order, or an error) for the owner
to publish and reply with.  Epochs do not overlap unless ``allow_overlap``: a start
while another is open ends the open one at the same sample (an ``auto`` end marker,
with its own id, published before the start).  With overlap allowed the current label
is that of the most recently started open epoch.  Ids of all markers come from one
counter here, so they increase in the order markers are made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .epochs import Epoch
from .marker_align import Marker
from .ringbuffer import NO_EPOCH

MAX_CLOSED = 1024  # ended epochs waiting for their summary (more: summary dropped)
#: device EVENT codes that say the action (a SNIRF replay's stim onset and offset)
STIM_CODES = {3: "start", 4: "end"}


@dataclass
class Applied:
    """What applying one marker did."""

    error: str | None = None  # refused: nothing changed, nothing to publish
    published: list[dict[str, Any]] = field(default_factory=list)  # marker bodies, in order
    body: dict[str, Any] | None = None  # the marker's own body (also its reply)
    covers: tuple[int, int] | None = None  # held samples [seq, upto) to re-tag


class EpochTracker:
    def __init__(self, labels: list[str], allow_overlap: bool) -> None:
        self.index = {label: i for i, label in enumerate(labels)}
        self.allow_overlap = allow_overlap
        self.open: list[Epoch] = []
        self.closed: list[Epoch] = []  # ended, summary not yet published
        self.last_change_seq = 0  # sample of the latest epoch start or end
        self.next_id = 1
        self.summaries_dropped = 0

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def current(self) -> int:
        """The label index samples get now (NO_EPOCH when none is open)."""
        return self.index[self.open[-1].label] if self.open else NO_EPOCH

    def is_open(self, label: str) -> bool:
        return any(e.label == label for e in self.open)

    def apply(
        self, m: Marker, seq: int, sample_t: float, published_upto: int, rate_hz: float
    ) -> Applied:
        """Place ``m`` at sample ``seq`` (host time ``sample_t``); samples before
        ``published_upto`` were already published (a late marker re-tags them)."""
        done = Applied()
        ended: list[dict[str, Any]] = []  # the epochs this marker ended, for the reply
        if m.action == "start":
            if not self.allow_overlap:
                for ep in list(self.open):
                    ended.append(self._close(ep, seq, m.id, rate_hz, done, t=m.t))
            self.open.append(Epoch(m.label, m.id, seq, float(sample_t)))
        elif m.action == "end":
            # no label: the most recently started open epoch
            match = [e for e in self.open if not m.label or e.label == m.label]
            if not match:
                done.error = (
                    f"no open {m.label!r} epoch to end" if m.label else "no open epoch to end"
                )
                return done
            # a stim offset ends the oldest open stim of its label (first in, first out)
            first = m.source == "device" and m.extra.get("code") in STIM_CODES
            target = match[0] if first else match[-1]
            m.label = target.label
            ended.append(self._close(target, seq, m.id, rate_hz))
        if m.action != "instant":
            self.last_change_seq = max(self.last_change_seq, seq)
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
        if seq < published_upto:
            body["covers"] = [seq, published_upto]
            done.covers = (seq, published_upto)
        done.body = body
        done.published.append(body)
        return done

    def take_ended(self, head: int, limit: int | None = None) -> list[Epoch]:
        """Remove and return (at most ``limit`` of) the ended epochs whose samples are
        all held (end before ``head``), oldest first; the others stay for later."""
        ready = [e for e in self.closed if e.end_seq is not None and e.end_seq <= head][:limit]
        if ready:
            done = {id(e) for e in ready}
            self.closed = [e for e in self.closed if id(e) not in done]
        return ready

    def _close(
        self,
        ep: Epoch,
        seq: int,
        end_id: int,
        rate_hz: float,
        done: Applied | None = None,
        t: float | None = None,
    ) -> dict[str, Any]:
        """End ``ep`` at ``seq``; returns what ended (label, ids, samples) for the reply.
        With ``done`` (a start replacing ``ep``) the implicit end marker goes into it."""
        self.open.remove(ep)
        ep.end_seq, ep.end_id = seq, end_id
        if len(self.closed) >= MAX_CLOSED:
            self.summaries_dropped += 1
        else:
            self.closed.append(ep)
        ended = {
            "label": ep.label,
            "start_id": ep.start_id,
            "end_id": end_id,
            "onset_seq": ep.onset_seq,
            "end_seq": seq,
            "duration_s": (seq - ep.onset_seq) / rate_hz if rate_hz else None,
        }
        if done is not None:  # the implicit end of an epoch replaced by a new start
            ended["end_id"] = self.new_id()
            done.published.append(
                {
                    "id": ended["end_id"],
                    "label": ep.label,
                    "action": "end",
                    "source": "auto",
                    "t": t,
                    "seq": seq,
                    "published_upto": seq,
                    "ended_by": end_id,
                }
            )
        return ended
