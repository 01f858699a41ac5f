"""The study report's input: an fNIRS-BIDS dataset, one run at a time, as ΔHb in µM.

Layout read (BIDS 1.10 NIRS): ``participants.tsv`` (``participant_id`` and the group
column), ``sub-<label>[/ses-<label>]/nirs/sub-<label>[_ses-<label>]_task-<label>
[_run-<index>]_nirs.snirf`` with its ``_events.tsv`` (``onset``, ``duration``,
``trial_type``; the SNIRF stims when there is none).  A nirsd hemoglobin derivative of a
run (``derivatives/nirsd/`` with the same subject, session, task and run entities, a
SNIRF whose data are HbO/HbR) is used as it is; otherwise the CW amplitudes are converted
with nirsd's own streaming converter (:mod:`nirsd.daemon.converter`), so the numbers are
those the live daemon publishes.

I0 is the mean of each channel's good samples over the run.  Every measure the report
gives is a difference of two means of the same channel, and ΔHb = pinv(A)·(ln I0 − ln I)
is affine in ln I0, so those measures do not depend on I0 at all.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from nirsd.core.errors import NirsdError
from nirsd.daemon.converter import LOW_LIGHT, SATURATED, Converter, mbll_matrices
from nirsd.daemon.dpf import DEFAULT_DPF, resolve_dpf
from nirsd.daemon.motion import MotionParams, detect

from .report_snirf import Snirf, read_snirf

ENTITY = re.compile(r"(?:^|_)(sub|ses|task|run|acq)-([A-Za-z0-9]+)")


@dataclass(frozen=True)
class Run:
    """One recording found in the dataset."""

    participant: str  # participant_id, e.g. "sub-01"
    session: str  # session label, "n/a" without a session level
    task: str
    run: str  # run index, "n/a" without one
    path: Path
    events: Path | None
    derivative: Path | None


class Event(NamedTuple):
    """One epoch: onset and duration in s from the run's first sample; nirsd's events.tsv
    also gives the daemon's sample indices of the onset and of the first sample after."""

    onset: float
    duration: float
    trial_type: str
    seq: int | None = None
    end_seq: int | None = None


@dataclass
class RunData:
    """One run ready for the measures: ΔHb, flags, events."""

    run: Run
    time: np.ndarray  # (n,) s
    rate_hz: float
    hb: np.ndarray  # (n, 3, n_ch) µM: ΔHbO, ΔHbR, ΔHbT
    bad: np.ndarray  # (n, n_ch) bool: bad light or saturated
    motion: np.ndarray  # (n, n_ch) bool
    labels: list[str]
    events: list[Event]  # by onset
    seq: np.ndarray | None  # (n,) the daemon's sample index of every row (nirsd files)
    source: str  # "raw" or "derivative"
    dpf: list[list[float]]  # (n_ch, n_wl)
    dpf_source: str


def entities(name: str) -> dict[str, str]:
    """BIDS entities of a file name: {"sub": "01", "ses": "1", "task": …}."""
    return {k: v for k, v in ENTITY.findall(name.split(".")[0])}


def find_runs(root: Path) -> list[Run]:
    """Every ``*_nirs.snirf`` under ``sub-*`` of ``root``, in subject/session/run order."""
    if not root.is_dir():
        raise NirsdError(f"{root}: not a directory")
    found = sorted(root.glob("sub-*/**/nirs/*_nirs.snirf"))
    if not found:
        raise NirsdError(f"{root}: no sub-*/[ses-*/]nirs/*_nirs.snirf files (is it fNIRS-BIDS?)")
    derivatives = _derivatives(root / "derivatives" / "nirsd")
    runs = []
    for path in found:
        ent = entities(path.name)
        if "sub" not in ent or "task" not in ent:
            continue
        events = path.with_name(path.name.replace("_nirs.snirf", "_events.tsv"))
        key = tuple(ent.get(k, "") for k in ("sub", "ses", "task", "acq", "run"))
        runs.append(
            Run(
                participant=f"sub-{ent['sub']}",
                session=ent.get("ses", "n/a"),
                task=ent["task"],
                run=ent.get("run", "n/a"),
                path=path,
                events=events if events.is_file() else None,
                derivative=derivatives.get(key),
            )
        )
    return runs


def _derivatives(folder: Path) -> dict[tuple[str, ...], Path]:
    out: dict[tuple[str, ...], Path] = {}
    if folder.is_dir():
        for path in sorted(folder.glob("sub-*/**/*.snirf")):
            ent = entities(path.name)
            out.setdefault(
                tuple(ent.get(k, "") for k in ("sub", "ses", "task", "acq", "run")), path
            )
    return out


def read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def participant_groups(root: Path, column: str) -> dict[str, str]:
    """participant_id → group from ``participants.tsv`` ("n/a" where unknown)."""
    path = root / "participants.tsv"
    if not path.is_file():
        print(f"nirsd: {path} missing: every participant is in group n/a", file=sys.stderr)
        return {}
    rows = read_tsv(path)
    if rows and column not in rows[0]:
        cols = ", ".join(rows[0])
        print(f"nirsd: participants.tsv has no {column!r} column ({cols})", file=sys.stderr)
        return {}
    return {r["participant_id"]: (r.get(column) or "n/a").strip() or "n/a" for r in rows}


def _index(row: dict[str, str], key: str) -> int | None:
    try:
        return int(row[key])
    except (KeyError, TypeError, ValueError):
        return None


def read_events(run: Run) -> list[Event]:
    """The epochs of ``run``'s events.tsv (rows with a finite onset and a positive
    duration), by onset."""
    assert run.events is not None
    out: list[Event] = []
    for row in read_tsv(run.events):
        try:
            onset, duration = float(row["onset"]), float(row.get("duration", "n/a"))
        except (KeyError, ValueError):
            continue  # n/a onset or duration: not an epoch
        label = row.get("trial_type") or row.get("value") or "n/a"
        if np.isfinite(onset) and np.isfinite(duration) and duration > 0:
            seq, end = _index(row, "nirsd_seq"), _index(row, "nirsd_end_seq")
            out.append(Event(onset, duration, label, seq, end))
    return sorted(out, key=lambda e: (e.onset, e.trial_type))


def _parse_dpf(text: str, n_ch: int, wl: np.ndarray) -> np.ndarray | None:
    """A DPF tag: a number, a list per wavelength, per channel, or per channel × wavelength,
    or a {nm: dpf} table; None when it is none of those."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    try:
        if isinstance(value, list) and len(value) == n_ch and n_ch != len(wl):
            return np.stack([resolve_dpf(v, wl) for v in value])
        if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
            return np.stack([resolve_dpf(v, wl) for v in value]) if len(value) == n_ch else None
        return np.broadcast_to(resolve_dpf(value, wl), (n_ch, len(wl))).copy()
    except NirsdError:
        return None


def file_dpf(snirf: Snirf, fallback: float) -> tuple[np.ndarray, str]:
    """(n_ch, n_wl) DPF: the file's DPF tag when it has one, else ``fallback``."""
    n_ch, wl = len(snirf.labels), snirf.wavelengths_nm
    tags = sorted(k for k in snirf.tags if k.lower().endswith("dpf"))  # not nirsdDPFSource
    for key in sorted(tags, key=lambda k: ("channel" not in k.lower(), k)):
        parsed = _parse_dpf(snirf.tags[key], n_ch, wl)
        if parsed is not None:
            return parsed, f"file tag {key}"
        print(f"nirsd: {snirf.path.name}: unreadable DPF tag {key!r}", file=sys.stderr)
    return np.full((n_ch, len(wl)), float(fallback)), f"--dpf {fallback:g}"


def _json_tag(snirf: Snirf, key: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """A JSON number array tag of the given shape, positive and finite, else None."""
    try:
        value = np.asarray(json.loads(snirf.tags[key]), dtype=np.float64)
    except (KeyError, ValueError, TypeError):
        return None
    ok = value.shape == shape and np.isfinite(value).all() and (value > 0).all()
    return value if ok else None


def _number_tag(snirf: Snirf, key: str) -> float | None:
    try:
        value = float(snirf.tags[key])
    except (KeyError, ValueError):
        return None  # absent, or "none"
    return value if np.isfinite(value) else None


def conversion_settings(snirf: Snirf) -> dict:
    """Converter settings the file states (nirsd's conversion tags), else the defaults:
    distances from the probe positions, Prahl's table, no floor or saturation level."""
    n_ch, n_wl = len(snirf.labels), len(snirf.wavelengths_nm)
    dist_mm = _json_tag(snirf, "nirsdDistance_mm", (n_ch,))
    eps = _json_tag(snirf, "nirsdExtinction_per_M_cm", (n_wl, 2))
    return {
        "distances_cm": snirf.distances_cm if dist_mm is None else dist_mm / 10.0,
        "extinction": "prahl" if eps is None else eps,
        "light_floor": _number_tag(snirf, "nirsdLightFloor") or 0.0,
        "saturation_level": _number_tag(snirf, "nirsdSaturationLevel"),
    }


def convert(
    snirf: Snirf, dpf: np.ndarray, i0: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hb (n, 3, n_ch) µM, bad (n, n_ch), od (n, n_ch, n_wl)) from CW amplitudes.

    ``i0`` (n_ch, n_wl) defaults to each channel's mean good intensity; it shifts every
    sample of a channel by the same ΔHb, which no baseline-relative measure sees."""
    intensity = snirf.values
    settings = conversion_settings(snirf)
    conv = Converter(
        snirf.wavelengths_nm,
        settings["distances_cm"],
        dpf,
        extinction=settings["extinction"],
        baseline_samples=1,
        saturation_level=settings["saturation_level"],
        light_floor=settings["light_floor"],
    )
    if i0 is None:
        good = np.isfinite(intensity) & (intensity > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            i0 = np.where(good, intensity, 0.0).sum(axis=0) / good.sum(axis=0)
    conv.set_baseline(np.where(np.isfinite(i0) & (i0 > 0), i0, 1.0))
    hb, quality = conv.process(intensity)
    od = conv.last_od
    assert od is not None
    return hb, (quality & (SATURATED | LOW_LIGHT)) != 0, od


def hb_to_od(snirf: Snirf, dpf: np.ndarray, hb: np.ndarray) -> np.ndarray:
    """OD (n, n_ch, n_wl) that the ΔHbO/ΔHbR (n, 2, n_ch) µM imply (for motion detection)."""
    settings = conversion_settings(snirf)
    A, _ = mbll_matrices(
        snirf.wavelengths_nm, settings["distances_cm"], dpf, settings["extinction"]
    )
    return np.einsum("cwj,njc->ncw", A, hb[:, :2, :] * 1e-6)


def load_run(
    run: Run, dpf_fallback: float = DEFAULT_DPF, motion: MotionParams | None = None
) -> RunData:
    """Read, convert and flag one run (only this run's arrays are held)."""
    raw = read_snirf(run.path, "raw") if run.derivative is None else None
    snirf = raw if raw is not None else read_snirf(run.derivative or run.path, "hb")
    dpf, dpf_source = file_dpf(snirf, dpf_fallback)
    if raw is not None:
        hb, bad, od = convert(raw, dpf)
        source = "raw"
    else:
        two = snirf.values
        hb = np.concatenate([two, two[:, :1] + two[:, 1:2]], axis=1)
        bad = ~np.isfinite(two).all(axis=1)
        od = hb_to_od(snirf, dpf, hb)
        source = "derivative"
    # BIDS onsets count from the file's first sample; SNIRF stims share the file's clock
    t0 = float(snirf.time[0])
    if run.events is not None:
        events = read_events(run)
    else:
        events = [Event(on - t0, dur, label) for on, dur, label in snirf.stims if dur > 0]
    return RunData(
        run=run,
        time=snirf.time - t0,
        rate_hz=snirf.rate_hz,
        hb=hb,
        bad=bad,
        motion=detect(od, snirf.rate_hz, motion),
        labels=snirf.labels,
        events=events,
        seq=snirf.seq,
        source=source,
        dpf=dpf.tolist(),
        dpf_source=dpf_source,
    )
