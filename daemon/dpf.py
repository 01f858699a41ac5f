"""Differential pathlength factor (DPF): presets and per-wavelength resolution.

The DPF scales the source-detector distance to the mean optical path in tissue
(dimensionless).  ``resolve_dpf`` turns the ``optics.dpf`` config value into one DPF
per wavelength.

References
----------
- Duncan A. et al. (1995), "Optical pathlength measurements on adult head, calf and
  forearm and the head of the newborn infant using phase resolved optical
  spectroscopy", Phys. Med. Biol. 40:295-304.  Values measured at 807 nm.
- Scholkmann F. & Wolf M. (2013), "General equation for the differential pathlength
  factor of the frontal human head depending on wavelength and age",
  J. Biomed. Opt. 18(10):105004.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real

import numpy as np

from nirsd.core.errors import ConfigError

KEY = "optics.dpf"
DEFAULT_DPF = 6.0


@dataclass(frozen=True)
class DpfPreset:
    """A named DPF: a constant (``value``) or age-dependent (``value`` is None)."""

    value: float | None
    source: str


PRESETS: dict[str, DpfPreset] = {
    "muscle-forearm": DpfPreset(4.16, "Duncan et al. 1995, adult forearm, 807 nm"),
    "muscle-calf": DpfPreset(5.51, "Duncan et al. 1995, adult calf, 807 nm"),
    "head-adult": DpfPreset(6.26, "Duncan et al. 1995, adult head, 807 nm"),
    "head-age": DpfPreset(None, "Scholkmann & Wolf 2013, frontal head, by wavelength and age"),
}


def scholkmann_wolf(wavelengths_nm: Sequence[float] | np.ndarray, age_years: float) -> np.ndarray:
    """DPF of the adult/child frontal head by wavelength (nm) and age (years).

    DPF(λ, A) = 223.3 + 0.05624·A^0.8493 − 5.723e−7·λ³ + 0.001245·λ² − 0.9025·λ
    (Scholkmann & Wolf 2013, valid for roughly 690-832 nm and ages 0-50+; used beyond
    that range it extrapolates).
    """
    lam = np.asarray(wavelengths_nm, dtype=np.float64)
    age = float(age_years)
    return 223.3 + 0.05624 * age**0.8493 - 5.723e-7 * lam**3 + 0.001245 * lam**2 - 0.9025 * lam


def _check_positive(values: np.ndarray, what: str) -> np.ndarray:
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ConfigError(f"{what} must be positive finite numbers, got {values.tolist()}", KEY)
    return values


def _is_number(x: object) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool)


def resolve_dpf(
    spec: object, wavelengths_nm: Sequence[float] | np.ndarray, age_years: float | None = None
) -> np.ndarray:
    """Return float64 (n_wl,) DPF values, one per wavelength (dimensionless).

    ``spec`` may be
    - a number: the same DPF at every wavelength;
    - a mapping {wavelength_nm: dpf}, keys str or number, covering exactly the
      configured wavelengths;
    - a list/tuple with one value per wavelength, in the same order;
    - a preset name from :data:`PRESETS` (``head-age`` needs ``age_years``).

    Raises ConfigError (key ``optics.dpf``) naming the problem.
    """
    wl = np.asarray(wavelengths_nm, dtype=np.float64).reshape(-1)
    n = wl.size
    if n == 0:
        raise ConfigError("no wavelengths to resolve a DPF for", KEY)
    if _is_number(spec):
        return _check_positive(np.full(n, float(spec)), "DPF")  # type: ignore[arg-type]
    if isinstance(spec, str):
        return _from_preset(spec, wl, age_years)
    if isinstance(spec, Mapping):
        return _from_table(spec, wl)
    if isinstance(spec, (list, tuple, np.ndarray)):
        values = list(spec)
        if len(values) != n:
            raise ConfigError(f"DPF list has {len(values)} values for {n} wavelengths", KEY)
        if not all(_is_number(v) for v in values):
            raise ConfigError(f"DPF list must hold numbers, got {values!r}", KEY)
        return _check_positive(np.asarray(values, dtype=np.float64), "DPF")
    raise ConfigError(
        "DPF must be a number, a {wavelength: dpf} table, a list or a preset "
        f"name, got {type(spec).__name__}",
        KEY,
    )


def _from_preset(spec: str, wl: np.ndarray, age_years: float | None) -> np.ndarray:
    name = spec.strip().lower()
    preset = PRESETS.get(name)
    if preset is None:
        raise ConfigError(
            f"unknown DPF preset {spec!r}; valid presets: " + ", ".join(sorted(PRESETS)), KEY
        )
    if preset.value is not None:
        return np.full(wl.size, preset.value)
    if age_years is None:
        raise ConfigError("preset 'head-age' needs the subject's age in years", KEY)
    if not _is_number(age_years) or not np.isfinite(age_years) or age_years < 0:
        raise ConfigError(f"age must be a non-negative number of years, got {age_years!r}", KEY)
    return _check_positive(scholkmann_wolf(wl, age_years), "head-age DPF")


def _from_table(spec: Mapping, wl: np.ndarray) -> np.ndarray:
    table: dict[float, float] = {}
    for k, v in spec.items():
        try:
            lam = float(k)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"DPF table key {k!r} is not a wavelength in nm", KEY) from err
        if not _is_number(v):
            raise ConfigError(f"DPF for {k} nm must be a number, got {v!r}", KEY)
        table[lam] = float(v)
    missing = [w for w in wl.tolist() if w not in table]
    extra = sorted(set(table) - set(wl.tolist()))
    if missing or extra:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(f"{w:g}" for w in missing) + " nm")
        if extra:
            parts.append("not configured " + ", ".join(f"{w:g}" for w in extra) + " nm")
        raise ConfigError(
            "DPF table must cover exactly the wavelengths "
            f"{[float(w) for w in wl]}: " + "; ".join(parts),
            KEY,
        )
    return _check_positive(np.array([table[w] for w in wl.tolist()]), "DPF")
