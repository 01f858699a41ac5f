"""A tissue oximeter printing computed values (the Nonin 1 layout) on a pseudo-terminal.

:class:`NoninEmulator` is the :class:`~.emulator.Emulator` (pty, timing, faults:
corrupt bytes, dropped lines, garbage, stalls, unplug/replug) with the Nonin encoder
and an rSO2 source; it prints one line per sample, from power-on, with no host
commands::

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
from typing import Any

import numpy as np

from .emulator import Emulator
from .encoders import NoninEncoder
from .physiology import _splitmix64
from .truth import Source


class Rso2Source(Source):
    """Computed rSO2 (%) per channel; no light, so no physiology to respond."""

    def __init__(
        self, n_channels: int, rate_hz: float, missing: tuple[int, ...], dropout_rate: float
    ) -> None:
        super().__init__(n_channels, (0.0,), rate_hz)
        self.missing = missing
        self.dropout_rate = dropout_rate
        self.base = 60.0 + 4.0 * np.arange(n_channels)  # % per channel
        self.steps: list[tuple[int, int, float]] = []  # (from k, to k, change in %)
        self.printed: dict[int, np.ndarray] = {}
        self.rng = np.random.default_rng(0)  # the emulator shares its own

    def truth(self, k: np.ndarray) -> np.ndarray:
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

    def values(self, k: int, n: int, k_rel: int) -> np.ndarray:
        values = self.truth(np.arange(k, k + n))
        values[:, list(self.missing)] = np.nan
        if self.dropout_rate > 0:
            values[self.rng.random(values.shape) < self.dropout_rate] = np.nan
        for i in range(n):
            if len(self.printed) < 100_000:
                self.printed[k + i] = values[i]
        return values


class NoninEmulator(Emulator):
    """``n_channels`` rSO2 values per line at ``rate_hz`` (the device: 1 Hz)."""

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
        self.missing = tuple(missing)
        self.dropout_rate = float(dropout_rate)
        self.keys = keys or tuple(f"Ch{i + 1}" for i in range(n_channels))
        self.rso2 = Rso2Source(n_channels, rate_hz, self.missing, self.dropout_rate)
        super().__init__(
            n_channels=n_channels,
            rate_hz=rate_hz,
            wavelengths_nm=(0.0,),
            encoder=NoninEncoder(self.keys),
            source=self.rso2,
            **kwargs,
        )
        self.rso2.rng = self._rng  # one seeded generator for every random choice

    @property
    def base(self) -> np.ndarray:
        """Baseline rSO2 (%) per channel."""
        return self.rso2.base

    @property
    def steps(self) -> list[tuple[int, int, float]]:
        return self.rso2.steps

    def add_step(self, k0: int, k1: int, change: float) -> None:
        """Add ``change`` (%) to every channel for samples k0 <= k < k1."""
        self.rso2.steps.append((k0, k1, float(change)))

    def truth(self, k: np.ndarray) -> np.ndarray:
        """The device's computed rSO2 (%) at sample indices k: (n, n_channels)."""
        return self.rso2.truth(k)

    def printed(self, k: int) -> np.ndarray | None:
        """The values printed for sample k (NaN for ``---``), if it was sent."""
        return self.rso2.printed.get(k)
