"""Streaming modified Beer-Lambert converter: intensities -> ΔHbO, ΔHbR, ΔHbT in µM.

Per channel c and wavelength λ:

    OD(λ, t) = −ln(I(λ, t) / I0(λ))                      (natural log)
    OD(λ, t) = ln(10) · ε(λ) · d_c · DPF_c(λ) · Δc(t)     (ε decadic, cm^-1/M; d in cm; Δc in M)

so with A_c = ln(10)·ε·d_c·DPF_c (n_wl × 2), Δc = pinv(A_c)·OD_c (least squares for three
or more wavelengths).  The pseudo-inverses are computed once, scaled to µM, and applied to
a whole block with one einsum.

Baseline: I0 is the mean of the first ``baseline_samples`` valid samples of each channel.
Until a channel's window is complete, the running mean of its valid samples so far is
used as a provisional I0 (so the first sample gives exactly 0) and those samples carry
BASELINE_PENDING.  Then I0 freezes until ``rebaseline()`` or ``set_baseline()``.

Bad light never raises: a channel-sample with any wavelength non-finite, ≤ 0, ≤ the light
floor or ≥ the saturation level gives NaN for that channel-sample, a quality bit, and is
left out of the baseline mean.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from nirsd.core.errors import ConfigError
from nirsd.core.extinction import extinction_matrix

from . import kernel

# Quality bits, per channel-sample (uint8).
SATURATED = 1  # at/above the saturation level, or the device flagged the sample
LOW_LIGHT = 2  # non-finite, ≤ 0 or ≤ light floor
BASELINE_PENDING = 4  # I0 still provisional (baseline window not yet complete)
POOR_SIGNAL = 8  # set by the quality monitor (no cardiac pulsatility), not here

_c_einsum: Any
try:  # numpy's C einsum without the Python wrapper and its dispatch (numpy >= 2, < 2)
    from numpy._core.multiarray import c_einsum as _c_einsum
except ImportError:  # pragma: no cover - older numpy
    try:
        from numpy.core.multiarray import c_einsum as _c_einsum  # type: ignore[no-redef]
    except ImportError:
        _c_einsum = None
# whole-array reductions as single C calls (ndarray.min/max go through Python wrappers)
_MIN, _MAX = np.minimum.reduce, np.maximum.reduce

LN10 = math.log(10.0)
MOLAR_TO_UM = 1e6
_PATH_MIN_BLOCK = 32  # block size from which the optimised einsum path pays off


def mbll_matrices(
    wavelengths_nm: ArrayLike,
    distances_cm: ArrayLike,
    dpf: ArrayLike,
    extinction: str | np.ndarray = "prahl",
    ln10: float = LN10,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (A, P): A (n_ch, n_wl, 2) in OD per M, P = pinv(A)·1e6 (n_ch, 2, n_wl) µM/OD.

    ``extinction`` is a table name/path for :func:`extinction_matrix` or an explicit
    (n_wl, 2) decadic matrix in cm^-1/M.  ``ln10`` exists so that tools which round it
    (MNE uses 2.303) can be reproduced.
    """
    wl = np.asarray(wavelengths_nm, dtype=np.float64).reshape(-1)
    if wl.size < 2:
        raise ConfigError(
            f"need at least 2 wavelengths to separate HbO and HbR, got {wl.size}",
            "optics.wavelengths_nm",
        )
    if isinstance(extinction, str):
        eps = extinction_matrix(wl, extinction)
    else:
        eps = np.asarray(extinction, dtype=np.float64)
        if eps.shape != (wl.size, 2):
            raise ConfigError(
                f"extinction matrix must be ({wl.size}, 2), got {eps.shape}", "optics.extinction"
            )
    d = np.asarray(distances_cm, dtype=np.float64).reshape(-1)
    if d.size == 0 or not np.all(np.isfinite(d)) or np.any(d <= 0):
        raise ConfigError(f"distances must be positive, got {d.tolist()}", "optics.distance_mm")
    try:
        path = np.broadcast_to(np.asarray(dpf, dtype=np.float64), (d.size, wl.size))
    except ValueError as err:
        raise ConfigError(
            f"DPF of shape {np.shape(dpf)} does not fit {d.size} channels x {wl.size} wavelengths",
            "optics.dpf",
        ) from err
    if not np.all(np.isfinite(path)) or np.any(path <= 0):
        raise ConfigError("DPF values must be positive", "optics.dpf")
    A = ln10 * eps[None, :, :] * (d[:, None] * path)[:, :, None]
    P = np.linalg.pinv(A) * MOLAR_TO_UM  # batched over channels
    return A, np.ascontiguousarray(P)


class Converter:
    """Streaming MBLL converter for one probe (all channels share the wavelengths)."""

    def __init__(
        self,
        wavelengths_nm: ArrayLike,
        distances_cm: ArrayLike,
        dpf: ArrayLike,
        extinction: str | np.ndarray = "prahl",
        baseline_samples: int = 100,
        saturation_level: float | None = None,
        light_floor: float = 0.0,
    ) -> None:
        """Precompute the per-channel pseudo-inverses.

        wavelengths_nm: (n_wl,) nm, n_wl ≥ 2.  distances_cm: (n_ch,) cm.  dpf: broadcastable
        to (n_ch, n_wl).  baseline_samples: valid samples averaged into I0 (≥ 1).
        saturation_level / light_floor: in the device's intensity units.
        """
        self._A, self._P = mbll_matrices(wavelengths_nm, distances_cm, dpf, extinction)
        self.n_channels, self.n_wavelengths = self._A.shape[0], self._A.shape[1]
        if int(baseline_samples) < 1:
            raise ConfigError(
                f"baseline needs at least 1 sample, got {baseline_samples}", "baseline.seconds"
            )
        self.baseline_samples = int(baseline_samples)
        self.saturation_level = None if saturation_level is None else float(saturation_level)
        self.light_floor = float(light_floor)
        # Valid light is finite and strictly above both 0 and the floor.
        self._lo = max(self.light_floor, 0.0)
        self._hi = np.inf if self.saturation_level is None else self.saturation_level
        # ΔHbT = ΔHbO + ΔHbR is linear in OD, so a third row P[0] + P[1] gives all three
        # rows in one contraction, written straight into the (n, 3, n_ch) output.
        self._P3 = np.ascontiguousarray(
            np.concatenate([self._P, self._P[:, :1] + self._P[:, 1:2]], axis=1)
        )
        # The contraction is fixed; precomputing its path keeps per-call setup minimal.
        self._path = np.einsum_path(
            "cjw,ncw->njc",
            self._P3,
            np.empty((1, self.n_channels, self.n_wavelengths)),
            optimize="greedy",
        )[0]
        self._no_flags = np.zeros((1, self.n_channels), np.uint8)
        self._no_flags.flags.writeable = False  # shared by clean one-sample blocks
        self._last_od: np.ndarray | None = None
        self.rebaseline()

    # -- matrices --------------------------------------------------------------------
    @property
    def matrix(self) -> np.ndarray:
        """A (n_ch, n_wl, 2): OD per mol/L of [HbO, HbR] (copy)."""
        return self._A.copy()

    @property
    def pinv(self) -> np.ndarray:
        """pinv(A)·1e6 (n_ch, 2, n_wl): µM per unit OD (copy)."""
        return self._P.copy()

    # -- baseline --------------------------------------------------------------------
    def rebaseline(self) -> None:
        """Restart I0 accumulation from the next sample given to :meth:`process`."""
        shape = (self.n_channels, self.n_wavelengths)
        self._sum = np.zeros(shape)
        self._count = np.zeros(self.n_channels, dtype=np.int64)
        self._done = np.zeros(self.n_channels, dtype=bool)
        self._i0 = np.full(shape, np.nan)
        self._log_i0 = np.full(shape, np.nan)
        self._all_done = False

    def set_baseline(self, i0: ArrayLike) -> None:
        """Set I0 (n_ch, n_wl) explicitly, in intensity units, and mark it complete."""
        arr = np.array(i0, dtype=np.float64)
        if arr.shape != (self.n_channels, self.n_wavelengths):
            raise ConfigError(
                f"baseline must be ({self.n_channels}, {self.n_wavelengths}), got {arr.shape}",
                "baseline",
            )
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise ConfigError("baseline intensities must be positive and finite", "baseline")
        self._i0 = arr
        self._log_i0 = np.log(arr)
        self._sum = arr * self.baseline_samples
        self._count = np.full(self.n_channels, self.baseline_samples, dtype=np.int64)
        self._done = np.ones(self.n_channels, dtype=bool)
        self._all_done = True

    @property
    def baseline_ready(self) -> bool:
        """True once every channel's I0 is frozen."""
        return self._all_done

    @property
    def channel_baseline_ready(self) -> np.ndarray:
        """Per channel (n_ch,) bool: I0 frozen (copy)."""
        return self._done.copy()

    @property
    def i0(self) -> np.ndarray:
        """Current I0 (n_ch, n_wl) (copy); provisional running mean while pending, NaN
        for a channel without any valid sample yet."""
        out = self._i0.copy()
        pending = ~self._done & (self._count > 0)
        out[pending] = self._sum[pending] / self._count[pending, None]
        return out

    @property
    def last_od(self) -> np.ndarray | None:
        """Optical density of the last processed block, (n, n_ch, n_wl), natural log,
        NaN for bad channel-samples.  A new array each call, so it may be kept."""
        return self._last_od

    def hb_from_raw(self, intensity: np.ndarray) -> np.ndarray:
        """[ΔHbO, ΔHbR, ΔHbT] µM (n, 3, n_ch) of intensities (n, n_ch, n_wl) against the
        current frozen I0, without touching any state (for recomputing held samples that
        were converted while I0 was provisional).  NaN for bad light and for channels
        whose I0 is not frozen yet."""
        I = np.asarray(intensity, dtype=np.float64)
        valid = np.asarray(((I > self._lo) & (I < self._hi) & np.isfinite(I)).all(axis=2))
        with np.errstate(invalid="ignore", divide="ignore"):
            od = np.where(valid[:, :, None], self._log_i0 - np.log(np.where(I > 0, I, 1.0)), np.nan)
        return np.einsum("cjw,ncw->njc", self._P3, od)

    # -- hot path --------------------------------------------------------------------
    def process(
        self, intensity: np.ndarray, saturated: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Convert a block of intensities.

        intensity: (n, n_ch, n_wl) in device units.  saturated: optional (n,) bool device
        flag; those samples get SATURATED on every channel and are kept out of the baseline,
        but their hb is still computed (the flag does not say which channel clipped; the
        level check catches channels that actually read at/above ``saturation_level``).

        Returns hb float64 (n, 3, n_ch) = [ΔHbO, ΔHbR, ΔHbT] in µM and quality uint8 (n, n_ch)
        (read-only when it may be shared: combine it with ``|``, not ``|=``).
        The block's OD is kept in :attr:`last_od`.
        """
        I = np.asarray(intensity, dtype=np.float64)
        if I.ndim != 3 or I.shape[1:] != (self.n_channels, self.n_wavelengths):
            raise ValueError(
                f"intensity must be (n, {self.n_channels}, {self.n_wavelengths}), got {I.shape}"
            )
        n = I.shape[0]
        if self._all_done and (saturated is None or not np.any(saturated)):
            fast = self._process_clean(I, n)
            if fast is not None:
                return fast
        # NaN fails every comparison, so "not (I > lo)" also catches NaN; +inf needs isfinite.
        low = ~((I > self._lo) & (I < np.inf))
        bad_low = low.any(axis=2)
        quality: Any = bad_low.astype(np.uint8) * np.uint8(LOW_LIGHT)
        if self.saturation_level is not None:
            # +inf is reported as LOW_LIGHT (non-finite), not as saturation.
            bad_sat = ((I >= self.saturation_level) & ~low).any(axis=2)
            quality |= bad_sat.astype(np.uint8) * np.uint8(SATURATED)
            valid: Any = ~(bad_low | bad_sat)
        else:
            valid = ~bad_low
        if saturated is not None:
            flag = np.asarray(saturated, dtype=bool).reshape(n)
            quality[flag] |= np.uint8(SATURATED)

        # NaN out bad channel-samples before the log: no warnings, NaN propagates to hb.
        Iv = np.where(valid[:, :, None], I, np.nan)
        if self._all_done:
            od = self._log_i0 - np.log(Iv)
        else:
            eligible = valid if saturated is None else valid & ~flag[:, None]
            od = self._provisional_od(Iv, eligible, quality)

        return self._hb_from_od(od, n), quality

    def _hb_from_od(self, od: np.ndarray, n: int) -> np.ndarray:
        """[ΔHbO, ΔHbR, ΔHbT] in µM (n, 3, n_ch) from OD (n, n_ch, n_wl); keeps the OD."""
        hb = np.empty((n, 3, self.n_channels))
        # Small blocks: the plain C einsum has the least call overhead; large blocks: the
        # precomputed path (BLAS-backed) is several times faster per sample.
        if n < _PATH_MIN_BLOCK and _c_einsum is not None:
            _c_einsum("cjw,ncw->njc", self._P3, od, out=hb)
            self._last_od = od
            return hb
        np.einsum(
            "cjw,ncw->njc",
            self._P3,
            od,
            out=hb,
            optimize=self._path if n >= _PATH_MIN_BLOCK else False,
        )
        self._last_od = od
        return hb

    def _process_clean(self, I: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The common case in few numpy calls: baseline frozen, every value good light.

        Returns None when any value needs the full checks (bad light, saturation).  A
        minimum above the floor and a maximum below the saturation level (or +inf) mean
        every value is finite and usable: two reductions replace the element-wise masks,
        which matters on the per-frame path, where each numpy call costs most.
        """
        if not _MIN(I, None) > self._lo:  # NaN compares False: full checks
            return None
        if not _MAX(I, None) < self._hi:  # saturation level, else +inf
            return None
        quality = self._no_flags if n == 1 else np.zeros((n, self.n_channels), np.uint8)
        if n < _PATH_MIN_BLOCK and kernel.enabled:
            # the lean path's own arithmetic: both paths give the same bits
            od, hb = kernel.mbll(self._log_i0, self._P3, I)
            self._last_od = od
            return hb, quality
        od = self._log_i0 - np.log(I)
        return self._hb_from_od(od, n), quality

    def _provisional_od(
        self, Iv: np.ndarray, eligible: np.ndarray, quality: np.ndarray
    ) -> np.ndarray:
        """OD while some channel's baseline window is open; updates the accumulators.

        Sample t of channel c joins the baseline iff it is eligible and the channel's
        eligible count including t is ≤ baseline_samples.  Cumulative sums (prefixed with
        the carried-over state so the summation order equals one-by-one processing) give
        the running mean at every sample; after completion that mean is the frozen I0.
        """
        B = self.baseline_samples
        open_ = ~self._done
        cnt = self._count + np.cumsum(eligible, axis=0)  # (n, n_ch)
        inc = eligible & (cnt <= B) & open_
        cnt_inc = self._count + np.cumsum(inc, axis=0)  # (n, n_ch)
        contrib = np.where(inc[:, :, None], Iv, 0.0)
        stacked = np.concatenate([self._sum[None], contrib], axis=0)
        s_inc = np.cumsum(stacked, axis=0)[1:]  # (n, n_ch, n_wl)
        with np.errstate(invalid="ignore", divide="ignore"):
            running = s_inc / cnt_inc[:, :, None]  # NaN before any valid sample
        i0_t = np.where(open_[None, :, None], running, self._i0[None])
        # Pending: the window was still open when this sample arrived (the sample that
        # completes it is the last pending one).
        pending = open_[None, :] & ((cnt_inc - inc) < B)
        quality |= pending.astype(np.uint8) * np.uint8(BASELINE_PENDING)

        od = np.log(i0_t) - np.log(Iv)
        # Carry the state forward.
        if Iv.shape[0]:
            self._sum = s_inc[-1].copy()
            self._count = cnt_inc[-1].copy()
        newly = open_ & (self._count >= B)
        if newly.any():
            self._i0[newly] = self._sum[newly] / self._count[newly, None]
            self._log_i0[newly] = np.log(self._i0[newly])
            self._done |= newly
            self._all_done = bool(self._done.all())
        return od
