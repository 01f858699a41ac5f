"""Computed values over text: tissue oximeters that print ``KEY=VALUE`` fields per line.

Commercial tissue oximeters (Nonin EQUANOX 7600, and others) print what they computed,
regional saturation in %, about once per second on RS-232, not light intensities.  A
line is a run of ``KEY=VALUE`` fields separated by spaces and/or ``|``; ``---`` (or any
configured token) means the device has no value (a sensor off, a signal too poor) and
becomes NaN.  The driver takes the configured keys, in order, as the columns of a
:class:`~nirsd.drivers.base.Derived` frame::

    Ch1=072 Ch2=068 Ch3=--- Ch4=---           (the default layout: rSO2 of channels 1-4)
    Ch1=072 Ch2=068 Ch3=--- Ch4=---|rSO2=070|HbI=11.9   (extra fields are ignored)

The Nonin "Nonin 1" serial format is the default layout; its exact field list could not
be checked against the vendor's manual (see docs/drivers.md), so every part of it is a
``[device.options]`` setting: ``fields`` (keys, matched case-insensitively), ``names``
and ``units`` (per field), ``channels`` (the channel label of each field), ``missing``
(tokens meaning no value).  A line lacking a configured key, or whose value is neither a
number nor a missing token, is skipped and counted (``lines_skipped``), as are banners
and the first, possibly cut, line.  The device has no clock: samples are counted at
``device.rate_hz``.
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar

import numpy as np

from nirsd.core.errors import ConfigError

from .base import Derived, DerivedLayout, Driver, Frame, Info, Parser
from .lines import LineParser

#: the Nonin "Nonin 1" layout as DEVICES.md section 4 describes it
NONIN1_FIELDS = ("Ch1", "Ch2", "Ch3", "Ch4")
MISSING = ("---",)
_SPLIT = re.compile(rb"[ \t|]+")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
RESERVED = ("seq", "t", "t_dev", "epoch", "quality")


class ComputedValuesParser(LineParser):
    """``KEY=VALUE`` lines -> :class:`Derived` frames (one per line, the keys' values)."""

    def __init__(
        self, fields: tuple[str, ...] = NONIN1_FIELDS, missing: tuple[str, ...] = MISSING
    ) -> None:
        super().__init__()
        self.fields = tuple(f.lower().encode() for f in fields)
        self.missing = frozenset(m.encode() for m in missing)

    def _parse_line(self, line: bytes) -> Frame | None:
        found: dict[bytes, bytes] = {}
        for token in _SPLIT.split(line.strip()):
            key, eq, value = token.partition(b"=")
            if not eq or not key or not value:
                return None  # not a field: banner, garbage or a cut line
            found.setdefault(key.lower(), value)
        values = np.empty(len(self.fields))
        for i, key in enumerate(self.fields):
            text = found.get(key)
            if text is None:
                return None
            if text in self.missing:
                values[i] = math.nan
                continue
            try:
                values[i] = float(text)
            except ValueError:
                return None
            if not math.isfinite(values[i]):
                return None
        return Derived(None, values)


def _strings(opts: dict[str, Any], key: str, default: tuple[str, ...], n: int | None) -> tuple:
    value = opts.get(key, list(default))
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError("must be a list of non-empty strings", f"device.options.{key}")
    if n is not None and len(value) != n:
        raise ConfigError(
            f"needs one entry per field ({n}), got {len(value)}", f"device.options.{key}"
        )
    return tuple(value)


OPTIONS = ("fields", "names", "units", "channels", "missing")


class NoninDriver(Driver):
    """A tissue oximeter printing computed values (default: the Nonin 1 layout)."""

    name: ClassVar[str] = "nonin"
    self_describing: ClassVar[bool] = False

    def validate(self) -> None:
        opts = self.settings.options
        for key in opts:
            if key not in OPTIONS:
                raise ConfigError(
                    f"unknown option (known: {', '.join(OPTIONS)})", f"device.options.{key}"
                )
        self.fields = _strings(opts, "fields", NONIN1_FIELDS, None)
        n = len(self.fields)
        lowered = [f.lower() for f in self.fields]
        if not n or len(set(lowered)) != n:
            raise ConfigError("needs distinct keys", "device.options.fields")
        self.names = _strings(opts, "names", ("rso2",) * n, n)
        for name in self.names:
            if not _NAME.fullmatch(name) or name in RESERVED:
                raise ConfigError(
                    f"{name!r}: names are lower-case identifiers, not {', '.join(RESERVED)}",
                    "device.options.names",
                )
        self.units = _strings(opts, "units", ("%",) * n, n)
        default_ch = tuple(str(i + 1) for i in range(n))
        self.channels = _strings(opts, "channels", default_ch, n)
        self.missing = _strings(opts, "missing", MISSING, None)
        if not self.settings.rate_hz:
            raise ConfigError("needed: the device has no clock (Nonin: 1.0)", "device.rate_hz")

    def make_parser(self) -> Parser:
        return ComputedValuesParser(self.fields, self.missing)

    def derived_layout(self) -> DerivedLayout:
        return DerivedLayout(self.names, self.units, self.channels)

    def default_info(self) -> Info | None:
        return None  # no intensities: nothing for the Beer-Lambert pipeline
