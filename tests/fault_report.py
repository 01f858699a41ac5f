"""Fault-suite figures: cases call the ``fault_report`` fixture, the summary prints them.

Each fault case reports one row: how many fault cases it tried, how many the daemon
survived (kept running and kept its contracts), how many accepted samples were lost
(published by the daemon with a ``seq`` but never delivered to a client, live or from
history), and a short note with the figures it measured.  ``pytest_terminal_summary``
prints the table at the end of the run; with ``$NIRSD_FAULT_REPORT`` set, the rows are
also written there as JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from suite_report import SuiteRow, collect, markdown_table, print_summary, recorder


@dataclass
class FaultRow(SuiteRow):
    lost: int
    note: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.lost = int(self.lost)


ROWS: list[FaultRow] = []


@pytest.fixture
def fault_report(request: pytest.FixtureRequest) -> Callable[..., FaultRow]:
    """``fault_report(case, tried=, survived=, lost=, note=)`` records one summary row."""
    return recorder(request.node, "fault_row", FaultRow)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    collect(report, "fault_row", FaultRow, ROWS)


def table(rows: list[FaultRow]) -> list[str]:
    """The summary as Markdown table lines (the README's Reliability table)."""
    columns = [
        ("case", "<"),
        ("tried", ">"),
        ("survived", ">"),
        ("accepted samples lost", ">"),
        ("figures", "<"),
    ]
    return markdown_table(columns, [[r.case, r.tried, r.survived, r.lost, r.note] for r in rows])


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not ROWS:
        return
    tried = sum(r.tried for r in ROWS)
    survived = sum(r.survived for r in ROWS)
    lost = sum(r.lost for r in ROWS)
    total = f"total: {tried} tried, {survived} survived, {lost} accepted samples lost"
    print_summary(
        terminalreporter, "fault suite", [*table(ROWS), total], ROWS, "NIRSD_FAULT_REPORT"
    )
