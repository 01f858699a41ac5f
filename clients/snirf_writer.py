"""SNIRF 1.1 files written incrementally with h5py, and their recovery.

Layout (all lengths in mm, times in s, relative to the first recorded sample):

- ``/formatVersion`` = ``"1.1"``
- ``/nirs/metaDataTags``: SubjectID, MeasurementDate/MeasurementTime (UTC, of the first
  sample; the group's attribute ``nirsdT0`` the same in Unix s), LengthUnit ``mm``, TimeUnit ``s``,
  FrequencyUnit ``Hz``, ManufacturerName, Model, plus StudyGroup, Visit, nirsdVersion,
  nirsdStream, nirsdDevice, ChannelLabels (JSON list) and the conversion tags of
  :mod:`nirsd.clients.snirf_conversion`
- ``/nirs/data1``: raw intensities, dataType 1, one measurementList per
  channel × wavelength (channel-major), device counts
- ``/nirs/data2``: ΔHbO and ΔHbR per channel (interleaved, channel-major),
  dataType 99999, dataTypeLabel ``HbO``/``HbR``, dataUnit ``uM`` (no HbT: MNE refuses it; HbT =
  HbO + HbR)
- ``/nirs/probe``: see :mod:`nirsd.clients.snirf_probe`
- ``/nirs/stim{k}``: one per epoch label, rows ``[onset duration 1.0]`` plus the epoch
  summary columns (:mod:`nirsd.clients.snirf_stims`)
- ``/nirs/aux1`` ``nirsd_seq``: the daemon's absolute sample index of every row, so gaps
  and markers (which name sample indices) can be placed exactly
- ``/nirs/aux2`` ``nirsd_quality``: per row and channel, the quality bits

Sample datasets are resizable and chunked; :meth:`SnirfWriter.flush` writes the HDF5
metadata so a killed writer leaves a file holding everything up to the last flush.
:func:`recover` truncates every sample dataset to the common length, repairs string tags
a crash left unreadable (:mod:`nirsd.clients.snirf_repair`) and rewrites the
stims (from a marker journal, see :mod:`nirsd.clients.recorder`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from nirsd.core.errors import NirsdError

from . import snirf_conversion, snirf_hb
from .snirf_conversion import Conversion
from .snirf_probe import Layout, layout_from_info, probe_tags, write_probe
from .snirf_repair import repair_tags, write_measurement_time
from .snirf_stims import write_stims

__all__ = ["Conversion", "Layout", "Meta", "SnirfWriter", "hb_copy", "layout_from_info"]

CHUNK_ROWS = 64
SAMPLE_BLOCKS = ("data1", "data2", "aux1", "aux2")


def _s(text: str) -> bytes:
    return str(text).encode("utf-8")


@dataclass
class Meta:
    """What goes into ``/nirs/metaDataTags`` besides the units."""

    subject: str = "anonymous"
    group: str = ""
    visit: str = ""
    version: str = ""
    stream: str = ""
    device: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def _scalar(group: h5py.Group, name: str, value: Any) -> None:
    if name in group:
        del group[name]
    if isinstance(value, str):
        group.create_dataset(name, data=_s(value))
    elif isinstance(value, (int, np.integer)):
        group.create_dataset(name, data=np.int32(value))
    else:
        group.create_dataset(name, data=np.float64(value))


def _series(group: h5py.Group, n_cols: int) -> None:
    group.create_dataset("time", shape=(0,), maxshape=(None,), dtype="f8", chunks=(CHUNK_ROWS,))
    # (rows, columns) even for one column: MNE and the snirf validator accept it
    group.create_dataset(
        "dataTimeSeries",
        shape=(0, n_cols),
        maxshape=(None, n_cols),
        dtype="f8",
        chunks=(CHUNK_ROWS, n_cols),
    )


#: recordings hold patient data: owner read-write, group read, nobody else (and less if
#: the umask says so)
RECORDING_MODE = 0o640


def create_private(path: Path, mode: int = RECORDING_MODE) -> None:
    """Create (or truncate) ``path`` with at most ``mode`` before h5py opens it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)  # umask applies
    try:
        os.fchmod(fd, os.fstat(fd).st_mode & mode)  # an existing file keeps no more
    finally:
        os.close(fd)


def meta_tags(m: Meta) -> dict[str, str]:
    """The metaDataTags every nirsd SNIRF file starts with (subject, units, visit, stream)."""
    return {
        "SubjectID": m.subject,
        "MeasurementDate": "unknown",
        "MeasurementTime": "unknown",
        "LengthUnit": "mm",
        "TimeUnit": "s",
        "FrequencyUnit": "Hz",
        "StudyGroup": m.group,
        "Visit": m.visit,
        "nirsdVersion": m.version,
        "nirsdStream": m.stream,
        "nirsdDevice": m.device,
    }


class SnirfWriter:
    """Append samples to a new SNIRF file; flush often; close into a valid file."""

    def __init__(
        self, path: str | Path, layout: Layout, meta: Meta, conversion: Conversion | None = None
    ) -> None:
        self.path = Path(path)
        self.layout = layout
        self.meta = meta
        self.conversion = conversion
        self.rows = 0
        self.t0: float | None = None
        try:
            create_private(self.path)
            self.f = h5py.File(self.path, "w")
        except OSError as err:
            raise NirsdError(f"cannot create {self.path}: {err}") from err
        self._build()
        self.f.flush()

    def _build(self) -> None:
        """The file's fixed part: tags, both data blocks' measurement lists, the probe,
        the aux series; the time series start empty and grow with ``append``."""
        self.f.create_dataset("formatVersion", data=_s("1.1"))
        nirs = self.f.create_group("nirs")
        tags = self._write_tags(nirs)
        self._raw_block(nirs.create_group("data1"))
        self._hb_block(nirs.create_group("data2"))
        write_probe(nirs, self.layout)
        aux = nirs.create_group("aux1")
        _scalar(aux, "name", "nirsd_seq")
        _series(aux, 1)
        aux = nirs.create_group("aux2")
        _scalar(aux, "name", "nirsd_quality")
        _series(aux, self.layout.n_channels)
        if self.conversion is not None:
            snirf_conversion.write_windows(tags, self.conversion, np.zeros(0), np.zeros(0))

    def _write_tags(self, nirs: Any) -> Any:
        """metaDataTags: the recording's, the channel labels, probe and conversion tags."""
        tags = nirs.create_group("metaDataTags")
        for key, value in {
            **meta_tags(self.meta),
            "ChannelLabels": json.dumps(self.layout.labels),
            **probe_tags(self.layout),
            **(snirf_conversion.conversion_tags(self.conversion) if self.conversion else {}),
            **self.meta.extra,
        }.items():
            _scalar(tags, key, value)
        return tags

    def _raw_block(self, d1: Any) -> None:
        """data1: raw intensities (CW amplitude), one column per channel × wavelength."""
        lay = self.layout
        n_wl = len(lay.wavelengths_nm)
        _series(d1, lay.n_channels * n_wl)
        k = 1
        for ch in range(lay.n_channels):
            for w in range(n_wl):
                ml = d1.create_group(f"measurementList{k}")
                for key, val in (
                    ("sourceIndex", lay.source_index[ch]),
                    ("detectorIndex", lay.detector_index[ch]),
                    ("wavelengthIndex", w + 1),
                    ("dataType", 1),
                    ("dataTypeIndex", 1),
                ):
                    _scalar(ml, key, val)
                k += 1

    def _hb_block(self, d2: Any) -> None:
        """data2: ΔHbO and ΔHbR (processed, µM), two columns per channel."""
        lay = self.layout
        _series(d2, 2 * lay.n_channels)
        k = 1
        for ch in range(lay.n_channels):
            for label in ("HbO", "HbR"):
                ml = d2.create_group(f"measurementList{k}")
                for key, tag in (
                    ("sourceIndex", lay.source_index[ch]),
                    ("detectorIndex", lay.detector_index[ch]),
                    ("wavelengthIndex", 1),
                    ("dataType", 99999),
                    ("dataTypeLabel", label),
                    ("dataTypeIndex", 1),
                    ("dataUnit", "uM"),
                ):
                    _scalar(ml, key, tag)
                k += 1

    def append(
        self,
        seq: np.ndarray,
        t: np.ndarray,
        raw: np.ndarray,
        hb: np.ndarray,
        quality: np.ndarray | None = None,
    ) -> None:
        """Append n rows: ``seq`` (n,), ``t`` (n,) Unix s, ``raw`` (n, ch, wl) counts,
        ``hb`` (n, 3, ch) µM (HbT is dropped), ``quality`` (n, ch) bits (None: NaN,
        unknown).  OSError (disk full) propagates."""
        n = len(seq)
        if n == 0:
            return
        if self.t0 is None:
            self.t0 = float(t[0])
            write_measurement_time(self.f["nirs/metaDataTags"], self.t0)
        rel = np.asarray(t, "f8") - self.t0
        blocks = {
            "data1": raw.reshape(n, -1),
            "data2": hb[:, :2, :].transpose(0, 2, 1).reshape(n, -1),
            "aux1": np.asarray(seq, "f8").reshape(n, 1),
            "aux2": (
                np.full((n, self.layout.n_channels), np.nan)
                if quality is None
                else np.asarray(quality, "f8").reshape(n, -1)
            ),
        }
        end = self.rows + n
        for name, values in blocks.items():
            g = self.f["nirs"][name]
            g["time"].resize((end,))
            g["time"][self.rows : end] = rel
            g["dataTimeSeries"].resize((end, values.shape[1]))
            g["dataTimeSeries"][self.rows : end] = values
        self.rows = end

    def set_stims(self, stims: dict[str, np.ndarray]) -> None:
        """Replace all ``/nirs/stim*`` groups: label -> rows [onset duration value …]."""
        write_stims(self.f, stims)

    def add_baseline(self, seq: int) -> None:
        """A new baseline window starts at sample ``seq`` (``nirsd baseline``)."""
        if self.conversion is not None:
            self.conversion.windows.append({"start_seq": int(seq)})

    def write_baseline_windows(self) -> None:
        """Place the baseline windows on the rows written so far (``nirsdBaselineWindows``)."""
        if self.conversion is not None:
            seq, t, _ = read_index(self.f)
            snirf_conversion.write_windows(self.f["nirs/metaDataTags"], self.conversion, seq, t)

    def flush(self) -> None:
        self.f.flush()

    def bytes_per_row(self) -> int:
        """Bytes one sample row takes in the file (all sample datasets)."""
        n_ch, n_wl = self.layout.n_channels, len(self.layout.wavelengths_nm)
        return 8 * (n_ch * n_wl + 3 * n_ch + 1 + 4)

    def reserve_bytes(self, pending_rows: int) -> int:
        """Space a flush of ``pending_rows`` may need: the rows, a fresh chunk of every
        dataset, and room for metadata and stims."""
        return (pending_rows + 2 * CHUNK_ROWS) * self.bytes_per_row() + 64 * 1024

    def space_left(self) -> int:
        """Bytes the file may still grow: free disk space, capped by RLIMIT_FSIZE."""
        import os
        import resource

        st = os.statvfs(self.path.parent if str(self.path.parent) else ".")
        left = st.f_bavail * st.f_frsize
        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        if soft != resource.RLIM_INFINITY:
            left = min(left, soft - self.size_bytes())
        return left

    def size_bytes(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def close(self) -> None:
        if self.f.id.valid:
            self.f.close()


def read_index(f: h5py.File) -> tuple[np.ndarray, np.ndarray, float | None]:
    """(seq, time relative to the first sample, t0 Unix s or None) of the stored rows."""
    seq = f["nirs/aux1/dataTimeSeries"][:, 0].astype(np.int64)
    time = f["nirs/aux1/time"][:]
    n = min(len(seq), len(time))
    t0 = None
    if n:
        try:
            date = f["nirs/metaDataTags/MeasurementDate"][()].decode()
            clock = f["nirs/metaDataTags/MeasurementTime"][()].decode().rstrip("Z")
            t0 = (
                dt.datetime.strptime(date + clock, "%Y-%m-%d%H:%M:%S.%f")
                .replace(tzinfo=dt.UTC)
                .timestamp()
            )
        except (KeyError, ValueError):
            t0 = None
    return seq[:n], time[:n], t0


def _blocks(f: h5py.File) -> list[str]:
    """The sample blocks this file has (files of older versions have no ``aux2``)."""
    return [b for b in SAMPLE_BLOCKS if f"nirs/{b}" in f]


def common_length(f: h5py.File) -> int:
    return min(
        min(len(f[f"nirs/{b}/time"]), len(f[f"nirs/{b}/dataTimeSeries"])) for b in _blocks(f)
    )


def truncate(f: h5py.File) -> int:
    """Cut every sample dataset to the common length; returns it (rows)."""
    n = common_length(f)
    t = f["nirs/data1/time"][:n]
    bad = np.flatnonzero(~np.isfinite(t))
    if len(bad):
        n = int(bad[0])
    for b in _blocks(f):
        g = f[f"nirs/{b}"]
        g["time"].resize((n,))
        g["dataTimeSeries"].resize((n, g["dataTimeSeries"].shape[1]))
    return n


def recover(
    path: str | Path, stims_for: Any = None, t0: float | None = None
) -> tuple[int, dict[str, list[str]]]:
    """Make ``path`` a valid SNIRF of everything it holds; returns the rows kept and the
    tags :func:`~.snirf_repair.repair_tags` repaired or removed (``t0``: the first
    sample's Unix time, from the journal, should the file have lost it).

    ``stims_for(seq, time, t0)`` (optional) returns the stims to write, e.g. from the
    recorder's marker journal; without it the stims already in the file stay.
    """
    try:
        f = h5py.File(path, "r+")
    except OSError as err:
        raise NirsdError(f"cannot open {path} for recovery: {err}") from err
    with f:
        n = truncate(f)
        tags = repair_tags(f, t0)
        if stims_for is not None:
            seq, time, t0 = read_index(f)
            write_stims(f, stims_for(seq, time, t0))
    return n, tags


def hb_copy(src: str | Path, dst: str | Path) -> None:
    """Write a copy of ``src`` whose only data block is HbO/HbR (``data1``).

    Kept for existing callers; the recorder writes this file itself as ``FILE_hb.snirf``
    (:func:`nirsd.clients.snirf_hb.write_hb_file`).
    """
    snirf_hb.write_hb_file(src, dst)
