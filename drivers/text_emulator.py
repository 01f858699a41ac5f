"""Emulators for the text protocols (HEG, delimited text) on a pseudo-terminal.

Both reuse :class:`~nirsd.drivers.emulator.Emulator` (pty, timing, faults, unplug and
replug behind the same link) and only change what goes on the wire:

- :class:`HegEmulator`: a HEGduino.  Prints a banner at power-on, streams after ``t``,
  stops on ``f``; one channel, red and infrared; the 7-field form
  ``t_us|red|ir|ratio|ambient|hr|spo2`` or, with ``fast=True``, ``red|ir|ratio``.
- :class:`DelimitedEmulator`: an Arduino sketch printing ``time,ch0λ0,ch0λ1,...`` lines
  (optionally after a header line), streaming from power-on; :meth:`options` gives the
  matching ``[device.options]`` for the csv driver.

Device events have no text form and are not sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .emulator import Emulator
from .heg import format_line


class HegEmulator(Emulator):
    """A HEGduino on a pty: 1 channel, (red, infrared) wavelengths in nm."""

    cmd_start = 0x74  # t
    cmd_stop = 0x66  # f
    cmd_info = None
    garbage_end = b"\r\n"
    banner = b"HEGduino V2 (nirsd emulator) ready\r\n"

    def __init__(
        self,
        rate_hz: float = 10.0,
        wavelengths_nm: Sequence[float] = (660.0, 880.0),
        fast: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(n_channels=1, rate_hz=rate_hz, wavelengths_nm=wavelengths_nm, **kwargs)
        self.fast = fast

    def _greeting(self) -> bytes:
        return self.banner

    def _preamble(self) -> bytes:
        return b""

    def _encode_sample(self, seq: int, t_us: int, counts: np.ndarray) -> bytes:
        red, ir = int(counts[0, 0]), int(counts[0, 1])
        if self.fast:
            return format_line(None, red, ir)
        return format_line(t_us, red, ir, ambient=300 + seq % 17, hr=64, spo2=97)

    def _encode_event(self, seq: int, t_us: int, code: int, label: str) -> bytes:
        return b""


class DelimitedEmulator(Emulator):
    """A board printing delimited text lines; streams from power-on (no commands).

    delimiter: "," (default), ";", "\\t" or " "; header: print a header line at
    power-on; time_unit: "ms" (default, ``millis()``), "us" or "s", or None for no time
    column.  Integer counts are printed, channel-major after the time column.
    """

    cmd_start = cmd_stop = cmd_info = None
    garbage_end = b"\r\n"

    def __init__(
        self,
        n_channels: int = 2,
        rate_hz: float = 10.0,
        wavelengths_nm: Sequence[float] = (760.0, 850.0),
        delimiter: str = ",",
        header: bool = True,
        time_unit: str | None = "ms",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("autostart", True)
        super().__init__(
            n_channels=n_channels, rate_hz=rate_hz, wavelengths_nm=wavelengths_nm, **kwargs
        )
        self.delimiter = delimiter
        self.header = header
        self.time_unit = time_unit
        self._sep = delimiter.encode()
        self._t_div = {"ms": 1000, "us": 1, "s": 1_000_000, None: 0}[time_unit]

    def columns(self) -> list[str]:
        """The column mapping, as ``device.options.columns`` wants it."""
        cols = [f"ch{c}:{w:g}" for c in range(self.n_channels) for w in self.wavelengths_nm]
        return (["time"] if self.time_unit else []) + cols

    def options(self) -> dict[str, Any]:
        """``[device.options]`` for the csv driver reading this emulator."""
        opts: dict[str, Any] = {
            "delimiter": self.delimiter,
            "header": self.header,
            "columns": self.columns(),
        }
        if self.time_unit:
            opts["time_unit"] = self.time_unit
        return opts

    def _greeting(self) -> bytes:
        if not self.header:
            return b""
        names = [c.replace(":", "_") for c in self.columns()]
        return self._sep.join(n.encode() for n in names) + b"\r\n"

    def _preamble(self) -> bytes:
        return b""

    def _encode_sample(self, seq: int, t_us: int, counts: np.ndarray) -> bytes:
        values = [b"%d" % v for v in counts.ravel().tolist()]
        if self._t_div == 1_000_000:
            values.insert(0, b"%.6f" % (t_us / 1e6))
        elif self._t_div:
            values.insert(0, b"%d" % (t_us // self._t_div))
        return self._sep.join(values) + b"\r\n"

    def _encode_event(self, seq: int, t_us: int, code: int, label: str) -> bytes:
        return b""
