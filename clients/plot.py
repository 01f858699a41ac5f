"""``nirsd plot``: a session figure from a nirsd SNIRF file (matplotlib, Agg backend).

From the top: the title and one legend for the whole figure; one panel per channel with
ΔHbO (red), ΔHbR (blue) and ΔHbT (green) in µM against time in seconds from the first
sample, every stim (epoch) shaded and labelled (labels of neighbouring epochs are
staggered on up to three rows, and left out beyond that: the shading's colour and the
legend still say which), baseline re-takes from the journal as dashed lines; by default
one y-scale shared by every channel panel, so channels compare by eye (the probe covers
one muscle group), or ``per-channel``.  Then, per exercise, the epoch-locked average
± SD across repetitions of the channel-mean ΔHbO and ΔHbR with the pre-epoch baseline
shaded; then a table with per channel and exercise the mean ± SD change from the
pre-epoch baseline.  Every number is computed from the file (see
:mod:`nirsd.clients.epoch_stats`), with the baseline window the daemon used when the
journal says (else ``BASELINE_S``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nirsd.core.errors import NirsdError

from . import epoch_stats
from .session_file import Session, read_session

__all__ = ["BASELINE_S", "draw", "figure_size", "pixel_size", "plot_file", "read_session"]

BASELINE_S = 10.0
SCALES = ("shared", "per-channel")
HEADER_IN = 1.25  # title, legend, staggered epoch labels
PANEL_IN = 1.2  # inches per channel panel
XLABEL_IN = 0.75  # the channel panels' x label, then the average panels' titles
AVERAGE_IN = 2.5
TABLE_ROW_IN = 0.28
CAPTION_IN = 0.3
LEFT, RIGHT = 0.08, 0.98
LABEL_ROWS = 3
HB_COLORS = {"hbo": "#d62728", "hbr": "#1f77b4", "hbt": "#2ca02c"}
HB_NAMES = {"hbo": "ΔHbO", "hbr": "ΔHbR", "hbt": "ΔHbT"}
RETAKE_COLOR = "#444444"
COLORS = ("#f2c14e", "#5fad56", "#4d9de0", "#b07aa1", "#e15554", "#7768ae", "#3bb273")


def figure_size(
    n_channels: int, n_rows: int, width_in: float, n_average: int = 0
) -> tuple[float, float]:
    """(width, height) in inches: ``n_channels`` panels, an average row when
    ``n_average`` exercises have one, and a table of ``n_rows`` rows."""
    return width_in, (
        HEADER_IN
        + PANEL_IN * n_channels
        + XLABEL_IN
        + (AVERAGE_IN if n_average else 0.0)
        + CAPTION_IN
        + TABLE_ROW_IN * (n_rows + 2)
    )


def pixel_size(
    n_channels: int, n_rows: int, width_in: float, dpi: int, n_average: int = 0
) -> tuple[int, int]:
    """The image size in pixels ``plot_file`` writes (each side rounded to a pixel)."""
    w, h = figure_size(n_channels, n_rows, width_in, n_average)
    return round(w * dpi), round(h * dpi)


def plot_file(
    path: str | Path,
    out: str | Path,
    width_in: float = 12.0,
    dpi: int = 100,
    title: str | None = None,
    scale: str = "shared",
) -> tuple[int, int]:
    """Draw ``path`` into ``out``; returns the image size in pixels (width, height)."""
    import matplotlib.pyplot as plt

    fig = draw(read_session(path), width_in, dpi, title, scale, source=str(path))
    fig.savefig(out, dpi=dpi)
    size = fig.canvas.get_width_height()
    plt.close(fig)
    return int(size[0]), int(size[1])


def draw(
    s: Session,
    width_in: float = 12.0,
    dpi: int = 100,
    title: str | None = None,
    scale: str = "shared",
    source: str = "the file",
) -> Any:
    """The figure for session ``s`` (a matplotlib Figure on the Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if scale not in SCALES:
        raise NirsdError(f"scale must be one of {', '.join(SCALES)}, not {scale!r}")
    if len(s.time_s) == 0:
        raise NirsdError(f"{source} holds no samples")
    n_ch = s.hbo.shape[1]
    exercises = epoch_stats.exercise_labels(s)
    baseline_s = s.epoch_baseline_s(BASELINE_S)
    n_rows = n_ch if exercises else 1
    px_w, px_h = pixel_size(n_ch, n_rows, width_in, dpi, len(exercises))
    w, h = (px_w + 0.25) / dpi, (px_h + 0.25) / dpi  # Agg truncates to whole pixels
    fig = plt.figure(figsize=(w, h), dpi=dpi)
    place = _Placer(fig, w, h)
    colors = {label: COLORS[i % len(COLORS)] for i, label in enumerate(sorted(s.stims))}
    axes = [place.axes(PANEL_IN, pad=0.12) for _ in range(n_ch)]
    for ax in axes[1:]:
        ax.sharex(axes[0])
    retakes = s.baseline_retakes()
    _channel_panels(axes, s, colors, retakes, scale)
    _epoch_labels(axes[0], s, retakes, colors, width_in * (RIGHT - LEFT))
    place.skip(XLABEL_IN)
    if exercises:
        _average_panels(place, s, exercises, colors, baseline_s)
    _legend(fig, h, s, colors, retakes)
    fig.suptitle(title or _title(s), fontsize=11, y=1 - 0.1 / h, va="top")
    _table(place, s, exercises, baseline_s, n_rows)
    return fig


class _Placer:
    """Axes stacked from the top of the figure, in inches."""

    def __init__(self, fig: Any, w: float, h: float) -> None:
        self.fig, self.w, self.h = fig, w, h
        self.top = HEADER_IN

    def skip(self, inches: float) -> None:
        self.top += inches

    def rect(self, inches: float, pad: float = 0.0) -> tuple[float, float]:
        """(bottom, height) in figure fractions of the next ``inches``, less ``pad`` at
        the bottom (room for tick labels and an x label)."""
        bottom = 1 - (self.top + inches - pad) / self.h
        self.top += inches
        return bottom, (inches - pad) / self.h

    def axes(self, inches: float, pad: float = 0.0) -> Any:
        bottom, height = self.rect(inches, pad)
        return self.fig.add_axes((LEFT, bottom, RIGHT - LEFT, height))


def _channel_panels(
    axes: list, s: Session, colors: dict[str, str], retakes: list[float], scale: str
) -> None:
    series = {"hbo": s.hbo, "hbr": s.hbr, "hbt": s.hbt}
    for i, ax in enumerate(axes):
        for label, stim in s.stims.items():
            for onset, duration, *_ in stim:
                if duration > 0:
                    ax.axvspan(onset, onset + duration, color=colors[label], alpha=0.3, lw=0)
                else:
                    ax.axvline(onset, color=colors[label], lw=1.2)
        for t in retakes:
            ax.axvline(t, color=RETAKE_COLOR, lw=1.0, ls="--", gid="baseline-retake")
        for kind, arr in series.items():
            ax.plot(s.time_s, arr[:, i], color=HB_COLORS[kind], lw=0.9 if kind != "hbt" else 0.7)
        ax.set_ylabel(f"{s.labels[i]}\nµM", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlim(s.time_s[0], s.time_s[-1])
        ax.grid(alpha=0.3)
        if i < len(axes) - 1:
            ax.tick_params(labelbottom=False)
    axes[-1].set_xlabel("time (s from the first sample)", fontsize=8)
    if scale == "shared":
        values = np.concatenate([a[np.isfinite(a)] for a in series.values()])
        if values.size:
            lo, hi = float(values.min()), float(values.max())
            pad = 0.05 * (hi - lo) if hi > lo else 0.5
            for ax in axes:
                ax.set_ylim(lo - pad, hi + pad)


def _epoch_labels(
    ax: Any, s: Session, retakes: list[float], colors: dict[str, str], ax_w_in: float
) -> int:
    """Label every stim and re-take above ``ax``, staggered so that none overlaps;
    returns how many were left out (more than ``LABEL_ROWS`` rows would be needed)."""
    items = [(float(on), label) for label, stim in s.stims.items() for on, *_ in stim]
    items += [(t, "baseline re-take") for t in retakes]
    lo, hi = ax.get_xlim()
    per_in = (hi - lo) / ax_w_in if ax_w_in > 0 else 0.0
    row_end = [-np.inf] * LABEL_ROWS
    skipped = 0
    for x, text in sorted(items):
        width = (len(text) * 8 * 0.6 / 72 + 0.08) * per_in  # 8 pt text, ~0.6 em a glyph
        row = next((r for r in range(LABEL_ROWS) if row_end[r] <= x), None)
        if row is None:
            skipped += 1
            continue
        row_end[row] = x + width
        ax.annotate(
            text,
            (x, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(2, 2 + 10 * row),
            textcoords="offset points",
            fontsize=8,
            va="bottom",
            color=RETAKE_COLOR if text == "baseline re-take" else "black",
            gid="epoch-label",
        )
    return skipped


def _legend(fig: Any, h: float, s: Session, colors: dict[str, str], retakes: list[float]) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Any] = [Line2D([], [], color=HB_COLORS[k], label=HB_NAMES[k]) for k in HB_COLORS]
    handles += [Patch(color=colors[k], alpha=0.3, label=k) for k in sorted(s.stims)]
    if retakes:
        handles.append(Line2D([], [], color=RETAKE_COLOR, ls="--", label="baseline re-take"))
    fig.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, 1 - 0.38 / h),
        ncol=len(handles),
        fontsize=8,
        frameon=False,
    )


def _average_panels(
    place: _Placer, s: Session, exercises: list[str], colors: dict[str, str], baseline_s: float
) -> None:
    bottom, height = place.rect(AVERAGE_IN, pad=0.7)
    n = len(exercises)
    gap = 0.06
    width = (RIGHT - LEFT - gap * (n - 1)) / n
    first = None
    for j, label in enumerate(exercises):
        ax = place.fig.add_axes((LEFT + j * (width + gap), bottom, width, height), sharey=first)
        first = first or ax
        avg = epoch_stats.epoch_average(s, label, baseline_s)
        ax.set_title(
            f"{label}: mean ± SD over {avg.n} repetition{'s' if avg.n != 1 else ''} (channel mean)",
            fontsize=9,
        )
        ax.axhline(0, color="black", lw=0.5)
        if avg.n:
            ax.axvspan(-avg.baseline_s, 0, color="#999999", alpha=0.2, lw=0, gid="baseline")
            ax.axvspan(0, avg.t[-1], color=colors[label], alpha=0.15, lw=0)
            for k, kind in enumerate(("hbo", "hbr")):
                mean, sd = avg.mean[k], avg.sd[k]
                ax.plot(avg.t, mean, color=HB_COLORS[kind], lw=1.2, gid=f"avg-{label}-{kind}")
                if np.isfinite(sd).any():
                    ax.fill_between(
                        avg.t,
                        mean - sd,
                        mean + sd,
                        color=HB_COLORS[kind],
                        alpha=0.2,
                        lw=0,
                        gid=f"sd-{label}-{kind}",
                    )
            ax.set_xlim(avg.t[0], avg.t[-1])
        else:
            ax.text(0.5, 0.5, "no repetition with a full baseline", ha="center", fontsize=8)
        ax.set_xlabel(
            f"s from onset (shaded grey: the {baseline_s:g} s pre-epoch baseline)", fontsize=8
        )
        ax.set_ylabel("µM" if j == 0 else "", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)


def _title(s: Session) -> str:
    t = s.tags
    parts = [f"subject {t.get('SubjectID', '?')}"]
    parts += [f"{k.lower()} {t[k]}" for k in ("StudyGroup", "Visit") if t.get(k)]
    parts.append(f"{t.get('MeasurementDate', '')} {t.get('MeasurementTime', '')[:8]} UTC")
    return "  ·  ".join(parts)


def table_cells(
    s: Session, exercises: list[str], baseline_s: float
) -> tuple[list[str], list[list[str]]]:
    """Column labels and rows of the summary table (one row per channel)."""
    stats = [epoch_stats.changes(s, label, baseline_s) for label in exercises]
    cols = ["channel"]
    for c in stats:
        cols += [f"{c.label} {HB_NAMES[k]} (n={c.n})" for k in epoch_stats.KINDS]

    def fmt(mean: float, sd: float) -> str:
        if not np.isfinite(mean):
            return "—"
        return f"{mean:+.2f} ± {sd:.2f}" if np.isfinite(sd) else f"{mean:+.2f}"

    rows = []
    for i, name in enumerate(s.labels):
        row = [name]
        for c in stats:
            row += [fmt(c.mean[k, i], c.sd[k, i]) for k in range(3)]
        rows.append(row)
    return cols, rows


def _table(place: _Placer, s: Session, exercises: list[str], baseline_s: float, n: int) -> None:
    cap = place.axes(CAPTION_IN)
    cap.axis("off")
    ax = place.axes(TABLE_ROW_IN * (n + 2))
    ax.axis("off")
    if not exercises:
        ax.text(0.5, 0.5, "no epochs recorded", ha="center", va="center", fontsize=9)
        return
    cap.text(
        0,
        0.3,
        f"Change from the {baseline_s:g} s before each onset, per channel (µM): mean ± SD "
        f"over the repetitions, computed from the file.",
        fontsize=9,
    )
    cols, rows = table_cells(s, exercises, baseline_s)
    table = ax.table(
        cellText=rows, colLabels=cols, loc="upper center", cellLoc="center", bbox=[0, 0, 1, 1]
    )
    table.auto_set_font_size(False)
    table.set_fontsize(7 if len(cols) > 7 else 8)
