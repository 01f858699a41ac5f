"""The ``[probe]`` config section: how the probe sits on the body.

Files and streams carry it in their standard fields (SNIRF ``probe`` and metaDataTags,
XDF ``optodes``/``fiducials``), so a reader places a lumbar probe on the back rather than
on a head.  Kept beside :mod:`nirsd.daemon.config`, which validates it with these checkers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nirsd.core.errors import ConfigError


@dataclass(frozen=True)
class ProbeConfig:
    coordinate_system: str = "Other"  # SNIRF/BIDS coordinate system name
    coordinate_system_description: str | None = None  # origin, axes and units in words
    landmarks: Mapping[str, tuple[float, ...]] = field(default_factory=dict)  # label -> mm
    source_labels: tuple[str, ...] | None = None  # in ascending source id order
    detector_labels: tuple[str, ...] | None = None  # in ascending detector id order
    manufacturer: str | None = None  # SNIRF ManufacturerName
    model: str | None = None  # SNIRF Model

    def describe(self) -> dict[str, Any]:
        """Plain types for the ``info`` reply."""
        return {
            "coordinate_system": self.coordinate_system,
            "coordinate_system_description": self.coordinate_system_description,
            "landmarks": {k: list(v) for k, v in self.landmarks.items()},
            "source_labels": None if self.source_labels is None else list(self.source_labels),
            "detector_labels": (
                None if self.detector_labels is None else list(self.detector_labels)
            ),
            "manufacturer": self.manufacturer,
            "model": self.model,
        }


def _text(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"expected a non-empty string, got {v!r}")
    return v


def _labels(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not v:
        raise ValueError(f"expected a list of labels, got {v!r}")
    labels = tuple(_text(x) for x in v)
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ValueError(f"duplicate label(s): {', '.join(dup)}")
    return labels


def _coordinate(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"expected a finite number, got {v!r}")
    return float(v)


def _landmarks(v: Any) -> dict[str, tuple[float, ...]]:
    """``{label = [x, y, z]}`` in mm; a 2-D position gets z = 0."""
    if not isinstance(v, dict):
        raise ValueError(f"expected a table of label = [x, y, z], got {v!r}")
    out = {}
    for label, pos in v.items():
        if not label.strip():
            raise ValueError("a landmark needs a non-empty label")
        if not isinstance(pos, list) or len(pos) not in (2, 3):
            raise ValueError(f"landmark {label!r}: expected [x, y, z] in mm, got {pos!r}")
        try:
            xyz = tuple(_coordinate(x) for x in pos)
        except ValueError as err:
            raise ValueError(f"landmark {label!r}: {err}") from None
        out[label] = xyz + (0.0,) * (3 - len(xyz))
    return out


PROBE_SCHEMA: dict[str, Callable[[Any], Any]] = {
    "coordinate_system": _text,
    "coordinate_system_description": _text,
    "landmarks": _landmarks,
    "source_labels": _labels,
    "detector_labels": _labels,
    "manufacturer": _text,
    "model": _text,
}


def check_probe_labels(probe: ProbeConfig, channels: tuple[Any, ...]) -> None:
    """Where every ``[[channel]]`` names its optodes, the labels name each one once."""
    for key, attr in (("source_labels", "source"), ("detector_labels", "detector")):
        labels = getattr(probe, key)
        ids = {getattr(ch, attr) for ch in channels}
        if labels is None or not channels or None in ids:
            continue
        if len(labels) != len(ids):
            raise ConfigError(
                f"{len(labels)} labels for {len(ids)} {attr}s "
                f"(ids {', '.join(str(i) for i in sorted(ids))} in [[channel]])",
                f"probe.{key}",
            )
