"""What a reader needs to redo nirsd's conversion from the raw file alone.

metaDataTags (SNIRF allows user tags there; each is a scalar string, so tables are JSON
text and numbers are decimal text):

- ``nirsdDPF``: JSON, per channel a list of one DPF per wavelength; ``nirsdDPFSource``
- ``nirsdDistance_mm``: JSON, per channel the source-detector distance the daemon used
- ``nirsdExtinction`` (table name or path), ``nirsdExtinctionSource`` (prose),
  ``nirsdExtinction_per_M_cm``: JSON, per wavelength ``[HbO2, Hb]`` decadic molar
  coefficients in cm⁻¹/M, as interpolated by the daemon
- ``nirsdBaselineSeconds``, ``nirsdBaselineSamples`` (valid samples averaged into I0)
- ``nirsdBaselineWindows``: JSON list, one object per baseline window (the stream's
  first, then one per ``nirsd baseline``): ``start_seq`` (first sample of the window),
  ``end_seq`` (``start_seq + nirsdBaselineSamples``, exclusive, when every sample is
  valid), ``start_s``/``end_s`` on the file's time axis, ``start_row`` (row of
  ``start_seq`` in the file, or null when the window began before the file) and ``i0``
  (per channel and wavelength, from the daemon, when the window began before the file:
  asked by the recorder once the window closes; null when it was re-taken first)
- ``nirsdLightFloor``, ``nirsdSaturationLevel`` (counts; ``none`` when not set)
- ``nirsdQualityBits``: JSON ``{bit: meaning}`` of ``/nirs/aux2`` (``nirsd_quality``)
- ``nirsdIntensityUnit``: ``counts``

``/nirs/aux2`` ``nirsd_quality``: per row, one column per channel, the quality bits of
the daemon's ``hb`` message (1 saturated, 2 low light, 4 baseline pending: I0 was still
the running mean, 8 poor signal); NaN where the writer was not given them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

QUALITY_BITS = {1: "saturated", 2: "low light", 4: "baseline pending", 8: "poor signal"}
EXTINCTION_SOURCES = {
    "prahl": "S. Prahl, Oregon Medical Laser Center, tabulated molar extinction of "
    "hemoglobin (W. B. Gratzer, N. Kollias), decadic, cm-1/M, linear interpolation"
}


@dataclass
class Conversion:
    """The daemon's conversion settings, from the ``conversion`` part of ``info``."""

    rate_hz: float
    dpf: list[list[float]]  # (n_ch, n_wl)
    distances_mm: list[float]  # (n_ch,)
    dpf_source: str = ""
    extinction: str = "prahl"
    extinction_per_M_cm: list[list[float]] = field(default_factory=list)  # (n_wl, 2)
    baseline_s: float = 10.0
    baseline_samples: int = 100
    light_floor: float = 0.0
    saturation_level: float | None = None
    #: baseline windows: dicts with start_seq (and i0 where the daemon gave it)
    windows: list[dict[str, Any]] = field(default_factory=list)


def conversion_from_info(info: dict[str, Any]) -> Conversion | None:
    """Conversion settings of an ``info`` reply; None for a daemon that does not say."""
    conv = info.get("conversion")
    channels = info.get("channels") or []
    if not conv or not channels:
        return None
    first: dict[str, Any] = {"start_seq": int(conv.get("baseline_seq") or 0)}
    if conv.get("baseline_ready") and conv.get("i0") is not None:
        first["i0"] = conv["i0"]
    return Conversion(
        rate_hz=float(info.get("rate_hz") or 0.0),
        dpf=[list(map(float, ch.get("dpf") or [])) for ch in channels],
        distances_mm=[float(ch.get("distance_mm") or 0.0) for ch in channels],
        dpf_source=str(conv.get("dpf_source") or ""),
        extinction=str(conv.get("extinction") or "prahl"),
        extinction_per_M_cm=conv.get("extinction_per_M_cm") or [],
        baseline_s=float(conv.get("baseline_s") or 0.0),
        baseline_samples=int(conv.get("baseline_samples") or 1),
        light_floor=float(conv.get("light_floor") or 0.0),
        saturation_level=conv.get("saturation_level"),
        windows=[first],
    )


def conversion_tags(conv: Conversion) -> dict[str, Any]:
    """The static metaDataTags (everything but the baseline windows)."""
    sat = conv.saturation_level
    return {
        "nirsdDPF": json.dumps(conv.dpf),
        "nirsdDPFSource": conv.dpf_source or "config optics.dpf / [[channel]] dpf",
        "nirsdDistance_mm": json.dumps(conv.distances_mm),
        "nirsdExtinction": conv.extinction,
        "nirsdExtinctionSource": EXTINCTION_SOURCES.get(
            conv.extinction, f"table {conv.extinction} (wavelength_nm, HbO2, Hb), linear"
        ),
        "nirsdExtinction_per_M_cm": json.dumps(conv.extinction_per_M_cm),
        # numbers as text, like every other tag of the file: readers decode tags as strings
        "nirsdBaselineSeconds": repr(float(conv.baseline_s)),
        "nirsdBaselineSamples": str(int(conv.baseline_samples)),
        "nirsdLightFloor": repr(float(conv.light_floor)),
        "nirsdSaturationLevel": "none" if sat is None else repr(float(sat)),
        "nirsdQualityBits": json.dumps({str(k): v for k, v in QUALITY_BITS.items()}),
        "nirsdIntensityUnit": "counts",
    }


def window_rows(conv: Conversion, seq: np.ndarray, time_s: np.ndarray) -> list[dict[str, Any]]:
    """The baseline windows placed on the file's rows (``seq``/``time_s`` per row)."""
    out = []
    period = 1.0 / conv.rate_hz if conv.rate_hz > 0 else 0.0
    for w in conv.windows:
        start = int(w["start_seq"])
        end = start + int(conv.baseline_samples)
        row: int | None = None
        if len(seq):
            i = int(np.searchsorted(seq, start))
            row = i if i < len(seq) and int(seq[i]) == start else None
            # times of samples outside the file: extrapolated at the nominal rate
            start_s = (
                float(time_s[row])
                if row is not None
                else float(time_s[0]) + (start - int(seq[0])) * period
            )
        else:
            start_s = 0.0
        body = {
            "start_seq": start,
            "end_seq": end,
            "start_s": start_s,
            "end_s": start_s + conv.baseline_samples * period,
            "start_row": row,
        }
        if row is None and "i0" in w:
            body["i0"] = w["i0"]
        out.append(body)
    return out


def windows_missing_i0(
    conv: Conversion | None, first_seq: int | None, last_seq: int | None
) -> list[dict[str, Any]]:
    """Windows that began before the file's first row and have closed since (by the
    nominal count), whose I0 the file does not hold yet."""
    if conv is None or first_seq is None or last_seq is None:
        return []
    return [
        w
        for w in conv.windows
        if "i0" not in w
        and int(w["start_seq"]) < first_seq
        and last_seq >= int(w["start_seq"]) + conv.baseline_samples
    ]


def take_i0(window: dict[str, Any], conversion_reply: dict[str, Any]) -> bool:
    """Store the daemon's I0 (``info`` ``conversion``) in ``window``; False while that
    window is still open.  A window re-taken since gets ``i0`` null: its I0 is gone."""
    if conversion_reply.get("baseline_seq") != window["start_seq"]:
        window["i0"] = None
    elif conversion_reply.get("baseline_ready"):
        window["i0"] = conversion_reply.get("i0")
    else:
        return False
    return True


def write_windows(tags: h5py.Group, conv: Conversion, seq: np.ndarray, t: np.ndarray) -> None:
    """(Re)write ``nirsdBaselineWindows`` for the rows stored so far."""
    if "nirsdBaselineWindows" in tags:
        del tags["nirsdBaselineWindows"]
    text = json.dumps(window_rows(conv, seq, t))
    tags.create_dataset("nirsdBaselineWindows", data=text.encode("utf-8"))


def quality_rows(raw: Any, n: int, hb: np.ndarray | None) -> np.ndarray:
    """Quality bits (n, n_ch) as floats from an ``hb`` message's ``quality`` bytes (one
    uint8 per sample and channel); NaN where the message carries none."""
    n_ch = hb.shape[-1] if hb is not None else 0
    if isinstance(raw, bytes) and len(raw) == n * n_ch:
        return np.frombuffer(raw, np.uint8).reshape(n, n_ch).astype(np.float64)
    return np.full((n, n_ch), np.nan)
