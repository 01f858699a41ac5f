"""Checking a ``mark`` control request: its label, action and time.

Pure: the request and the configured labels in, ``(label, action, t)`` out, or a
:class:`RefusedMark` (a ProtocolError the channel counts in ``rejected``) or a plain
ProtocolError (a bad time: refused, not counted, as before).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nirsd.core.errors import ProtocolError

ACTIONS = ("start", "end", "instant")
FUTURE_TOLERANCE_S = 1.0  # a client clock may run slightly ahead
MAX_LABEL = 256  # characters of a label


class RefusedMark(ProtocolError):
    """A mark refused for its label or action (counted in ``markers.rejected``)."""


def check_mark(req: dict[str, Any], labels: list[str], now: float) -> tuple[Any, str, float]:
    """(label, action, t) of a ``mark`` request; ``t`` defaults to ``now``.  A label that
    is not configured may only be instant; no label with ``end`` ends whichever epoch
    was started last."""
    label, action = req.get("label"), req.get("action", "start")
    if isinstance(label, str) and len(label) > MAX_LABEL:
        raise RefusedMark(f"a label has at most {MAX_LABEL} characters, got {len(label)}")
    if not isinstance(action, str):
        raise RefusedMark(f"action must be one of {', '.join(ACTIONS)}")
    if label is None and action == "end":
        pass  # ends the most recently started open epoch, whatever its label
    elif not isinstance(label, str) or label not in labels:
        if not (isinstance(label, str) and label and action == "instant"):
            raise RefusedMark(
                f"unknown label {label!r} (configured: "
                f"{', '.join(labels)}; any label may be instant)"
            )
    if action not in ACTIONS:
        raise RefusedMark(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    t = req.get("t", now)
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not np.isfinite(t):
        raise ProtocolError("'t' must be a time in Unix seconds")
    if t > now + FUTURE_TOLERANCE_S:
        raise ProtocolError(f"marker time is {t - now:.3f} s in the future")
    return label, action, t
