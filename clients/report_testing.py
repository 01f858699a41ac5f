"""A synthetic fNIRS-BIDS study with known hemoglobin changes, written without nirsd.

Every run's ΔHbO/ΔHbR (µM) is built from known responses per group, session and trial
type (plus a per-subject offset, channel gains and physiological noise), turned into CW
amplitudes by the inverse modified Beer-Lambert law (I = I0·exp(−ln10·ε·d·DPF·Δc),
Prahl's ε, exact ln 10), put in an MNE Raw of ``fnirs_cw_amplitude`` channels, saved as
SNIRF by mne-nirs, read back by MNE and written into the dataset by mne-bids (which
also writes events.tsv and participants.tsv).  The truth is returned so tests can check
the report against it; tests and ``bench/study_report.py`` use it (needs the ``test``
extra: mne, mne-nirs, mne-bids).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nirsd.core.extinction import extinction_matrix

WAVELENGTHS_NM = (760.0, 850.0)
# (HbO, HbR) response amplitudes in µM: group → session → trial_type
RESPONSES: dict[str, dict[str, dict[str, tuple[float, float]]]] = {
    "eperisone": {
        "1": {"extension": (-4.0, 1.5), "flexion": (2.0, -1.0)},
        "2": {"extension": (-1.5, 0.6), "flexion": (3.0, -1.8)},
    },
    "physio": {
        "1": {"extension": (-4.0, 1.5), "flexion": (2.0, -1.0)},
        "2": {"extension": (-3.0, 1.2), "flexion": (2.4, -1.2)},
    },
    "mckenzie": {
        "1": {"extension": (-4.0, 1.5), "flexion": (2.0, -1.0)},
        "2": {"extension": (-2.5, 1.0), "flexion": (2.2, -1.1)},
    },
}
PROTOCOL = (("rest", 20.0), ("extension", 20.0), ("rest", 20.0), ("flexion", 20.0))


@dataclass
class RunTruth:
    participant: str
    session: str
    group: str
    time: np.ndarray  # (n,) s
    dc: np.ndarray  # (n, 2, n_ch) true ΔHbO, ΔHbR in µM
    events: list[tuple[float, float, str]]
    distances_cm: np.ndarray
    artifacts: list[tuple[int, int, int]] = field(default_factory=list)  # (ch, first, end)


def response(t: np.ndarray, onset: float, duration: float, tau: float = 3.0) -> np.ndarray:
    """Unit response: 1 − e^(−t/τ) during the epoch, exponential return after it."""
    r = np.zeros_like(t)
    on = (t >= onset) & (t < onset + duration)
    r[on] = 1.0 - np.exp(-(t[on] - onset) / tau)
    top = 1.0 - math.exp(-duration / tau)
    after = t >= onset + duration
    r[after] = top * np.exp(-(t[after] - onset - duration) / tau)
    return r


def schedule(minutes: float) -> list[tuple[float, float, str]]:
    """The exercise epochs (not the rests) of a run of ``minutes``, onsets on 0.1 s."""
    out: list[tuple[float, float, str]] = []
    t, end = 10.0, minutes * 60.0
    while True:
        for label, dur in PROTOCOL:
            if t + dur > end - 10.0:
                return out
            if label != "rest":
                out.append((round(t, 1), dur, label))
            t += dur


def synth_dc(
    rng: np.random.Generator,
    time: np.ndarray,
    events: list[tuple[float, float, str]],
    amps: dict[str, tuple[float, float]],
    n_ch: int,
    noise: bool = True,
) -> np.ndarray:
    """ΔHbO/ΔHbR (n, 2, n_ch) µM: the responses with channel gains, plus physiology."""
    dc = np.zeros((len(time), 2, n_ch))
    gains = rng.uniform(0.7, 1.3, n_ch)
    for onset, dur, label in events:
        r = response(time, onset, dur)
        for k in range(2):
            dc[:, k, :] += amps[label][k] * r[:, None] * gains[None, :]
    if noise:
        for k, scale in enumerate((1.0, 0.4)):
            phase = rng.uniform(0, 2 * np.pi, (3, n_ch))
            slow = 0.3 * np.sin(2 * np.pi * 0.1 * time[:, None] + phase[0])  # Mayer waves
            pulse = 0.1 * np.sin(2 * np.pi * 1.1 * time[:, None] + phase[1])
            drift = 0.5 * np.sin(2 * np.pi * time[:, None] / 400.0 + phase[2])
            white = rng.normal(0, 0.05, (len(time), n_ch))
            dc[:, k, :] += scale * (slow + pulse + drift + white)
    return dc


def amplitudes(dc: np.ndarray, distances_cm: np.ndarray, dpf: float, i0: np.ndarray):
    """CW amplitudes (n, n_ch, n_wl) for ΔHbO/ΔHbR (n, 2, n_ch) µM: inverse MBLL."""
    eps = extinction_matrix(WAVELENGTHS_NM)  # (n_wl, 2) cm^-1/M
    od = math.log(10.0) * np.einsum("wj,njc->ncw", eps, dc * 1e-6)
    od *= (distances_cm * dpf)[None, :, None]
    return i0[None] * np.exp(-od)


def mne_raw(intensity: np.ndarray, rate_hz: float, distances_cm: np.ndarray, events):
    """An MNE Raw of fnirs_cw_amplitude channels S{i}_D{i} at the given distances."""
    import mne

    n, n_ch, n_wl = intensity.shape
    names = [f"S{c + 1}_D{c + 1} {int(w)}" for c in range(n_ch) for w in WAVELENGTHS_NM]
    info = mne.create_info(names, rate_hz, "fnirs_cw_amplitude")
    for c in range(n_ch):
        src = np.array([0.04 * c, 0.0, 0.0])
        det = src + np.array([0.0, distances_cm[c] / 100.0, 0.0])
        for w, lam in enumerate(WAVELENGTHS_NM):
            loc = info["chs"][c * n_wl + w]["loc"]
            loc[:3], loc[3:6], loc[6:9], loc[9] = (src + det) / 2, src, det, lam
    raw = mne.io.RawArray(intensity.reshape(n, -1).T, info, verbose=False)
    raw.set_meas_date(dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC))
    raw.info["subject_info"] = {"his_id": "synthetic"}
    onsets, durs, labels = zip(*events) if events else ((), (), ())
    raw.set_annotations(mne.Annotations(list(onsets), list(durs), list(labels)))
    return raw


def write_run(root: Path, raw, subject: str, session: str, task: str, run: int) -> Path:
    """mne-nirs writes SNIRF; MNE reads it back; mne-bids puts it in the dataset."""
    import mne
    from mne_bids import BIDSPath, write_raw_bids
    from mne_nirs.io import write_raw_snirf

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.snirf"
        write_raw_snirf(raw, str(path))
        back = mne.io.read_raw_snirf(str(path), verbose=False)
        bp = BIDSPath(subject=subject, session=session, task=task, run=run, root=root)
        bp.update(datatype="nirs")
        with contextlib.redirect_stdout(io.StringIO()):  # mne-bids prints every file
            write_raw_bids(back, bp, overwrite=True, verbose=False)
    return bp.fpath


def add_group_column(root: Path, groups: dict[str, str]) -> None:
    """participants.tsv as mne-bids wrote it, plus the study's ``group`` column."""
    path = root / "participants.tsv"
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    fields = list(rows[0]) + ["group"]
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fields, delimiter="\t", lineterminator="\n")
        w.writeheader()
        for row in rows:
            w.writerow(row | {"group": groups.get(row["participant_id"], "n/a")})


def write_study(
    root: Path,
    per_group: int | dict[str, int] = 4,
    groups: tuple[str, ...] = ("eperisone", "physio", "mckenzie"),
    sessions: tuple[str, ...] = ("1", "2"),
    minutes: float = 2.0,
    n_ch: int = 8,
    rate_hz: float = 10.0,
    dpf: float = 6.0,
    seed: int = 0,
    keep_truth: bool = True,
    progress=None,
) -> list[RunTruth]:
    """Write the study into ``root``; returns each run's truth (empty if not kept).

    ``per_group``: participants in each group, or {group: count}."""
    rng = np.random.default_rng(seed)
    n = int(round(minutes * 60 * rate_hz))
    time = np.arange(n) / rate_hz
    events = schedule(minutes)
    truths, member = [], {}
    for g_i, group in enumerate(groups):
        count = per_group[group] if isinstance(per_group, dict) else per_group
        for s_i in range(count):
            subject = f"{g_i + 1}{s_i + 1:02d}"
            member[f"sub-{subject}"] = group
            offset = rng.normal(0, 0.5, 2)  # this subject's own response level
            dist = rng.uniform(3.0, 3.5, n_ch)
            for session in sessions:
                base = RESPONSES[group][session]
                amps = {k: (v[0] + offset[0], v[1] + 0.3 * offset[1]) for k, v in base.items()}
                dc = synth_dc(rng, time, events, amps, n_ch)
                i0 = rng.uniform(2e3, 2e4, (n_ch, len(WAVELENGTHS_NM)))
                intensity = amplitudes(dc, dist, dpf, i0)
                raw = mne_raw(intensity, rate_hz, dist, events)
                write_run(root, raw, subject, session, "exercise", 1)
                if keep_truth:
                    truths.append(
                        RunTruth(f"sub-{subject}", session, group, time, dc, events, dist)
                    )
                if progress is not None:
                    progress()
    add_group_column(root, member)
    return truths


def inject_motion(
    rng: np.random.Generator, intensity: np.ndarray, rate_hz: float, n_spikes: int, n_steps: int
) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Spikes (0.2-0.5 s, OD +0.1…0.4) and steps (OD ±0.08…0.25 from then on) on random
    channels; returns the new intensities and (channel, first, end) sample spans (a
    step's span is its first sample)."""
    out = intensity.copy()
    n, n_ch, _ = out.shape
    spans = []
    starts = rng.choice(np.arange(int(5 * rate_hz), n - int(5 * rate_hz)), n_spikes + n_steps)
    for i, s in enumerate(starts):
        ch = int(rng.integers(n_ch))
        if i < n_spikes:
            length = int(rng.integers(int(0.2 * rate_hz), int(0.5 * rate_hz) + 1))
            out[s : s + length, ch, :] *= np.exp(-rng.uniform(0.1, 0.4))
            spans.append((ch, int(s), int(s + length)))
        else:
            out[s:, ch, :] *= np.exp(-rng.choice([-1, 1]) * rng.uniform(0.08, 0.25))
            spans.append((ch, int(s), int(s + 1)))
    return out, spans
