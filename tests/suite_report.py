"""The summary table of a test suite that measures as it tests (the fault and the
hostile-input suites): each case records a row through a fixture, the end of the run
prints the rows as a Markdown table, and an environment variable may name a JSON file
to write them to as well."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

Row = TypeVar("Row")


@dataclass
class SuiteRow:
    """What every case reports: its name, how many faults it tried and how many of them
    the daemon survived (whole numbers, whatever the case counted them in)."""

    case: str
    tried: int
    survived: int

    def __post_init__(self) -> None:
        self.tried, self.survived = int(self.tried), int(self.survived)


def recorder(node: Any, key: str, make: Callable[..., Row]) -> Callable[..., Row]:
    """A fixture's value: called with a row's fields, it makes the row, keeps it in the
    test's ``user_properties`` under ``key`` (so that the row travels with the test's
    report, from a worker process too) and returns it."""

    def report(*fields: Any, **named: Any) -> Row:
        row = make(*fields, **named)
        node.user_properties.append((key, asdict(row)))
        return row

    return report


def collect(report: Any, key: str, make: Callable[..., Row], rows: list[Row]) -> None:
    """``pytest_runtest_logreport``: the rows a finished test recorded, into ``rows``."""
    if report.when == "teardown":
        rows.extend(make(**fields) for name, fields in report.user_properties if name == key)


def markdown_table(columns: list[tuple[str, str]], lines: list[list[Any]]) -> list[str]:
    """Table lines: ``columns`` as (heading, ``"<"`` left or ``">"`` right aligned)."""
    out = [
        "| " + " | ".join(name for name, _ in columns) + " |",
        "|" + "|".join("---:" if align == ">" else "---" for _, align in columns) + "|",
    ]
    return out + ["| " + " | ".join(str(cell) for cell in line) + " |" for line in lines]


def print_summary(
    terminalreporter: Any, title: str, lines: list[str], rows: list[Any], env_var: str
) -> None:
    """``lines`` under the section ``title``; the rows as JSON to ``$env_var`` if set."""
    terminalreporter.section(title)
    for line in lines:
        terminalreporter.write_line(line)
    path = os.environ.get(env_var)
    if path:
        with open(path, "w") as fh:
            json.dump([asdict(r) for r in rows], fh, indent=1)
