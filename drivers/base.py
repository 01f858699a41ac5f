"""What every driver produces and the small interface each one implements.

A driver is split the pyserial way: a *parser* turns bytes into frames and never does
I/O; the :class:`Driver` owns the port-level conversation (start/stop commands,
self-description) and the transport owns the port.  Frames are plain values.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

#: Sample.flags bit meaning "some value is saturated" (the NIRSB DATA flag; other
#: drivers set it with the same meaning)
FLAG_SATURATED = 1


@dataclass(frozen=True, slots=True)
class Sample:
    """One sample (one DATA frame) from a device.

    seq: device frame counter as sent (wraps at ``Parser.seq_modulus``), or None.
    t_dev: device clock in seconds as sent (wraps at ``Parser.clock_modulus_s``), or None.
    flags: device flags (NIRSB: bit0 saturated, bit1 ambient subtracted).
    intensity: float64 array (n_channels, n_wavelengths), device units (counts).
    """

    seq: int | None
    t_dev: float | None
    flags: int
    intensity: np.ndarray


@dataclass(frozen=True, slots=True)
class Info:
    """A device's self-description (NIRSB INFO frame)."""

    version: int
    n_channels: int
    wavelengths_nm: tuple[float, ...]
    rate_hz: float
    device_id: str


@dataclass(frozen=True, slots=True)
class Event:
    """A device event: trigger input (code 1) or button (code 2) with a label."""

    seq: int | None
    t_dev: float | None
    code: int
    label: str


@dataclass(frozen=True, slots=True)
class SampleBlock:
    """A run of consecutive samples from one ``feed``, as arrays (text parsers' fast path).

    seq: (n,) device frame counters, or None (the protocol has none).
    t_dev: (n,) float64 device clock in seconds as sent, or None (no clock).
    flags: (n,) uint8 device flags.
    intensity: float64 array (n, n_channels, n_wavelengths), device units (counts).
    """

    seq: np.ndarray | None
    t_dev: np.ndarray | None
    flags: np.ndarray
    intensity: np.ndarray

    def __len__(self) -> int:
        return self.intensity.shape[0]

    def sample(self, i: int) -> Sample:
        """Row ``i`` as a :class:`Sample`."""
        return Sample(
            None if self.seq is None else int(self.seq[i]),
            None if self.t_dev is None else float(self.t_dev[i]),
            int(self.flags[i]),
            self.intensity[i],
        )

    def samples(self) -> list[Sample]:
        """Every row as a :class:`Sample` (about 1 µs each: not for the hot path)."""
        n = len(self)
        seq = [None] * n if self.seq is None else self.seq.tolist()
        t = [None] * n if self.t_dev is None else self.t_dev.tolist()
        return [
            Sample(q, s, f, x)
            for q, s, f, x in zip(seq, t, self.flags.tolist(), list(self.intensity))
        ]


@dataclass(frozen=True, slots=True)
class Derived:
    """Values a device computed itself (regional saturation, TOI, SmO2) for one sample.

    t_dev: device clock in seconds as sent, or None (no clock).
    values: float64 (n_values,), NaN where the device printed no value; the columns are
    described by the driver's :meth:`Driver.derived_layout`.
    """

    t_dev: float | None
    values: np.ndarray


@dataclass(frozen=True)
class DerivedLayout:
    """What each column of :attr:`Derived.values` is: a value name (``rso2``), its unit
    (``%``) and the channel it belongs to (a label, or None)."""

    names: tuple[str, ...]
    units: tuple[str, ...]
    channels: tuple[str | None, ...]

    def describe(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "units": list(self.units),
            "channels": list(self.channels),
        }


Frame = Sample | SampleBlock | Info | Event | Derived


def expand_blocks(frames: list[Frame]) -> list[Frame]:
    """``frames`` with every :class:`SampleBlock` replaced by its samples, in order."""
    if not any(type(f) is SampleBlock for f in frames):
        return frames
    out: list[Frame] = []
    for f in frames:
        if type(f) is SampleBlock:
            out += f.samples()
        else:
            out.append(f)
    return out


@dataclass
class Counters:
    """Parser health counters, published in ``status``."""

    frames_ok: int = 0
    crc_errors: int = 0
    length_errors: int = 0
    decode_errors: int = 0
    garbage_bytes: int = 0
    lost_frames: int = 0
    lines_skipped: int = 0
    seq_backsteps: int = 0  # frame counter went back: a device restart or a reordering

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class Parser(ABC):
    """Incremental bytes -> frames decoder; pure, no I/O, never raises on bad bytes."""

    #: modulus of the device frame counter (None: the protocol has none)
    seq_modulus: ClassVar[int | None] = None
    #: modulus of the device clock in seconds (None: no clock or it never wraps)
    clock_modulus_s: ClassVar[float | None] = None

    def __init__(self) -> None:
        self.counters = Counters()

    @abstractmethod
    def feed(self, data: bytes) -> list[Frame]:
        """Consume bytes (any split) and return the complete frames they finish, in order.

        Samples come one :class:`Sample` per frame (no :class:`SampleBlock`)."""

    def feed_blocks(self, data: bytes) -> list[Frame]:
        """Like :meth:`feed`, but a run of samples may come as one :class:`SampleBlock`.

        The daemon reads through this; parsers with a vectorised path override it and
        derive :meth:`feed` from it (``expand_blocks``).  The default is :meth:`feed`.
        """
        return self.feed(data)


@dataclass(frozen=True)
class DeviceSettings:
    """What a driver needs to know from the config to talk to a device."""

    port: str
    baudrate: int = 115200
    wavelengths_nm: tuple[float, ...] = ()
    rate_hz: float | None = None
    n_channels: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


class Driver(ABC):
    """A device protocol: how to talk to the device and how to parse what it says.

    Subclasses set ``name`` and implement :meth:`make_parser`; the optional hooks send
    protocol commands.  Validation of settings happens in :meth:`validate`, so a bad
    config fails before any port is opened.
    """

    name: ClassVar[str] = ""
    #: True when the device describes itself (channels, wavelengths, rate)
    self_describing: ClassVar[bool] = False

    def __init__(self, settings: DeviceSettings) -> None:
        self.settings = settings
        self.validate()

    def validate(self) -> None:  # noqa: B027 - a hook: most drivers accept any settings
        """Raise ConfigError for settings this driver cannot use."""

    @abstractmethod
    def make_parser(self) -> Parser:
        """A fresh parser (a new one after every reconnect)."""

    def start_commands(self) -> bytes:
        """Bytes to write after the port opens (ask for INFO, start streaming)."""
        return b""

    def stop_commands(self) -> bytes:
        """Bytes to write before the port closes."""
        return b""

    def derived_layout(self) -> DerivedLayout | None:
        """The columns of the :class:`Derived` frames this device sends (None: none)."""
        return None

    def default_info(self) -> Info | None:
        """The description to use when the device does not send one (from settings)."""
        s = self.settings
        if not s.wavelengths_nm or not s.n_channels or not s.rate_hz:
            return None
        return Info(1, s.n_channels, tuple(s.wavelengths_nm), float(s.rate_hz), self.name)
