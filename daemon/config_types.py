"""The config's types: one frozen dataclass per section, with the defaults.

``Config()`` is the embedded simulated probe ``nirsd run`` uses with no config file;
:mod:`nirsd.daemon.config` reads and validates TOML into these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .endpoints import Endpoints, default_endpoints
from .probe_config import ProbeConfig

DEFAULT_LABELS = ("rest", "extension", "flexion")


@dataclass(frozen=True)
class DeviceConfig:
    driver: str = "simulated"
    port: str | None = None
    baudrate: int = 115200
    channels: int = 8  # simulated probe, or drivers that cannot say
    rate_hz: float = 10.0  # simulated probe, or drivers that cannot say
    reconnect_s: float = 0.5  # how often a missing port is retried
    clock: str = "fit"  # "device": host time = device time + the first offset (a replay)
    options: Mapping[str, Any] = field(default_factory=dict)  # driver-specific table


@dataclass(frozen=True)
class OpticsConfig:
    wavelengths_nm: tuple[float, ...] = (760.0, 850.0)
    distance_mm: float = 30.0
    dpf: Any = 6.0  # number, list, {wavelength: dpf} table or preset name
    age_years: float | None = None
    extinction: str = "prahl"
    saturation_level: float | None = None  # counts at or above which light is saturated
    light_floor: float = 0.0  # counts at or below which light is too little


@dataclass(frozen=True)
class ChannelConfig:
    index: int
    label: str | None = None
    distance_mm: float | None = None
    dpf: Any = None
    source: int | None = None
    detector: int | None = None
    source_pos_mm: tuple[float, ...] | None = None
    detector_pos_mm: tuple[float, ...] | None = None
    att_mm: float | None = None  # adipose tissue thickness under the channel


@dataclass(frozen=True)
class BaselineConfig:
    seconds: float = 10.0


@dataclass(frozen=True)
class BufferConfig:
    seconds: float = 600.0  # history span kept in memory
    max_mb: float = 512.0  # cap on the ring's memory, whatever the span


@dataclass(frozen=True)
class MarkersConfig:
    labels: tuple[str, ...] = DEFAULT_LABELS
    baseline_s: float = 10.0  # pre-epoch window for epoch summaries
    allow_overlap: bool = False


@dataclass(frozen=True)
class StatusConfig:
    interval_s: float = 1.0


@dataclass(frozen=True)
class SecurityConfig:
    """Who may connect over the network (see docs/security.md and daemon/security.py)."""

    curve: bool = False  # CURVE on tcp:// (network) endpoints
    server_secret_key_file: str | None = None  # zcert NAME.key_secret from `nirsd keys`
    allowed_clients: tuple[str, ...] = ()  # Z85 public keys, .key files or directories
    control_clients: tuple[str, ...] | None = None  # control allow list (default: allowed)
    allow_plain_tcp: bool = False  # tcp:// without CURVE: anyone on the network


@dataclass(frozen=True)
class Config:
    device: DeviceConfig = field(default_factory=DeviceConfig)
    optics: OpticsConfig = field(default_factory=OpticsConfig)
    channels: tuple[ChannelConfig, ...] = ()
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    buffer: BufferConfig = field(default_factory=BufferConfig)
    markers: MarkersConfig = field(default_factory=MarkersConfig)
    status: StatusConfig = field(default_factory=StatusConfig)
    endpoints: Endpoints = field(default_factory=default_endpoints)
    protocols: Mapping[str, tuple[tuple[str, float], ...]] = field(default_factory=dict)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    source: str = "<embedded default>"
