"""Stims from the recorder's journal: epochs as onset/duration rows, with summaries;
and their writing into a SNIRF file (:func:`write_stims`).

``/nirs/stim{k}`` holds one group per epoch label; ``data`` rows are ``[onset duration
1.0]`` (s, on the file's time axis).  When the daemon sent epoch summaries, every row has
more columns, named by ``dataLabels`` (SNIRF allows extra stim columns): ``nirsd_onset_seq``,
``nirsd_end_seq``, ``nirsd_baseline_s``, then per channel ``mean_hbo <label>``, then
``mean_hbr <label>``, then ``mean_hbt <label>`` (µM, the epoch mean relative to the
pre-epoch baseline: the daemon's ``epoch`` message).  Rows without a summary (epochs from
markers or epoch-label runs, instants) hold NaN there.
"""

from __future__ import annotations

import json
import math
from typing import Any

import h5py
import numpy as np

BASE_LABELS = ["Onset", "Duration", "Amplitude"]
SUMMARY_FIELDS = ("hbo", "hbr", "hbt")


def summary_labels(channels: list[str]) -> list[str]:
    """``dataLabels`` of stims with summaries (after the three base columns)."""
    extra = ["nirsd_onset_seq", "nirsd_end_seq", "nirsd_baseline_s"]
    return extra + [f"mean_{f} {lab}" for f in SUMMARY_FIELDS for lab in channels]


def data_labels(n_cols: int, channels: list[str]) -> list[str]:
    """``dataLabels`` for stim rows of ``n_cols`` columns."""
    if n_cols <= 3:
        return BASE_LABELS[:]
    labels = BASE_LABELS + summary_labels(channels)
    if len(labels) != n_cols:  # a summary of another probe: name the columns by number
        labels = BASE_LABELS + [f"nirsd_column{k}" for k in range(4, n_cols + 1)]
    return labels


def _summary_columns(event: dict[str, Any] | None, n_ch: int) -> list[float]:
    nan = [math.nan] * (3 + 3 * n_ch)
    if event is None:
        return nan
    out = [float(event["onset_seq"]), float(event["end_seq"])]
    out.append(float(event.get("baseline_s", math.nan)))
    for f in SUMMARY_FIELDS:
        means = event.get(f"mean_{f}") or []
        if len(means) != n_ch:
            return nan
        out += [math.nan if m is None else float(m) for m in means]
    return out


def intervals(events: list[dict[str, Any]]) -> list[tuple[str, int, int | None]]:
    """Epochs as ``(label, onset_seq, end_seq or None)`` sample-index intervals.

    Sources by precedence: ``epoch`` summaries, then start/end markers (placed at their
    aligned ``seq``, which also covers late markers), then runs of the per-sample
    ``epoch`` labels (which catch epochs begun before the recorder).  A lower source
    adds an interval only where no higher one has the same label overlapping.
    Instant markers give ``(label, seq, seq)``.
    """
    epochs = [
        (e["label"], int(e["onset_seq"]), int(e["end_seq"]))
        for e in events
        if e["kind"] == "epoch" and e.get("revision", 1) == 1  # a correction: same epoch
    ]
    marks: list[tuple[str, int, int | None]] = []
    instants: list[tuple[str, int, int | None]] = []
    opened: dict[str, int] = {}
    runs: list[tuple[str, int, int | None]] = []
    current: tuple[str | None, int] | None = None
    for e in events:
        if e["kind"] == "marker" and e.get("seq") is not None:
            label, seq, action = e["label"], int(e["seq"]), e.get("action", "start")
            if action == "start":
                opened.setdefault(label, seq)
            elif action == "end":
                if label in opened:
                    marks.append((label, opened.pop(label), seq))
            else:
                instants.append((label, seq, seq))
        elif e["kind"] == "run":
            if current is not None and current[0] is not None:
                runs.append((current[0], current[1], int(e["seq"])))
            current = (e["label"], int(e["seq"]))
    marks += [(label, seq, None) for label, seq in opened.items()]
    if current is not None and current[0] is not None:
        runs.append((current[0], current[1], None))

    def overlaps(a: tuple, b: tuple) -> bool:
        a_end = math.inf if a[2] is None else a[2]
        b_end = math.inf if b[2] is None else b[2]
        return a[0] == b[0] and a[1] < b_end and b[1] < a_end

    out: list[tuple[str, int, int | None]] = list(epochs)
    for cand in marks + runs:
        if not any(overlaps(cand, o) for o in out):
            out.append(cand)
    return out + instants


def stim_rows(
    events: list[dict[str, Any]], seq: np.ndarray, time_s: np.ndarray
) -> dict[str, np.ndarray]:
    """Per label, rows ``[onset_s, duration_s, 1.0, …]`` on the file's time axis.

    With epoch summaries in ``events`` the rows carry the summary columns (see the
    module docstring; NaN where an interval has no summary).

    ``seq``/``time_s``: the sample index and time (s from the first row) of every row.
    An epoch still open at the end lasts to the end of the recording.
    """
    if len(seq) == 0:
        return {}
    summaries: dict[tuple[str, int, int | None], dict[str, Any]] = {
        (e["label"], int(e["onset_seq"]), int(e["end_seq"])): e
        for e in events
        if e["kind"] == "epoch"
    }
    n_ch = max((len(e.get("channels") or []) for e in summaries.values()), default=0)
    step = float(np.median(np.diff(time_s))) if len(time_s) > 1 else 0.0
    end_time = float(time_s[-1]) + step
    out: dict[str, list[list[float]]] = {}
    for label, on, end in intervals(events):
        if end is not None and end != on and end <= seq[0]:
            continue
        i = int(np.searchsorted(seq, on))
        if i == len(seq):
            continue
        onset = float(time_s[i])
        if end == on:
            duration = 0.0
        else:
            j = len(seq) if end is None else int(np.searchsorted(seq, end))
            duration = (float(time_s[j]) if j < len(seq) else end_time) - onset
        row = [onset, max(duration, 0.0), 1.0]
        if n_ch:
            row += _summary_columns(summaries.get((label, on, end)), n_ch)
        out.setdefault(label, []).append(row)
    return {k: np.array(sorted(v)) for k, v in out.items()}


def _channel_labels(f: h5py.File) -> list[str]:
    try:
        return list(json.loads(f["nirs/metaDataTags/ChannelLabels"][()].decode()))
    except (KeyError, ValueError):
        return []


def write_stims(f: h5py.File, stims: dict[str, np.ndarray]) -> None:
    """Replace the stims; rows with more than 3 columns get the summary ``dataLabels``."""
    nirs = f["nirs"]
    channels = _channel_labels(f)
    for key in [k for k in nirs if k.startswith("stim")]:
        del nirs[key]
    for k, (label, rows) in enumerate(sorted(stims.items()), start=1):
        g = nirs.create_group(f"stim{k}")
        g.create_dataset("name", data=str(label).encode())
        data = np.asarray(rows, "f8")
        data = data.reshape(len(data), -1) if data.size else np.zeros((0, 3))
        g.create_dataset("data", data=data)
        labels = data_labels(data.shape[1], channels)
        g.create_dataset("dataLabels", data=[x.encode() for x in labels])
