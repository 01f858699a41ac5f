"""Study sessions: one patient visit, from its first sample to its end.

A session names who is measured (subject, group), which visit (session), what they do
(task, run) and, optionally, the timed protocol that drives it.  It starts at the first
sample whose host time is at or after the start request (the same rule that aligns
markers, so a protocol started with the session puts its first step on the session's
first sample) and ends at the first sample at or after its end: samples
``[seq, end_seq)`` belong to it.  A session started with a protocol ends where the
protocol's last step ends (or where the protocol is stopped).

One session at a time.  Labels that end up in BIDS file names (subject, session, task)
are checked here, before anything is published or written: letters and digits only.

The module holds the pure parts (:func:`check_label`, :func:`parse_start`,
:class:`Session`) and the acquisition-loop extension (:class:`SessionManager`) that
serves ``session_start``, ``session_stop`` and ``session_status`` and publishes on the
``session`` topic.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog

from nirsd.core.errors import ProtocolError

from .control import DEFERRED, Reply
from .device import STREAMING

log = structlog.get_logger("nirsd.session")

LABEL_RE = re.compile(r"[A-Za-z0-9]+")
MAX_LABEL = 64
MAX_TEXT = 2000  # a note; group and sex are shorter
MAX_ATT_MM = 200.0  # adipose tissue thicker than this is a typo, not a patient
DEFAULT_TASK = "lumbar"  # the study's standardised lumbar exercises
STARTING, RUNNING, ENDING, ENDED = "starting", "running", "ending", "ended"


def check_label(what: str, value: Any) -> str:
    """A BIDS label (letters and digits only, as in ``sub-P01``); ProtocolError if not."""
    if not isinstance(value, str) or not LABEL_RE.fullmatch(value) or len(value) > MAX_LABEL:
        raise ProtocolError(
            f"{what} must be letters and digits only (a BIDS label, at most "
            f"{MAX_LABEL} characters), got {value!r}"
        )
    return value


def check_text(what: str, value: Any, limit: int = 200) -> str:
    """Free text that goes into a TSV cell: no tabs, newlines or control characters."""
    if not isinstance(value, str) or len(value) > limit:
        raise ProtocolError(f"{what} must be text of at most {limit} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ProtocolError(f"{what} must not hold tabs, newlines or control characters")
    return value


def check_att(value: Any, n_channels: int | None) -> list[float] | None:
    """Adipose tissue thickness in mm: one number for every channel, or one per channel."""
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    ok = all(
        not isinstance(v, bool)
        and isinstance(v, (int, float))
        and math.isfinite(v)
        and 0 <= v <= MAX_ATT_MM
        for v in values
    )
    if not values or not ok:
        raise ProtocolError(f"att_mm must be numbers of mm between 0 and {MAX_ATT_MM:g}")
    if n_channels is not None and len(values) not in (1, n_channels):
        raise ProtocolError(
            f"att_mm has {len(values)} values; give one, or one per channel ({n_channels})"
        )
    if len(values) == 1 and n_channels is not None:
        values = values * n_channels
    return [float(v) for v in values]


@dataclass
class Session:
    subject: str
    session: str
    group: str = ""
    task: str = DEFAULT_TASK
    run: int | None = None
    protocol: str | None = None
    note: str = ""
    age: float | None = None
    sex: str | None = None
    att_mm: list[float] | None = None
    session_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    start_t: float = 0.0  # requested start, host Unix seconds
    seq: int | None = None  # first sample
    t: float | None = None  # host time of the first sample
    end_t: float | None = None  # requested end
    end_seq: int | None = None  # first sample after the session
    reason: str | None = None
    state: str = STARTING
    #: asked for while no sample could follow (device not streaming): starts on the
    #: first sample that comes, whatever the clock fit dates it (it came after the ask)
    on_next_sample: bool = field(default=False, compare=False)

    def ack(self) -> dict[str, Any]:
        """The acknowledgement and the body of ``session`` messages (plain types)."""
        return {
            "session_id": self.session_id,
            "state": self.state,
            "subject": self.subject,
            "session": self.session,
            "group": self.group,
            "task": self.task,
            "run": self.run,
            "protocol": self.protocol,
            "note": self.note,
            "age": self.age,
            "sex": self.sex,
            "att_mm": self.att_mm,
            "start_t": self.start_t,
            "seq": self.seq,
            "t": self.t,
            "end_t": self.end_t,
            "end_seq": self.end_seq,
            "reason": self.reason,
        }


def parse_start(req: dict[str, Any], n_channels: int | None = None) -> Session:
    """A ``session_start`` request as a Session (not started); ProtocolError if bad."""
    run = req.get("run")
    if run is not None and (isinstance(run, bool) or not isinstance(run, int) or not 0 < run < 1e6):
        raise ProtocolError(f"run must be a positive integer, got {run!r}")
    age = req.get("age")
    if age is not None and (
        isinstance(age, bool) or not isinstance(age, (int, float)) or not 0 <= age <= 150
    ):
        raise ProtocolError(f"age must be years between 0 and 150, got {age!r}")
    protocol = req.get("protocol")
    if protocol is not None and not isinstance(protocol, str):
        raise ProtocolError("protocol must be a protocol name")
    sex = req.get("sex")
    return Session(
        subject=check_label("subject", req.get("subject")),
        session=check_label("session", req.get("session")),
        group=check_text("group", _or(req.get("group"), "")),  # nil means not given
        task=check_label("task", _or(req.get("task"), DEFAULT_TASK)),
        run=run,
        protocol=protocol,
        note=check_text("note", _or(req.get("note"), ""), MAX_TEXT),
        age=None if age is None else float(age),
        sex=None if sex is None else check_text("sex", sex, 20),
        att_mm=check_att(req.get("att_mm"), n_channels),
    )


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def first_at_or_after(seq0: int, t: np.ndarray, at: float) -> int | None:
    """Index of the first sample of a block (times ``t``) at or after ``at``, or None."""
    i = int(np.searchsorted(t, at, side="left"))
    return seq0 + i if i < t.shape[0] else None


class SessionManager:
    """The acquisition-loop extension: control requests, alignment, the ``session`` topic."""

    def __init__(self, acq: Any) -> None:
        self.acq = acq
        self.current: Session | None = None
        self.last: Session | None = None
        self._protocol: Any = None  # the RunningProtocol started with the session
        self._start_token: list[bytes] | None = None
        self._stop_token: list[bytes] | None = None
        acq.control.register("session_start", self._cmd_start)
        acq.control.register("session_stop", self._cmd_stop)
        acq.control.register("session_status", self._cmd_status)
        acq.markers.protocol_listeners.append(self._on_protocol)
        acq.extensions.append(self)

    # -- hooks called by the acquisition loop ----------------------------------------
    def on_pipeline(self, pipeline: Any) -> None:
        pass

    def on_device_event(self, event: Any, arrival: float) -> bool:
        return False

    def status(self) -> dict[str, Any]:
        return {"session": self.current.ack() if self.current is not None else None}

    def on_block(self, block: Any) -> None:
        s = self.current
        if s is None:
            return
        if s.seq is None:
            seq = (
                block.seq if s.on_next_sample else first_at_or_after(block.seq, block.t, s.start_t)
            )
            if seq is None:
                return
            s.seq, s.t, s.state = seq, float(block.t[seq - block.seq]), RUNNING
            self._publish("start")
            self._answer("_start_token", s)
            log.info("session_started", session_id=s.session_id, seq=seq, subject=s.subject)
        if s.end_t is not None:
            end = first_at_or_after(block.seq, block.t, s.end_t)
            if end is not None:
                self._end(max(end, s.seq))

    # -- state changes ---------------------------------------------------------------
    def _publish(self, event: str) -> None:
        assert self.current is not None
        self.acq.publisher.publish_event("session", {"event": event, **self.current.ack()})

    def _answer(self, attr: str, s: Session) -> None:
        token = getattr(self, attr)
        if token is not None:
            setattr(self, attr, None)
            self.acq.control.send_reply(token, s.ack())

    def _end(self, end_seq: int) -> None:
        s = self.current
        assert s is not None
        s.end_seq, s.state = end_seq, ENDED
        self._publish("end")
        self._answer("_stop_token", s)
        if self._start_token is not None:  # ended before its first sample arrived
            self._answer("_start_token", s)
        log.info("session_ended", session_id=s.session_id, end_seq=end_seq, reason=s.reason)
        self.current, self.last, self._protocol = None, s, None

    def _begin_end(self, end_t: float, reason: str) -> None:
        s = self.current
        assert s is not None
        s.end_t, s.reason, s.state = end_t, reason, ENDING
        if self.acq.device.state != STREAMING:
            # no samples flowing: nothing more can belong to the session
            if s.seq is None:
                s.seq = self.acq.next_seq
                self._publish("start")
            self._end(self.acq.next_seq)

    def _on_protocol(self, what: str, p: Any) -> None:
        """The protocol started with the session finished or was stopped: end it there."""
        s = self.current
        if s is None or p is not self._protocol or s.end_t is not None:
            return
        if what == "finished":
            self._begin_end(p.step_start_t, "protocol finished")  # the last step's end
        elif what == "stopped":
            ends = [
                m.t
                for m in self.acq.markers.pending
                if m.source == "protocol" and m.extra.get("protocol") == p.name
            ]
            self._begin_end(max(ends) if ends else time.time(), "protocol stopped")

    # -- control requests ------------------------------------------------------------
    def _cmd_start(self, req: dict[str, Any]) -> Reply:
        pipeline = self.acq.pipeline
        if self.current is not None:
            s = self.current
            raise ProtocolError(
                f"session {s.session_id} (subject {s.subject}, session {s.session}) is "
                f"{s.state}; one session at a time: stop it first (nirsd session stop)"
            )
        n_ch = pipeline.info.n_channels if pipeline is not None else None
        s = parse_start(req, n_ch)
        markers = self.acq.markers
        if s.protocol is not None:
            if s.protocol not in markers.protocols:
                known = ", ".join(markers.protocols) or "none"
                raise ProtocolError(f"unknown protocol {s.protocol!r} (configured: {known})")
            if markers.protocol is not None:
                raise ProtocolError(
                    f"protocol {markers.protocol.name!r} is running; stop it before a session"
                )
            markers.protocol_request({"action": "start", "name": s.protocol})
            self._protocol = markers.protocol
            s.start_t = self._protocol.start_t  # its first step starts on our first sample
        else:
            s.start_t = time.time()
        self.current = s
        if self.acq.device.state != STREAMING:
            s.on_next_sample = s.protocol is None  # a protocol's steps keep their own times
            return {**s.ack(), "pending": True}, []  # aligned when samples flow again
        self._start_token = self.acq.control.current
        return DEFERRED

    def _cmd_stop(self, req: dict[str, Any]) -> Reply:
        s = self.current
        if s is None:
            raise ProtocolError("no session is running")
        if s.end_t is not None:
            raise ProtocolError(f"session {s.session_id} is already ending")
        token = self.acq.control.current
        if self._protocol is not None and self.acq.markers.protocol is self._protocol:
            self.acq.markers.protocol_request({"action": "stop"})  # ends the session too
        else:
            self._begin_end(time.time(), "stopped")
        if self.current is None:  # ended at once (not streaming)
            assert self.last is not None
            return self.last.ack(), []
        self._stop_token = token
        return DEFERRED

    def _cmd_status(self, req: dict[str, Any]) -> Reply:
        return {
            "session": self.current.ack() if self.current is not None else None,
            "last": self.last.ack() if self.last is not None else None,
        }, []
