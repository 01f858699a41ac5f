"""Ground truth for the emulators: hemoglobin changes and the light they let through.

:class:`Physiology` gives, for any sample index ``k``, the true [ΔHbO, ΔHbR] per channel
(µM, relative to the reference state) and the intensities a continuous-wave probe would
measure, by the forward modified Beer-Lambert law::

    I(λ) = I_ref(λ) · exp(−ln 10 · Σ_j ε(λ, j) · Δc_j · d · DPF)

with ε in cm⁻¹/M (decadic), Δc in M, d in cm.  The daemon's converter inverts exactly
this, so a converter fed by the emulator must recover :meth:`Physiology.hb_truth`.

Everything is a pure function of the seed and ``k`` (no state), so any sample can be
recomputed, in any order, in batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from nirsd.core.extinction import extinction_matrix

LN10 = math.log(10.0)

#: An additive response: f(t_seconds float64 (n,)) -> float64 (n, 2, n_channels) in µM.
Response = Callable[[np.ndarray], np.ndarray]

# (frequency Hz, HbO amplitude µM, HbR amplitude µM) of each physiological component.
CARDIAC = (1.2, 0.3, -0.05)
RESPIRATION = (0.25, 0.15, -0.06)
DRIFT = (0.01, 1.0, -0.4)

_U64 = np.uint64
_M1 = _U64(0xBF58476D1CE4E5B9)
_M2 = _U64(0x94D049BB133111EB)
_GOLDEN = _U64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Stateless 64-bit hash (splitmix64 finaliser), element-wise on uint64 arrays."""
    x = x + _GOLDEN
    x = (x ^ (x >> _U64(30))) * _M1
    x = (x ^ (x >> _U64(27))) * _M2
    return x ^ (x >> _U64(31))


def _uniform(x: np.ndarray) -> np.ndarray:
    """Hash → float64 in (0, 1), from the top 53 bits."""
    return ((_splitmix64(x) >> _U64(11)).astype(np.float64) + 0.5) * (1.0 / (1 << 53))


class Physiology:
    """Deterministic hemoglobin truth and CW intensities for ``n_channels`` channels.

    n_channels: channels; wavelengths_nm: probe wavelengths (nm); rate_hz: sample rate
    (Hz) mapping sample index k to t = k / rate_hz seconds; distance_cm: source-detector
    distance (cm); dpf: differential pathlength factor; i_ref: reference intensity
    (counts) around which each channel/wavelength's ``i_ref_cw`` varies by up to ±20%;
    noise: relative standard deviation of multiplicative Gaussian noise (0 = none);
    seed: every per-channel variation and the noise derive from it; extinction:
    extinction table name or CSV path (see :func:`extinction_matrix`).

    ``responses`` is a list of additive response functions f(t_seconds) -> (n, 2, n_ch)
    µM summed into :meth:`hb_truth` (for exercise epochs); it starts empty.
    """

    def __init__(
        self,
        n_channels: int,
        wavelengths_nm: Sequence[float],
        rate_hz: float,
        distance_cm: float = 3.0,
        dpf: float = 6.0,
        i_ref: float = 1_000_000.0,
        noise: float = 0.0,
        seed: int = 0,
        extinction: str = "prahl",
    ) -> None:
        if n_channels < 1:
            raise ValueError("n_channels must be at least 1")
        if rate_hz <= 0:
            raise ValueError("rate_hz must be positive")
        self.n_channels = int(n_channels)
        self.wavelengths_nm = tuple(float(w) for w in wavelengths_nm)
        self.n_wavelengths = len(self.wavelengths_nm)
        self.rate_hz = float(rate_hz)
        self.distance_cm = float(distance_cm)
        self.dpf = float(dpf)
        self.i_ref = float(i_ref)
        self.noise = float(noise)
        self.seed = int(seed)
        #: decadic molar extinction, (n_wl, 2) cm⁻¹/M, columns HbO, HbR
        self.eps = extinction_matrix(self.wavelengths_nm, extinction)
        #: µM -> optical density (natural log), (n_wl, 2): ln10 · ε · d · DPF · 1e-6
        self.od_per_um = LN10 * self.eps * self.distance_cm * self.dpf * 1e-6
        self.responses: list[Response] = []

        rng = np.random.default_rng(self.seed)
        n = self.n_channels
        #: reference intensity per channel and wavelength (counts), (n_ch, n_wl)
        self.i_ref_cw = self.i_ref * (1.0 + 0.2 * rng.uniform(-1.0, 1.0, (n, self.n_wavelengths)))
        # Per-channel phase (rad) and amplitude factor of each component.
        self._phase = rng.uniform(0.0, 2 * math.pi, (3, n))
        self._gain = rng.uniform(0.7, 1.3, (3, n))
        # The heart and the lungs are shared: channels differ only a little in phase.
        self._phase[0] = self._phase[0, 0] + rng.normal(0.0, 0.2, n)
        self._phase[1] = self._phase[1, 0] + rng.normal(0.0, 0.1, n)
        self._noise_key = _splitmix64(np.array([self.seed & 0xFFFFFFFFFFFFFFFF], _U64))[0]

    def t(self, k: np.ndarray) -> np.ndarray:
        """Seconds of sample indices ``k``: k / rate_hz."""
        return np.asarray(k, dtype=np.float64) / self.rate_hz

    def hb_truth(self, k: np.ndarray) -> np.ndarray:
        """True [ΔHbO, ΔHbR] in µM at sample indices k: float64 (n, 2, n_channels)."""
        t = self.t(np.atleast_1d(k))[:, None]  # (n, 1)
        out = np.zeros((t.shape[0], 2, self.n_channels))
        for i, (f, a_o, a_r) in enumerate((CARDIAC, RESPIRATION, DRIFT)):
            wave = self._gain[i] * np.sin(2 * math.pi * f * t + self._phase[i])  # (n, n_ch)
            out[:, 0, :] += a_o * wave
            out[:, 1, :] += a_r * wave
        if self.responses:
            ts = t[:, 0]
            for response in self.responses:
                out += response(ts)
        return out

    def intensity(self, k: np.ndarray) -> np.ndarray:
        """CW intensity (counts, float64) at sample indices k: (n, n_channels, n_wl)."""
        k = np.atleast_1d(np.asarray(k, dtype=np.int64))
        hb = self.hb_truth(k)  # (n, 2, n_ch) µM
        od = np.einsum("wj,njc->ncw", self.od_per_um, hb)  # (n, n_ch, n_wl)
        out = self.i_ref_cw[None, :, :] * np.exp(-od)
        if self.noise > 0.0:
            out *= 1.0 + self.noise * self._gauss(k)
        return out

    def counts(self, k: np.ndarray) -> np.ndarray:
        """Integer counts as the device sends them: int32 (n, n_channels, n_wl)."""
        i = np.rint(self.intensity(k))
        return np.clip(i, -(2**31), 2**31 - 1).astype(np.int32)

    def _gauss(self, k: np.ndarray) -> np.ndarray:
        """Standard normal noise, a pure function of (seed, k, channel, wavelength)."""
        per_k = self.n_channels * self.n_wavelengths
        idx = (
            k.astype(np.uint64)[:, None] * _U64(per_k) + np.arange(per_k, dtype=np.uint64)[None, :]
        ) * _U64(2) + self._noise_key
        u1 = _uniform(idx)
        u2 = _uniform(idx + _U64(1))
        z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2 * math.pi * u2)  # Box-Muller
        return z.reshape(k.shape[0], self.n_channels, self.n_wavelengths)
