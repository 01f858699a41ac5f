"""The recorder's journal and crash recovery.

Markers, epoch summaries, epoch-label runs and gaps go to a JSON-lines journal beside
the SNIRF file (``FILE.snirf.journal.jsonl``), flushed before the file; the stims are
computed from it, and :func:`recover_file` recomputes them after a crash.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nirsd.daemon import wire

from . import snirf_hb, snirf_writer
from .snirf_stims import stim_rows


def journal_path(path: str | Path) -> Path:
    return Path(str(path) + ".journal.jsonl")


def read_journal(path: str | Path) -> list[dict[str, Any]]:
    """Journal events; a torn last line (killed mid-write) is skipped."""
    events = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events


def recover_file(path: str | Path, hb: bool = False) -> dict[str, Any]:
    """Make ``path`` valid after a crash: truncate tails, rewrite stims from the journal;
    with ``hb``, (re)write the hemoglobin file beside it (``FILE_hb.snirf``)."""
    jpath = journal_path(path)
    events = read_journal(jpath) if jpath.exists() else None
    stims_for = None if events is None else (lambda seq, t, t0: stim_rows(events, seq, t))
    first = [e for e in events or [] if e.get("kind") == "first_sample" and "t" in e]
    t0 = float(first[0]["t"]) if first else None
    rows, tags = snirf_writer.recover(path, stims_for, t0)
    out: dict[str, Any] = {"file": str(path), "rows": rows}
    out["journal"] = str(jpath) if events else None
    if tags["repaired"] or tags["removed"]:  # strings a crash left unreadable
        out["tags_repaired"], out["tags_removed"] = tags["repaired"], tags["removed"]
    if hb:
        out["hb_file"] = str(snirf_hb.write_hb_file(path))
    return out


class Journal:
    """The journal a recording writes: each event appended to ``events`` (the stims are
    computed from them in memory) and written as one line; flushed before the file."""

    def __init__(self, snirf_path: str | Path, events: list[dict[str, Any]]) -> None:
        self.events = events
        self._fh = open(journal_path(snirf_path), "w", encoding="utf-8")

    def write(self, kind: str, body: dict[str, Any]) -> None:
        event = {"kind": kind, **wire.plain(body, drop_bytes=True)}
        self.events.append(event)
        self._fh.write(json.dumps(event, separators=(",", ":")) + "\n")

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        """Flush and close; a failing disk is not an error here (the file is recovered)."""
        try:
            self._fh.flush()
            self._fh.close()
        except OSError:
            pass
