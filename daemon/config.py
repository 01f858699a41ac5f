"""Configuration: TOML in, frozen dataclasses out, every error naming its key.

``load(path)`` reads a file, ``parse(mapping)`` validates an already-loaded mapping and
``default()`` is the embedded simulated probe used by ``nirsd run`` with no config.

The section types are in :mod:`~nirsd.daemon.config_types`, the value checkers and
limits in :mod:`~nirsd.daemon.config_checks` (both re-exported here); this module holds
the schema, the cross-section checks and the loading.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nirsd.core.errors import ConfigError

from . import config_checks as check
from .config_checks import (  # noqa: F401  (re-exported: the names nirsd.daemon.config had)
    CLOCKS,
    ENDPOINT_SCHEMES,
    MAX_CHANNELS,
    MAX_LABEL_CHARS,
    MAX_LABELS,
    MAX_PROTOCOL_STEPS,
    MAX_RATE_HZ,
    MAX_SPAN_S,
    MAX_WAVELENGTHS,
    MAX_WINDOW_S,
    check_endpoints,
)
from .config_types import (  # noqa: F401  (re-exported)
    DEFAULT_LABELS,
    BaselineConfig,
    BufferConfig,
    ChannelConfig,
    Config,
    DeviceConfig,
    MarkersConfig,
    OpticsConfig,
    SecurityConfig,
    StatusConfig,
)
from .endpoints import Endpoints, default_endpoints
from .probe_config import PROBE_SCHEMA, ProbeConfig, check_probe_labels

SCHEMA: dict[str, dict[str, Callable[[Any], Any]]] = {
    "device": {
        "driver": check.nonempty_str,
        "port": check.nonempty_str,
        "baudrate": check.baudrate,
        "channels": check.channels,
        "rate_hz": check.rate,
        "reconnect_s": check.window,
        "clock": lambda v: check.choice(v, CLOCKS),
        "options": check.table,
    },
    "optics": {
        "wavelengths_nm": check.list_of(check.wavelength, 2, MAX_WAVELENGTHS),
        "distance_mm": check.distance,
        "dpf": check.dpf_spec,
        "age_years": check.age,
        "extinction": check.nonempty_str,
        "saturation_level": check.between(0.0, 1e15, open_low=True),
        "light_floor": check.counts,
    },
    "baseline": {"seconds": check.window},
    "buffer": {"seconds": check.span, "max_mb": check.max_mb},
    "markers": {"labels": check.labels, "baseline_s": check.window, "allow_overlap": check.boolean},
    "status": {"interval_s": check.between(0.01, MAX_WINDOW_S)},
    "endpoints": {"data": check.endpoint, "control": check.endpoint},
    "probe": PROBE_SCHEMA,
    "security": {
        "curve": check.boolean,
        "server_secret_key_file": check.nonempty_str,
        "allowed_clients": check.list_of(check.nonempty_str, 0),
        "control_clients": check.list_of(check.nonempty_str, 0),
        "allow_plain_tcp": check.boolean,
    },
}
CHANNEL_SCHEMA: dict[str, Callable[[Any], Any]] = {
    "index": check.index,
    "label": check.nonempty_str,
    "distance_mm": check.distance,
    "dpf": check.dpf_spec,
    "source": check.index,
    "detector": check.index,
    "source_pos_mm": check.list_of(check.position, 2, 3),
    "detector_pos_mm": check.list_of(check.position, 2, 3),
    "att_mm": check.nonneg,
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
    for name, body in check.table(raw).items():
        key = f"protocol.{name}"
        body = _section(key, body, {"steps": lambda v: v, "repeat": check.repeat})
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
                parsed.append((step[0], check.span(step[1])))
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
