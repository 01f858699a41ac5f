"""Preallocated ring of samples indexed by absolute sample number.

Sample ``k`` (0 for the first sample the daemon ever accepted) lives in slot
``k % capacity``.  A reader asks for everything since ``k`` and learns whether it fell
behind (the oldest samples it wanted were overwritten).  Only the acquisition loop
writes; reads copy, so a reply can leave the loop safely.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter

import numpy as np

NO_EPOCH = -1


@dataclass
class Block:
    """A run of consecutive samples, ``seq`` being the absolute index of the first.

    t: host time, s since the Unix epoch (n,); t_dev: device time, s (n,) (NaN if none);
    raw: intensities, device counts (n, n_ch, n_wl); hb: µM (n, 3, n_ch) [HbO, HbR, HbT];
    quality: per-channel bits (n, n_ch); flags: device flags (n,);
    epoch: index into the epoch label table, NO_EPOCH for none (n,).
    """

    seq: int
    t: np.ndarray
    t_dev: np.ndarray
    raw: np.ndarray
    hb: np.ndarray
    quality: np.ndarray
    flags: np.ndarray
    epoch: np.ndarray

    @property
    def n(self) -> int:
        return len(self.t)

    @property
    def end(self) -> int:
        """Absolute index one past the last sample."""
        return self.seq + self.n


def epoch_labels(epoch: np.ndarray, labels) -> list[str | None]:
    """Per-sample epoch label (or None) from the stored label indices."""
    return [labels[e] if e != NO_EPOCH else None for e in epoch.tolist()]


FIELDS = ("t", "t_dev", "raw", "hb", "quality", "flags", "epoch")
_FIELDS_OF = attrgetter(*FIELDS)  # a block's fields as a tuple, in one call


class RingBuffer:
    def __init__(
        self, capacity: int, n_channels: int, n_wavelengths: int, first_seq: int = 0
    ) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self.n_channels = n_channels
        self.n_wavelengths = n_wavelengths
        self._t = np.zeros(capacity)
        self._t_dev = np.zeros(capacity)
        self._raw = np.zeros((capacity, n_channels, n_wavelengths))
        self._hb = np.zeros((capacity, 3, n_channels))
        self._quality = np.zeros((capacity, n_channels), np.uint8)
        self._flags = np.zeros(capacity, np.uint8)
        self._epoch = np.full(capacity, NO_EPOCH, np.int16)
        self._columns = [(name, getattr(self, "_" + name)) for name in FIELDS]
        self._dsts = tuple(dst for _, dst in self._columns)
        self.head = first_seq  # absolute index of the next sample to be written
        self._start = first_seq  # nothing before this was ever written here

    @property
    def arrays(self) -> tuple[np.ndarray, ...]:
        """The column arrays themselves (to make their memory resident, not to write)."""
        return self._dsts

    @staticmethod
    def bytes_per_sample(n_channels: int, n_wavelengths: int) -> int:
        return 8 * 2 + 8 * n_channels * n_wavelengths + 8 * 3 * n_channels + n_channels + 3

    @property
    def oldest(self) -> int:
        """Absolute index of the oldest sample still held."""
        return max(self._start, self.head - self.capacity)

    def append(self, block: Block) -> None:
        """Write a block whose ``seq`` must equal ``head``; the ring keeps the newest."""
        if block.seq != self.head:
            raise ValueError(f"block starts at {block.seq}, ring expects {self.head}")
        n = block.n
        if n > self.capacity:  # only the newest capacity samples can be kept
            drop = n - self.capacity
            self.head += drop
            self._start = max(self._start, self.head - self.capacity)
            block = self._slice(block, drop, n)
            n = self.capacity
        start = self.head % self.capacity
        end = start + n
        if end <= self.capacity:
            for dst, src in zip(self._dsts, _FIELDS_OF(block)):
                dst[start:end] = src
        else:
            first = self.capacity - start
            for name, dst in self._columns:
                src = getattr(block, name)
                dst[start:] = src[:first]
                dst[: n - first] = src[first:]
        self.head += n

    def set_epoch(self, seq: int, end: int, epoch: int) -> None:
        """Re-tag held samples [seq, end) (a marker that arrived late)."""
        lo, hi = max(seq, self.oldest), min(end, self.head)
        if lo >= hi:
            return
        idx = np.arange(lo, hi) % self.capacity
        self._epoch[idx] = epoch

    def read(self, since: int, until: int | None = None) -> tuple[Block, int]:
        """Copy samples [since, until) that are still held.

        Returns the block and how many wanted samples were already overwritten
        (0 unless the reader fell behind).
        """
        until = self.head if until is None else min(until, self.head)
        since = max(since, 0)
        missed = max(0, self.oldest - since)
        lo = max(since, self.oldest)
        return Block(lo, *self.columns(lo, until)), missed

    def columns(
        self, since: int, until: int, names: tuple[str, ...] = FIELDS, step: int = 1
    ) -> tuple[np.ndarray, ...]:
        """Copies of the named fields for held samples [since, until) (clipped to what
        is held), in order; every ``step``-th from the first with ``step``."""
        lo = max(since, self.oldest)
        idx = np.arange(lo, max(lo, min(until, self.head)), step) % self.capacity
        return tuple(getattr(self, "_" + name)[idx] for name in names)

    def last(self) -> tuple[float, float] | None:
        """(host time, device time) of the newest held sample, or None when empty."""
        if self.head == self.oldest:
            return None
        i = (self.head - 1) % self.capacity
        return float(self._t[i]), float(self._t_dev[i])

    def first_at_or_after(self, t: float, device: bool = False) -> tuple[int, float] | None:
        """(seq, host time) of the first held sample with host time ≥ t (device time ≥ t
        with ``device``), or None if none is held."""
        idx = np.arange(self.oldest, self.head) % self.capacity
        times = (self._t_dev if device else self._t)[idx]
        i = int(np.searchsorted(times, t, side="left"))
        return (self.oldest + i, float(self._t[idx[i]])) if i < times.shape[0] else None

    @staticmethod
    def _slice(block: Block, a: int, b: int) -> Block:
        return Block(block.seq + a, *(getattr(block, name)[a:b] for name in FIELDS))
