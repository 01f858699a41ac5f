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
        [sys.executable, str(BENCH / "latency.py"), "--quick", "--loads", "8x2@10",
         "--seconds", "2", "--pipelines", "nirsd", "--json", str(out)],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    row = re.search(r"^\| 8x2@10 \| nirsd \| (\d+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \|",
                    proc.stdout, re.M)
    assert row, proc.stdout
    assert int(row[1]) == 20 and int(row[2]) == 0  # 2 s at 10 Hz, none lost
    data = json.loads(out.read_text())
    (r,) = data["rows"]
    assert r["load"] == "8x2@10" and r["pipeline"] == "nirsd" and r["n"] == 20
    assert r["p50_us"] > 0 and r["p99_us"] >= r["p50_us"] and r["cpu_pct"] >= 0
    assert data["machine"]["nproc"] >= 1
    assert out.with_suffix(".npz").exists()
