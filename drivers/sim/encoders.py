"""What each emulated protocol puts on the wire, and which host commands it obeys.

An :class:`Encoder` turns the emulator's samples and events into bytes: a greeting at
power-on, a preamble when streaming starts, the answer to an INFO request, one record
per sample and one per device event.  :class:`NirsbEncoder` is the NIRSB v1 probe of
DEVICES.md; :class:`HegEncoder` a HEGduino; :class:`DelimitedEncoder` an Arduino sketch
printing delimited text; :class:`NoninEncoder` a tissue oximeter printing the Nonin 1
layout.  The text protocols have no event record and send none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import nirsb
from ..heg import format_line


class Encoder:
    """A protocol with no commands, no greeting and no events (override what differs)."""

    #: host command bytes (None: the protocol has no such command)
    cmd_start: int | None = None
    cmd_stop: int | None = None
    cmd_info: int | None = None
    #: what ends a garbage burst, so that only the burst is lost
    garbage_end: bytes = b"\r\n"

    def greeting(self) -> bytes:
        """Bytes sent at power-on (a banner, a header line)."""
        return b""

    def preamble(self) -> bytes:
        """Bytes sent when streaming starts."""
        return b""

    def info(self) -> bytes:
        """The answer to ``cmd_info``."""
        return b""

    def sample(self, seq: int, t_us: int, values: np.ndarray) -> bytes:
        """Wire bytes of one sample (``values``: one row of the emulator's source)."""
        raise NotImplementedError

    def event(self, seq: int, t_us: int, code: int, label: str) -> bytes:
        """Wire bytes of a device event (b"" where the protocol has none)."""
        return b""


class NirsbEncoder(Encoder):
    """NIRSB v1: ``b`` start, ``s`` stop, ``?`` INFO; COBS frames ended by 0x00.

    info_on_start: send INFO when streaming starts (as the probe does); False sends it
    only on ``?``.
    """

    cmd_start, cmd_stop, cmd_info = 0x62, 0x73, 0x3F  # b s ?
    garbage_end = b"\x00"

    def __init__(
        self,
        n_channels: int,
        wavelengths_nm: Sequence[float],
        rate_hz: float,
        device_id: str,
        info_on_start: bool = True,
    ) -> None:
        self.info_wire = nirsb.encode_info(
            n_channels, tuple(wavelengths_nm), int(round(rate_hz * 1000)), device_id
        )
        self.info_on_start = info_on_start
        self._data_head = nirsb.DATA_HEAD.pack(n_channels, len(wavelengths_nm), 0)

    def preamble(self) -> bytes:
        return self.info_wire if self.info_on_start else b""

    def info(self) -> bytes:
        return self.info_wire

    def sample(self, seq: int, t_us: int, values: np.ndarray) -> bytes:
        """``values``: counts (n_channels, n_wavelengths) int32."""
        payload = self._data_head + values.tobytes()
        return nirsb.to_wire(nirsb.encode_frame(nirsb.DATA, 0, seq, t_us, payload))

    def event(self, seq: int, t_us: int, code: int, label: str) -> bytes:
        return nirsb.encode_event(seq, t_us, code, label)


class HegEncoder(Encoder):
    """A HEGduino: banner at power-on, ``t`` start, ``f`` stop; one (red, ir) channel.

    Lines are ``t_us|red|ir|ratio|ambient|hr|spo2`` or, with ``fast``, ``red|ir|ratio``.
    """

    cmd_start, cmd_stop = 0x74, 0x66  # t f
    banner = b"HEGduino V2 (nirsd emulator) ready\r\n"

    def __init__(self, fast: bool = False) -> None:
        self.fast = fast

    def greeting(self) -> bytes:
        return self.banner

    def sample(self, seq: int, t_us: int, values: np.ndarray) -> bytes:
        red, ir = int(values[0, 0]), int(values[0, 1])
        if self.fast:
            return format_line(None, red, ir)
        return format_line(t_us, red, ir, ambient=300 + seq % 17, hr=64, spo2=97)


class DelimitedEncoder(Encoder):
    """``time,ch0λ0,ch0λ1,...`` lines (optionally after a header line at power-on).

    delimiter: ",", ";", "\\t" or " "; time_unit: "ms" (``millis()``), "us" or "s", or
    None for no time column.  Integer counts, channel-major after the time column.
    """

    def __init__(
        self,
        n_channels: int,
        wavelengths_nm: Sequence[float],
        delimiter: str = ",",
        header: bool = True,
        time_unit: str | None = "ms",
    ) -> None:
        self.n_channels = n_channels
        self.wavelengths_nm = tuple(wavelengths_nm)
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
        """``[device.options]`` for the csv driver reading this encoder's lines."""
        opts: dict[str, Any] = {
            "delimiter": self.delimiter,
            "header": self.header,
            "columns": self.columns(),
        }
        if self.time_unit:
            opts["time_unit"] = self.time_unit
        return opts

    def greeting(self) -> bytes:
        if not self.header:
            return b""
        names = [c.replace(":", "_") for c in self.columns()]
        return self._sep.join(n.encode() for n in names) + b"\r\n"

    def sample(self, seq: int, t_us: int, values: np.ndarray) -> bytes:
        fields = [b"%d" % v for v in values.ravel().tolist()]
        if self._t_div == 1_000_000:
            fields.insert(0, b"%.6f" % (t_us / 1e6))
        elif self._t_div:
            fields.insert(0, b"%d" % (t_us // self._t_div))
        return self._sep.join(fields) + b"\r\n"


class NoninEncoder(Encoder):
    """``Ch1=072 Ch2=068 Ch3=--- Ch4=---`` lines; NaN prints ``---``."""

    greeting_line = b"Nonin 7600 emulator (nirsd) Nonin 1 format\r\n"

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = tuple(keys)

    def greeting(self) -> bytes:
        return self.greeting_line

    def sample(self, seq: int, t_us: int, values: np.ndarray) -> bytes:
        fields = [
            f"{key}=---" if math.isnan(v) else f"{key}={int(v):03d}"
            for key, v in zip(self.keys, values.tolist())
        ]
        return (" ".join(fields) + "\r\n").encode()
