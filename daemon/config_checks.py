"""The config's value checkers and the ranges numbers are held to.

Each checker returns the converted value or raises ``ValueError(reason)``; the schema in
:mod:`nirsd.daemon.config` names the key.  Every number has a documented range
(docs/operations.md "Limits"), so a value ``check-config`` accepts is one ``run`` can
use: no overflow at the first sample or epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from nirsd.core.errors import ConfigError

from .endpoints import Endpoints

ENDPOINT_SCHEMES = ("ipc://", "tcp://", "inproc://")


def short_repr(v: Any) -> str:
    """``repr`` cut to one readable line (a hostile value can be megabytes)."""
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def int_value(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"expected an integer, got {v!r}")
    return v


def positive_int(v: Any) -> int:
    v = int_value(v)
    if v <= 0:
        raise ValueError(f"must be a positive integer, got {v}")
    return v


def nonneg_int(v: Any) -> int:
    v = int_value(v)
    if v < 0:
        raise ValueError(f"must be 0 or more, got {v}")
    return v


def number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"expected a number, got {v!r}")
    if not math.isfinite(v):
        raise ValueError(f"must be a finite number, got {v!r}")
    return float(v)


def positive(v: Any) -> float:
    v = number(v)
    if not v > 0:
        raise ValueError(f"must be positive, got {v:g}")
    return v


def nonneg(v: Any) -> float:
    v = number(v)
    if v < 0:
        raise ValueError(f"must be zero or more, got {v:g}")
    return v


def between(low: float, high: float, integer: bool = False, open_low: bool = False):
    """A checker for a number in [low, high] (``open_low``: low itself excluded)."""

    def conv(v: Any) -> float | int:
        v = int_value(v) if integer else number(v)
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
baudrate = between(50, 4_000_000, integer=True)
channels = between(1, MAX_CHANNELS, integer=True)
rate = between(0.001, MAX_RATE_HZ)
window = between(0.0, MAX_WINDOW_S, open_low=True)
span = between(0.0, MAX_SPAN_S, open_low=True)
max_mb = between(0.0, 1_048_576.0, open_low=True)  # 1 TB: the machine's RAM bounds it
wavelength = between(200.0, 2_000.0)
distance = between(0.0, 1_000.0, open_low=True)  # mm
age = between(0.0, 150.0)
counts = between(0.0, 1e15)  # device counts (int64 covers 9e18; float64 is exact to 9e15)
dpf_number = between(0.0, 100.0, open_low=True)
position = between(-1e4, 1e4)  # mm
index = between(0, 4095, integer=True)
repeat = between(1, 10_000, integer=True)
MAX_PROTOCOL_STEPS = 100_000
MAX_LABELS = 64
MAX_LABEL_CHARS = 64


def nonempty_str(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"expected a non-empty string, got {v!r}")
    return v


def boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"expected true or false, got {v!r}")
    return v


CLOCKS = ("fit", "device")


def choice(v: Any, choices: tuple[str, ...]) -> str:
    if v not in choices:
        raise ValueError(f"expected one of {', '.join(choices)}, got {v!r}")
    return v


def table(v: Any) -> dict:
    if not isinstance(v, dict):
        raise ValueError(f"expected a table, got {v!r}")
    return dict(v)


def list_of(
    check: Callable[[Any], Any], min_len: int = 1, max_len: int = 4096
) -> Callable[[Any], tuple]:
    def conv(v: Any) -> tuple:
        if not isinstance(v, list) or len(v) < min_len:
            raise ValueError(f"expected a list of at least {min_len}, got {short_repr(v)}")
        if len(v) > max_len:
            raise ValueError(f"expected a list of at most {max_len}, got {len(v)} items")
        return tuple(check(x) for x in v)

    return conv


def labels(v: Any) -> tuple[str, ...]:
    out = list_of(nonempty_str)(v)
    if len(out) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} labels, got {len(out)}")
    long = [x for x in out if len(x) > MAX_LABEL_CHARS]
    if long:
        raise ValueError(f"a label has at most {MAX_LABEL_CHARS} characters: {long[0][:80]!r}…")
    dup = sorted({x for x in out if out.count(x) > 1})
    if dup:
        raise ValueError(f"duplicate label(s): {', '.join(dup)}")
    return out


def dpf_spec(v: Any) -> Any:
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        return tuple(dpf_number(x) for x in v)
    if isinstance(v, dict):
        return {str(k): dpf_number(x) for k, x in v.items()}
    return dpf_number(v)


def endpoint(v: Any) -> str:
    v = nonempty_str(v)
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
            endpoint(value)
        except ValueError as err:
            raise ConfigError(str(err), key) from None
    if ep.data == ep.control:
        raise ConfigError(f"must differ from {data_key} (both are {ep.data})", control_key)
