"""``nirsd report ROOT``: the study report from an fNIRS-BIDS dataset.

Exit status: 0 written, 1 the dataset cannot be read, 2 usage error.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nirsd.core.errors import NirsdError
from nirsd.daemon.cmdline import print_json

DESCRIPTION = """\
Read an fNIRS-BIDS dataset (nirsd's or mne-bids': CW-amplitude SNIRF, events.tsv,
participants.tsv; a nirsd hemoglobin derivative under derivatives/nirsd/ is used as it
is) and write into --out: epochs.tsv (per epoch x channel x chromophore: mean change,
peak, time to peak, slope, recovery half-time, motion and bad-light fractions),
subjects.tsv, groups.tsv, tests.tsv (Welch's t, one-way ANOVA, linear mixed model),
runs.tsv, report.html (self-contained) and figures/.  Changes are in uM relative to the
mean over the S seconds before each epoch.  See docs/report.md.

exit status: 0 written, 1 unreadable dataset, 2 usage error."""


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction in [0, 1]")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "report",
        help="study report (tables, tests, figures, HTML) from an fNIRS-BIDS dataset",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("root", metavar="ROOT", help="the BIDS dataset's folder")
    p.add_argument("--out", metavar="DIR", help="output folder (default ROOT/derivatives/report)")
    p.add_argument(
        "--baseline-s",
        type=_positive,
        default=10.0,
        metavar="S",
        help="pre-epoch window in s (default 10, as the daemon's epoch summaries)",
    )
    p.add_argument(
        "--dpf",
        type=_positive,
        default=6.0,
        metavar="X",
        help="DPF where the file states none (default 6)",
    )
    p.add_argument(
        "--group-column",
        default="group",
        metavar="NAME",
        help="participants.tsv column with the study group (default group)",
    )
    p.add_argument(
        "--max-motion",
        type=_fraction,
        default=0.2,
        metavar="F",
        help="exclude an epoch x channel with more than this fraction of motion samples "
        "(default 0.2)",
    )
    p.add_argument(
        "--max-bad",
        type=_fraction,
        default=0.5,
        metavar="F",
        help="exclude an epoch x channel with more than this fraction of bad-light samples "
        "(default 0.5)",
    )
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    root = Path(args.root)
    try:
        from nirsd.clients import report_data

        report_data.find_runs(root)  # a wrong folder fails fast, before the heavy imports
        import scipy.stats  # noqa: F401  (imported when the tests run; checked here)
        import statsmodels.formula.api  # noqa: F401

        from nirsd.clients import study_report
    except ImportError as err:
        raise NirsdError(
            "the report needs h5py, pandas, scipy, statsmodels and matplotlib: "
            f"pip install 'nirsd[report]' ({err})"
        ) from err
    out = Path(args.out) if args.out else root / "derivatives" / "report"
    opt = study_report.Options(
        root=root,
        out=out,
        baseline_s=args.baseline_s,
        dpf=args.dpf,
        group_column=args.group_column,
        max_motion=args.max_motion,
        max_bad=args.max_bad,
    )
    summary = study_report.make_report(opt)
    print_json({"out": str(out), **summary})
    return 0
