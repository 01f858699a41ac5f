"""A recorded session read back for plotting: hemoglobin, stims, tags and journal events.

Reads any SNIRF file with an HbO/HbR block (dataType 99999, ``dataTypeLabel``); from a
nirsd recording it also takes the daemon's sample index (``aux`` ``nirsd_seq``) and the
journal beside the file, which holds the daemon's epoch summaries and its baseline
re-takes (each a restart of I0, so a step in every ΔHb trace).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from nirsd.core.errors import NirsdError


@dataclass
class Session:
    time_s: np.ndarray  # (n,) s from the first sample
    hbo: np.ndarray  # (n, ch) µM
    hbr: np.ndarray  # (n, ch) µM
    labels: list[str]
    stims: dict[str, np.ndarray]  # label -> rows [onset duration value]
    tags: dict[str, str]
    epochs: list[dict[str, Any]]  # epoch summaries from the journal (may be empty)
    seq: np.ndarray | None = None  # (n,) the daemon's sample index of every row
    journal: list[dict[str, Any]] = field(default_factory=list)

    @property
    def hbt(self) -> np.ndarray:
        """ΔHbT = ΔHbO + ΔHbR (µM); the file does not hold it (MNE refuses HbT)."""
        return self.hbo + self.hbr

    @property
    def rate_hz(self) -> float:
        """Samples per second, from the median step of the time axis."""
        if len(self.time_s) < 2:
            return 0.0
        step = float(np.median(np.diff(self.time_s)))
        return 1.0 / step if step > 0 else 0.0

    def baseline_retakes(self) -> list[float]:
        """Times (s on the file's axis) where the daemon re-took its baseline I0."""
        if self.seq is None or not len(self.seq):
            return []
        out = []
        for e in self.journal:
            if e.get("kind") == "baseline" and isinstance(e.get("seq"), int):
                i = int(np.searchsorted(self.seq, e["seq"]))
                if 0 < i < len(self.seq) or (i == 0 and self.seq[0] == e["seq"]):
                    out.append(float(self.time_s[i]))
        return out

    def epoch_baseline_s(self, default: float) -> float:
        """The pre-epoch window the daemon used for its summaries (the longest any journal
        epoch had: shorter ones began near the start of the stream), else ``default``."""
        found = [float(e["baseline_s"]) for e in self.epochs if e.get("baseline_s")]
        return max(found) if found else default


def _text(value: Any) -> str:
    value = np.asarray(value).ravel()[0] if np.ndim(value) else value
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _hb_block(f: h5py.File, path: str | Path) -> h5py.Group:
    for key in sorted(k for k in f["nirs"] if k.startswith("data")):
        ml = f[f"nirs/{key}/measurementList1"]
        if "dataTypeLabel" in ml and _text(ml["dataTypeLabel"][()]) in ("HbO", "HbR"):
            return f[f"nirs/{key}"]
    raise NirsdError(f"{path} has no HbO/HbR data block")


def _seq(f: h5py.File, n: int) -> np.ndarray | None:
    for key in (k for k in f["nirs"] if k.startswith("aux")):
        if _text(f[f"nirs/{key}/name"][()]) == "nirsd_seq":
            seq = f[f"nirs/{key}/dataTimeSeries"][:].reshape(-1)[:n]
            return seq.astype(np.int64) if len(seq) == n else None
    return None


def read_session(path: str | Path) -> Session:
    """The hemoglobin block, stims, tags and journal of a SNIRF file."""
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise NirsdError(f"cannot read {path}: {err}") from err
    with f:
        block = _hb_block(f, path)
        kinds, pairs = [], []
        k = 1
        while f"measurementList{k}" in block:
            ml = block[f"measurementList{k}"]
            kinds.append(_text(ml["dataTypeLabel"][()]))
            pairs.append(
                (int(np.ravel(ml["sourceIndex"][()])[0]), int(np.ravel(ml["detectorIndex"][()])[0]))
            )
            k += 1
        data = block["dataTimeSeries"][:]
        time_s = block["time"][:]
        n = min(len(time_s), len(data))
        data, time_s = data[:n], time_s[:n]
        kinds_a = np.array(kinds)
        hbo, hbr = data[:, kinds_a == "HbO"], data[:, kinds_a == "HbR"]
        tags = {key: _text(f[f"nirs/metaDataTags/{key}"][()]) for key in f["nirs/metaDataTags"]}
        stims = {
            _text(f[f"nirs/{k}/name"][()]): np.atleast_2d(f[f"nirs/{k}/data"][:])
            for k in f["nirs"]
            if k.startswith("stim")
        }
        seq = _seq(f, n)
    try:
        labels = json.loads(tags.get("ChannelLabels", ""))
    except json.JSONDecodeError:
        labels = []
    ho_pairs = [p for p, kd in zip(pairs, kinds) if kd == "HbO"]
    if len(labels) != hbo.shape[1]:
        labels = [f"S{s}-D{d}" for s, d in ho_pairs]
    journal = _journal(path)
    epochs = [e for e in journal if e.get("kind") == "epoch"]
    return Session(time_s, hbo, hbr, labels, stims, tags, epochs, seq, journal)


def _journal(path: str | Path) -> list[dict[str, Any]]:
    from .recorder import journal_path, read_journal

    jpath = journal_path(path)
    return read_journal(jpath) if jpath.exists() else []


def file_t0(s: Session) -> float | None:
    """The first sample's Unix time, from MeasurementDate/Time (UTC)."""
    import datetime as dt

    try:
        when = dt.datetime.strptime(
            s.tags["MeasurementDate"] + s.tags["MeasurementTime"].rstrip("Z"), "%Y-%m-%d%H:%M:%S.%f"
        )
    except (KeyError, ValueError):
        return None
    return when.replace(tzinfo=dt.UTC).timestamp()
