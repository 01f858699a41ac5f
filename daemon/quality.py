"""Live per-channel signal quality over a sliding window (default the last 10 s).

A channel coupled well to tissue shows the arterial pulse in its ΔHbO (or OD) signal.
``update`` copies blocks into a preallocated ring (the pipeline feeds it from the
history ring just before each assessment, so nothing of it runs per frame);
``summary`` does the spectral work on demand (e.g. once per second for ``status``).

Pulsatility index (dimensionless, ≈ 0 for white noise, → 1 for a pure cardiac signal)
--------------------------------------------------------------------------------------
On the window x (n samples, per channel): NaNs are replaced by the channel's mean, the
linear trend is removed, a Hann taper is applied, and the one-sided power spectrum
P(f) = |rfft|² is taken.  With the cardiac band C = [0.8, 2.0] Hz and the broadband
B = [0.5 Hz, min(Nyquist, 5 Hz)] (above respiration and Mayer waves, below most
instrument noise):

    r  = Σ_{f∈C} P(f) / Σ_{f∈B} P(f)       (fraction of broadband power that is cardiac)
    r0 = |C| / |B|                          (that fraction for white noise: bins counted)
    PI = (r − r0) / (1 − r0)

A channel is ``poor`` when PI < ``min_pulsatility`` (0.3), or more than
``max_bad_fraction`` (5 %) of its window samples are SATURATED or LOW_LIGHT, or fewer
than half of its window samples are finite, or the window holds fewer than 2 s of data.
The sample rate must exceed about 5 Hz for the band split to mean anything.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np

from .converter import LOW_LIGHT, POOR_SIGNAL, SATURATED

ANALYSIS_RATE_HZ = 20.0  # the window is kept at about this rate: enough for a 5 Hz band
MAX_SPECTRA_PER_CALL = 512  # channels whose spectrum one assessment computes
SPECTRA_PER_STEP = 32  # and between two of the loop's turns (status in steps), at 1 kHz


def step_share(rate_hz: float) -> int:
    """How many times a 1 kHz probe's share of status work one step of a probe at
    ``rate_hz`` takes: its gaps between frames are that much longer, and fewer, bigger
    steps cost less (a step's numpy calls cost about the same for 6 channels as for 64)."""
    return max(1, int(round(1000.0 / rate_hz))) if rate_hz > 0 else 1


def run_steps(steps: Generator[None, None, Any]) -> Any:
    """Run a generator of steps to its end; its return value."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


class QualityMonitor:
    """Sliding-window signal quality for ``n_channels`` channels sampled at ``rate_hz``."""

    def __init__(
        self,
        n_channels: int,
        rate_hz: float,
        window_s: float = 10.0,
        cardiac_band_hz: tuple[float, float] = (0.8, 2.0),
        broadband_hz: tuple[float, float] = (0.5, 5.0),
        min_pulsatility: float = 0.3,
        max_bad_fraction: float = 0.05,
    ) -> None:
        """rate_hz in Hz, window_s in s; bands in Hz (broadband upper edge capped at Nyquist)."""
        if n_channels < 1 or rate_hz <= 0 or window_s <= 0:
            raise ValueError("n_channels, rate_hz and window_s must be positive")
        self.n_channels = int(n_channels)
        self.rate_hz = float(rate_hz)
        self.window_s = float(window_s)
        self.cardiac_band_hz = (float(cardiac_band_hz[0]), float(cardiac_band_hz[1]))
        self.broadband_hz = (
            float(broadband_hz[0]),
            min(float(broadband_hz[1]), self.rate_hz / 2.0),
        )
        self.min_pulsatility = float(min_pulsatility)
        self.max_bad_fraction = float(max_bad_fraction)
        # Fast devices are averaged in buckets of k samples before they enter the window,
        # so the once-a-second spectrum stays small (a 1 kHz probe would otherwise stall
        # the loop for tens of ms); a k-sample mean is a mild low-pass (sinc) that keeps
        # the 0.5-5 Hz band.
        self._k = max(1, int(self.rate_hz // ANALYSIS_RATE_HZ))
        self._rate = self.rate_hz / self._k
        self.broadband_hz = (self.broadband_hz[0], min(self.broadband_hz[1], self._rate / 2))
        self._size = max(2, int(round(self.window_s * self._rate)))
        self._x = np.full((self._size, self.n_channels), np.nan)
        self._sat = np.zeros((self._size, self.n_channels))  # saturated fraction per row
        self._low = np.zeros((self._size, self.n_channels))  # low-light fraction per row
        self._pos = 0  # next write index
        self._filled = 0  # valid rows in the ring
        self._acc = np.zeros((4, self.n_channels))  # bucket sums: x, finite, sat, low
        self._acc_n = 0
        self._pi = np.full(self.n_channels, np.nan)  # latest index, for big probes
        self._constants_n = -1  # the window length _constants were made for
        self._constants: tuple[Any, ...] = ()
        self._next_spectra = 0

    def reset(self) -> None:
        """Forget the window (e.g. after a probe is moved)."""
        self._x.fill(np.nan)
        self._sat.fill(0.0)
        self._low.fill(0.0)
        self._acc.fill(0.0)
        self._pos = self._filled = self._acc_n = 0

    def update(self, signal: np.ndarray, quality: np.ndarray | None = None) -> None:
        """Append a block: signal (n, n_ch) ΔHbO in µM or OD; quality (n, n_ch) uint8 bits."""
        x = np.asarray(signal, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_channels:
            raise ValueError(f"signal must be (n, {self.n_channels}), got {x.shape}")
        # only these bits feed the window (POOR_SIGNAL / BASELINE_PENDING do not)
        flagged = quality is not None and bool(
            (np.asarray(quality) & (SATURATED | LOW_LIGHT)).any()
        )
        if flagged:
            q = np.asarray(quality, dtype=np.uint8).reshape(x.shape)
            sat, low = (q & SATURATED) != 0, (q & LOW_LIGHT) != 0
        if self._k == 1:
            zeros = None if flagged else np.zeros(x.shape)
            self._push(x, sat if flagged else zeros, low if flagged else zeros)
            return
        if x.shape[0] == 1 and not flagged:  # the streaming case: three numpy calls
            row = x[0]
            finite_row = np.isfinite(row)
            np.add(self._acc[0], row, out=self._acc[0], where=finite_row)
            self._acc[1] += finite_row
            self._acc_n += 1
            if self._acc_n == self._k:
                self._close_bucket()
            return
        finite = np.isfinite(x)
        xs = np.where(finite, x, 0.0)
        n, i, k = x.shape[0], 0, self._k
        while i < n:
            if self._acc_n == 0 and n - i >= k:  # whole buckets: all of them at once
                i = self._whole_buckets(xs, finite, (sat, low) if flagged else None, i)
                continue
            take = min(n - i, k - self._acc_n)
            part = slice(i, i + take)
            self._acc[0] += xs[part].sum(axis=0)
            self._acc[1] += finite[part].sum(axis=0)
            if flagged:
                self._acc[2] += sat[part].sum(axis=0)
                self._acc[3] += low[part].sum(axis=0)
            self._acc_n += take
            i += take
            if self._acc_n == k:
                self._close_bucket()

    def whole_bucket_rows(self, available: int) -> int:
        """How many of ``available`` new rows end exactly at a bucket boundary (0: none)."""
        k = self._k
        first = (k - self._acc_n) % k  # rows that complete the open bucket
        return 0 if available < first else first + (available - first) // k * k

    def _whole_buckets(
        self,
        xs: np.ndarray,
        finite: np.ndarray,
        flags: tuple[np.ndarray, np.ndarray] | None,
        i: int,
    ) -> int:
        """Rows i… of a block as whole buckets, in a few numpy calls rather than a loop
        per bucket (a 1 kHz probe's status took milliseconds); returns the next row.
        Same sums in the same order as bucket by bucket."""
        k = self._k
        m = (xs.shape[0] - i) // k
        part = slice(i, i + m * k)
        shape = (m, k, self.n_channels)
        total = xs[part].reshape(shape).sum(axis=1)
        count = finite[part].reshape(shape).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / count  # NaN where no finite sample
        if flags is None:
            zeros = np.zeros((m, self.n_channels))
            self._push(mean, zeros, zeros)
        else:
            sat, low = flags
            self._push(
                mean,
                sat[part].reshape(shape).sum(axis=1) / k,
                low[part].reshape(shape).sum(axis=1) / k,
            )
        return i + m * k

    def _close_bucket(self) -> None:
        """Turn the k accumulated samples into one window row."""
        k = self._k
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self._acc[0] / self._acc[1]  # NaN where no finite sample
        self._push(mean[None], self._acc[2][None] / k, self._acc[3][None] / k)
        self._acc.fill(0.0)
        self._acc_n = 0

    def _push(self, x: np.ndarray, sat: Any, low: Any) -> None:
        """Write rows (already at the analysis rate) into the window ring."""
        n = x.shape[0]
        if n >= self._size:  # only the newest window's worth matters
            x, sat, low, n = x[-self._size :], sat[-self._size :], low[-self._size :], self._size
        first = min(n, self._size - self._pos)
        for ring, rows in ((self._x, x), (self._sat, sat), (self._low, low)):
            ring[self._pos : self._pos + first] = rows[:first]
            if n > first:
                ring[: n - first] = rows[first:]
        self._pos = (self._pos + n) % self._size
        self._filled = min(self._size, self._filled + n)

    def _window(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The filled part of the rings in time order: signal, saturated, low light."""
        if self._filled < self._size:
            f = self._filled
            return self._x[:f], self._sat[:f], self._low[:f]
        order = np.r_[self._pos : self._size, 0 : self._pos]
        return self._x[order], self._sat[order], self._low[order]

    def pulsatility(self) -> np.ndarray:
        """Pulsatility index per channel (n_ch,), NaN when it cannot be computed."""
        return self._pulsatility(self._window()[0])

    def _pulsatility(self, x: np.ndarray) -> np.ndarray:
        """Pulsatility index of each column of a window x (n, m)."""
        n = x.shape[0]
        out = np.full(x.shape[1], np.nan)
        if n < max(4, int(2.0 * self._rate)):
            return out
        finite = np.isfinite(x)
        if finite.all():  # the usual window: nothing to fill, every channel usable
            usable = slice(None)
            # column-major, as the fill's column selection below lays it out: the sums
            # then go in the same order and give the same bits
            y = np.asfortranarray(x)
        else:
            usable = finite.mean(axis=0) >= 0.5
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.where(finite, x, 0.0).sum(axis=0) / finite.sum(axis=0)
            y = np.where(finite, x, mean)[:, usable]
        if y.size == 0:
            return out
        t, tt, taper, in_c, in_b, nc, nb = self._spectral_constants(n)
        y = y - y.mean(axis=0)
        y = y - np.outer(t, (t @ y) / tt)  # remove the linear trend (drift)
        y *= taper
        power = np.abs(np.fft.rfft(y, axis=0)) ** 2
        if nb == 0 or nc == 0 or nc == nb:
            return out
        with np.errstate(invalid="ignore", divide="ignore"):
            r = power[in_c].sum(axis=0) / power[in_b].sum(axis=0)
        r0 = nc / nb
        out[usable] = (r - r0) / (1.0 - r0)
        return out

    def _spectral_constants(self, n: int) -> tuple[Any, ...]:
        """What a window of n rows always uses: the centred sample index t and t·t, the
        Hann taper (n, 1), the cardiac and broadband bins and their counts (made once:
        the window's length only changes while it fills)."""
        if self._constants_n != n:
            t = np.arange(n, dtype=np.float64)
            t -= t.mean()
            f = np.fft.rfftfreq(n, d=1.0 / self._rate)
            in_c = (f >= self.cardiac_band_hz[0]) & (f <= self.cardiac_band_hz[1])
            in_b = (f >= self.broadband_hz[0]) & (f <= self.broadband_hz[1])
            in_c &= in_b
            taper = np.hanning(n)[:, None]
            self._constants = (t, t @ t, taper, in_c, in_b, int(in_c.sum()), int(in_b.sum()))
            self._constants_n = n
        return self._constants

    def poor(self) -> np.ndarray:
        """Per channel (n_ch,) bool: the channel's signal is not usable."""
        return self._assess()[3]

    def flags(self) -> np.ndarray:
        """Per channel (n_ch,) uint8: POOR_SIGNAL where :meth:`poor`, else 0."""
        return self.poor().astype(np.uint8) * np.uint8(POOR_SIGNAL)

    def _assess(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return run_steps(self._assess_steps())

    def _assess_steps(
        self,
    ) -> Generator[None, None, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """:meth:`_assess` with a pause after every SPECTRA_PER_STEP channels' spectra
        (times :func:`step_share`; each channel's spectrum is its own: the result is the
        same)."""
        x, sat_rows, low_rows = self._window()
        if self.n_channels <= MAX_SPECTRA_PER_CALL:
            pi = np.empty(self.n_channels)
            per_step = SPECTRA_PER_STEP * step_share(self.rate_hz)
            for first in range(0, self.n_channels, per_step):
                if first or self.n_channels > per_step:  # the window's copy alone
                    yield
                part = slice(first, first + per_step)
                pi[part] = self._pulsatility(x[:, part])
        else:  # big probes: a share of the channels per call, so no call stalls the loop
            part = slice(self._next_spectra, self._next_spectra + MAX_SPECTRA_PER_CALL)
            self._pi[part] = self._pulsatility(x[:, part])
            self._next_spectra = part.stop if part.stop < self.n_channels else 0
            pi = self._pi.copy()
        if x.shape[0] == 0:
            zeros = np.zeros(self.n_channels)
            return pi, zeros, zeros, np.ones(self.n_channels, dtype=bool)
        sat = sat_rows.mean(axis=0)
        low = low_rows.mean(axis=0)
        finite = np.isfinite(x).mean(axis=0)
        with np.errstate(invalid="ignore"):
            poor = (
                ~(pi >= self.min_pulsatility)  # NaN counts as poor
                | (sat > self.max_bad_fraction)
                | (low > self.max_bad_fraction)
                | (finite < 0.5)
            )
        return pi, sat, low, poor

    def summary(self) -> dict:
        """JSON-ready per-channel lists: pulsatility (None where unknown),
        saturated_fraction, low_light_fraction, poor; plus window_s (seconds of data held)."""
        return run_steps(self.summary_steps())

    def summary_steps(self) -> Generator[None, None, dict]:
        """:meth:`summary` in steps (the loop runs one between frames); the summary is
        the generator's return value."""
        pi, sat, low, poor = yield from self._assess_steps()
        # whole arrays to lists (a call each), not a numpy scalar per channel: a 256-channel
        # probe's status spent 0.75 ms in the per-value version
        known = np.isfinite(pi)
        pulsatility = np.round(np.where(known, pi, 0.0), 4).tolist()
        return {
            "window_s": self._filled / self._rate,
            "pulsatility": [v if ok else None for v, ok in zip(pulsatility, known.tolist())],
            "saturated_fraction": np.round(sat, 4).tolist(),
            "low_light_fraction": np.round(low, 4).tolist(),
            "poor": np.asarray(poor, bool).tolist(),
        }
