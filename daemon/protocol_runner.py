"""The timed exercise-protocol runner: which step markers are due by a time.

Pure: no sockets, no markers made here.  Each call returns what happened, in order:
:class:`StepMark` (a start or end marker the owner makes and queues, at the step's
scheduled host time) and :class:`ProtocolEvent` (started, step, finished, stopped;
its ``body`` is the protocol as it was at that moment).  Steps run back to back: a
step's end is the next one's start.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nirsd.core.errors import ProtocolError

from .exercise_protocols import RunningProtocol


@dataclass
class StepMark:
    t: float
    label: str
    action: str  # "start" or "end"
    extra: dict[str, Any] = field(default_factory=dict)  # {"protocol": name, "step": i}


@dataclass
class ProtocolEvent:
    what: str  # started, step, finished, stopped
    protocol: RunningProtocol
    body: dict[str, Any]


Happening = StepMark | ProtocolEvent


class ProtocolRunner:
    def __init__(self, protocols: dict[str, Sequence[tuple[str, float]]]) -> None:
        self.protocols = dict(protocols)
        self.protocol: RunningProtocol | None = None
        self._step_marked = -1  # the step whose start marker was made

    def listing(self) -> dict[str, list[list[Any]]]:
        return {k: [list(s) for s in v] for k, v in self.protocols.items()}

    def describe(self, now: float) -> dict[str, Any] | None:
        return self.protocol.describe(now) if self.protocol else None

    def start(self, name: Any, now: float) -> list[Happening]:
        if not isinstance(name, str) or name not in self.protocols:
            shown = (name if isinstance(name, str) else type(name).__name__)[:64]
            raise ProtocolError(
                f"unknown protocol {shown!r} (configured: {', '.join(self.protocols) or 'none'})"
            )
        if self.protocol is not None:
            raise ProtocolError(f"protocol {self.protocol.name!r} is running; stop it first")
        self.protocol = RunningProtocol(name, self.protocols[name], now)
        self._step_marked = -1
        return [self._event("started", self.protocol, now)]

    def stop(self, now: float) -> list[Happening]:
        """End the running protocol now (its open step ends with a marker at ``now``)."""
        p = self._running()
        out = self._end_open_step(p, now)
        self.protocol = None
        out.append(self._event("stopped", p, now))
        return out

    def skip(self, now: float) -> list[Happening]:
        """End the current step now; the next one starts now."""
        p = self._running()
        out = self._end_open_step(p, now)
        p.advance(now)
        out += self._finish_if_done(now)
        return out

    def due(self, upto_t: float, now: float) -> list[Happening]:
        """The step starts and ends scheduled at or before ``upto_t`` (the newest
        sample's host time); ``now`` dates the events' descriptions."""
        out: list[Happening] = []
        p = self.protocol
        while p is not None and not p.finished:
            if self._step_marked < p.step:
                if p.step_start_t > upto_t:
                    break
                out.append(StepMark(p.step_start_t, p.label, "start", self._extra(p)))
                self._step_marked = p.step
                out.append(self._event("step", p, now))
            if p.step_end_t > upto_t:
                break
            out.append(StepMark(p.step_end_t, p.label, "end", self._extra(p)))
            p.advance(p.step_end_t)
            out += self._finish_if_done(now)
            p = self.protocol
        return out

    def _running(self) -> RunningProtocol:
        if self.protocol is None:
            raise ProtocolError("no protocol is running")
        return self.protocol

    def _end_open_step(self, p: RunningProtocol, now: float) -> list[Happening]:
        if self._step_marked != p.step:
            return []  # its start was not marked yet: nothing is open
        return [StepMark(now, p.label, "end", self._extra(p))]

    def _finish_if_done(self, now: float) -> list[Happening]:
        if self.protocol is None or not self.protocol.finished:
            return []
        done, self.protocol = self.protocol, None
        return [self._event("finished", done, now)]

    @staticmethod
    def _extra(p: RunningProtocol) -> dict[str, Any]:
        return {"protocol": p.name, "step": p.step}

    @staticmethod
    def _event(what: str, p: RunningProtocol, now: float) -> ProtocolEvent:
        return ProtocolEvent(what, p, p.describe(now))
