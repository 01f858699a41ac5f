"""Per-sample motion-artifact detection: amplitude and standard-deviation thresholds.

Method (Huppert T. J., Diamond S. G., Franceschini M. A., Boas D. A. 2009, "HomER: a
review of time-series analysis methods for near-infrared spectroscopy of the brain",
Applied Optics 48(10):D280-D298; as Homer2/Homer3 implement it in
``hmrMotionArtifactByChannel``), on the optical density x(t) of each channel and
wavelength, sampled at fs:

    σ     = standard deviation of the first differences x[i+1] − x[i] over the record
    D[i]  = max over k = 1 … round(tMotion·fs) of |x[i+k] − x[i]|
    motion at i  ⇔  D[i] > STDEVthresh·σ  or  D[i] > AMPthresh   (on any wavelength)

and every sample within ±round(tMask·fs) of a detection is flagged too.  As in Homer the
differences are indexed from the second sample, so the first sample of a record is never
flagged.  A change that only drifts (a hemodynamic response over tens of seconds) stays
far below both thresholds; a probe that shifts or lifts changes OD by a large step within
tMotion.

σ is estimated robustly by default (1.4826 × the median absolute deviation of the
differences, which equals the standard deviation for Gaussian noise): Homer's plain
standard deviation includes the artifacts themselves, so a channel with several of them
raises its own threshold and misses the smaller ones (``robust=False`` gives Homer's).

Defaults: tMotion 0.5 s and tMask 1.0 s (Homer's defaults), STDEVthresh 15 (inside
Homer's documented typical range 5-20) and AMPthresh 0.3 OD (the top of its range
0.01-0.3 for optical density).  A muscle's exercise response moves OD by a few hundredths
per second; at 10 Hz with typical noise σ ≈ 0.004 OD, a change of about 0.06 OD within
0.5 s is flagged, so the response itself is not.

:func:`detect` works on a whole record (the report).  :class:`MotionMonitor` is the
streaming form for the daemon: σ is a running estimate over all differences so far and
D looks back (|x[j] − x[j−k]|), so a sample is flagged when it arrives and the mask
extends forward only (tMask after a detection); the samples before a detection were
published already.  NaN (bad light) never counts as motion: it is flagged elsewhere.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

MOTION = 16  # quality bit (beside SATURATED 1, LOW_LIGHT 2, BASELINE_PENDING 4, POOR_SIGNAL 8)


@dataclass(frozen=True)
class MotionParams:
    """Homer's parameters: tMotion, tMask in s; STDEVthresh (× σ of the differences);
    AMPthresh in OD; how σ is estimated."""

    t_motion_s: float = 0.5
    t_mask_s: float = 1.0
    stdev_thresh: float = 15.0
    amp_thresh: float = 0.3
    robust: bool = True  # σ from the median absolute deviation (False: Homer's std)

    def lags(self, rate_hz: float) -> int:
        """Largest lag k in samples (at least 1)."""
        return max(1, int(round(self.t_motion_s * rate_hz)))

    def mask(self, rate_hz: float) -> int:
        """Samples flagged on each side of a detection."""
        return max(0, int(round(self.t_mask_s * rate_hz)))


def _as_columns(od: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    x = np.asarray(od, dtype=np.float64)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3:
        raise ValueError(f"od must be (n, n_ch) or (n, n_ch, n_wl), got {x.shape}")
    return x.reshape(x.shape[0], -1), x.shape[1:]


def _dilate(bad: np.ndarray, width: int) -> np.ndarray:
    """True wherever a True lies within ±width rows (cumulative sums: no Python loop)."""
    if width == 0 or not bad.any():
        return bad
    n = bad.shape[0]
    c = np.concatenate([np.zeros((1,) + bad.shape[1:], np.int64), np.cumsum(bad, axis=0)])
    hi = np.minimum(np.arange(n) + width + 1, n)
    lo = np.maximum(np.arange(n) - width, 0)
    return (c[hi] - c[lo]) > 0


SORTED_MEDIAN_MAX = 4096  # rows up to which a median is taken by sorting them


def _median_rows(rows: np.ndarray) -> np.ndarray:
    """``np.median(rows, axis=1)`` of finite rows, the same values: a short row sorted
    whole is several times faster than numpy's partition-based median (a live check's
    rows are a few hundred long; a record's, where partitioning wins, go to numpy)."""
    m = rows.shape[1]
    if m > SORTED_MEDIAN_MAX or m == 0:
        return np.median(rows, axis=1)
    s = np.sort(rows, axis=1)
    half = m // 2
    return s[:, half] if m % 2 else (s[:, half - 1] + s[:, half]) / 2


def _sigma(diff: np.ndarray, robust: bool) -> np.ndarray:
    """Per column σ of the differences: 1.4826·MAD (robust) or the standard deviation."""
    if not robust:
        return np.nanstd(diff, axis=0, ddof=1)
    rows = np.ascontiguousarray(diff.T)  # a median along contiguous rows is ~5x faster
    if np.isfinite(diff).all():
        med = _median_rows(rows)
        return 1.4826 * _median_rows(np.abs(rows - med[:, None]))
    med = np.nanmedian(rows, axis=1)  # slow: only where light was bad
    return 1.4826 * np.nanmedian(np.abs(rows - med[:, None]), axis=1)


def detect(
    od: np.ndarray,
    rate_hz: float,
    params: MotionParams | None = None,
    last: int | None = None,
) -> np.ndarray:
    """Motion flags (n, n_ch) bool for a record of optical density (n, n_ch, n_wl).

    ``od`` is natural-log optical density (any I0: only differences enter); NaN where
    the light was bad.  ``rate_hz`` in Hz.  A channel is flagged where any of its
    wavelengths is.  ``last``: only the flags of the last ``last`` samples, (last, n_ch),
    the same values as ``detect(...)[-last:]``; σ still comes from every difference, but
    the lags are taken only where those flags can come from (the live check wants the
    last second of a ten-second window).
    """
    p = params or MotionParams()
    x, shape = _as_columns(od)
    n = x.shape[0]
    rows = n if last is None else max(0, min(int(last), n))
    out = np.zeros((rows,) + shape[:1], dtype=bool)
    if n < 2 or rows == 0:
        return out
    mask = p.mask(rate_hz)
    # out[i] is the dilated detection of difference i - 1; the wanted rows' come from
    # differences j0 … n - 2 (a mask's reach back from the first of them)
    j0 = max(0, n - rows - 1 - mask)
    with np.errstate(invalid="ignore"):
        diff = np.diff(x, axis=0)
        finite = np.isfinite(diff)
        counts = finite.sum(axis=0)
        sigma = np.full(x.shape[1], np.inf)
        ok = counts > 1
        if ok.any():
            sigma[ok] = _sigma(diff[:, ok], p.robust)
        reach = np.zeros((n - 1 - j0, x.shape[1]))
        for k in range(1, min(p.lags(rate_hz), n - 1) + 1):
            m = n - k - j0  # differences j0 … n - k - 1 have a sample k later
            if m <= 0:
                break
            step = np.abs(x[j0 + k :] - x[j0 : n - k])  # lag loop: a few iterations
            np.fmax(reach[:m], step, out=reach[:m])
        bad = (reach > p.stdev_thresh * sigma) | (reach > p.amp_thresh)
    per_channel = np.asarray(bad.reshape(n - 1 - j0, *shape).any(axis=2))
    dilated = _dilate(per_channel, mask)
    first = n - rows  # the first wanted sample (the record's first is never flagged)
    if first == 0:
        out[1:] = dilated
    else:
        out[:] = dilated[first - 1 - j0 :]
    return out


LIVE_RATE_HZ = 20.0  # the daemon assesses motion at about this rate (bucket means)
LIVE_MAX_VALUES = 20_000  # OD values one live assessment looks at (a few ms in the loop)


def od_of(raw: np.ndarray) -> np.ndarray:
    """Optical density (n, n_ch, n_wl) of raw intensities against their own mean, NaN
    where the light is not positive (motion sees only OD differences, so any I0 does)."""
    x = np.asarray(raw, np.float64)
    positive = x > 0
    if positive.all():  # the usual case: nanmean's copies and masks were most of it
        mean = x.mean(axis=0)  # the same sums as nanmean's with nothing to skip
    else:
        x = np.where(positive, x, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a channel without light
            mean = np.nanmean(x, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.log(mean) - np.log(x)


def live_step(n: int, columns: int, rate_hz: float) -> int:
    """The k of :func:`detect_live` for n samples of ``columns`` values at ``rate_hz``."""
    return max(1, int(rate_hz // LIVE_RATE_HZ), -(-n * columns // LIVE_MAX_VALUES))


def detect_live(raw: np.ndarray, rate_hz: float, params: MotionParams | None = None):
    """:func:`detect` on intensities (n, n_ch, n_wl) with a bounded cost, for the daemon:
    every k-th sample is kept, k chosen so that at most about LIVE_RATE_HZ samples per
    second and LIVE_MAX_VALUES values in all are looked at (a kept sample's flag applies
    to the k samples from it); returns (n, n_ch) bool."""
    n = raw.shape[0]
    k = live_step(n, int(np.prod(raw.shape[1:])), rate_hz)
    m = (n // k) * k
    if m == 0:
        return np.zeros(raw.shape[:2], dtype=bool)
    # every k-th sample (a view): the loop's cost stays a few ms whatever the probe;
    # motion artifacts last far longer than the ~50 ms between the samples kept
    od = od_of(raw[n - m :: k])
    flags = np.repeat(detect(od, rate_hz / k, params), k, axis=0)
    out = np.zeros(raw.shape[:2], dtype=bool)
    out[n - m :] = flags
    return out


class MotionMonitor:
    """Streaming detector for ``n_channels`` × ``n_wavelengths`` OD signals at ``rate_hz``.

    σ is re-estimated once per second of samples (counted from the first sample, so the
    flags do not depend on how the stream is cut into blocks) from the differences so far
    that were not flagged: the artifacts do not raise their own threshold.
    """

    def __init__(
        self,
        n_channels: int,
        n_wavelengths: int,
        rate_hz: float,
        params: MotionParams | None = None,
    ) -> None:
        self.params = params or MotionParams()
        self.n_channels, self.n_wavelengths = int(n_channels), int(n_wavelengths)
        self._k = self.params.lags(rate_hz)
        self._hold_n = self.params.mask(rate_hz)
        self._period = max(1, int(round(rate_hz)))  # samples between σ updates
        # σ from a handful of differences is too small to trust: the STDEV test waits
        # for 2 s of them (the amplitude test applies from the first sample)
        self._min_diffs = max(20, int(round(2.0 * rate_hz)))
        m = self.n_channels * self.n_wavelengths
        self._tail = np.full((self._k, m), np.nan)  # the last k samples, oldest first
        self._acc = np.zeros((3, m))  # count, sum, sum of squares of the kept differences
        self._sigma = np.full(m, np.inf)
        self._phase = 0
        self._hold = np.zeros(self.n_channels, dtype=np.int64)  # mask samples still owed

    def reset(self) -> None:
        """Forget the history (e.g. after a re-baseline or a reconnect)."""
        self._tail.fill(np.nan)
        self._acc.fill(0.0)
        self._sigma.fill(np.inf)
        self._phase = 0
        self._hold.fill(0)

    def update(self, od: np.ndarray) -> np.ndarray:
        """Flags (n, n_ch) bool for the next block of OD (n, n_ch, n_wl)."""
        x = np.asarray(od, dtype=np.float64).reshape(od.shape[0], -1)
        n = x.shape[0]
        if n <= self._period - self._phase:  # the streaming case: one chunk
            return self._chunk(x)
        out = np.empty((n, self.n_channels), dtype=bool)
        i = 0
        while i < n:  # one pass per second of samples, never per sample
            take = min(n - i, self._period - self._phase)
            out[i : i + take] = self._chunk(x[i : i + take])
            i += take
        return out

    def _chunk(self, x: np.ndarray) -> np.ndarray:
        """Samples that share one σ (they do not cross a σ update)."""
        n, k = x.shape[0], self._k
        full = np.concatenate([self._tail, x])  # (k + n, m)
        p = self.params
        with np.errstate(invalid="ignore"):
            reach = np.zeros(x.shape)
            for lag in range(1, k + 1):
                np.fmax(reach, np.abs(full[k:] - full[k - lag : k - lag + n]), reach)
            hit = (reach > p.stdev_thresh * self._sigma) | (reach > p.amp_thresh)
            d = full[k:] - full[k - 1 : k - 1 + n]
            keep = np.isfinite(d) & ~hit
        self._acc[0] += keep.sum(axis=0)
        self._acc[1] += np.where(keep, d, 0.0).sum(axis=0)
        self._acc[2] += np.where(keep, d * d, 0.0).sum(axis=0)
        self._tail = full[-k:]
        self._phase += n
        if self._phase >= self._period:
            self._phase = 0
            self._update_sigma()
        per_channel = np.asarray(hit.reshape(n, self.n_channels, self.n_wavelengths).any(axis=2))
        return self._apply_hold(per_channel)

    def _update_sigma(self) -> None:
        cnt, s, ss = self._acc
        with np.errstate(invalid="ignore", divide="ignore"):
            var = (ss - s * s / cnt) / (cnt - 1)
        self._sigma = np.where(cnt >= self._min_diffs, np.sqrt(np.maximum(var, 0.0)), np.inf)

    def _apply_hold(self, hit: np.ndarray) -> np.ndarray:
        """Extend each detection forward by the mask (carried across blocks)."""
        n = hit.shape[0]
        idx = np.arange(n)[:, None]
        last = np.where(hit, idx, -1 - self._hold_n)
        last = np.maximum.accumulate(last, axis=0)  # latest detection at or before each row
        owed = self._hold[None, :] > idx  # mask carried in from the previous block
        out = owed | (idx - last <= self._hold_n)
        any_hit = hit.any(axis=0)
        tail_left = np.maximum(self._hold - n, 0)
        since = n - 1 - last[-1]
        self._hold = np.where(any_hit, np.maximum(self._hold_n - since, tail_left), tail_left)
        return out
