"""Per-epoch muscle measures of one run, and the epoch-locked curves for the figures.

For an epoch [onset, onset + duration) with the pre-epoch window [onset − S, onset), per
channel and chromophore, with change(t) = x(t) − mean(x over the pre-epoch window):

- ``mean_change``: mean of change over the epoch (µM): the daemon's epoch summary.
- ``peak_change``: the change of largest magnitude during the epoch, with its sign (µM);
  ``time_to_peak``: its time after the onset (s).
- ``slope``: least-squares slope of change against time over the epoch (µM/s).
- ``recovery_half_time``: with L the mean change over the epoch's last second, the time
  (s) after the epoch's end at which the 1-s forward moving mean of change first reaches
  L/2 (is back halfway to the pre-epoch mean); n/a when that does not happen before the
  next epoch's onset (or the recording's end).
- ``motion_fraction`` / ``bad_fraction``: share of the samples of the pre-epoch window and
  the epoch (both enter the measures) flagged as motion / bad light or saturation.

A sample belongs to a window when its time lies in it (times within 0.1 % of a sample
period of a boundary count as on it, so onsets written on the sample grid are exact).
A channel is usable in an epoch when its motion_fraction ≤ max_motion, its bad_fraction ≤
max_bad and its measures are finite; the ``all`` row averages the usable channels' time
series sample by sample and takes the measures of that average.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .report_data import RunData

CHROMOPHORES = ("hbo", "hbr", "hbt")
MEASURES = ("mean_change", "peak_change", "time_to_peak", "slope", "recovery_half_time")
RECOVERY_WINDOW_S = 1.0


@dataclass(frozen=True)
class Limits:
    baseline_s: float = 10.0
    max_motion: float = 0.2
    max_bad: float = 0.5


def _nanmean(x: np.ndarray, axis: int = 0) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=axis)


def _slope(y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Least-squares slope of each column of y (m, …) against t (m,), NaNs left out."""
    w = np.isfinite(y)
    tt = np.broadcast_to(t.reshape((-1,) + (1,) * (y.ndim - 1)), y.shape)
    n = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        tbar = np.where(w, tt, 0.0).sum(axis=0) / n
        ybar = np.where(w, y, 0.0).sum(axis=0) / n
        dt = np.where(w, tt - tbar, 0.0)
        num = (dt * np.where(w, y - ybar, 0.0)).sum(axis=0)
        den = (dt * dt).sum(axis=0)
        return np.where((n >= 2) & (den > 0), num / den, np.nan)


def _recovery(during: np.ndarray, post: np.ndarray, t_post: np.ndarray, end: float, fs: float):
    """Seconds after ``end`` until the change is back halfway (see the module doc)."""
    w = max(1, int(round(RECOVERY_WINDOW_S * fs)))
    level = _nanmean(during[-w:], 0)
    out = np.full(level.shape, np.nan)
    if post.shape[0] < w:
        return out
    fin = np.isfinite(post)
    c = np.concatenate([np.zeros((1,) + post.shape[1:]), np.cumsum(np.where(fin, post, 0), 0)])
    k = np.concatenate([np.zeros((1,) + post.shape[1:]), np.cumsum(fin, 0)])
    with np.errstate(invalid="ignore", divide="ignore"):
        moving = (c[w:] - c[:-w]) / (k[w:] - k[:-w])  # mean over [i, i + w)
        crossed = (moving - level / 2) * np.sign(level) <= 0
    crossed &= (level != 0) & np.isfinite(level)
    first = np.argmax(crossed, axis=0)
    hit = crossed.any(axis=0)
    out[hit] = t_post[first[hit]] - end
    return out


def measures(
    x: np.ndarray, t: np.ndarray, nb: int, ne: int, onset: float, duration: float, fs: float
) -> dict[str, np.ndarray]:
    """The five measures of a segment x (m, …): nb baseline rows, ne epoch rows, then the
    post-epoch rows; t (m,) s.  Each result has x's trailing shape."""
    base = _nanmean(x[:nb], 0)
    during = x[nb : nb + ne] - base
    post = x[nb + ne :] - base
    mag = np.where(np.isnan(during), -np.inf, np.abs(during))
    idx = np.argmax(mag, axis=0)
    peak = np.take_along_axis(during, idx[None], 0)[0]
    ttp = np.where(np.isnan(peak), np.nan, t[nb + idx] - onset)
    return {
        "mean_change": _nanmean(during, 0),
        "peak_change": peak,
        "time_to_peak": ttp,
        "slope": _slope(during, t[nb : nb + ne]),
        "recovery_half_time": _recovery(during, post, t[nb + ne :], onset + duration, fs),
    }


@dataclass
class Curve:
    """An included epoch's ``all`` change (m, 3) against time from onset (m,) s."""

    trial_type: str
    duration: float
    rel_t: np.ndarray
    change: np.ndarray


@dataclass
class RunEpochs:
    rows: list[dict[str, Any]] = field(default_factory=list)
    curves: list[Curve] = field(default_factory=list)
    n_epochs: int = 0
    excluded: dict[str, int] = field(default_factory=dict)  # epochs whose `all` row is out
    channel_motion_excluded: int = 0  # epoch × channel rows out for motion
    skipped: int = 0  # epochs without samples in the pre-epoch window or the epoch


def _bounds(t: np.ndarray, fs: float, a: float) -> int:
    return int(np.searchsorted(t, a - 1e-3 / fs, side="left"))


def _windows(data: RunData, i: int, baseline_s: float) -> tuple[int, int, int, int]:
    """Rows [b0, i0) pre-epoch, [i0, i1) epoch, [i1, p1) until the next epoch's onset.

    By time; but when the file and events.tsv carry nirsd's sample indices, by those,
    as the daemon does: round(S · rate) samples before the onset sample, and the epoch's
    own samples [nirsd_seq, nirsd_end_seq)."""
    t, fs, ev = data.time, data.rate_hz, data.events[i]
    later = [e for e in data.events[i + 1 :] if e.onset > ev.onset]
    if data.seq is not None and ev.seq is not None and ev.end_seq is not None:
        seq = data.seq
        n_base = int(round(baseline_s * fs))
        b0, i0, i1 = np.searchsorted(seq, [ev.seq - n_base, ev.seq, ev.end_seq])
        nxt = later[0].seq if later and later[0].seq is not None else None
        p1 = int(np.searchsorted(seq, nxt)) if nxt is not None else len(seq)
        return int(b0), int(i0), int(i1), p1
    b0, i0 = _bounds(t, fs, ev.onset - baseline_s), _bounds(t, fs, ev.onset)
    i1 = _bounds(t, fs, ev.onset + ev.duration)
    p1 = _bounds(t, fs, later[0].onset) if later else len(t)
    return b0, i0, i1, p1


def _reason(motion: float, bad: float, finite: bool, lim: Limits) -> str:
    if motion > lim.max_motion:
        return "motion"
    if bad > lim.max_bad:
        return "bad_light"
    return "no" if finite else "no_data"


def _rows(
    epoch: dict[str, Any],
    names: list[str],
    m: dict[str, np.ndarray],
    fractions: tuple[np.ndarray, np.ndarray],
    counts: list[int],
    reasons: list[str],
) -> list[dict[str, Any]]:
    """One row per channel (the last is ``all``) × chromophore of one epoch."""
    mot, bad = fractions
    rows = []
    for c, name in enumerate(names):
        for k, chrom in enumerate(CHROMOPHORES):
            row = epoch | {"channel": name, "chromophore": chrom}
            row |= {key: float(m[key][k, c]) for key in MEASURES}
            row |= {"motion_fraction": float(mot[c]), "bad_fraction": float(bad[c])}
            rows.append(row | {"n_channels": counts[c], "excluded": reasons[c]})
    return rows


def epoch_table(data: RunData, group: str, lim: Limits) -> RunEpochs:
    """Every epoch of ``data`` × channel (and ``all``) × chromophore, as rows."""
    out = RunEpochs()
    t, fs, n_ch = data.time, data.rate_hz, len(data.labels)
    r = data.run
    ident = {"participant_id": r.participant, "session": r.session, "group": group}
    ident |= {"task": r.task, "run": r.run}
    for i, ev in enumerate(data.events):
        b0, i0, i1, p1 = _windows(data, i, lim.baseline_s)
        if i0 - b0 < 1 or i1 - i0 < 1:
            out.skipped += 1
            continue
        out.n_epochs += 1
        seg, ts = data.hb[b0:p1], t[b0:p1]
        nb, ne = i0 - b0, i1 - i0
        mot = data.motion[b0:i1].mean(axis=0)
        bad = data.bad[b0:i1].mean(axis=0)
        # finite measures need a finite sample before and in the epoch, every chromophore
        fin = np.isfinite(seg)
        finite = fin[:nb].any(axis=0).all(axis=0) & fin[nb : nb + ne].any(axis=0).all(axis=0)
        reasons = [_reason(mot[c], bad[c], finite[c], lim) for c in range(n_ch)]
        usable = np.array([x == "no" for x in reasons])
        out.channel_motion_excluded += reasons.count("motion")
        if usable.any():
            avg = _nanmean(seg[:, :, usable], 2)  # (m, 3): the `all` channel
            reasons.append("no")
            fractions = np.append(mot, mot[usable].mean()), np.append(bad, bad[usable].mean())
            change = avg - _nanmean(avg[:nb], 0)
            out.curves.append(Curve(ev.trial_type, ev.duration, ts - ev.onset, change))
        else:
            avg = np.full(seg.shape[:2], np.nan)
            reason = next((x for x in ("motion", "bad_light") if x in reasons), "no_data")
            reasons.append(reason)
            fractions = np.append(mot, mot.mean()), np.append(bad, bad.mean())
            out.excluded[reason] = out.excluded.get(reason, 0) + 1
        x = np.concatenate([seg, avg[:, :, None]], axis=2)  # one pass for channels + all
        m = measures(x, ts, nb, ne, ev.onset, ev.duration, fs)  # (3, n_ch + 1) each
        epoch = ident | {"trial_type": ev.trial_type, "onset": ev.onset, "duration": ev.duration}
        counts = [1] * n_ch + [int(usable.sum())]
        out.rows += _rows(epoch, [*data.labels, "all"], m, fractions, counts, reasons)
    return out


class CurveBank:
    """Subject-mean epoch-locked curves on one time grid per trial type.

    The grid of a trial type runs from −S to its first epoch's duration + S at the first
    run's sample period; every epoch is interpolated onto it (NaN beyond its samples)."""

    def __init__(self, baseline_s: float) -> None:
        self.baseline_s = baseline_s
        self.grids: dict[str, np.ndarray] = {}
        self.durations: dict[str, float] = {}
        self._sum: dict[tuple[str, str, str, str], np.ndarray] = {}
        self._n: dict[tuple[str, str, str, str], np.ndarray] = {}

    def add(self, participant: str, session: str, group: str, curves: list[Curve], fs: float):
        for cv in curves:
            grid = self.grids.get(cv.trial_type)
            if grid is None:
                step = 1.0 / fs
                grid = np.arange(-self.baseline_s, cv.duration + self.baseline_s, step)
                self.grids[cv.trial_type] = grid
                self.durations[cv.trial_type] = cv.duration
            y = np.stack(
                [np.interp(grid, cv.rel_t, cv.change[:, k], np.nan, np.nan) for k in range(3)], 1
            )
            key = (participant, session, group, cv.trial_type)
            fin = np.isfinite(y)
            self._sum[key] = self._sum.get(key, 0.0) + np.where(fin, y, 0.0)
            self._n[key] = self._n.get(key, 0) + fin

    def subject_means(self) -> dict[tuple[str, str, str, str], np.ndarray]:
        """(participant, session, group, trial_type) → mean curve (len(grid), 3)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return {k: self._sum[k] / self._n[k] for k in self._sum}
