"""Configuration: TOML in, frozen dataclasses out, every error naming its key.

``load(path)`` reads a file, ``parse(mapping)`` validates an already-loaded mapping and
``default()`` is the embedded simulated probe used by ``nirsd run`` with no config.

Every number has a documented range (``LIMITS``, docs/operations.md "Limits"), so a value
``check-config`` accepts is one ``run`` can use: no overflow at the first sample or epoch.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nirsd.core.errors import ConfigError

from .endpoints import Endpoints, default_endpoints
from .probe_config import PROBE_SCHEMA, ProbeConfig, check_probe_labels

DEFAULT_LABELS = ("rest", "extension", "flexion")
ENDPOINT_SCHEMES = ("ipc://", "tcp://", "inproc://")


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


# -- value checkers: each returns the converted value or raises ValueError(reason) ----


def _short(v: Any) -> str:
    """``repr`` cut to one readable line (a hostile value can be megabytes)."""
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"expected an integer, got {v!r}")
    return v


def _pos_int(v: Any) -> int:
    v = _int(v)
    if v <= 0:
        raise ValueError(f"must be a positive integer, got {v}")
    return v


def _nonneg_int(v: Any) -> int:
    v = _int(v)
    if v < 0:
        raise ValueError(f"must be 0 or more, got {v}")
    return v


def _num(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"expected a number, got {v!r}")
    if not math.isfinite(v):
        raise ValueError(f"must be a finite number, got {v!r}")
    return float(v)


def _pos(v: Any) -> float:
    v = _num(v)
    if not v > 0:
        raise ValueError(f"must be positive, got {v:g}")
    return v


def _nonneg(v: Any) -> float:
    v = _num(v)
    if v < 0:
        raise ValueError(f"must be zero or more, got {v:g}")
    return v


def _between(low: float, high: float, integer: bool = False, open_low: bool = False):
    """A checker for a number in [low, high] (``open_low``: low itself excluded)."""

    def conv(v: Any) -> float | int:
        v = _int(v) if integer else _num(v)
        if v > high or v < low or (open_low and v == low):
            lo = f"at least {low:g}"
            if open_low:
                lo = "positive" if low == 0 else f"more than {low:g}"
            raise ValueError(f"must be {lo} and at most {high:g}, got {v:g}")
        return v

    conv.limits = (low, high)  # type: ignore[attr-defined]
    return conv


#: the ranges numbers are held to (documented in docs/operations.md "Limits")
MAX_CHANNELS = 4096  # also the largest probe a device may describe (drivers/limits)
MAX_WAVELENGTHS = 16
MAX_RATE_HZ = 10_000.0
MAX_SPAN_S = 86_400.0  # a day: history span, protocol steps
MAX_WINDOW_S = 3_600.0  # baseline windows, status interval, reconnect period
_baudrate = _between(50, 4_000_000, integer=True)
_channels = _between(1, MAX_CHANNELS, integer=True)
_rate = _between(0.001, MAX_RATE_HZ)
_window = _between(0.0, MAX_WINDOW_S, open_low=True)
_span = _between(0.0, MAX_SPAN_S, open_low=True)
_max_mb = _between(0.0, 1_048_576.0, open_low=True)  # 1 TB: the machine's RAM bounds it
_wavelength = _between(200.0, 2_000.0)
_distance = _between(0.0, 1_000.0, open_low=True)  # mm
_age = _between(0.0, 150.0)
_counts = _between(0.0, 1e15)  # device counts (int64 covers 9e18; float64 is exact to 9e15)
_dpf_number = _between(0.0, 100.0, open_low=True)
_position = _between(-1e4, 1e4)  # mm
_index = _between(0, 4095, integer=True)
_repeat = _between(1, 10_000, integer=True)
MAX_PROTOCOL_STEPS = 100_000
MAX_LABELS = 64
MAX_LABEL_CHARS = 64


def _str(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"expected a non-empty string, got {v!r}")
    return v


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"expected true or false, got {v!r}")
    return v


CLOCKS = ("fit", "device")


def _choice(v: Any, choices: tuple[str, ...]) -> str:
    if v not in choices:
        raise ValueError(f"expected one of {', '.join(choices)}, got {v!r}")
    return v


def _table(v: Any) -> dict:
    if not isinstance(v, dict):
        raise ValueError(f"expected a table, got {v!r}")
    return dict(v)


def _list_of(
    check: Callable[[Any], Any], min_len: int = 1, max_len: int = 4096
) -> Callable[[Any], tuple]:
    def conv(v: Any) -> tuple:
        if not isinstance(v, list) or len(v) < min_len:
            raise ValueError(f"expected a list of at least {min_len}, got {_short(v)}")
        if len(v) > max_len:
            raise ValueError(f"expected a list of at most {max_len}, got {len(v)} items")
        return tuple(check(x) for x in v)

    return conv


def _labels(v: Any) -> tuple[str, ...]:
    labels = _list_of(_str)(v)
    if len(labels) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} labels, got {len(labels)}")
    long = [x for x in labels if len(x) > MAX_LABEL_CHARS]
    if long:
        raise ValueError(f"a label has at most {MAX_LABEL_CHARS} characters: {long[0][:80]!r}…")
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ValueError(f"duplicate label(s): {', '.join(dup)}")
    return labels


def _dpf(v: Any) -> Any:
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        return tuple(_dpf_number(x) for x in v)
    if isinstance(v, dict):
        return {str(k): _dpf_number(x) for k, x in v.items()}
    return _dpf_number(v)


def _endpoint(v: Any) -> str:
    v = _str(v)
    if "://" not in v:
        raise ValueError(f"expected a ZeroMQ endpoint like ipc:///run/nirsd/data, got {v!r}")
    if not v.startswith(ENDPOINT_SCHEMES):
        raise ValueError(f"unsupported scheme in {v!r} (use {', '.join(ENDPOINT_SCHEMES)})")
    return v


def check_endpoints(
    ep: Endpoints, data_key: str = "endpoints.data", control_key: str = "endpoints.control"
) -> None:
    """Both endpoints valid and distinct; ConfigError names the key (or flag)."""
    for value, key in ((ep.data, data_key), (ep.control, control_key)):
        try:
            _endpoint(value)
        except ValueError as err:
            raise ConfigError(str(err), key) from None
    if ep.data == ep.control:
        raise ConfigError(f"must differ from {data_key} (both are {ep.data})", control_key)


SCHEMA: dict[str, dict[str, Callable[[Any], Any]]] = {
    "device": {
        "driver": _str,
        "port": _str,
        "baudrate": _baudrate,
        "channels": _channels,
        "rate_hz": _rate,
        "reconnect_s": _window,
        "clock": lambda v: _choice(v, CLOCKS),
        "options": _table,
    },
    "optics": {
        "wavelengths_nm": _list_of(_wavelength, 2, MAX_WAVELENGTHS),
        "distance_mm": _distance,
        "dpf": _dpf,
        "age_years": _age,
        "extinction": _str,
        "saturation_level": _between(0.0, 1e15, open_low=True),
        "light_floor": _counts,
    },
    "baseline": {"seconds": _window},
    "buffer": {"seconds": _span, "max_mb": _max_mb},
    "markers": {"labels": _labels, "baseline_s": _window, "allow_overlap": _bool},
    "status": {"interval_s": _between(0.01, MAX_WINDOW_S)},
    "endpoints": {"data": _endpoint, "control": _endpoint},
    "probe": PROBE_SCHEMA,
    "security": {
        "curve": _bool,
        "server_secret_key_file": _str,
        "allowed_clients": _list_of(_str, 0),
        "control_clients": _list_of(_str, 0),
        "allow_plain_tcp": _bool,
    },
}
CHANNEL_SCHEMA: dict[str, Callable[[Any], Any]] = {
    "index": _index,
    "label": _str,
    "distance_mm": _distance,
    "dpf": _dpf,
    "source": _index,
    "detector": _index,
    "source_pos_mm": _list_of(_position, 2, 3),
    "detector_pos_mm": _list_of(_position, 2, 3),
    "att_mm": _nonneg,
}
SECTION_TYPES = {
    "device": DeviceConfig,
    "optics": OpticsConfig,
    "baseline": BaselineConfig,
    "buffer": BufferConfig,
    "markers": MarkersConfig,
    "status": StatusConfig,
    "security": SecurityConfig,
    "probe": ProbeConfig,
}
PORTLESS_DRIVERS = {"simulated", "replay"}


def _section(name: str, raw: Any, schema: dict[str, Callable[[Any], Any]]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a table, got {raw!r}", name)
    out = {}
    for key, value in raw.items():
        full = f"{name}.{key}"
        if key not in schema:
            raise ConfigError(f"unknown key (known: {', '.join(sorted(schema))})", full)
        try:
            out[key] = schema[key](value)
        except ValueError as err:
            raise ConfigError(str(err), full) from None
    return out


def _protocols(raw: Any) -> dict[str, tuple[tuple[str, float], ...]]:
    """``[protocol.NAME] steps = [["rest", 60], ["extension", 15]], repeat = 2``."""
    out = {}
    for name, body in _table(raw).items():
        key = f"protocol.{name}"
        body = _section(key, body, {"steps": lambda v: v, "repeat": _repeat})
        steps = body.get("steps")
        if not isinstance(steps, list) or not steps:
            raise ConfigError("expected a list of [label, seconds] steps", f"{key}.steps")
        parsed = []
        for i, step in enumerate(steps):
            if not isinstance(step, list) or len(step) != 2 or not isinstance(step[0], str):
                raise ConfigError(
                    f"step {i} must be [label, seconds], got {step!r}", f"{key}.steps"
                )
            try:
                parsed.append((step[0], _span(step[1])))
            except ValueError as err:
                raise ConfigError(f"step {i}: {err}", f"{key}.steps") from None
        if len(parsed) * body.get("repeat", 1) > MAX_PROTOCOL_STEPS:
            raise ConfigError(
                f"{len(parsed)} steps repeated {body.get('repeat', 1)} times exceed "
                f"{MAX_PROTOCOL_STEPS} steps",
                key,
            )
        out[name] = tuple(parsed) * body.get("repeat", 1)
    return out


def parse(data: Mapping[str, Any], source: str = "<mapping>") -> Config:
    """Validate a loaded TOML mapping into a Config; raise ConfigError naming the key."""
    known = set(SCHEMA) | {"channel", "protocol"}
    for key in data:
        if key not in known:
            raise ConfigError(f"unknown section (known: {', '.join(sorted(known))})", key)
    kwargs: dict[str, Any] = {}
    for name, cls in SECTION_TYPES.items():
        if name in data:
            kwargs[name] = cls(**_section(name, data[name], SCHEMA[name]))
    if "endpoints" in data:
        kwargs["endpoints"] = Endpoints(
            **{
                **default_endpoints().__dict__,
                **_section("endpoints", data["endpoints"], SCHEMA["endpoints"]),
            }
        )
    channels = data.get("channel", [])
    if not isinstance(channels, list):
        raise ConfigError("use [[channel]] tables", "channel")
    seen = set()
    chans = []
    for i, raw in enumerate(channels):
        body = _section(f"channel[{i}]", raw, CHANNEL_SCHEMA)
        if "index" not in body:
            raise ConfigError("required", f"channel[{i}].index")
        if body["index"] in seen:
            raise ConfigError(f"channel {body['index']} is described twice", f"channel[{i}].index")
        seen.add(body["index"])
        chans.append(ChannelConfig(**body))
    kwargs["channels"] = tuple(chans)
    if "protocol" in data:
        kwargs["protocols"] = _protocols(data["protocol"])
    cfg = Config(source=source, **kwargs)
    _cross_check(cfg)
    return cfg


def check_transport(cfg: Config) -> None:
    """Network endpoints need CURVE (or ``allow_plain_tcp``); ConfigError names the key."""
    sec = cfg.security
    for name in ("data", "control"):
        endpoint = getattr(cfg.endpoints, name)
        if endpoint.startswith(("ipc://", "inproc://")) or sec.allow_plain_tcp:
            continue
        if not sec.curve:
            raise ConfigError(
                f"{endpoint} is reachable from the network: set [security] "
                "curve = true (or allow_plain_tcp = true to accept anyone)",
                f"endpoints.{name}",
            )
    if sec.curve:
        if not sec.server_secret_key_file:
            raise ConfigError(
                "required when curve = true (create it with `nirsd keys`)",
                "security.server_secret_key_file",
            )
        if not sec.allowed_clients and not sec.control_clients:
            raise ConfigError(
                "required when curve = true: the public keys that may connect",
                "security.allowed_clients",
            )


def _cross_check(cfg: Config) -> None:
    check_endpoints(cfg.endpoints)
    check_probe_labels(cfg.probe, cfg.channels)
    check_transport(cfg)
    dev = cfg.device
    if dev.driver not in PORTLESS_DRIVERS and not dev.port:
        raise ConfigError(f"required for driver {dev.driver!r}", "device.port")
    labels = set(cfg.markers.labels)
    for name, steps in cfg.protocols.items():
        for label, _ in steps:
            if label not in labels:
                raise ConfigError(
                    f"label {label!r} is not in markers.labels ({', '.join(cfg.markers.labels)})",
                    f"protocol.{name}.steps",
                )
    for ch in cfg.channels:
        if dev.driver == "simulated" and ch.index >= dev.channels:
            raise ConfigError(
                f"channel {ch.index} does not exist (device.channels = {dev.channels})",
                "channel.index",
            )


def load(path: str | Path) -> Config:
    """Read and validate a TOML config file."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from None
    except RecursionError:  # tomllib recurses per nesting level
        raise ConfigError(f"{path}: tables or arrays are nested too deeply") from None
    try:
        return parse(data, source=str(path))
    except RecursionError:
        raise ConfigError(f"{path}: values are nested too deeply") from None


def default() -> Config:
    """The embedded default: a simulated 8-channel, 2-wavelength paraspinal probe."""
    return Config()
