"""The daemon's config for replaying a SNIRF recording (``nirsd run --replay``).

The recording describes the probe: its channels (labels, source/detector, positions,
distances) become ``[[channel]]`` entries, its stim labels join ``markers.labels``
(so the replayed stim EVENTs open and close epochs), overlapping epochs are allowed (real
recordings have them), and the device clock is trusted (``device.clock = "device"``), so
a replay at any speed keeps the recording's own time base.  Everything else (baseline,
DPF, endpoints, buffer, …) comes from the base config.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from nirsd.drivers.snirf_source import Recording, read_recording

from .config import ChannelConfig, Config, DeviceConfig, _cross_check


def channel_configs(rec: Recording) -> tuple[ChannelConfig, ...]:
    return tuple(
        ChannelConfig(
            index=ch["index"],
            label=ch["label"],
            distance_mm=ch["distance_mm"],
            source=ch["source"],
            detector=ch["detector"],
            source_pos_mm=tuple(ch["source_pos_mm"]),
            detector_pos_mm=tuple(ch["detector_pos_mm"]),
        )
        for ch in rec.channels
    )


def labels_for(rec: Recording, base: Config) -> tuple[str, ...]:
    """The recording's stim labels first, then the configured ones not among them."""
    return tuple(dict.fromkeys((*rec.labels, *base.markers.labels)))


def replay_config(
    base: Config, path: str | Path, speed: float = 1.0, loop: bool = False
) -> tuple[Config, Recording]:
    """``base`` with the device replaced by the recording at ``path`` (read here, so a bad
    file fails before anything starts) and the probe described from it."""
    rec = read_recording(path)
    device = DeviceConfig(
        driver="replay",
        channels=rec.n_channels,
        rate_hz=rec.rate_hz,
        clock="device",
        reconnect_s=base.device.reconnect_s,
        options={"file": str(Path(path).resolve()), "speed": float(speed), "loop": bool(loop)},
    )
    cfg = replace(
        base,
        device=device,
        optics=replace(
            base.optics, wavelengths_nm=tuple(float(round(w)) for w in rec.wavelengths_nm)
        ),
        channels=channel_configs(rec),
        markers=replace(base.markers, labels=labels_for(rec, base), allow_overlap=True),
        source=f"replay of {path}",
    )
    _cross_check(cfg)
    return cfg, rec


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return (
            "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items()) + " }"
        )

    return json.dumps(value)  # strings: JSON escapes are valid TOML basic strings


def config_toml(rec: Recording, port: str, base: Config) -> str:
    """A config for a separate ``nirsd run`` reading the replay at ``port``."""
    lines = [
        f"# nirsd replay of {rec.path.name}: {rec.n_samples} samples at {rec.rate_hz:.6g} Hz,",
        f"# amplitudes x {rec.gain:g} as counts; stims {', '.join(rec.labels) or 'none'}",
        "[device]",
        'driver = "nirsb"',
        f"port = {_toml(port)}",
        'clock = "device"',
        "reconnect_s = 0.1",
        "[optics]",
        f"wavelengths_nm = {_toml([float(round(w)) for w in rec.wavelengths_nm])}",
        f"dpf = {_toml(base.optics.dpf)}",
        "[baseline]",
        f"seconds = {_toml(float(base.baseline.seconds))}",
        "[markers]",
        f"labels = {_toml(list(labels_for(rec, base)))}",
        f"baseline_s = {_toml(float(base.markers.baseline_s))}",
        "allow_overlap = true",
    ]
    for ch in rec.channels:
        lines += [
            "[[channel]]",
            f"index = {ch['index']}",
            f"label = {_toml(ch['label'])}",
            f"distance_mm = {_toml(float(ch['distance_mm']))}",
            f"source = {ch['source']}",
            f"detector = {ch['detector']}",
            f"source_pos_mm = {_toml(ch['source_pos_mm'])}",
            f"detector_pos_mm = {_toml(ch['detector_pos_mm'])}",
        ]
    return "\n".join(lines) + "\n"
