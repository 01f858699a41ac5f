"""Figures of the study report (matplotlib, Agg backend: no display needed).

- ``epochs_<trial_type>.png``: the epoch-locked ``all``-channel change (µM) against time
  from the onset, one panel per session (rows) and chromophore (columns), one line per
  group: the mean over subjects of each subject's mean curve, shaded ± SD over subjects;
  the epoch is shaded grey, the pre-epoch window is left of 0.
- ``distribution_<trial_type>.png``: per chromophore, the subjects' mean_change per
  session and group as box plots with every subject as a dot.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .report_measures import CHROMOPHORES  # noqa: E402

NAMES = {"hbo": "ΔHbO", "hbr": "ΔHbR", "hbt": "ΔHbT"}
COLORS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"]


def safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "_"


def _colors(groups: list[str]) -> dict[str, str]:
    return {g: COLORS[i % len(COLORS)] for i, g in enumerate(groups)}


def epoch_figure(
    out: Path,
    trial_type: str,
    grid: np.ndarray,
    duration: float,
    curves: dict[tuple[str, str, str, str], np.ndarray],
) -> Path:
    """Group mean ± SD of subject-mean curves for one trial type; returns the PNG path."""
    keys = [k for k in curves if k[3] == trial_type]
    sessions = sorted({k[1] for k in keys})
    groups = sorted({k[2] for k in keys})
    color = _colors(groups)
    fig, axes = plt.subplots(
        len(sessions), 3, figsize=(12, 3.2 * len(sessions)), squeeze=False, sharex=True
    )
    for r, session in enumerate(sessions):
        for c, chrom in enumerate(CHROMOPHORES):
            ax = axes[r, c]
            ax.axvspan(0, duration, color="0.9", zorder=0)
            ax.axhline(0, color="0.5", lw=0.8)
            for g in groups:
                stack = [v[:, c] for k, v in curves.items() if k[1:] == (session, g, trial_type)]
                if not stack:
                    continue
                y = np.vstack(stack)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN grid points
                    mean = np.nanmean(y, 0)
                    sd = np.nanstd(y, 0, ddof=1) if len(y) > 1 else np.zeros_like(mean)
                ax.plot(grid, mean, color=color[g], label=f"{g} (n={len(y)})")
                ax.fill_between(grid, mean - sd, mean + sd, color=color[g], alpha=0.2, lw=0)
            ax.set_title(f"{NAMES[chrom]} · session {session}", fontsize=10)
            if c == 0:
                ax.set_ylabel("change (µM)")
            if r == len(sessions) - 1:
                ax.set_xlabel(f"time from {trial_type} onset (s)")
            ax.legend(fontsize=8, loc="upper right")
    fig.suptitle(f"{trial_type}: epoch-locked mean ± SD over subjects (channel all)")
    # fixed margins: tight_layout would draw the whole figure once more to measure it
    top = 1 - 0.8 / (3.2 * len(sessions))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.5 / (3.2 * len(sessions)) + 0.04)
    fig.subplots_adjust(top=top, hspace=0.3, wspace=0.22)
    path = out / f"epochs_{safe(trial_type)}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def distribution_figure(out: Path, trial_type: str, subjects: pd.DataFrame) -> Path:
    """Subject mean_change per session and group, one panel per chromophore."""
    sub = subjects[(subjects["trial_type"] == trial_type) & (subjects["channel"] == "all")]
    sessions = sorted(sub["session"].unique())
    groups = sorted(sub["group"].unique())
    color = _colors(groups)
    width = 0.8 / max(1, len(groups))
    fig, axes = plt.subplots(1, 3, figsize=(12, 4), squeeze=False)
    rng = np.random.default_rng(0)  # fixed jitter: the same figure every run
    for c, chrom in enumerate(CHROMOPHORES):
        ax = axes[0, c]
        ax.axhline(0, color="0.5", lw=0.8)
        for j, g in enumerate(groups):
            pos, data = [], []
            for i, session in enumerate(sessions):
                at = (sub["group"] == g) & (sub["session"] == session)
                v = sub.loc[at & (sub["chromophore"] == chrom), "mean_change"].dropna()
                if len(v):
                    pos.append(i + (j - (len(groups) - 1) / 2) * width)
                    data.append(v.to_numpy())
            if not data:
                continue
            bp = ax.boxplot(data, positions=pos, widths=width * 0.8, showfliers=False)
            for part in ("boxes", "medians", "whiskers", "caps"):
                plt.setp(bp[part], color=color[g])
            for p, v in zip(pos, data):
                jitter = rng.uniform(-width * 0.25, width * 0.25, len(v))
                ax.plot(p + jitter, v, "o", ms=3, color=color[g], alpha=0.6)
            ax.plot([], [], "s", color=color[g], label=g)
        ax.set_xticks(range(len(sessions)), [f"session {s}" for s in sessions])
        ax.set_title(f"{NAMES[chrom]} mean change", fontsize=10)
        if c == 0:
            ax.set_ylabel("subject mean change (µM)")
        ax.legend(fontsize=8)
    fig.suptitle(f"{trial_type}: subject means by group and session (channel all)")
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.1, top=0.86, wspace=0.25)
    path = out / f"distribution_{safe(trial_type)}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
