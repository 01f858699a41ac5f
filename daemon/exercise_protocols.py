"""Timed exercise protocols: a fixed schedule of epochs the daemon marks itself.

A protocol is a list of (label, seconds) steps from the config.  Step boundaries are
scheduled host times; the protocol runner (``protocol_runner.py``) turns each boundary
into markers, which the marker channel aligns to the first sample at or after it, so a
protocol is as sample-exact as a manual marker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class RunningProtocol:
    name: str
    steps: Sequence[tuple[str, float]]
    start_t: float
    step: int = 0
    step_start_t: float = 0.0

    def __post_init__(self) -> None:
        self.step_start_t = self.start_t

    @property
    def label(self) -> str:
        return self.steps[self.step][0]

    @property
    def step_end_t(self) -> float:
        return self.step_start_t + self.steps[self.step][1]

    @property
    def finished(self) -> bool:
        return self.step >= len(self.steps)

    def advance(self, at_t: float) -> None:
        """Move to the next step, which starts at ``at_t``."""
        self.step += 1
        self.step_start_t = at_t

    def describe(self, now: float) -> dict[str, Any]:
        if self.finished:
            return {"name": self.name, "finished": True}
        return {
            "name": self.name,
            "step": self.step,
            "steps": len(self.steps),
            "label": self.label,
            "step_start_t": self.step_start_t,
            "step_end_t": self.step_end_t,
            "time_left_s": max(0.0, self.step_end_t - now),
            "total_left_s": max(0.0, self.step_end_t - now)
            + sum(s for _, s in self.steps[self.step + 1 :]),
        }
