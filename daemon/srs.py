"""Spatially resolved spectroscopy (SRS): absolute tissue saturation index (TSI, %).

Suzuki S. et al. (1999), "Tissue oxygenation monitor using NIR spatially resolved
spectroscopy", Proc. SPIE 3597:582-592.

For one source seen at n_d ≥ 2 distances ρ (cm), the diffusion approximation for a
semi-infinite medium at ρ ≫ 1/μeff gives the reflectance R(ρ) ∝ exp(−μeff·ρ)/ρ², with
μeff = √(3·μa·μs').  With attenuation A = log10(I0/I) (I0 any constant reference, it drops
out of the slope):

    ∂A/∂ρ = (μeff + 2/ρ) / ln 10
    μa·μs' = (ln 10·∂A/∂ρ − 2/ρ)² / 3

Scattering is modelled as μs'(λ) = k·(1 − h·λ), h = 6.3e−4 nm⁻¹ (k unknown), so

    k·μa(λ) = (ln 10·∂A/∂ρ − 2/ρ)² / (3·(1 − h·λ))

with ∂A/∂ρ the least-squares slope over the distances and ρ their mean.  Then
[k·HbO, k·HbR] = pinv(ε)·k·μa (ε decadic, cm⁻¹/M; the constant ln 10 between decadic ε and
natural μa and the unknown k both cancel in the ratio) and TSI = k·HbO / (k·HbO + k·HbR).

Distances are in cm (ρ and 2/ρ must share the unit of ∂A/∂ρ; the config's millimetres are
converted by the caller).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from nirsd.core.errors import ConfigError
from nirsd.core.extinction import extinction_matrix

H_PER_NM = 6.3e-4  # scattering slope h, nm^-1 (Suzuki 1999; Matcher et al. 1997)
LN10 = math.log(10.0)


class SrsEstimator:
    """TSI (%) from a multi-distance probe: one source, n_d ≥ 2 detectors."""

    def __init__(
        self,
        wavelengths_nm: ArrayLike,
        distances_cm: ArrayLike,
        extinction: str | np.ndarray = "prahl",
    ) -> None:
        """wavelengths_nm (n_wl,), n_wl ≥ 2; distances_cm (n_d,) distinct, positive, in cm."""
        wl = np.asarray(wavelengths_nm, dtype=np.float64).reshape(-1)
        rho = np.asarray(distances_cm, dtype=np.float64).reshape(-1)
        if wl.size < 2:
            raise ConfigError("SRS needs at least 2 wavelengths", "optics.wavelengths_nm")
        if rho.size < 2 or np.unique(rho).size < 2:
            raise ConfigError("SRS needs at least 2 distinct distances", "optics.distance_mm")
        if not np.all(np.isfinite(rho)) or np.any(rho <= 0):
            raise ConfigError("SRS distances must be positive", "optics.distance_mm")
        if isinstance(extinction, str):
            eps = extinction_matrix(wl, extinction)
        else:
            eps = np.asarray(extinction, dtype=np.float64)
        if np.any(H_PER_NM * wl >= 1.0):
            raise ConfigError("wavelength too long for μs' = k(1 − hλ)", "optics.wavelengths_nm")
        self.wavelengths_nm = wl
        self.distances_cm = rho
        self.rho_mean = float(rho.mean())
        dr = rho - self.rho_mean
        # Least-squares slope of A over ρ is a fixed linear combination of the distances.
        self._slope_w = dr / float(np.dot(dr, dr))  # (n_d,) 1/cm
        self._scatter = 3.0 * (1.0 - H_PER_NM * wl)  # (n_wl,)
        self._eps_pinv = np.linalg.pinv(eps)  # (2, n_wl) M·cm

    def k_mua(self, intensity: np.ndarray) -> np.ndarray:
        """k·μa (n, n_wl) in cm⁻² (up to the unknown scattering scale k); NaN for bad light."""
        I = np.asarray(intensity, dtype=np.float64)
        if I.ndim != 3 or I.shape[1:] != (self.distances_cm.size, self.wavelengths_nm.size):
            raise ValueError(
                f"intensity must be (n, {self.distances_cm.size}, "
                f"{self.wavelengths_nm.size}), got {I.shape}"
            )
        good = (I > 0) & (I < np.inf)
        A = -np.log10(np.where(good, I, np.nan))  # (n, n_d, n_wl)
        slope = np.einsum("ndw,d->nw", A, self._slope_w)  # dA/dρ, 1/cm
        return (LN10 * slope - 2.0 / self.rho_mean) ** 2 / self._scatter

    def tsi(self, intensity: np.ndarray) -> np.ndarray:
        """TSI in percent, float64 (n,), from intensity (n, n_d, n_wl); NaN for bad light."""
        k_hb = self.k_mua(intensity) @ self._eps_pinv.T  # (n, 2)
        total = k_hb[:, 0] + k_hb[:, 1]
        with np.errstate(invalid="ignore", divide="ignore"):
            out = 100.0 * k_hb[:, 0] / total
        out[~np.isfinite(out) | (total <= 0)] = np.nan
        return out
