"""``nirsd plot``: a session figure from a nirsd SNIRF file (matplotlib, Agg backend).

One panel per channel with ΔHbO (red) and ΔHbR (blue) in µM against time in seconds
from the first sample, every stim (epoch) shaded and labelled, and below them a table of
epoch summaries: per epoch the channel-averaged mean ΔHbO, ΔHbR and ΔHbT during the
epoch relative to the pre-epoch baseline.  Summaries come from the daemon's ``epoch``
messages in the recording journal when it is present, else they are computed from the
file with a baseline of ``BASELINE_S`` seconds before each onset.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from nirsd.core.errors import NirsdError

BASELINE_S = 10.0
PANEL_IN = 1.2  # inches per channel panel
TABLE_ROW_IN = 0.28
HEADER_IN = 0.9
COLORS = ("#f2c14e", "#5fad56", "#4d9de0", "#b07aa1", "#e15554", "#7768ae", "#3bb273")


@dataclass
class Session:
    time_s: np.ndarray  # (n,)
    hbo: np.ndarray  # (n, ch) µM
    hbr: np.ndarray  # (n, ch) µM
    labels: list[str]
    stims: dict[str, np.ndarray]  # label -> rows [onset duration value]
    tags: dict[str, str]
    epochs: list[dict[str, Any]]  # epoch summaries from the journal (may be empty)


def _text(value: Any) -> str:
    value = np.asarray(value).ravel()[0] if np.ndim(value) else value
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_session(path: str | Path) -> Session:
    """The hemoglobin block, stims and tags of a SNIRF file (any writer, dataType 99999)."""
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise NirsdError(f"cannot read {path}: {err}") from err
    with f:
        block = None
        for key in sorted(k for k in f["nirs"] if k.startswith("data")):
            ml = f[f"nirs/{key}/measurementList1"]
            if "dataTypeLabel" in ml and _text(ml["dataTypeLabel"][()]) in ("HbO", "HbR"):
                block = f[f"nirs/{key}"]
                break
        if block is None:
            raise NirsdError(f"{path} has no HbO/HbR data block")
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
    try:
        labels = json.loads(tags.get("ChannelLabels", ""))
    except json.JSONDecodeError:
        labels = []
    ho_pairs = [p for p, kd in zip(pairs, kinds) if kd == "HbO"]
    if len(labels) != hbo.shape[1]:
        labels = [f"S{s}-D{d}" for s, d in ho_pairs]
    return Session(time_s, hbo, hbr, labels, stims, tags, _journal_epochs(path))


def _journal_epochs(path: str | Path) -> list[dict[str, Any]]:
    from .recorder import journal_path, read_journal

    jpath = journal_path(path)
    if not jpath.exists():
        return []
    return [e for e in read_journal(jpath) if e.get("kind") == "epoch"]


def summaries(s: Session) -> list[dict[str, Any]]:
    """One row per stim: label, onset and duration (s), channel-mean ΔHbO/ΔHbR/ΔHbT (µM)."""
    t0 = None
    if s.epochs:
        t0 = _file_t0(s)
    rows = []
    for label, stim in s.stims.items():
        for onset, duration, *_ in stim:
            row = {"label": label, "onset": float(onset), "duration": float(duration)}
            match = None
            if t0 is not None:
                match = next(
                    (
                        e
                        for e in s.epochs
                        if e.get("label") == label
                        and abs(e["onset_t"] - t0 - onset) < 0.5 * max(duration, 1.0)
                    ),
                    None,
                )
            if match is not None:
                for key in ("hbo", "hbr", "hbt"):
                    vals = np.array(
                        [np.nan if v is None else v for v in match[f"mean_{key}"]], float
                    )
                    row[key] = float(np.nanmean(vals)) if np.isfinite(vals).any() else np.nan
                row["source"] = "daemon"
            elif duration <= 0:
                row.update(hbo=np.nan, hbr=np.nan, hbt=np.nan, source="instant")
            else:
                row.update(_computed(s, onset, duration))
            rows.append(row)
    return sorted(rows, key=lambda r: r["onset"])


def _file_t0(s: Session) -> float | None:
    import datetime as dt

    try:
        when = dt.datetime.strptime(
            s.tags["MeasurementDate"] + s.tags["MeasurementTime"].rstrip("Z"), "%Y-%m-%d%H:%M:%S.%f"
        )
    except (KeyError, ValueError):
        return None
    return when.replace(tzinfo=dt.UTC).timestamp()


def _computed(s: Session, onset: float, duration: float) -> dict[str, Any]:
    during = (s.time_s >= onset) & (s.time_s < onset + max(duration, 1e-9))
    base = (s.time_s >= onset - BASELINE_S) & (s.time_s < onset)
    out: dict[str, Any] = {"source": "file"}
    for key, arr in (("hbo", s.hbo), ("hbr", s.hbr), ("hbt", s.hbo + s.hbr)):
        if during.any() and base.any():
            with np.errstate(all="ignore"):
                delta = np.nanmean(arr[during], axis=0) - np.nanmean(arr[base], axis=0)
            out[key] = float(np.nanmean(delta)) if np.isfinite(delta).any() else np.nan
        else:
            out[key] = np.nan
    return out


def figure_size(n_channels: int, n_rows: int, width_in: float) -> tuple[float, float]:
    """(width, height) in inches for ``n_channels`` panels and ``n_rows`` table rows."""
    return width_in, HEADER_IN + PANEL_IN * n_channels + TABLE_ROW_IN * (n_rows + 2)


def pixel_size(n_channels: int, n_rows: int, width_in: float, dpi: int) -> tuple[int, int]:
    """The image size in pixels ``plot_file`` writes (each side rounded to a pixel)."""
    w, h = figure_size(n_channels, n_rows, width_in)
    return round(w * dpi), round(h * dpi)


def plot_file(
    path: str | Path,
    out: str | Path,
    width_in: float = 12.0,
    dpi: int = 100,
    title: str | None = None,
) -> tuple[int, int]:
    """Draw ``path`` into ``out``; returns the image size in pixels (width, height)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = read_session(path)
    if len(s.time_s) == 0:
        raise NirsdError(f"{path} holds no samples")
    rows = summaries(s)
    n_ch = s.hbo.shape[1]
    px_w, px_h = pixel_size(n_ch, len(rows), width_in, dpi)
    w, h = (px_w + 0.25) / dpi, (px_h + 0.25) / dpi  # Agg truncates to whole pixels
    fig = plt.figure(figsize=(w, h), dpi=dpi)
    table_h = TABLE_ROW_IN * (len(rows) + 2)
    grid = fig.add_gridspec(
        n_ch + 1,
        1,
        height_ratios=[PANEL_IN] * n_ch + [table_h],
        left=0.08,
        right=0.98,
        top=1 - 0.6 / h,
        bottom=0.1 / h,
        hspace=0.15,
    )
    colors = {label: COLORS[i % len(COLORS)] for i, label in enumerate(sorted(s.stims))}
    axes = [fig.add_subplot(grid[i]) for i in range(n_ch)]
    for i, ax in enumerate(axes):
        for label, stim in s.stims.items():
            for onset, duration, *_ in stim:
                if duration > 0:
                    ax.axvspan(onset, onset + duration, color=colors[label], alpha=0.3, lw=0)
                else:
                    ax.axvline(onset, color=colors[label], lw=1.2)
                if i == 0:
                    ax.annotate(
                        label,
                        (onset, 1.0),
                        xycoords=("data", "axes fraction"),
                        xytext=(2, 2),
                        textcoords="offset points",
                        fontsize=8,
                        va="bottom",
                        color="black",
                    )
        ax.plot(s.time_s, s.hbo[:, i], color="#d62728", lw=0.9, label="ΔHbO")
        ax.plot(s.time_s, s.hbr[:, i], color="#1f77b4", lw=0.9, label="ΔHbR")
        ax.set_ylabel(f"{s.labels[i]}\nµM", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlim(s.time_s[0], s.time_s[-1])
        ax.grid(alpha=0.3)
        if i < n_ch - 1:
            ax.tick_params(labelbottom=False)
    axes[-1].set_xlabel("time (s from the first sample)", fontsize=8)
    axes[0].legend(loc="upper right", fontsize=7, ncol=2)
    fig.suptitle(title or _title(s), fontsize=11)
    _table(fig.add_subplot(grid[n_ch]), rows)
    fig.savefig(out, dpi=dpi)
    size = fig.canvas.get_width_height()
    plt.close(fig)
    return int(size[0]), int(size[1])


def _title(s: Session) -> str:
    t = s.tags
    parts = [f"subject {t.get('SubjectID', '?')}"]
    parts += [f"{k.lower()} {t[k]}" for k in ("StudyGroup", "Visit") if t.get(k)]
    parts.append(f"{t.get('MeasurementDate', '')} {t.get('MeasurementTime', '')[:8]} UTC")
    return "  ·  ".join(parts)


def _table(ax: Any, rows: list[dict[str, Any]]) -> None:
    ax.axis("off")
    if not rows:
        ax.text(0.5, 0.5, "no epochs recorded", ha="center", va="center", fontsize=9)
        return

    def fmt(v: float) -> str:
        return "—" if not np.isfinite(v) else f"{v:+.3f}"

    cells = [
        [
            r["label"],
            f"{r['onset']:.1f}",
            f"{r['duration']:.1f}",
            fmt(r["hbo"]),
            fmt(r["hbr"]),
            fmt(r["hbt"]),
            r["source"],
        ]
        for r in rows
    ]
    table = ax.table(
        cellText=cells,
        loc="upper center",
        cellLoc="center",
        colLabels=[
            "epoch",
            "onset (s)",
            "duration (s)",
            "mean ΔHbO (µM)",
            "mean ΔHbR (µM)",
            "mean ΔHbT (µM)",
            "summary from",
        ],
        bbox=[0, 0, 1, 0.8],
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
