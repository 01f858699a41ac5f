"""Read one SNIRF run for the study report: CW amplitudes or HbO/HbR, the probe, the DPF.

Any SNIRF 1.x file with a continuous-wave block (dataType 1) or a processed hemoglobin
block (dataType 99999, dataTypeLabel HbO/HbR) is read: nirsd's own (see
:mod:`nirsd.clients.snirf_writer`), MNE's and mne-nirs', Homer's.  Lengths are scaled
from the file's ``LengthUnit`` to cm; times from ``time`` (every sample, or the
``[start, step]`` pair SNIRF allows).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from nirsd.core.errors import NirsdError

CW_AMPLITUDE = 1
PROCESSED = 99999
LENGTH_TO_CM = {"m": 100.0, "cm": 1.0, "mm": 0.1, "um": 1e-4, "µm": 1e-4}
HB_UNIT_TO_UM = {"um": 1.0, "µm": 1.0, "umol/l": 1.0, "mm": 1e3, "mmol/l": 1e3, "m": 1e6}
HB_UNIT_TO_UM.update({"mol/l": 1e6, "molar": 1e6})


@dataclass
class Snirf:
    """One data block of a SNIRF file, arranged per channel.

    ``values`` is (n, n_ch, n_wl) CW amplitudes (``kind`` "raw") or (n, 2, n_ch)
    ΔHbO/ΔHbR in µM (``kind`` "hb").  Distances in cm from the probe positions.
    """

    path: Path
    kind: str
    time: np.ndarray  # (n,) s
    values: np.ndarray
    wavelengths_nm: np.ndarray  # (n_wl,)
    distances_cm: np.ndarray  # (n_ch,)
    labels: list[str]
    tags: dict[str, str] = field(default_factory=dict)
    stims: list[tuple[float, float, str]] = field(default_factory=list)
    seq: np.ndarray | None = None  # (n,) nirsd's absolute sample index (aux nirsd_seq)

    @property
    def rate_hz(self) -> float:
        if len(self.time) < 2:
            return float("nan")
        return float((len(self.time) - 1) / (self.time[-1] - self.time[0]))


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return _text(value.reshape(-1)[0]) if value.size else ""
    return str(value)


def _scalar(group: h5py.Group, name: str, default: Any = None) -> Any:
    if name not in group:
        return default
    value = group[name][()]
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else default
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value.item() if isinstance(value, np.generic) else value


def _numbered(group: h5py.Group, prefix: str) -> list[str]:
    """Members named prefix1, prefix2, … in numeric order."""
    pat = re.compile(re.escape(prefix) + r"(\d+)$")
    found = [(int(m.group(1)), k) for k in group if (m := pat.match(k))]
    return [k for _, k in sorted(found)]


def _measurements(block: h5py.Group) -> list[dict[str, Any]]:
    """One dict per column: source, detector, wavelength (1-based), type, label, unit."""
    keys = {
        "source": "sourceIndex",
        "detector": "detectorIndex",
        "wavelength": "wavelengthIndex",
        "type": "dataType",
        "label": "dataTypeLabel",
        "unit": "dataUnit",
    }
    if "measurementLists" in block:  # SNIRF 1.1's column-array form
        g = block["measurementLists"]
        n = len(g["sourceIndex"])
        cols: dict[str, list[Any]] = {}
        for ours, theirs in keys.items():
            arr = g[theirs][()] if theirs in g else [None] * n
            cols[ours] = [_text(v) if isinstance(v, bytes) else v for v in arr]
        return [{k: cols[k][i] for k in keys} for i in range(n)]
    out = []
    for name in _numbered(block, "measurementList"):
        ml = {ours: _number(block, f"{name}/{keys[ours]}") for ours in NUMERIC}
        if ml["type"] != CW_AMPLITUDE:  # labels and units matter only for processed data
            g = block[name]
            ml |= {"label": _scalar(g, "dataTypeLabel"), "unit": _scalar(g, "dataUnit")}
        out.append(ml)
    return out


NUMERIC = ("source", "detector", "wavelength", "type")


def _number(block: h5py.Group, path: str) -> float | None:
    """A numeric scalar dataset read through h5py's low-level API: a study has thousands
    of measurement-list entries and the high-level lookup costs most of a file's read."""
    try:
        d = h5py.h5d.open(block.id, path.encode())
    except KeyError:
        return None
    a = np.empty(d.shape, d.dtype)
    d.read(h5py.h5s.ALL, h5py.h5s.ALL, a)
    return a.reshape(-1)[0].item() if a.size else None


def _time(block: h5py.Group, n: int) -> np.ndarray:
    t = np.asarray(block["time"][()], dtype=np.float64).reshape(-1)
    if len(t) == n:
        return t
    if len(t) == 2 and n != 2:  # [start, step]
        return t[0] + t[1] * np.arange(n)
    raise NirsdError(f"time has {len(t)} values for {n} samples")


def _positions(probe: h5py.Group, what: str) -> np.ndarray:
    for dim in ("3D", "2D"):
        key = f"{what}Pos{dim}"
        if key in probe:
            pos = np.atleast_2d(np.asarray(probe[key][()], dtype=np.float64))
            return np.pad(pos, ((0, 0), (0, 3 - pos.shape[1]))) if pos.shape[1] < 3 else pos
    raise NirsdError(f"probe has no {what} positions")


WANTED_TAGS = (
    "LengthUnit",
    "ChannelLabels",
    "SubjectID",
    # nirsd's conversion settings (nirsd.clients.snirf_conversion)
    "nirsdDistance_mm",
    "nirsdExtinction_per_M_cm",
    "nirsdLightFloor",
    "nirsdSaturationLevel",
)


def _tags(nirs: h5py.Group) -> dict[str, str]:
    """The metaDataTags the report uses: units, labels and any DPF (reading every tag
    of every file would cost more than its samples)."""
    if "metaDataTags" not in nirs:
        return {}
    g = nirs["metaDataTags"]
    keys = [k for k in g if k in WANTED_TAGS or "dpf" in k.lower()]
    return {k: _text(g[k][()]) for k in keys if isinstance(g[k], h5py.Dataset)}


def _stims(nirs: h5py.Group) -> list[tuple[float, float, str]]:
    out = []
    for key in _numbered(nirs, "stim"):
        g = nirs[key]
        name = _scalar(g, "name", key)
        data = np.asarray(g["data"][()] if "data" in g else np.zeros((0, 3)), dtype=np.float64)
        for row in np.atleast_2d(data):
            if row.size >= 2:
                out.append((float(row[0]), float(row[1]), str(name)))
    return sorted(out)


def _aux_seq(nirs: h5py.Group, n: int) -> np.ndarray | None:
    """nirsd's ``nirsd_seq`` aux channel: the daemon's sample index of every row."""
    for key in _numbered(nirs, "aux"):
        g = nirs[key]
        if _scalar(g, "name") == "nirsd_seq" and "dataTimeSeries" in g:
            seq = np.asarray(g["dataTimeSeries"][()]).reshape(-1)
            return seq.astype(np.int64) if len(seq) == n else None
    return None


def _pick_block(nirs: h5py.Group, want: str) -> tuple[h5py.Group, list[dict[str, Any]]]:
    """The first data block of the wanted kind: CW amplitudes, or HbO/HbR."""
    for key in _numbered(nirs, "data"):
        ml = _measurements(nirs[key])
        if not ml:
            continue
        types = {int(m["type"] or 0) for m in ml}
        labels = {str(m.get("label") or "").lower() for m in ml}
        if want == "raw" and types == {CW_AMPLITUDE}:
            return nirs[key], ml
        if want == "hb" and types == {PROCESSED} and {"hbo", "hbr"} <= labels:
            return nirs[key], ml
    raise NirsdError(f"no {'CW amplitude' if want == 'raw' else 'HbO/HbR'} data block")


def _channels(ml: list[dict[str, Any]]) -> list[tuple[int, int]]:
    seen: dict[tuple[int, int], None] = {}
    for m in ml:
        seen.setdefault((int(m["source"]), int(m["detector"])), None)
    return list(seen)


def _labels(tags: dict[str, str], pairs: list[tuple[int, int]]) -> list[str]:
    try:
        labels = json.loads(tags.get("ChannelLabels", ""))
        if isinstance(labels, list) and len(labels) == len(pairs):
            return [str(x) for x in labels]
    except ValueError:
        pass
    return [f"S{s}_D{d}" for s, d in pairs]


def read_snirf(path: str | Path, want: str = "raw") -> Snirf:
    """Read ``path``'s CW amplitude block (``want`` "raw") or HbO/HbR block ("hb")."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            nirs = f["nirs"] if "nirs" in f else f[_numbered(f, "nirs")[0]]
            return _read(path, nirs, want)
    except (OSError, KeyError, IndexError, ValueError, TypeError) as err:
        raise NirsdError(f"{path}: cannot read SNIRF ({err})") from err
    except NirsdError as err:
        raise NirsdError(f"{path}: {err}") from err


def _read(path: Path, nirs: h5py.Group, want: str) -> Snirf:
    block, ml = _pick_block(nirs, want)
    data = np.asarray(block["dataTimeSeries"][()], dtype=np.float64)
    data = data.reshape(data.shape[0], -1)
    time = _time(block, data.shape[0])
    tags = _tags(nirs)
    probe = nirs["probe"]
    wl = np.asarray(probe["wavelengths"][()], dtype=np.float64).reshape(-1)
    unit = tags.get("LengthUnit", "mm").strip().lower()
    if unit not in LENGTH_TO_CM:
        raise NirsdError(f"unknown LengthUnit {unit!r}")
    src, det = _positions(probe, "source"), _positions(probe, "detector")
    pairs = _channels(ml)
    dist = np.array([np.linalg.norm(src[s - 1] - det[d - 1]) for s, d in pairs])
    dist *= LENGTH_TO_CM[unit]
    col = {p: i for i, p in enumerate(pairs)}
    filled = np.zeros((len(pairs), len(wl) if want == "raw" else 2), dtype=bool)
    if want == "raw":
        values = np.full((data.shape[0], len(pairs), len(wl)), np.nan)
        for j, m in enumerate(ml):
            c, w = col[(int(m["source"]), int(m["detector"]))], int(m["wavelength"]) - 1
            values[:, c, w] = data[:, j]
            filled[c, w] = True
    else:
        values = np.full((data.shape[0], 2, len(pairs)), np.nan)
        for j, m in enumerate(ml):
            row = {"hbo": 0, "hbr": 1}.get(str(m["label"]).lower())
            if row is None:
                continue  # HbT and other derived series: recomputed as HbO + HbR
            scale = HB_UNIT_TO_UM.get(str(m["unit"] or "uM").strip().lower())
            if scale is None:
                raise NirsdError(f"unknown hemoglobin unit {m['unit']!r}")
            c = col[(int(m["source"]), int(m["detector"]))]
            values[:, row, c] = data[:, j] * scale
            filled[c, row] = True
    if not filled.all():
        raise NirsdError("a channel lacks one of its wavelengths or chromophores")
    labels = _labels(tags, pairs)
    seq = _aux_seq(nirs, len(time))
    return Snirf(path, want, time, values, wl, dist, labels, tags, _stims(nirs), seq)
