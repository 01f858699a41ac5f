"""Hostile-input suite figures: cases call ``hostile_report``, the summary prints them.

Each case reports one row: what it tried (how many attacks), how many the daemon
survived (alive, ``status`` within 1 s, hb contiguous, the clear answer, RSS within the
stated bound), the daemon's RSS before and after (MB), the longest gap between hb
messages while under attack (ms) and a short note.  ``pytest_terminal_summary`` prints
the table (the README's Reliability table); with ``$NIRSD_HOSTILE_REPORT`` set, the rows
are also written there as JSON.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from suite_report import SuiteRow, collect, markdown_table, print_summary, recorder


@dataclass
class HostileRow(SuiteRow):
    rss_before_mb: float
    rss_after_mb: float
    hb_gap_ms: float
    note: str = ""


ROWS: list[HostileRow] = []


@pytest.fixture
def hostile_report(request: pytest.FixtureRequest) -> Callable[..., HostileRow]:
    """``hostile_report(case, tried, survived, rss_before_mb, rss_after_mb, hb_gap_ms,
    note)`` records one summary row."""
    return recorder(request.node, "hostile_row", HostileRow)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    collect(report, "hostile_row", HostileRow, ROWS)


def _fmt(value: float) -> str:
    return "–" if value != value else f"{value:.0f}"  # NaN: not measured


def table(rows: list[HostileRow]) -> list[str]:
    """The summary as Markdown table lines."""
    columns = [
        ("case", "<"),
        ("tried", ">"),
        ("survived", ">"),
        ("RSS before → after (MB)", ">"),
        ("longest hb gap (ms)", ">"),
        ("figures", "<"),
    ]
    lines = [
        [
            r.case,
            r.tried,
            r.survived,
            f"{_fmt(r.rss_before_mb)} → {_fmt(r.rss_after_mb)}",
            _fmt(r.hb_gap_ms),
            r.note,
        ]
        for r in rows
    ]
    return markdown_table(columns, lines)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not ROWS:
        return
    machine = (
        f"{time.strftime('%Y-%m-%d', time.gmtime())}, {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )
    tried = sum(r.tried for r in ROWS)
    survived = sum(r.survived for r in ROWS)
    lines = [machine, *table(ROWS), f"total: {tried} tried, {survived} survived"]
    print_summary(terminalreporter, "hostile-input suite", lines, ROWS, "NIRSD_HOSTILE_REPORT")
