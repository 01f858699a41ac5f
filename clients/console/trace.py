"""Display traces: ``hb`` blocks decimated to a few points a second, and a ring of them.

A page needs a few hundred points across its plot, not 100 samples a second for 64
channels, so the console averages every ``factor`` consecutive samples into one point
(NaN-aware: a point is NaN only when all its samples were) and keeps the last
``capacity`` points (the longest window a page can choose) for pages that connect later.
A point is stamped with the time, ``seq`` and epoch of its last sample, so it leaves as
soon as that sample arrives: decimation adds no latency.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

NO_EPOCH = -1


@dataclass
class Points:
    """Decimated samples: ``hb`` [n, 3, n_channels] µM (ΔHbO, ΔHbR, ΔHbT)."""

    seq: np.ndarray  # int64 [n]: seq of the last sample of each point
    t: np.ndarray  # float64 [n]: host time of that sample, Unix s
    epoch: np.ndarray  # int16 [n]: index into the label list, NO_EPOCH when none
    quality: np.ndarray  # uint8 [n, n_channels]: OR of the samples' quality bits
    hb: np.ndarray  # float32 [n, 3, n_channels]

    def __len__(self) -> int:
        return len(self.t)

    def to_json(self) -> str:
        """Channel-major JSON for the page (NaN as null, µM to 3 decimals)."""
        hb = np.round(self.hb.astype(np.float64), 3)
        body = {
            "seq": self.seq.tolist(),
            "t": np.round(self.t, 3).tolist(),
            "ep": self.epoch.tolist(),
            "hbo": hb[:, 0, :].T.tolist(),
            "hbr": hb[:, 1, :].T.tolist(),
            "hbt": hb[:, 2, :].T.tolist(),
        }
        # labels travel as indices, so "NaN" can only be a number here
        return json.dumps(body, separators=(",", ":")).replace("NaN", "null")


class Decimator:
    """Block means over ``factor`` samples, carrying the remainder to the next block."""

    def __init__(self, n_channels: int, factor: int, labels: list[str]) -> None:
        self.n_channels = int(n_channels)
        self.factor = max(1, int(factor))
        self.label_index = {label: i for i, label in enumerate(labels)}
        self._hb = np.empty((0, 3, self.n_channels))
        self._q = np.empty((0, self.n_channels), np.uint8)

    def push(
        self, seq0: int, t: Any, epoch: list[Any], quality: np.ndarray, hb: np.ndarray
    ) -> Points | None:
        """Add samples ``seq0 …`` (``epoch``: label or None per sample); the whole points
        they complete, or None."""
        hb = np.concatenate([self._hb, hb[:, :3, :]]) if len(self._hb) else hb[:, :3, :]
        q = np.concatenate([self._q, quality]) if len(self._q) else quality
        held = len(self._hb)
        k = self.factor
        m = len(hb) // k
        self._hb, self._q = hb[m * k :].copy(), q[m * k :].copy()
        if m == 0:
            return None
        groups = hb[: m * k].reshape(m, k, 3, self.n_channels)
        finite = np.isfinite(groups)
        total = np.where(finite, groups, 0.0).sum(axis=1)
        count = finite.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        qual = np.bitwise_or.reduce(q[: m * k].reshape(m, k, self.n_channels), axis=1)
        # index of each point's last sample within this call's new samples
        last = np.arange(1, m + 1) * k - 1 - held
        return Points(
            seq=seq0 + last.astype(np.int64),
            t=np.asarray(t, np.float64)[last],
            epoch=self._epochs(epoch, last),
            quality=qual.astype(np.uint8),
            hb=mean.astype(np.float32),
        )

    def _epochs(self, epoch: list[Any], last: np.ndarray) -> np.ndarray:
        """Label indices of the points' last samples only (one lookup per point)."""
        if len(epoch) <= int(last[-1]):  # a header without per-sample labels
            return np.full(len(last), NO_EPOCH, np.int16)
        get = self.label_index.get
        return np.array([get(epoch[i], NO_EPOCH) for i in last.tolist()], np.int16)


class TraceRing:
    """The last ``capacity`` points, for the snapshot a new page starts from."""

    def __init__(self, n_channels: int, capacity: int) -> None:
        self.n_channels = int(n_channels)
        self.capacity = max(1, int(capacity))
        self.seq = np.zeros(self.capacity, np.int64)
        self.t = np.zeros(self.capacity)
        self.epoch = np.full(self.capacity, NO_EPOCH, np.int16)
        self.quality = np.zeros((self.capacity, self.n_channels), np.uint8)
        self.hb = np.full((self.capacity, 3, self.n_channels), np.nan, np.float32)
        self.head = 0  # points ever written

    def append(self, pts: Points) -> None:
        n = len(pts)
        if n == 0:
            return
        if n > self.capacity:
            pts = self._slice(pts, n - self.capacity)
            self.head += n - self.capacity
            n = self.capacity
        idx = (self.head + np.arange(n)) % self.capacity
        self.seq[idx], self.t[idx], self.epoch[idx] = pts.seq, pts.t, pts.epoch
        self.quality[idx], self.hb[idx] = pts.quality, pts.hb
        self.head += n

    @staticmethod
    def _slice(pts: Points, start: int) -> Points:
        return Points(
            pts.seq[start:], pts.t[start:], pts.epoch[start:], pts.quality[start:], pts.hb[start:]
        )

    def last(self, seconds: float | None = None) -> Points:
        """Points held, oldest first; only those within ``seconds`` of the newest."""
        n = min(self.head, self.capacity)
        idx = (self.head - n + np.arange(n)) % self.capacity
        pts = Points(self.seq[idx], self.t[idx], self.epoch[idx], self.quality[idx], self.hb[idx])
        if seconds is not None and n:
            start = int(np.searchsorted(pts.t, pts.t[-1] - seconds, side="left"))
            pts = self._slice(pts, start)
        return pts

    def recent_quality(self, points: int) -> np.ndarray:
        """OR of the quality bits over the last ``points`` points, per channel."""
        n = min(self.head, self.capacity, max(1, points))
        if n == 0:
            return np.zeros(self.n_channels, np.uint8)
        idx = (self.head - n + np.arange(n)) % self.capacity
        return np.bitwise_or.reduce(self.quality[idx], axis=0)
