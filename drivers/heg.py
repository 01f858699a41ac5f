"""HEG line protocol (HEGduino): ASCII ``|``-separated lines, ``\\r\\n``-terminated.

Two forms (DEVICES.md section 2)::

    t_us|red|ir|ratio|ambient|hr|spo2     10234567|48211|61022|0.7901|312|64|97
    red|ir|ratio                          48211|61022|0.7901   ("fast" mode, no time)

One channel, two wavelengths (red and infrared, in that order; their values in nm come
from ``optics.wavelengths_nm``).  ``t_us`` is the device's ``micros()`` and wraps at
2**32 µs; the fast form carries no time, so the daemon counts samples at
``device.rate_hz``.  A line is a sample only if every field is a number, ``t_us`` is a
whole number below 2**32, and (unless ``device.options.check_ratio = false``) the
printed ratio equals red/ir to its printed precision (0 when ir is 0): the protocol has
no checksum and this cross-check rejects most corrupted lines.  ``t`` starts the stream,
``f`` stops it.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import numpy as np

from nirsd.core.errors import ConfigError

from .base import Driver, Frame, Info, Sample, SampleBlock
from .lines import LineParser, parse_int_tokens

T_MODULUS_US = 1 << 32
_SEP_TO_SPACE = bytes.maketrans(b"|\r\n", b"   ")
_D, _R = rb"[0-9]++\|", rb"[0-9]++\.[0-9]{4}"
#: whole chunks of one form (by ``|`` per line), possessive: a fast first check
_BODY = {
    6.0: re.compile(b"(?:" + _D * 3 + _R + rb"\|[0-9]++\|[0-9]++\|[0-9]++\r?+\n)++"),
    2.0: re.compile(b"(?:" + _D * 2 + _R + rb"\r?+\n)++"),
}


def _ratio_ok(red: np.ndarray, ir: np.ndarray, ratio: np.ndarray, decimals: int) -> np.ndarray:
    """True where the printed ratio matches red/ir to ``decimals`` places."""
    tol = 0.5 * 10.0**-decimals * (1 + 1e-9) + 1e-12
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = np.abs(ratio - red / ir) <= tol
    # no infrared light: the HEGduino prints a ratio of 0, so only that passes (any
    # other ratio over ir = 0 is text that happens to be digits and bars)
    return np.where(ir == 0, np.abs(ratio) <= tol, ok)


def _decimals(field: bytes) -> int:
    dot = field.find(b".")
    return 0 if dot < 0 else len(field) - dot - 1


class HegParser(LineParser):
    """Incremental HEG line decoder (both forms, even mixed); never raises on input."""

    clock_modulus_s: ClassVar[float | None] = T_MODULUS_US / 1e6
    allowed: ClassVar[bytes] = b"0123456789.-+|"
    fast_line = re.compile(
        rb"\d{1,10}\|\d{1,10}\|\d{1,10}\|\d{1,6}\.\d{4}"
        rb"\|\d{1,10}\|\d{1,10}\|\d{1,10}|\d{1,10}\|\d{1,10}\|\d{1,6}\.\d{4}"
    )

    def __init__(self, synced: bool = False, check_ratio: bool = True) -> None:
        super().__init__(synced)
        self.check_ratio = check_ratio

    def _clean_block(self, body: bytes, n: int) -> tuple[SampleBlock, np.ndarray] | None:
        """One form throughout: a pattern without digit counts; widths checked by
        :meth:`_parse_block` (every field at most 10 digits, the ratio's dot removed)."""
        form = _BODY.get(body.count(b"|") / n)
        if form is None or not form.fullmatch(body):
            return None
        return self._parse_block(body, n)

    def _parse_block(self, body: bytes, n: int) -> tuple[SampleBlock, np.ndarray] | None:
        """All ``n`` lines of one form at once; None for a mix of forms."""
        bars = body.count(b"|")
        if bars == 6 * n:
            fields = 7
        elif bars == 2 * n:
            fields = 3
        else:
            return None
        text = body.translate(_SEP_TO_SPACE, b".")  # ratio: exactly 4 decimals
        values = parse_int_tokens(text, fields * n, max_digits=10)
        if values is None:
            return None
        v = values.reshape(n, fields)
        if fields == 7:
            t_us, red, ir, ratio = v[:, 0], v[:, 1], v[:, 2], v[:, 3] / 1e4
            ok = t_us < T_MODULUS_US
            t_dev: np.ndarray | None = t_us / 1e6
        else:
            red, ir, ratio = v[:, 0], v[:, 1], v[:, 2] / 1e4
            ok = np.ones(n, bool)
            t_dev = None
        if self.check_ratio:
            ok &= _ratio_ok(red, ir, ratio, 4)
        inten = np.stack((red, ir), axis=1).reshape(n, 1, 2)
        return SampleBlock(None, t_dev, np.zeros(n, np.uint8), inten), ok

    def _parse_line(self, line: bytes) -> Frame | None:
        fields = line.split(b"|")
        if len(fields) not in (3, 7) or line.translate(None, self.allowed):
            return None
        try:
            nums = [float(f) for f in fields]
        except ValueError:
            return None
        if not all(np.isfinite(nums)):
            return None
        if len(fields) == 7:
            t_us, red, ir, ratio = nums[:4]
            if not (0 <= t_us < T_MODULUS_US and t_us == int(t_us)):
                return None
            t_dev: float | None = t_us / 1e6
            ratio_field = fields[3]
        else:
            red, ir, ratio = nums
            t_dev = None
            ratio_field = fields[2]
        if self.check_ratio and not _ratio_ok(
            np.array(red), np.array(ir), np.array(ratio), _decimals(ratio_field)
        ):
            return None
        return Sample(None, t_dev, 0, np.array([[red, ir]], dtype=np.float64))


def format_line(
    t_us: int | None, red: int, ir: int, ambient: int = 0, hr: int = 0, spo2: int = 0
) -> bytes:
    """One HEG line as a HEGduino prints it (``t_us`` None: the fast form)."""
    ratio = red / ir if ir else 0.0
    if t_us is None:
        return b"%d|%d|%.4f\r\n" % (red, ir, ratio)
    return b"%d|%d|%d|%.4f|%d|%d|%d\r\n" % (t_us % T_MODULUS_US, red, ir, ratio, ambient, hr, spo2)


OPTIONS = {"check_ratio": bool}


class HegDriver(Driver):
    """HEGduino: one channel, red and infrared; ``t`` starts the stream, ``f`` stops it."""

    name: ClassVar[str] = "heg"
    self_describing: ClassVar[bool] = False

    def validate(self) -> None:
        s = self.settings
        if len(s.wavelengths_nm) != 2:
            raise ConfigError(
                "the HEG driver needs exactly two wavelengths (red, infrared), "
                f"got {list(s.wavelengths_nm)}",
                "optics.wavelengths_nm",
            )
        for key, value in s.options.items():
            if key not in OPTIONS:
                raise ConfigError(
                    f"unknown option (known: {', '.join(OPTIONS)})", f"device.options.{key}"
                )
            if not isinstance(value, OPTIONS[key]):
                raise ConfigError(f"must be {OPTIONS[key].__name__}", f"device.options.{key}")
        if not s.rate_hz:
            raise ConfigError("needed for the HEG fast form (no time field)", "device.rate_hz")

    def make_parser(self) -> HegParser:
        opts: dict[str, Any] = self.settings.options
        return HegParser(check_ratio=bool(opts.get("check_ratio", True)))

    def start_commands(self) -> bytes:
        return b"t"

    def stop_commands(self) -> bytes:
        return b"f"

    def default_info(self) -> Info:
        s = self.settings
        return Info(
            1, 1, tuple(float(w) for w in s.wavelengths_nm), float(s.rate_hz or 10.0), "heg"
        )
