"""The probe as the converter and the clients see it: channels, wavelengths, geometry.

Built from what the device says about itself (NIRSB INFO) where it can, and from the
config otherwise; per-channel ``[[channel]]`` entries override the optics defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nirsd.core.errors import ConfigError
from nirsd.drivers.base import Info

from .config import Config
from .dpf import resolve_dpf


@dataclass(frozen=True)
class Probe:
    info: Info
    labels: tuple[str, ...]
    distances_cm: np.ndarray  # (n_ch,)
    dpf: np.ndarray  # (n_ch, n_wl)
    channels: tuple[dict[str, Any], ...]
    #: multi-distance groups for tissue saturation: (source id, channel indices, cm)
    srs_groups: tuple[tuple[int, tuple[int, ...], tuple[float, ...]], ...] = ()

    @property
    def n_channels(self) -> int:
        return self.info.n_channels

    @property
    def wavelengths_nm(self) -> tuple[float, ...]:
        return self.info.wavelengths_nm

    def describe(self) -> dict[str, Any]:
        """The probe as published in ``info`` replies (plain types only)."""
        return {
            "n_channels": self.n_channels,
            "wavelengths_nm": list(self.wavelengths_nm),
            "rate_hz": self.info.rate_hz,
            "device_id": self.info.device_id,
            "channels": list(self.channels),
            "tsi_groups": [
                {"source": src, "channels": list(idx), "distances_mm": [d * 10 for d in dist]}
                for src, idx, dist in self.srs_groups
            ],
        }


def build_probe(cfg: Config, info: Info) -> Probe:
    """Combine the device's self-description with the configured optics and channels."""
    optics = cfg.optics
    n_ch, wl = info.n_channels, info.wavelengths_nm
    base_dpf = resolve_dpf(optics.dpf, wl, optics.age_years)
    distances = np.full(n_ch, optics.distance_mm / 10.0)
    dpf = np.tile(base_dpf, (n_ch, 1))
    labels = [f"ch{i}" for i in range(n_ch)]
    extra: list[dict[str, Any]] = [{} for _ in range(n_ch)]
    for ch in cfg.channels:
        if ch.index >= n_ch:
            raise ConfigError(
                f"channel {ch.index} does not exist (the device has {n_ch})", "channel.index"
            )
        if ch.label:
            labels[ch.index] = ch.label
        if ch.distance_mm is not None:
            distances[ch.index] = ch.distance_mm / 10.0
        if ch.dpf is not None:
            dpf[ch.index] = resolve_dpf(ch.dpf, wl, optics.age_years)
        for key in ("source", "detector", "source_pos_mm", "detector_pos_mm", "att_mm"):
            value = getattr(ch, key)
            if value is not None:
                extra[ch.index][key] = list(value) if isinstance(value, tuple) else value
    channels = tuple(
        {
            "index": i,
            "label": labels[i],
            "distance_mm": float(distances[i] * 10),
            "dpf": dpf[i].tolist(),
            **extra[i],
        }
        for i in range(n_ch)
    )
    return Probe(info, tuple(labels), distances, dpf, channels, srs_groups(cfg, distances))


def srs_groups(
    cfg: Config, distances_cm: np.ndarray
) -> tuple[tuple[int, tuple[int, ...], tuple[float, ...]], ...]:
    """Channels that share a source and see it at ≥ 2 distances form an SRS group."""
    by_source: dict[int, list[int]] = {}
    for ch in cfg.channels:
        if ch.source is not None and ch.index < len(distances_cm):
            by_source.setdefault(ch.source, []).append(ch.index)
    groups = []
    for source, idx in sorted(by_source.items()):
        idx = sorted(idx, key=lambda i: distances_cm[i])
        dist = tuple(float(distances_cm[i]) for i in idx)
        if len(set(dist)) >= 2:
            groups.append((source, tuple(idx), dist))
    return tuple(groups)
