"""Marker alignment: which sample a marker lands on, and the time it reports.

Pure: no sockets, no ring, no epoch state.  A marker lands on the first sample whose
time is at or after the marker's.  A device event that carries a device time is aligned
by device time (host times of later samples come from a newer clock fit than the
event's did) and then reports the host time of the sample it lands on, by that sample's
own ``DeviceClock`` mapping, so a reader aligning by time tags the same sample.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEVICE_FUTURE_S = 5.0  # a device event later than this after the newest sample is bogus
NEXT_SAMPLE_S = 1e-9  # "just after the newest sample": lands on the next one


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


@dataclass
class Placement:
    """A marker due in a block: it lands on the block's sample ``index``."""

    marker: Marker
    index: int


def enqueue(pending: list[Marker], marker: Marker) -> None:
    """Keep ``pending`` in time order (ties: by id, the order they were made)."""
    bisect.insort(pending, marker)


def on_sample_clock(at_dev: float, t: float, t_dev: float, prev: float | None) -> float:
    """The host time of device time ``at_dev`` by the clock fit of the sample it lands
    on (host ``t``, device ``t_dev``), kept after the sample before (host ``prev``):
    the fit moves between blocks, and a marker whose reported time disagreed with the
    sample's would tag that sample differently for a reader aligning by time."""
    host = min(t, at_dev + (t - t_dev))
    return host if prev is None else max(host, min(t, prev + NEXT_SAMPLE_S))


def align(
    pending: list[Marker],
    t: np.ndarray,
    t_dev: np.ndarray | None,
    prev_t: Callable[[], float | None],
) -> list[Placement]:
    """Take the markers due in a block (host times ``t``, device times ``t_dev``) off the
    front of ``pending`` (time order), in order.

    ``prev_t`` gives the host time of the sample before the block (asked only when a
    device-timed marker lands on the block's first sample).  A marker aligned by device
    time gets its reported host time (:func:`on_sample_clock`) in ``marker.t``.
    """
    out: list[Placement] = []
    while pending:
        marker = pending[0]
        times, at, by_device = t, marker.t, False
        if marker.t_dev is not None and t_dev is not None:
            times, at, by_device = t_dev, marker.t_dev, True
        if not at <= times[-1]:
            break
        pending.pop(0)
        i = int(np.searchsorted(times, at, side="left"))
        if by_device:
            prev = float(t[i - 1]) if i else prev_t()
            marker.t = on_sample_clock(at, float(t[i]), float(times[i]), prev)
        out.append(Placement(marker, i))
    return out


def event_time(
    mapped: tuple[float, float] | None, newest_t: float | None, arrival: float
) -> tuple[float, float | None, bool]:
    """(host time, device time or None, clamped) of a device event before alignment.

    ``mapped``: (device time, host time) by the samples' ``DeviceClock``
    (``DeviceClock.event_time``), None when the event has no device time or the clock
    cannot map it yet; ``newest_t``: host time of the newest sample, None before
    the first.  Without a usable device time the event lands on the next sample; one
    dated more than ``DEVICE_FUTURE_S`` after the newest sample (or NaN) is dated at its
    arrival instead (``clamped``).
    """
    if newest_t is None:
        return arrival, None, False
    if mapped is None:
        return newest_t + NEXT_SAMPLE_S, None, False
    if not mapped[1] - newest_t <= DEVICE_FUTURE_S:  # also NaN: no sample comes that late
        return max(arrival, newest_t + NEXT_SAMPLE_S), None, True
    return mapped[1], mapped[0], False
