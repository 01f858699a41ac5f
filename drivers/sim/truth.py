"""The truth model of an emulator: what it measures, its clock, and what it has sent.

A :class:`Source` gives, per sample index k, the values a device sends (counts, or
computed values), its own clock and any events it schedules itself, plus the truth a
test compares the daemon's output with.  :class:`PhysiologySource` wraps
:class:`~.physiology.Physiology` (an endless probe counting time at its rate).

:class:`Ledger` keeps the bookkeeping: the next sample index (never reset, so the truth
stays a function of k across power cycles), frames since power-on (seq = seq0 +
frames), the device clock origin, and the (seq, k) of every sample frame queued.
"""

from __future__ import annotations

import collections

import numpy as np

from .physiology import Physiology

#: the device clock (µs) wraps at 2^32
CLOCK_MOD = 1 << 32


class Source:
    """Values, clock and truth of a device; the base is an endless clock at ``rate_hz``."""

    #: samples per power-on before the device falls silent (None: endless)
    length: int | None = None
    #: a physiology the daemon's simulator may add exercise responses to
    physiology: Physiology | None = None

    def __init__(self, n_channels: int, wavelengths_nm: tuple[float, ...], rate_hz: float):
        self.n_channels = n_channels
        self.wavelengths_nm = wavelengths_nm
        self.rate_hz = float(rate_hz)

    def values(self, k: int, n: int, k_rel: int) -> np.ndarray:
        """What samples k..k+n-1 carry (``k_rel``: k counted from power-on)."""
        raise NotImplementedError

    def clock_us(self, k_rel: int) -> int:
        """Device clock (µs, unwrapped) at sample ``k_rel`` after power-on."""
        return round(k_rel * 1e6 / self.rate_hz)

    def events(self, k_rel: int) -> list[tuple[int, str, int]]:
        """Events (code, label, µs relative to the sample) the device sends before it."""
        return []

    def truth(self, k: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class PhysiologySource(Source):
    """Counts from a :class:`Physiology`, computed a block (about 0.1 s) ahead."""

    def __init__(self, physiology: Physiology, rate_hz: float) -> None:
        super().__init__(physiology.n_channels, physiology.wavelengths_nm, rate_hz)
        self.physiology = physiology
        self._block_k0 = 0
        self._block = np.zeros((0, physiology.n_channels, len(physiology.wavelengths_nm)))

    def values(self, k: int, n: int, k_rel: int) -> np.ndarray:
        end = self._block_k0 + self._block.shape[0]
        if k < self._block_k0 or k + n > end:
            size = max(n, int(self.rate_hz * 0.1), 1)
            assert self.physiology is not None
            self._block = self.physiology.counts(np.arange(k, k + size))
            self._block_k0 = k
        i = k - self._block_k0
        return self._block[i : i + n]

    def truth(self, k: np.ndarray) -> np.ndarray:
        """True [ΔHbO, ΔHbR] (µM) at sample indices k, (n, 2, n_channels)."""
        assert self.physiology is not None
        return self.physiology.hb_truth(k)


class Ledger:
    """Sample and frame counting of one emulator (seq0: first frame counter, t0_us:
    device clock at power-on)."""

    def __init__(self, source: Source, seq0: int, t0_us: int) -> None:
        self.source = source
        self.seq0 = seq0
        self.t0_us = t0_us
        self.k = 0  # next sample index (never reset)
        self.frames = 0  # frames counted since power-on (seq = seq0 + frames)
        self.k_boot = 0  # sample index at power-on (device clock origin)
        self.dropped_frames = 0
        #: (seq, k) of the sample frames queued for sending, newest last (bounded)
        self.sent_k: collections.deque[tuple[int, int]] = collections.deque(maxlen=100_000)

    def power_on(self) -> None:
        self.frames = 0
        self.k_boot = self.k

    @property
    def since_boot(self) -> int:
        """Samples produced since power-on."""
        return self.k - self.k_boot

    def next_seq(self) -> int:
        """Consume one frame counter."""
        seq = (self.seq0 + self.frames) % 65536
        self.frames += 1
        return seq

    def t_us(self, k: int) -> int:
        """Device clock (µs, wrapping) of sample k."""
        return (self.t0_us + self.source.clock_us(k - self.k_boot)) % CLOCK_MOD
