"""Hostile-input suite figures: cases call ``hostile_report``, the summary prints them.

Each case reports one row: what it tried (how many attacks), how many the daemon
survived (alive, ``status`` within 1 s, hb contiguous, the clear answer, RSS within the
stated bound), the daemon's RSS before and after (MB), the longest gap between hb
messages while under attack (ms) and a short note.  ``pytest_terminal_summary`` prints
the table (the README's Reliability table); with ``$NIRSD_HOSTILE_REPORT`` set, the rows
are also written there as JSON.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import pytest


@dataclass
class HostileRow:
    case: str
    tried: int
    survived: int
    rss_before_mb: float
    rss_after_mb: float
    hb_gap_ms: float
    note: str = ""


ROWS: list[HostileRow] = []


@pytest.fixture
def hostile_report() -> Callable[..., HostileRow]:
    """``hostile_report(case, tried, survived, rss_before_mb, rss_after_mb, hb_gap_ms,
    note)`` records one summary row."""

    def report(
        case: str,
        tried: int,
        survived: int,
        rss_before_mb: float,
        rss_after_mb: float,
        hb_gap_ms: float,
        note: str = "",
    ) -> HostileRow:
        row = HostileRow(
            case, int(tried), int(survived), rss_before_mb, rss_after_mb, hb_gap_ms, note
        )
        ROWS.append(row)
        return row

    return report


def _fmt(value: float) -> str:
    return "–" if value != value else f"{value:.0f}"  # NaN: not measured


def table(rows: list[HostileRow]) -> list[str]:
    """The summary as Markdown table lines."""
    out = [
        "| case | tried | survived | RSS before → after (MB) | longest hb gap (ms) | figures |",
        "|---|---:|---:|---:|---:|---|",
    ]
    out += [
        f"| {r.case} | {r.tried} | {r.survived} | {_fmt(r.rss_before_mb)} → "
        f"{_fmt(r.rss_after_mb)} | {_fmt(r.hb_gap_ms)} | {r.note} |"
        for r in rows
    ]
    return out


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not ROWS:
        return
    terminalreporter.section("hostile-input suite")
    terminalreporter.write_line(
        f"{time.strftime('%Y-%m-%d', time.gmtime())}, {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )
    for line in table(ROWS):
        terminalreporter.write_line(line)
    tried = sum(r.tried for r in ROWS)
    survived = sum(r.survived for r in ROWS)
    terminalreporter.write_line(f"total: {tried} tried, {survived} survived")
    path = os.environ.get("NIRSD_HOSTILE_REPORT")
    if path:
        with open(path, "w") as fh:
            json.dump([asdict(r) for r in ROWS], fh, indent=1)
