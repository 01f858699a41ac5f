"""A board printing delimited text on a pseudo-terminal: the
:class:`~.emulator.Emulator` with the delimited-text encoder.

An Arduino sketch printing ``time,ch0λ0,ch0λ1,...`` lines (optionally after a header
line), streaming from power-on with no host commands; :meth:`DelimitedEmulator.options`
gives the matching ``[device.options]`` for the csv driver.  Device events have no
text form and are not sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .emulator import Emulator
from .encoders import DelimitedEncoder


class DelimitedEmulator(Emulator):
    """A board printing delimited text lines; streams from power-on (no commands).

    delimiter: "," (default), ";", "\\t" or " "; header: print a header line at
    power-on; time_unit: "ms" (default, ``millis()``), "us" or "s", or None for no time
    column.  Integer counts are printed, channel-major after the time column.
    """

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
        self.lines = DelimitedEncoder(
            n_channels, tuple(float(w) for w in wavelengths_nm), delimiter, header, time_unit
        )
        super().__init__(
            n_channels=n_channels,
            rate_hz=rate_hz,
            wavelengths_nm=wavelengths_nm,
            encoder=self.lines,
            **kwargs,
        )
        self.delimiter = delimiter
        self.header = header
        self.time_unit = time_unit

    def columns(self) -> list[str]:
        """The column mapping, as ``device.options.columns`` wants it."""
        return self.lines.columns()

    def options(self) -> dict[str, Any]:
        """``[device.options]`` for the csv driver reading this emulator."""
        return self.lines.options()
