"""Run every benchmark in one go on one machine, print one report, save JSON and a
latency CDF (PNG) under bench/results/.

    python bench/report.py                 # full run (about 10 min on 2 cores)
    python bench/report.py --quick         # smoke run
    python bench/report.py --soak 600      # with the 10-minute RSS soak

The parser benchmark (bench/parsers.py), when present, runs as a subprocess and its
printed table is included.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import converter  # noqa: E402
import frame_cost  # noqa: E402
import latency  # noqa: E402
import load  # noqa: E402
import throughput  # noqa: E402
from common import BENCH, DEFAULT_LOADS, RESULTS, machine  # noqa: E402


def cdf_png(rows: list[dict[str, Any]], path: Path) -> None:
    """One panel per load: the latency CDF of each pipeline, log-scaled µs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (NullFormatter)

    loads = list(dict.fromkeys(r["load"] for r in rows))
    fig, axes = plt.subplots(
        1, len(loads), figsize=(4.2 * len(loads), 3.6), squeeze=False, sharey=True
    )
    for ax, lab in zip(axes[0], loads):
        for r in rows:
            lat = r.get("_lat")
            if r["load"] != lab or lat is None or not len(lat):
                continue
            x = np.sort(lat)
            floor = r["pipeline"] == "floor"  # the transport floor: dashed, not a contender
            ax.plot(
                x,
                np.arange(1, x.size + 1) / x.size,
                label=r["pipeline"],
                linestyle="--" if floor else "-",
                color="0.45" if floor else None,
            )
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title(lab)
        ax.set_xlabel("write → receipt latency (µs)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("fraction of samples")
    axes[0][0].legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parsers_report(quick: bool) -> str | None:
    script = BENCH / "parsers.py"
    if not script.exists():
        return None
    args = [sys.executable, str(script)] + (["--seconds", "0.5"] if quick else [])
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return "parsers.py timed out"
    return out.stdout.strip() or out.stderr.strip()[-2000:]


def log(*a: Any, **k: Any) -> None:
    print(*a, **k, flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run, a few minutes")
    p.add_argument("--seconds", type=float, default=10.0, help="latency s per run")
    p.add_argument("--rounds", type=int, default=1, help="latency rounds (medians; 3: steadier)")
    p.add_argument("--load-seconds", type=float, default=10.0, help="CPU/RSS s per load")
    p.add_argument("--soak", type=float, default=60.0, help="RSS soak s (600: full)")
    a = p.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    info = machine()
    log(
        f"machine: {info['nproc']} CPUs, {info['cpu']}, Python {info['python']}, "
        f"load average {info['loadavg_1m']:.2f}, {info['date']}",
        file=sys.stderr,
    )
    res = run_all(a)
    report = report_text(info, res)
    print(report)
    (RESULTS / "report.md").write_text(report + "\n")
    save_json(info, res, RESULTS / "report.json")
    print(
        f"\nsaved {RESULTS / 'report.json'}, {RESULTS / 'report.md'}, {RESULTS / 'latency_cdf.png'}"
    )
    return 0


def run_all(a: argparse.Namespace) -> dict[str, Any]:
    """Every benchmark in turn (shorter with ``--quick``); the latency JSON and CDF are
    saved as soon as they exist."""
    q = a.quick
    lat_rows = latency.run(
        DEFAULT_LOADS,
        3.0 if q else a.seconds,
        1.0 if q else 2.0,
        log=log,
        rounds=1 if q else max(1, a.rounds),
    )
    latency.save(lat_rows, RESULTS / "latency.json")
    cdf_png(lat_rows, RESULTS / "latency_cdf.png")
    load_res = load.run(DEFAULT_LOADS, 3.0 if q else a.load_seconds, 15.0 if q else a.soak, log=log)
    conv_res = converter.run(samples=3000 if q else 30_000, log=log)
    thr_res = throughput.run(seconds=2.0 if q else 5.0, max_hz=4000.0 if q else 16_000.0, log=log)
    par = parsers_report(q)
    # calls are exact in any run; instructions (valgrind) take a few minutes: full run only
    cost_rows = frame_cost.run(
        DEFAULT_LOADS, frames=100 if q else 400, warmup=120, callgrind=not q, log=log
    )
    return {
        "latency": lat_rows,
        "load": load_res,
        "converter": conv_res,
        "throughput": thr_res,
        "parsers": par,
        "frame_cost": cost_rows,
    }


def report_text(info: dict[str, Any], res: dict[str, Any]) -> str:
    """The Markdown report: the machine, then one section per benchmark."""
    lat_rows, par = res["latency"], res["parsers"]
    return "\n\n".join(
        filter(
            None,
            [
                f"machine: {info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, "
                f"Linux {info['kernel']}, {info['date']}, load average at start "
                f"{info['loadavg_1m']:.2f}",
                "## latency: device byte written → decoded in another process\n"
                + latency.table(lat_rows),
                (
                    "## goals: nirsd against the floor and the pyserial → pylsl script\n"
                    "floor: poll() the pty, os.read, split on 0x00, one ZeroMQ PUB send per "
                    "frame; a SUB that only recv's.  ok = goal met\n"
                    + latency.goals_table(lat_rows)
                )
                if latency.goals_table(lat_rows)
                else None,
                "## work per frame (calls, instructions): nirsd against the floor relay\n"
                "lock-step cold path, bench/frame_cost.py; independent of machine load\n"
                + frame_cost.table(res["frame_cost"]),
                (
                    "## nirsd latency = transport floor + processing\n"
                    "floor: pty → read → split → ZeroMQ PUB → SUB, no processing "
                    "(differences of percentiles)\n" + latency.split_table(lat_rows)
                )
                if latency.split_table(lat_rows)
                else None,
                "## daemon CPU and memory\n" + load.table(res["load"]),
                "## throughput\n" + throughput.table(res["throughput"]),
                "## converter\n" + converter.table(res["converter"]),
                ("## parsers\n" + par) if par else None,
            ],
        )
    )


def save_json(info: dict[str, Any], res: dict[str, Any], path: Path) -> None:
    """Every figure as JSON (the latency rows without their raw samples)."""
    lat_rows = res["latency"]
    clean = [{k: v for k, v in r.items() if k != "_lat"} for r in lat_rows]
    path.write_text(
        json.dumps(
            {
                "machine": info,
                "latency": clean,
                "latency_split": latency.split(lat_rows),
                "goals": latency.goals(lat_rows),
                "frame_cost": res["frame_cost"],
                "load": res["load"],
                "throughput": res["throughput"],
                "converter": res["converter"],
                "parsers": res["parsers"],
            },
            indent=1,
            default=str,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
