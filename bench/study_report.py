"""Time ``nirsd report`` on a study-sized synthetic fNIRS-BIDS dataset.

The dataset (written by mne-bids, see ``nirsd.clients.report_testing``): by default 74
participants in three groups (25/25/24) × 2 sessions × 10-minute runs of 8 channels × 2
wavelengths at 10 Hz, 14 exercise epochs per run.  ``nirsd report`` runs as a subprocess;
the figure is its wall time (imports included) and peak RSS, against the 60 s target.

    python bench/study_report.py                    # the full study (writes ~150 runs first)
    python bench/study_report.py --participants 6 --minutes 2   # a quick look
    python bench/study_report.py --dataset DIR      # keep / reuse the dataset in DIR

Needs the ``test`` extra (mne, mne-nirs, mne-bids) for the dataset and ``report`` for the
report.  Never run by the tests (tests/test_bench_smoke.py runs a tiny version).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GROUPS = ("eperisone", "physio", "mckenzie")
TARGET_S = 60.0


def split(n: int) -> dict[str, int]:
    """n participants over the three groups, the first groups taking the remainder."""
    base, extra = divmod(n, len(GROUPS))
    return {g: base + (1 if i < extra else 0) for i, g in enumerate(GROUPS)}


def make_dataset(root: Path, participants: int, sessions: int, minutes: float) -> float:
    from nirsd.clients.report_testing import write_study

    t0 = time.monotonic()
    total = participants * sessions
    done = [0]

    def tick() -> None:
        done[0] += 1
        print(f"\rwriting run {done[0]}/{total}", end="", file=sys.stderr, flush=True)

    write_study(
        root,
        per_group=split(participants),
        sessions=tuple(str(s + 1) for s in range(sessions)),
        minutes=minutes,
        keep_truth=False,
        progress=tick,
    )
    print(file=sys.stderr)
    return time.monotonic() - t0


def time_report(root: Path, out: Path) -> dict:
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "nirsd.cli.main", "report", str(root), "--out", str(out)],
        stdout=subprocess.PIPE,
        text=True,
    )
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"nirsd report failed with exit {proc.returncode}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = json.loads(proc.stdout)
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "summary": summary,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--participants", type=int, default=74)
    ap.add_argument("--sessions", type=int, default=2)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--dataset", type=Path, help="write (or reuse, if it exists) it here")
    ap.add_argument("--json", type=Path, help="also save the figures as JSON")
    args = ap.parse_args()
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = args.dataset or Path(tmp) / "bids"
        gen_s = None
        if not (root / "participants.tsv").is_file():
            gen_s = make_dataset(root, args.participants, args.sessions, args.minutes)
        res = time_report(root, Path(tmp) / "report")
    s = res["summary"]
    row = {
        "participants": s["participants"],
        "runs": s["runs"],
        "epochs": s["epochs"],
        "minutes_per_run": args.minutes,
        "wall_s": res["wall_s"],
        "cpu_s": res["cpu_s"],
        "peak_rss_mb": res["peak_rss_mb"],
        "report_internal_s": s["seconds"],
        "dataset_write_s": None if gen_s is None else round(gen_s, 1),
        "machine": {
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_start": load_start,
        },
    }
    print("| participants | runs | epochs | min/run | wall s | CPU s | peak RSS MB | target |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    verdict = "met" if res["wall_s"] < TARGET_S else "NOT met"
    print(
        f"| {row['participants']} | {row['runs']} | {row['epochs']} | {args.minutes:g} "
        f"| {row['wall_s']} | {row['cpu_s']} | {row['peak_rss_mb']} "
        f"| < {TARGET_S:g} s: {verdict} |"
    )
    if args.json:
        args.json.write_text(json.dumps(row, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
