"""Smoke test of the benchmark suite: it runs and reports numbers (never timed)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_latency_quick_prints_a_table_and_writes_json(tmp_path):
    out = tmp_path / "latency.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "latency.py"),
            "--quick",
            "--loads",
            "8x2@10",
            "--seconds",
            "2",
            "--pipelines",
            "nirsd",
            "floor",
            "frames-floor",
            "wire-floor",
            "hb-floor",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    row = re.search(
        r"^\| 8x2@10 \| nirsd \| (\d+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \|", proc.stdout, re.M
    )
    assert row, proc.stdout
    assert int(row[1]) == 20 and int(row[2]) == 0  # 2 s at 10 Hz, none lost
    floor = re.search(r"^\| 8x2@10 \| floor \| (\d+) \| (\d+) \| ([\d.]+) \|", proc.stdout, re.M)
    assert floor and int(floor[1]) == 20 and int(floor[2]) == 0, proc.stdout
    assert "floor + processing" in proc.stdout
    data = json.loads(out.read_text())
    rows = {r["pipeline"]: r for r in data["rows"]}
    assert set(rows) == {"nirsd", "floor", "frames-floor", "wire-floor", "hb-floor"}
    for r in rows.values():
        assert r["load"] == "8x2@10" and r["n"] == 20 and r["lost"] == 0
        assert r["p50_us"] > 0 and r["p99_us"] >= r["p50_us"] and r["cpu_pct"] >= 0
    (split,) = data["split"]
    assert split["load"] == "8x2@10"
    assert split["processing_p50_us"] == split["nirsd_p50_us"] - split["floor_p50_us"]
    assert split["floor_p50_us"] == rows["floor"]["p50_us"]
    assert data["machine"]["nproc"] >= 1
    assert out.with_suffix(".npz").exists()
    # the goals table: nirsd / floor at p50 and p99, each marked against its goal
    (goal,) = data["goals"]
    assert goal["p50_ratio"] == rows["nirsd"]["p50_us"] / rows["floor"]["p50_us"]
    assert goal["p99_ratio"] == rows["nirsd"]["p99_us"] / rows["floor"]["p99_us"]
    assert goal["p50_vs_hb_floor"] == rows["nirsd"]["p50_us"] / rows["hb-floor"]["p50_us"]
    wire = rows["wire-floor"]["p50_us"]
    assert goal["p50_vs_wire_floor"] == rows["nirsd"]["p50_us"] / wire
    assert goal["p50_wire_over_floor"] == wire / rows["floor"]["p50_us"]
    frames = rows["frames-floor"]["p50_us"]
    assert goal["p50_frames_over_floor"] == frames / rows["floor"]["p50_us"]
    cpu_floor = rows["floor"]["cpu_pct"]  # whole clock ticks: 0 in a short quiet run
    cpu_ratio = rows["nirsd"]["cpu_pct"] / cpu_floor if cpu_floor else None
    assert goal["cpu_ratio"] == cpu_ratio
    assert goal["lost"] == 0 and goal["p50_vs_serial_lsl"] is None  # not run here
    mark = "ok" if goal["p50_ratio"] <= 1.25 else "over"
    assert re.search(rf"^\| 8x2@10 \| {goal['p50_ratio']:.2f} {mark} \|", proc.stdout, re.M)


def test_frame_cost_counts_calls_per_frame_for_nirsd_and_the_floor(tmp_path):
    out = tmp_path / "cost.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "frame_cost.py"),
            "--loads",
            "8x2@10",
            "--frames",
            "30",
            "--warmup",
            "40",
            "--no-callgrind",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(out.read_text())
    nirsd, floor = row["nirsd"], row["floor"]
    assert nirsd["turns"] == floor["turns"] == 30  # one loop turn per frame, lock-step
    assert nirsd["sends"] == floor["sends"] == 1  # one message per frame (hb only)
    # the floor relay: os.read, split, pop, send between its poll and its send
    assert floor["to_send"] == 4 and floor["turn"] >= floor["to_send"]
    assert nirsd["to_send"] > floor["to_send"] and nirsd["turn"] >= nirsd["to_send"]
    assert re.search(rf"^\| 8x2@10 \| {nirsd['to_send']} \| 4 \|", proc.stdout, re.M)


def test_study_report_bench_runs_on_a_tiny_study(tmp_path):
    """bench/study_report.py writes a dataset, times the report and prints its row."""
    import pytest

    pytest.importorskip("mne_bids")
    pytest.importorskip("mne_nirs")
    out = tmp_path / "study.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "study_report.py"), "--participants", "3"]
        + ["--sessions", "1", "--minutes", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert re.search(
        r"^\| 3 \| 3 \| 3 \| 1 \| [\d.]+ \| [\d.]+ \| [\d.]+ \| < 60 s", proc.stdout, re.M
    )
    row = json.loads(out.read_text())
    assert row["runs"] == 3 and row["epochs"] == 3 and row["wall_s"] > 0
    assert row["peak_rss_mb"] > 10


def test_rounds_combine_into_medians_sums_and_the_longest(monkeypatch):
    import numpy as np

    monkeypatch.syspath_prepend(str(BENCH))
    from latency import combine

    def row(p50, p99, cpu, lat):
        lat = np.asarray(lat, float)
        return {
            "load": "8x2@10",
            "pipeline": "nirsd",
            "n": lat.size,
            "lost": 1,
            "p50_us": p50,
            "p90_us": p50,
            "p99_us": p99,
            "mean_us": p50,
            "max_us": float(lat.max()),
            "cpu_pct": cpu,
            "_lat": lat,
        }

    rows = [row(500, 900, 1.0, [1, 2]), row(400, 5000, 3.0, [3, 9000]), row(450, 800, 2.0, [4])]
    rows.insert(1, {"load": "8x2@10", "pipeline": "nirsd", "error": "RuntimeError: gone"})
    got = combine(rows)
    assert got["p50_us"] == 450 and got["p99_us"] == 900 and got["cpu_pct"] == 2.0
    assert got["n"] == 5 and got["lost"] == 3 and got["max_us"] == 9000 and got["rounds"] == 3
    assert got["p99_rounds"] == [900, 5000, 800] and got["_lat"].size == 5
    assert combine(rows[:1]) is rows[0]  # one round: the row as it was
    assert combine([rows[1]])["error"]  # nothing but failures: the failure


def test_cpu_seconds_match_the_process_clock(monkeypatch):
    import os
    import time

    monkeypatch.syspath_prepend(str(BENCH))
    from common import Proc

    me = Proc(os.getpid())
    c0, p0 = me.cpu_s(), time.process_time()
    deadline = p0 + 0.3
    while time.process_time() < deadline:  # busy on a CPU for 0.3 s of CPU time
        sum(range(1000))
    used, cpu = time.process_time() - p0, me.cpu_s() - c0
    assert 0.8 * used <= cpu <= 1.2 * used + 0.02
