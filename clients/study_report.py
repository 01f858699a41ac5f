"""``nirsd report``: from an fNIRS-BIDS dataset to epochs, subjects, groups, tests, figures.

Runs are read one at a time (only that run's samples are in memory); what is kept across
runs is the epoch rows and one subject-mean curve per participant × session × trial type.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd

from nirsd.core.errors import NirsdError
from nirsd.daemon.dpf import DEFAULT_DPF

from . import report_data, report_figures, report_html, report_stats
from .report_measures import CurveBank, Limits, epoch_table

EPOCH_COLUMNS = [
    "participant_id",
    "session",
    "group",
    "task",
    "run",
    "trial_type",
    "onset",
    "duration",
    "channel",
    "chromophore",
    "mean_change",
    "peak_change",
    "time_to_peak",
    "slope",
    "recovery_half_time",
    "motion_fraction",
    "bad_fraction",
    "n_channels",
    "excluded",
]


@dataclass
class Options:
    root: Path
    out: Path
    baseline_s: float = 10.0
    dpf: float = DEFAULT_DPF
    group_column: str = "group"
    max_motion: float = 0.2
    max_bad: float = 0.5


class Progress:
    """A one-line progress bar on stderr (a line per 10 % when stderr is not a terminal)."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 30) -> None:
        stream = stream if stream is not None else sys.stderr  # the current one, at call time
        self.total, self.stream, self.width = max(1, total), stream, width
        self.tty = stream.isatty()
        self.start = time.monotonic()
        self._last_decile = -1

    def update(self, done: int, what: str = "") -> None:
        frac = done / self.total
        elapsed = time.monotonic() - self.start
        bar = "#" * int(frac * self.width)
        line = f"[{bar:<{self.width}}] {done}/{self.total} runs {elapsed:5.1f} s {what}"
        if self.tty:
            self.stream.write("\r" + line[:120].ljust(120))
            if done >= self.total:
                self.stream.write("\n")
        elif int(frac * 10) != self._last_decile or done >= self.total:
            self._last_decile = int(frac * 10)
            self.stream.write(line + "\n")
        self.stream.flush()


def write_tsv(df: pd.DataFrame, path: Path) -> None:
    """BIDS-style TSV: tab-separated, NaN as n/a, floats with 12 significant digits."""
    df.to_csv(path, sep="\t", index=False, na_rep="n/a", float_format="%.12g")


def _describe(out: Path) -> None:
    """dataset_description.json of a BIDS derivative, so the folder is one in its own right."""
    from importlib.metadata import version

    desc = {
        "Name": "nirsd study report",
        "BIDSVersion": "1.10.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "nirsd report", "Version": version("nirsd")}],
    }
    (out / "dataset_description.json").write_text(json.dumps(desc, indent=2) + "\n")


def _run_row(data: report_data.RunData, ep: Any) -> dict[str, Any]:
    r = data.run
    return {
        "participant_id": r.participant,
        "session": r.session,
        "task": r.task,
        "run": r.run,
        "file": str(r.path.name),
        "source": data.source if data.source == "raw" else f"derivative {r.derivative}",
        "dpf": "; ".join(",".join(f"{v:g}" for v in ch) for ch in data.dpf[:1]),
        "dpf_source": data.dpf_source,
        "rate_hz": round(data.rate_hz, 6),
        "n_samples": len(data.time),
        "n_channels": len(data.labels),
        "n_epochs": ep.n_epochs,
        "epochs_skipped": ep.skipped,
        "epochs_excluded_motion": ep.excluded.get("motion", 0),
        "epochs_excluded_bad_light": ep.excluded.get("bad_light", 0),
        "channel_epochs_excluded_motion": ep.channel_motion_excluded,
        "motion_samples_fraction": float(np.mean(data.motion)) if data.motion.size else 0.0,
    }


def read_all(opt: Options, progress: Progress | None = None):
    """Every run's epoch rows, the run table and the curve bank."""
    runs = report_data.find_runs(opt.root)
    groups = report_data.participant_groups(opt.root, opt.group_column)
    lim = Limits(opt.baseline_s, opt.max_motion, opt.max_bad)
    bank = CurveBank(opt.baseline_s)
    rows: list[dict[str, Any]] = []
    run_rows: list[dict[str, Any]] = []
    progress = progress or Progress(len(runs))
    for i, run in enumerate(runs):
        data = report_data.load_run(run, opt.dpf)
        group = groups.get(run.participant, "n/a")
        ep = epoch_table(data, group, lim)
        rows += ep.rows
        bank.add(run.participant, run.session, group, ep.curves, data.rate_hz)
        run_rows.append(_run_row(data, ep))
        progress.update(i + 1, run.path.name)
    if not rows:
        raise NirsdError(f"{opt.root}: no epochs in any run (events.tsv with durations?)")
    return pd.DataFrame(rows, columns=EPOCH_COLUMNS), pd.DataFrame(run_rows), bank


def make_report(opt: Options, progress: Progress | None = None) -> dict[str, Any]:
    """Write every output into ``opt.out``; returns the summary (also shown in the page)."""
    t0 = time.monotonic()
    epochs, runs, bank = read_all(opt, progress)
    opt.out.mkdir(parents=True, exist_ok=True)
    figures_dir = opt.out / "figures"
    figures_dir.mkdir(exist_ok=True)
    subjects = report_stats.subjects_table(epochs)
    groups = report_stats.groups_table(subjects)
    tests = report_stats.tests_table(subjects)
    for name, df in (("epochs", epochs), ("subjects", subjects), ("groups", groups)):
        write_tsv(df, opt.out / f"{name}.tsv")
    write_tsv(tests, opt.out / "tests.tsv")
    write_tsv(runs, opt.out / "runs.tsv")
    _describe(opt.out)
    curves = bank.subject_means()
    figures = []
    for tt in sorted(bank.grids):
        grid, dur = bank.grids[tt], bank.durations[tt]
        figures.append(report_figures.epoch_figure(figures_dir, tt, grid, dur, curves))
        figures.append(report_figures.distribution_figure(figures_dir, tt, subjects))
    all_rows = epochs[(epochs["channel"] == "all") & (epochs["chromophore"] == "hbo")]
    summary = {
        "dataset": str(opt.root),
        "runs": len(runs),
        "participants": int(runs["participant_id"].nunique()),
        "sessions": ", ".join(sorted(runs["session"].unique())),
        "epochs": len(all_rows),
        "epochs excluded for motion (> --max-motion of samples)": int(
            (all_rows["excluded"] == "motion").sum()
        ),
        "epochs excluded for bad light": int((all_rows["excluded"] == "bad_light").sum()),
        "epoch × channel rows excluded for motion": int(
            runs["channel_epochs_excluded_motion"].sum()
        ),
        "epochs skipped (no samples before or in them)": int(runs["epochs_skipped"].sum()),
        "pre-epoch window (s)": opt.baseline_s,
        "max motion fraction": opt.max_motion,
        "max bad-light fraction": opt.max_bad,
        "conversion": ", ".join(sorted(set(runs["source"].str.split(" ").str[0]))),
        "DPF": ", ".join(sorted(set(runs["dpf_source"]))),
    }
    report_html.write_html(opt.out / "report.html", summary, runs, groups, tests, subjects, figures)
    summary["seconds"] = round(time.monotonic() - t0, 2)
    return summary
