"""Write a benchmark's tables into the top-level README, between marker comments.

The README's "Performance" section holds blocks such as::

    <!-- bench:latency begin -->
    ... (written by ``python bench/latency.py --readme``)
    <!-- bench:latency end -->

so the figures there are always what a script printed, with the date, the machine and
the command that made them.  Only the text between the markers is replaced.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parent.parent / "README.md"


def command() -> str:
    """The command line that is running, as a user would type it."""
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(README.parent)
    except ValueError:
        pass
    return " ".join(["python", shlex.quote(str(script)), *map(shlex.quote, sys.argv[1:])])


def provenance(info: dict[str, Any]) -> str:
    """One line: when, on what and with which command the figures were measured."""
    return (
        f"Measured {info['date']} on {info['nproc']} CPUs ({info['cpu']}), Python "
        f"{info['python']}, Linux {info['kernel']}, load average {info['loadavg_1m']:.2f} "
        f"at the start, with `{command()}`."
    )


def replace_block(name: str, text: str, path: Path = README) -> None:
    """Replace the text between ``<!-- bench:NAME begin -->`` and ``... end -->``."""
    begin, end = f"<!-- bench:{name} begin -->", f"<!-- bench:{name} end -->"
    doc = path.read_text()
    if begin not in doc or end not in doc:
        raise SystemExit(f"{path} has no {begin} … {end} block to update")
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{text.strip()}\n{end}{tail}")
