"""Fault-suite figures: cases call the ``fault_report`` fixture, the summary prints them.

Each fault case reports one row: how many fault cases it tried, how many the daemon
survived (kept running and kept its contracts), how many accepted samples were lost
(published by the daemon with a ``seq`` but never delivered to a client, live or from
history), and a short note with the figures it measured.  ``pytest_terminal_summary``
prints the table at the end of the run; with ``$NIRSD_FAULT_REPORT`` set, the rows are
also written there as JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import pytest


@dataclass
class FaultRow:
    case: str
    tried: int
    survived: int
    lost: int
    note: str = ""


ROWS: list[FaultRow] = []


@pytest.fixture
def fault_report() -> Callable[..., FaultRow]:
    """``fault_report(case, tried=, survived=, lost=, note=)`` records one summary row."""

    def report(case: str, tried: int, survived: int, lost: int, note: str = "") -> FaultRow:
        row = FaultRow(case, int(tried), int(survived), int(lost), note)
        ROWS.append(row)
        return row

    return report


def table(rows: list[FaultRow]) -> list[str]:
    """The summary as Markdown table lines (the README's Reliability table)."""
    out = [
        "| case | tried | survived | accepted samples lost | figures |",
        "|---|---:|---:|---:|---|",
    ]
    out += [f"| {r.case} | {r.tried} | {r.survived} | {r.lost} | {r.note} |" for r in rows]
    return out


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not ROWS:
        return
    terminalreporter.section("fault suite")
    for line in table(ROWS):
        terminalreporter.write_line(line)
    tried = sum(r.tried for r in ROWS)
    survived = sum(r.survived for r in ROWS)
    lost = sum(r.lost for r in ROWS)
    terminalreporter.write_line(
        f"total: {tried} tried, {survived} survived, {lost} accepted samples lost"
    )
    path = os.environ.get("NIRSD_FAULT_REPORT")
    if path:
        with open(path, "w") as fh:
            json.dump([asdict(r) for r in ROWS], fh, indent=1)
