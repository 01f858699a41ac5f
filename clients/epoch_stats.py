"""The study's numbers from a recorded session: per-channel epoch changes and
epoch-locked averages, computed from the file alone.

A repetition of an exercise is one stim row (onset, duration).  Its change is, per
channel, the mean ΔHb during the epoch minus the mean over the ``baseline_s`` seconds
before its onset (counted in samples, as the daemon's epoch summaries do, so the
numbers agree with them when the file holds the same samples).  Across repetitions
the mean and the sample standard deviation (ddof = 1; none for a single repetition)
are reported.  The epoch-locked average aligns every repetition at its onset, removes
its own pre-onset mean, averages over channels, then takes mean ± SD across the
repetitions, over the shortest repetition's length so every point averages all of them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .session_file import Session

#: the exercises of the lumbar study first; other labels follow in file order
EXERCISE_ORDER = ("extension", "flexion")
KINDS = ("hbo", "hbr", "hbt")


def _nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: NaN
        return np.nanmean(x, axis=axis)


def _sd(x: np.ndarray) -> np.ndarray:
    """Sample SD over axis 0 (ddof 1); NaN with fewer than two repetitions."""
    if x.shape[0] < 2:
        return np.full(x.shape[1:], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanstd(x, axis=0, ddof=1)


def exercise_labels(s: Session) -> list[str]:
    """Labels with at least one epoch of some duration; ``rest`` only if nothing else."""
    labels = [k for k, rows in s.stims.items() if len(rows) and (rows[:, 1] > 0).any()]
    ordered = [k for k in EXERCISE_ORDER if k in labels]
    ordered += [k for k in labels if k not in ordered and k != "rest"]
    return ordered or [k for k in labels if k == "rest"]


def _stack(s: Session) -> np.ndarray:
    """(n, 3, ch): ΔHbO, ΔHbR, ΔHbT in µM."""
    return np.stack([s.hbo, s.hbr, s.hbt], axis=1)


def _windows(s: Session, label: str, baseline_n: int) -> list[tuple[int, int, int]]:
    """(baseline start, onset, end) row indices of every repetition of ``label``."""
    out = []
    eps = 1e-6  # onsets are sample times of the file: searchsorted finds that row
    for onset, duration, *_ in s.stims.get(label, np.zeros((0, 3))):
        if duration <= 0:
            continue
        i0 = int(np.searchsorted(s.time_s, onset - eps))
        i1 = int(np.searchsorted(s.time_s, onset + duration - eps))
        if i0 >= len(s.time_s) or i1 <= i0:
            continue
        out.append((max(0, i0 - baseline_n), i0, i1))
    return out


@dataclass
class Changes:
    """Per-channel changes of one exercise: ``mean``/``sd`` (3, ch) µM over ``n`` reps."""

    label: str
    per_rep: np.ndarray  # (n, 3, ch)
    mean: np.ndarray
    sd: np.ndarray

    @property
    def n(self) -> int:
        return int(self.per_rep.shape[0])


def changes(s: Session, label: str, baseline_s: float) -> Changes:
    """Every repetition's change from its pre-epoch baseline, per channel."""
    hb = _stack(s)
    nb = max(1, int(round(baseline_s * s.rate_hz)))
    reps = [
        _nanmean(hb[i0:i1], 0) - _nanmean(hb[b0:i0], 0)
        for b0, i0, i1 in _windows(s, label, nb)
        if i0 > b0
    ]
    per_rep = np.array(reps) if reps else np.zeros((0, 3, hb.shape[2]))
    mean = _nanmean(per_rep, 0) if reps else np.full((3, hb.shape[2]), np.nan)
    return Changes(label, per_rep, mean, _sd(per_rep))


@dataclass
class EpochAverage:
    """Channel-mean ΔHb locked to the onset: ``t`` (m,) s, ``mean``/``sd`` (3, m) µM."""

    label: str
    t: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    n: int
    baseline_s: float


def epoch_average(s: Session, label: str, baseline_s: float) -> EpochAverage:
    """Mean ± SD across repetitions with a full baseline window in the file."""
    rate = s.rate_hz
    nb = max(1, int(round(baseline_s * rate)))
    wins = [w for w in _windows(s, label, nb) if w[1] - w[0] == nb]
    if not wins or rate <= 0:
        empty = np.zeros((3, 0))
        return EpochAverage(label, np.zeros(0), empty, empty, 0, baseline_s)
    length = min(i1 - i0 for _, i0, i1 in wins)
    hb = _nanmean(_stack(s), 2)  # (n, 3): over channels
    traces = np.array([hb[i0 - nb : i0 + length] - _nanmean(hb[b0:i0], 0) for b0, i0, _ in wins])
    t = np.arange(-nb, length) / rate
    return EpochAverage(label, t, _nanmean(traces, 0).T, _sd(traces).T, len(wins), nb / rate)
