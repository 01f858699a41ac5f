"""A tissue oximeter printing computed values (the Nonin 1 layout) on a pseudo-terminal.

:class:`NoninEmulator` reuses :class:`~nirsd.drivers.emulator.Emulator` (pty, timing,
faults: corrupt bytes, dropped lines, garbage, stalls, unplug/replug) and prints one
line per sample, from power-on, with no host commands::

    Ch1=072 Ch2=068 Ch3=--- Ch4=---

Each channel's regional saturation (%) is a pure function of the sample index
(:meth:`truth`): a baseline per channel, a slow oscillation, a sample-to-sample
jitter of up to ±3 % (a hash of the index) and, after
:meth:`add_step`, a step change over a sample range (an exercise).  ``missing``
channels always print ``---`` (no sensor); ``dropout_rate`` prints ``---`` for that
fraction of values at random.  :meth:`printed` gives what was actually printed (NaN
for ``---``), which is what the daemon must publish.
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np

from .emulator import Emulator
from .physiology import _splitmix64


class _Shape:
    def __init__(self, n: int) -> None:
        self.n_channels, self.wavelengths_nm = n, (0.0,)
        self.responses: list[Any] = []


class NoninEmulator(Emulator):
    """``n_channels`` rSO2 values per line at ``rate_hz`` (the device: 1 Hz)."""

    cmd_start = cmd_stop = cmd_info = None
    garbage_end = b"\r\n"

    def __init__(
        self,
        n_channels: int = 4,
        rate_hz: float = 1.0,
        missing: tuple[int, ...] = (),
        dropout_rate: float = 0.0,
        keys: tuple[str, ...] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("autostart", True)
        kwargs.pop("wavelengths_nm", None)
        kwargs.pop("physiology", None)
        super().__init__(
            n_channels=n_channels,
            rate_hz=rate_hz,
            wavelengths_nm=(0.0,),
            physiology=cast(Any, _Shape(n_channels)),  # the base only checks the shape
            **kwargs,
        )
        # no light: nothing for the marker channel to simulate
        self.physiology = cast(Any, None)
        self.missing = tuple(missing)
        self.dropout_rate = float(dropout_rate)
        self.keys = keys or tuple(f"Ch{i + 1}" for i in range(n_channels))
        self.base = 60.0 + 4.0 * np.arange(n_channels)  # % per channel
        self.steps: list[tuple[int, int, float]] = []  # (from k, to k, change in %)
        self._printed: dict[int, np.ndarray] = {}

    def add_step(self, k0: int, k1: int, change: float) -> None:
        """Add ``change`` (%) to every channel for samples k0 <= k < k1."""
        self.steps.append((k0, k1, float(change)))

    def truth(self, k: np.ndarray) -> np.ndarray:
        """The device's computed rSO2 (%) at sample indices k: (n, n_channels)."""
        k = np.atleast_1d(np.asarray(k, dtype=np.int64))
        wave = 2.0 * np.sin(2 * math.pi * 0.02 * k / self.rate_hz)
        key = k.astype(np.uint64)[:, None] * np.uint64(self.n_channels) + np.arange(
            self.n_channels, dtype=np.uint64
        )
        jitter = (_splitmix64(key) % np.uint64(7)).astype(np.float64) - 3.0  # (n, n_ch)
        out = self.base[None, :] + wave[:, None] + jitter
        for k0, k1, change in self.steps:
            out += np.where((k >= k0) & (k < k1), change, 0.0)[:, None]
        return np.round(out)  # the device prints whole percent

    def printed(self, k: int) -> np.ndarray | None:
        """The values printed for sample k (NaN for ``---``), if it was sent."""
        return self._printed.get(k)

    def _counts(self, k: int, n: int) -> np.ndarray:
        values = self.truth(np.arange(k, k + n))
        values[:, list(self.missing)] = np.nan
        if self.dropout_rate > 0:
            values[self._rng.random(values.shape) < self.dropout_rate] = np.nan
        for i in range(n):
            if len(self._printed) < 100_000:
                self._printed[k + i] = values[i]
        return values

    def _greeting(self) -> bytes:
        return b"Nonin 7600 emulator (nirsd) Nonin 1 format\r\n"

    def _preamble(self) -> bytes:
        return b""

    def _encode_sample(self, seq: int, t_us: int, counts: np.ndarray) -> bytes:
        fields = [
            f"{key}=---" if math.isnan(v) else f"{key}={int(v):03d}"
            for key, v in zip(self.keys, counts.tolist())
        ]
        return (" ".join(fields) + "\r\n").encode()

    def _encode_event(self, seq: int, t_us: int, code: int, label: str) -> bytes:
        return b""
