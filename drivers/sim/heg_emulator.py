"""A HEGduino on a pseudo-terminal: the :class:`~.emulator.Emulator` with the HEG encoder.

Prints a banner at power-on, streams after ``t``, stops on ``f``; one channel, red and
infrared; the 7-field form ``t_us|red|ir|ratio|ambient|hr|spo2`` or, with
``fast=True``, ``red|ir|ratio``.  Device events have no text form and are not sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .emulator import Emulator
from .encoders import HegEncoder


class HegEmulator(Emulator):
    """A HEGduino on a pty: 1 channel, (red, infrared) wavelengths in nm."""

    def __init__(
        self,
        rate_hz: float = 10.0,
        wavelengths_nm: Sequence[float] = (660.0, 880.0),
        fast: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            n_channels=1,
            rate_hz=rate_hz,
            wavelengths_nm=wavelengths_nm,
            encoder=HegEncoder(fast),
            **kwargs,
        )
        self.fast = fast
