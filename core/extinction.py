"""Molar extinction coefficients of oxy- and deoxy-hemoglobin.

The built-in table is Scott Prahl's compilation (Oregon Medical Laser Center, from
W. B. Gratzer and N. Kollias), shipped as ``data/hemoglobin_extinction_prahl.csv``:
decadic coefficients in cm^-1/M from 250 to 1000 nm.  Values between tabulated
wavelengths are interpolated linearly.  A lab can give its own CSV with the same
three columns (wavelength_nm, HbO2, Hb).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import ConfigError

BUILTIN_TABLES = {"prahl": "hemoglobin_extinction_prahl.csv"}


@lru_cache(maxsize=8)
def load_table(name_or_path: str = "prahl") -> np.ndarray:
    """Return the table as float64 (n, 3): wavelength nm, eps HbO2, eps Hb (cm^-1/M)."""
    if name_or_path in BUILTIN_TABLES:
        ref = resources.files("nirsd.core") / "data" / BUILTIN_TABLES[name_or_path]
        text = ref.read_text(encoding="utf-8")
        origin = f"built-in table {name_or_path!r}"
    else:
        path = Path(name_or_path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(
                f"cannot read extinction table {path}: {err.strerror}", "optics.extinction"
            ) from err
        origin = str(path)
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line[0].isalpha():
            continue  # comments and the header row
        try:
            rows.append([float(v) for v in line.replace("\t", ",").split(",")[:3]])
        except ValueError as err:
            raise ConfigError(f"bad row {line!r} in {origin}", "optics.extinction") from err
    table = np.asarray(rows, dtype=np.float64)
    if table.ndim != 2 or table.shape[0] < 2 or table.shape[1] != 3:
        raise ConfigError(f"{origin} needs rows of wavelength,HbO2,Hb", "optics.extinction")
    if np.any(np.diff(table[:, 0]) <= 0):
        raise ConfigError(f"{origin}: wavelengths must increase", "optics.extinction")
    return table


def extinction_matrix(
    wavelengths_nm: Sequence[float] | np.ndarray, table: str = "prahl"
) -> np.ndarray:
    """Decadic molar extinction coefficients, float64 (n_wavelengths, 2) in cm^-1/M.

    Column 0 is HbO2, column 1 is Hb.  Raises ConfigError for a wavelength outside the
    table's range (250-1000 nm for Prahl's).
    """
    tab = load_table(table)
    wl = np.asarray(wavelengths_nm, dtype=np.float64)
    lo, hi = tab[0, 0], tab[-1, 0]
    bad = wl[(wl < lo) | (wl > hi)]
    if bad.size:
        raise ConfigError(
            f"wavelength {bad[0]:g} nm is outside the extinction table ({lo:g}-{hi:g} nm)",
            "optics.wavelengths_nm",
        )
    return np.stack(
        [np.interp(wl, tab[:, 0], tab[:, 1]), np.interp(wl, tab[:, 0], tab[:, 2])], axis=1
    )
