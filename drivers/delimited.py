"""Delimited text: one sample per line, for home-built boards and Arduino sketches.

Configured in ``[device.options]``::

    delimiter = ","            # ",", ";", "\\t", " " or "whitespace" (runs of spaces/tabs)
    header = true              # the board prints a header line (skipped, kept as .header)
    columns = ["time", "ch0:760", "ch0:850", {channel = 1, wavelength = 760}, "ch1:850"]
    time_unit = "ms"           # unit of the "time" column: "s", "ms" or "us"
    time_wrap = 4294967296     # optional: the time column wraps at this value (its unit)

Every column is mapped to ``"chN:WAVELENGTH"`` (or the table form), ``"time"`` or
``"ignore"``.  Channels must be numbered 0..N-1 and each must have every wavelength of
``optics.wavelengths_nm``.  Without a time column the daemon counts samples at
``device.rate_hz``.  A line is a sample only when it has exactly as many fields as there
are columns and every mapped field is a finite number, with a time (if any) from 0 to
1e10 s (``limits.MAX_DEVICE_TIME_S``); anything else is skipped and counted.  Text has
no checksum: a corrupted digit is not detectable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from nirsd.core.errors import ConfigError

from .base import Driver, Frame, Info, Sample, SampleBlock
from .limits import MAX_DEVICE_TIME_S
from .lines import LineParser, parse_int_tokens, parse_numbers

TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
DELIMITERS = {",": ",", ";": ";", "\t": "\t", "tab": "\t", " ": " ", "whitespace": None}
OPTIONS = ("delimiter", "header", "columns", "time_unit", "time_wrap")
_NUM = rb"[-+]?\d{1,15}(?:\.\d{1,15})?(?:[eE][-+]?\d{1,3})?"
_INT = rb"[-+]?+[0-9]++"  # digit count checked by parse_int_tokens
_COL_RE = re.compile(r"ch(\d+):(\d+(?:\.\d+)?)")


@dataclass(frozen=True)
class Layout:
    """Parsed column mapping: which column holds what."""

    n_columns: int
    n_channels: int
    wavelengths_nm: tuple[float, ...]
    data_columns: tuple[int, ...]  # column index of each value, channel-major order
    time_column: int | None
    delimiter: str | None  # None: whitespace
    header: bool
    time_scale: float  # seconds per time unit
    time_wrap_s: float | None


def _column(i: int, entry: Any) -> tuple[int, float] | str:
    key = "device.options.columns"
    if isinstance(entry, str):
        if entry in ("time", "ignore"):
            return entry
        m = _COL_RE.fullmatch(entry.strip())
        if not m:
            raise ConfigError(
                f"column {i}: {entry!r} is not 'chN:WAVELENGTH', 'time' or 'ignore'", key
            )
        return int(m.group(1)), float(m.group(2))
    if isinstance(entry, dict):
        extra = set(entry) - {"channel", "wavelength"}
        ch, wl = entry.get("channel"), entry.get("wavelength")
        if (
            extra
            or not isinstance(ch, int)
            or isinstance(ch, bool)
            or ch < 0
            or not isinstance(wl, (int, float))
            or isinstance(wl, bool)
            or wl <= 0
        ):
            raise ConfigError(
                f"column {i}: needs channel (integer >= 0) and wavelength (nm > 0), nothing else",
                key,
            )
        return ch, float(wl)
    raise ConfigError(f"column {i}: must be a string or a table", key)


def parse_layout(options: dict[str, Any], wavelengths_nm: tuple[float, ...]) -> Layout:
    """Validate ``[device.options]`` for the csv driver; ConfigError names the key."""
    for key in options:
        if key not in OPTIONS:
            raise ConfigError(
                f"unknown option (known: {', '.join(OPTIONS)})", f"device.options.{key}"
            )
    delim, header, unit, wrap = _format_options(options)
    columns: Any = options.get("columns")  # a list once _map_columns accepts it
    time_col, mapped = _map_columns(columns)
    n_channels, order = _channel_major_order(mapped, wavelengths_nm)
    if wrap is not None and time_col is None:
        raise ConfigError("time_wrap needs a 'time' column", "device.options.time_wrap")
    scale = TIME_UNITS[unit]
    return Layout(
        len(columns),
        n_channels,
        tuple(float(w) for w in wavelengths_nm),
        order,
        time_col,
        DELIMITERS[delim],
        header,
        scale,
        None if wrap is None else float(wrap) * scale,
    )


def _format_options(options: dict[str, Any]) -> tuple[str, bool, str, Any]:
    """(delimiter, header, time_unit, time_wrap) as given, each checked."""
    delim = options.get("delimiter", ",")
    if not isinstance(delim, str) or delim not in DELIMITERS:
        raise ConfigError(
            f"must be one of {', '.join(repr(d) for d in DELIMITERS)}", "device.options.delimiter"
        )
    header = options.get("header", False)
    if not isinstance(header, bool):
        raise ConfigError("must be true or false", "device.options.header")
    unit = options.get("time_unit", "ms")
    if unit not in TIME_UNITS:
        raise ConfigError(f"must be one of {', '.join(TIME_UNITS)}", "device.options.time_unit")
    wrap = options.get("time_wrap")
    if wrap is not None and (
        isinstance(wrap, bool) or not isinstance(wrap, (int, float)) or wrap <= 0
    ):
        raise ConfigError("must be a positive number (in time_unit)", "device.options.time_wrap")
    return delim, header, unit, wrap


def _map_columns(columns: Any) -> tuple[int | None, dict[tuple[int, float], int]]:
    """The time column's index (or None) and the column of each (channel, wavelength)."""
    key = "device.options.columns"
    if not isinstance(columns, list) or not columns:
        raise ConfigError("required: a list mapping each column", key)
    time_col, mapped = None, {}
    for i, entry in enumerate(columns):
        what = _column(i, entry)
        if what == "time":
            if time_col is not None:
                raise ConfigError("more than one time column", key)
            time_col = i
        elif isinstance(what, tuple):
            if what in mapped:
                raise ConfigError(f"channel {what[0]} at {what[1]:g} nm is mapped twice", key)
            mapped[what] = i
    if not mapped:
        raise ConfigError("no column is mapped to a channel", key)
    return time_col, mapped


def _channel_major_order(
    mapped: dict[tuple[int, float], int], wavelengths_nm: tuple[float, ...]
) -> tuple[int, tuple[int, ...]]:
    """(number of channels, the column of each channel × wavelength in channel-major
    order); every channel 0..N-1 must have every configured wavelength."""
    key = "device.options.columns"
    wanted = sorted(set(wavelengths_nm))
    channels = sorted({ch for ch, _ in mapped})
    if channels != list(range(len(channels))):
        raise ConfigError(f"channels must be numbered 0..N-1, got {channels}", key)
    for ch in channels:
        have = sorted(wl for c, wl in mapped if c == ch)
        if have != wanted:
            raise ConfigError(
                f"channel {ch} has wavelengths {have}; every channel needs "
                f"optics.wavelengths_nm = {list(wavelengths_nm)}",
                key,
            )
    return len(channels), tuple(mapped[(ch, float(wl))] for ch in channels for wl in wavelengths_nm)


def _all_numbers(fields: list[str]) -> bool:
    try:
        for f in fields:
            float(f)
    except ValueError:
        return False
    return bool(fields)


class DelimitedParser(LineParser):
    """Incremental delimited-text decoder for one :class:`Layout`; never raises on input."""

    def __init__(self, layout: Layout, synced: bool = False) -> None:
        self.layout = layout
        sep = layout.delimiter
        if sep is None:
            self.fast_line = re.compile(
                rb"[ \t]*" + _NUM + (rb"[ \t]+" + _NUM) * (layout.n_columns - 1) + rb"[ \t]*"
            )
            self._to_space = bytes.maketrans(b"\t\r\n", b"   ")
            ints = rb"[ \t]*+" + _INT + (rb"[ \t]++" + _INT) * (layout.n_columns - 1) + rb"[ \t]*+"
        else:
            s = re.escape(sep.encode())
            self.fast_line = re.compile(_NUM + (s + _NUM) * (layout.n_columns - 1))
            self._to_space = bytes.maketrans(sep.encode() + b"\r\n", b"   ")
            ints = _INT + (s + _INT) * (layout.n_columns - 1)
        self._int_body = re.compile(b"(?:" + ints + rb"\r?+\n)++")
        super().__init__(synced)
        self._cols = np.asarray(layout.data_columns)
        self._shape = (layout.n_channels, len(layout.wavelengths_nm))
        self.header: list[str] | None = None
        self._want_header = layout.header
        self.column_mismatch = 0  # number-only lines with a column count other than mapped
        self.mismatch_columns = 0  # the column count of the latest such line

    def _clean_block(self, body: bytes, n: int) -> tuple[SampleBlock, np.ndarray] | None:
        """Integer-only chunks (ADC counts) are checked by a faster pattern."""
        if b"." in body or b"e" in body or b"E" in body:
            return super()._clean_block(body, n)
        if not self._int_body.fullmatch(body):
            return None
        return self._parse_block(body, n)

    def _parse_block(self, body: bytes, n: int) -> tuple[SampleBlock, np.ndarray] | None:
        lay = self.layout
        text = body.translate(self._to_space)
        if b"." in text or b"e" in text or b"E" in text:
            values = parse_numbers(text, n * lay.n_columns)
        else:  # integers only (ADC counts): the exact place-value path
            values = parse_int_tokens(text, n * lay.n_columns)
        if values is None:
            return None
        v = values.reshape(n, lay.n_columns)
        data = v[:, self._cols]
        ok = np.isfinite(data).all(axis=1)
        if lay.time_column is None:
            t_dev = None
        else:
            t_dev = v[:, lay.time_column] * lay.time_scale
            ok &= np.isfinite(t_dev) & (t_dev >= 0) & (t_dev <= MAX_DEVICE_TIME_S)
        block = SampleBlock(None, t_dev, np.zeros(n, np.uint8), data.reshape(n, *self._shape))
        return block, ok

    def _parse_line(self, line: bytes) -> Frame | None:
        lay = self.layout
        text = line.decode("ascii", "replace")
        fields = text.split() if lay.delimiter is None else text.split(lay.delimiter)
        if len(fields) != lay.n_columns:
            if _all_numbers(fields):
                self.column_mismatch += 1
                self.mismatch_columns = len(fields)
            self._maybe_header(fields)
            return None
        try:
            data = np.array([float(fields[i]) for i in lay.data_columns])
            t = None if lay.time_column is None else float(fields[lay.time_column])
        except ValueError:
            self._maybe_header(fields)
            return None
        if not np.isfinite(data).all() or (
            t is not None and not 0 <= t * lay.time_scale <= MAX_DEVICE_TIME_S
        ):
            return None
        return Sample(None, None if t is None else t * lay.time_scale, 0, data.reshape(self._shape))

    def no_frame_hint(self) -> str | None:
        """Why lines are not samples, when it is clear: the column count is wrong."""
        if not self.column_mismatch:
            return None
        return (
            f"lines have {self.mismatch_columns} columns, config maps "
            f"{self.layout.n_columns} (device.options.columns)"
        )

    def _maybe_header(self, fields: list[str]) -> None:
        if self._want_header and self.header is None and len(fields) == self.layout.n_columns:
            self.header = [f.strip() for f in fields]
            self.counters.lines_skipped -= 1  # the expected header is not an error
        return None


class DelimitedDriver(Driver):
    """Delimited text on a serial port; no commands (boards stream on power-up)."""

    name: ClassVar[str] = "csv"
    self_describing: ClassVar[bool] = False

    def validate(self) -> None:
        self.layout = parse_layout(dict(self.settings.options), tuple(self.settings.wavelengths_nm))
        if not self.settings.rate_hz:
            raise ConfigError("needed: the board does not say its rate", "device.rate_hz")

    def make_parser(self) -> DelimitedParser:
        wrap = self.layout.time_wrap_s
        if wrap is None:
            return DelimitedParser(self.layout)
        cls = type("WrappingDelimitedParser", (DelimitedParser,), {"clock_modulus_s": wrap})
        return cls(self.layout)

    def default_info(self) -> Info:
        lay = self.layout
        return Info(
            1, lay.n_channels, lay.wavelengths_nm, float(self.settings.rate_hz or 10.0), "csv"
        )
