"""The compiled per-frame kernel (daemon/_lean.c), where the install could build it.

``pip install`` compiles it when a C compiler and the Python headers are there; without
them the install goes on and nirsd does the same work with numpy (a few hundred µs more
per frame on a small machine, the same science).  ``NIRSD_KERNEL=0`` turns it off.

While :data:`enabled`, the lean path's clean frames and the converter's small clean
blocks both go through the kernel's one conversion routine, so a sample's ΔHb has the
same bits whichever path took it.  The kernel takes logarithms from the C library and
numpy from its own SIMD code: the two differ in the last bit or so, far below any
physical meaning, and the same build always gives the same numbers.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import numpy as np


def _load() -> Any:
    try:
        return importlib.import_module("nirsd.daemon._lean")
    except ImportError:  # not built (no compiler at install time): the numpy path
        return None


_lean: Any = _load()

#: whether the compiled kernel is in use (tests and benchmarks may switch it)
enabled: bool = _lean is not None and os.environ.get("NIRSD_KERNEL") != "0"


def built() -> bool:
    """Whether the install built the kernel."""
    return _lean is not None


def mbll(
    log_i0: np.ndarray, p3: np.ndarray, intensity: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(ΔOD (n, n_ch, n_wl), [ΔHbO, ΔHbR, ΔHbT] (n, 3, n_ch)) of clean intensities
    (n, n_ch, n_wl) against ln I0 (n_ch, n_wl), with coefficients (n_ch, 3, n_wl)."""
    n, n_ch, n_wl = intensity.shape
    od = np.empty((n, n_ch, n_wl))
    hb = np.empty((n, 3, n_ch))
    _lean.convert(log_i0, p3, np.ascontiguousarray(intensity), od, hb, n, n_ch, n_wl)
    return od, hb


def frame_kernel(length: int, head: bytes, conv: Any, od: np.ndarray, ring: Any) -> Any:
    """A ``_lean.Kernel`` for one pipeline: frames of ``length`` decoded bytes with DATA
    header ``head``, the converter's I0 and coefficients, ΔOD into ``od``, rows into the
    ring's columns."""
    n_ch, n_wl = conv.n_channels, conv.n_wavelengths
    hi = conv._hi if conv.saturation_level is not None else 0.0
    return _lean.Kernel(
        length,
        head,
        float(conv._lo),
        float(hi),
        conv.saturation_level is not None,
        conv._log_i0,
        conv._P3,
        od,
        ring.capacity,
        n_ch,
        n_wl,
        ring._t,
        ring._t_dev,
        ring._raw,
        ring._hb,
        ring._quality,
        ring._flags,
        ring._epoch,
    )
