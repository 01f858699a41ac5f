"""LSL stream descriptions that XDF readers and mne-lsl read right.

Channel fields follow the XDF meta-data convention for NIRS streams (sccn/xdf wiki,
"NIRS Meta-Data"): ``label``, ``type`` (``HbO``/``HbR``, or ``Intensity`` for raw),
``measure`` (``Amplitude`` for raw), ``unit``, ``source`` and ``detector`` (labels of
the stream's ``optodes/optode``), ``wavelen`` (nm, raw only).  Beside them, the fields
mne-lsl reads into ``mne.Info`` (its FIFF extension of the same ``channel`` element):
``kind`` (1100, fNIRS), ``coil_type`` (300 HbO, 301 HbR, 302 CW amplitude),
``coord_frame`` (0, unknown: the probe is not on a head) and ``loc`` (``R0x`` … ``Ezz``:
MNE's 12 location values in m, channel midpoint, source, detector, then the wavelength
in nm for raw channels).  Labels are MNE's fNIRS names (``S1_D1 hbo``, ``S1_D1 760``),
numbered like the SNIRF recording's optodes.

Stream-level: ``optodes/optode`` (``function`` Source or Detector, ``label``,
``location`` ``X``/``Y``/``Z`` in mm), ``fiducials/fiducial`` (the config's landmarks:
``label``, ``location``), ``coordinate_system`` and ``coordinate_system_description``,
and per channel ``nirsd_label`` (the configured channel label, e.g. ``L3 left``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pylsl

from .snirf_probe import Layout

KIND_FNIRS = 1100  # FIFF FIFFV_FNIRS_CH
COIL = {"hbo": 300, "hbr": 301, "raw": 302}  # FIFF FIFFV_COIL_FNIRS_HBO / _HBR / _CW_AMPLITUDE
COORD_UNKNOWN = 0  # FIFF FIFFV_COORD_UNKNOWN
LOC_NAMES = ("R0x", "R0y", "R0z", "Exx", "Exy", "Exz", "Eyx", "Eyy", "Eyz", "Ezx", "Ezy", "Ezz")
HB_UNIT = "M"  # mol/L: what MNE expects of hbo/hbr data (mne-lsl does not scale)


def _loc(lay: Layout, ch: int, wavelength: float) -> dict[str, str]:
    src = np.asarray(lay.source_pos_mm[lay.source_index[ch] - 1], float) * 1e-3
    det = np.asarray(lay.detector_pos_mm[lay.detector_index[ch] - 1], float) * 1e-3
    values = [*((src + det) / 2), *src, *det, wavelength, np.nan, np.nan]
    return {name: f"{v:.9g}" for name, v in zip(LOC_NAMES, values)}


def _optodes(lay: Layout, ch: int) -> dict[str, str]:
    src, det = lay.optode_labels()
    return {
        "source": src[lay.source_index[ch] - 1],
        "detector": det[lay.detector_index[ch] - 1],
        "nirsd_label": lay.labels[ch],
    }


def hb_channels(lay: Layout) -> list[dict[str, Any]]:
    """ΔHbO, ΔHbR per probe channel (channel-major), in M."""
    names = lay.mne_names()
    return [
        {
            "label": f"{names[c]} {kind}",
            "type": {"hbo": "HbO", "hbr": "HbR"}[kind],
            "unit": HB_UNIT,
            **_optodes(lay, c),
            "kind": str(KIND_FNIRS),
            "coil_type": str(COIL[kind]),
            "coord_frame": str(COORD_UNKNOWN),
            "loc": _loc(lay, c, {"hbo": 1.0, "hbr": 2.0}[kind]),
        }
        for c in range(lay.n_channels)
        for kind in ("hbo", "hbr")
    ]


def raw_channels(lay: Layout) -> list[dict[str, Any]]:
    """Intensities per probe channel and wavelength (channel-major), device counts."""
    names = lay.mne_names()
    return [
        {
            "label": f"{names[c]} {w:g}",
            "type": "Intensity",
            "measure": "Amplitude",
            "unit": "counts",
            **_optodes(lay, c),
            "wavelen": f"{w:g}",
            "kind": str(KIND_FNIRS),
            "coil_type": str(COIL["raw"]),
            "coord_frame": str(COORD_UNKNOWN),
            "loc": _loc(lay, c, w),
        }
        for c in range(lay.n_channels)
        for w in lay.wavelengths_nm
    ]


def _node(parent: pylsl.XMLElement, mapping: dict[str, Any]) -> None:
    for key, value in mapping.items():
        if isinstance(value, dict):
            _node(parent.append_child(key), value)
        else:
            parent.append_child_value(key, str(value))


def describe(info: pylsl.StreamInfo, lay: Layout, chans: list[dict[str, Any]]) -> None:
    """Write channels, optodes, fiducials and the coordinate system into ``info``."""
    desc = info.desc()
    root = desc.append_child("channels")
    for ch in chans:
        _node(root.append_child("channel"), ch)
    optodes = desc.append_child("optodes")
    src, det = lay.optode_labels()
    for function, labels, pos in (
        ("Source", src, lay.source_pos_mm),
        ("Detector", det, lay.detector_pos_mm),
    ):
        for label, xyz in zip(labels, np.asarray(pos, float).reshape(-1, 3)):
            location = dict(zip("XYZ", (f"{v:g}" for v in xyz)))
            _node(optodes.append_child("optode"), {"function": function, "label": label})
            _node(optodes.last_child(), {"location": location})
    if lay.landmark_labels:
        fid = desc.append_child("fiducials")
        for label, xyz in zip(lay.landmark_labels, np.asarray(lay.landmark_pos_mm).reshape(-1, 3)):
            location = dict(zip("XYZ", (f"{v:g}" for v in xyz)))
            _node(fid.append_child("fiducial"), {"label": label, "location": location})
    desc.append_child_value("coordinate_system", lay.coordinate_system)
    desc.append_child_value("coordinate_system_description", lay.coordinate_system_description)
