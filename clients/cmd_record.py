"""``nirsd record FILE.snirf``: record the daemon's stream into a SNIRF file.

Exit status: 0 recording ended cleanly (duration reached, SIGINT/SIGTERM, or the
daemon restarted: the file ends where the old stream ended), 1 runtime error (no
daemon answering, cannot create the file), 2 usage error, 74 write error (disk full:
the file is valid and holds everything flushed before the error).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nirsd.core.errors import NirsdError
from nirsd.core.optional import require
from nirsd.daemon.cmdline import curve, endpoint_args, endpoints

EXIT_IOERR = 74

DESCRIPTION = """\
Record raw intensities and ΔHbO/ΔHbR into a SNIRF 1.1 file (HDF5) from now on; with
--backfill S, first the S seconds before now from the daemon's history (--backfill all:
everything it still holds).  Gaps are detected by
sample index and counted, never filled with invented samples.  One stim group per
epoch label ([onset duration 1.0] rows, plus the epoch summaries) comes from the marker
channel; markers, epochs and gaps are also logged to FILE.snirf.journal.jsonl beside the
file.  At the end FILE_hb.snirf is written beside it: the same recording with ΔHbO/ΔHbR
as data1, which mne.io.read_raw_snirf opens as hbo/hbr channels.  The file is flushed
every 0.5 s: a killed recorder loses at most the last second, and
`nirsd record --recover FILE` makes what it wrote a valid SNIRF file.

Progress goes to stderr: a status line (elapsed, samples, file size, drops) on a
terminal, else one JSON line every 5 s.  A summary JSON line goes to stdout at the
end; its backfilled (samples) and backfilled_s say how much came from before the start.

exit status: 0 ended cleanly (duration, SIGINT/SIGTERM, daemon restart), 1 runtime
error (no daemon, cannot create the file), 2 usage error, 74 write error such as a
full disk (the file stays valid up to the error)."""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "record",
        help="record the stream into a SNIRF file",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    endpoint_args(p)
    p.add_argument("file", metavar="FILE.snirf", nargs="?", help="the SNIRF file to write")
    p.add_argument(
        "--bids",
        metavar="ROOT",
        help="follow study sessions (nirsd session start): one fNIRS-BIDS run per "
        "session in the dataset ROOT, exactly the session's samples (see docs/recording.md)",
    )
    p.add_argument(
        "--sessions",
        type=int,
        metavar="N",
        help="with --bids: exit after N sessions (default: until stopped)",
    )
    p.add_argument(
        "--placement",
        metavar="TEXT",
        help="with --bids: NIRSPlacementScheme (default: the channel labels, e.g. "
        "the vertebral levels)",
    )
    p.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help="stop after SECONDS of wall-clock time (default: until stopped)",
    )
    p.add_argument("--subject", default="anonymous", metavar="ID", help="SubjectID tag")
    p.add_argument("--group", default="", metavar="G", help="study group tag (StudyGroup)")
    p.add_argument("--visit", default="", metavar="V", help="visit tag (Visit)")
    p.add_argument(
        "--backfill",
        type=_backfill,
        default=0.0,
        metavar="S",
        help="also record the S seconds before the first live sample from the daemon's "
        "history, or 'all' for everything it holds (default 0: from now on)",
    )
    p.add_argument(
        "--recover",
        action="store_true",
        help="repair FILE after a crash (truncate torn tails, rewrite stims "
        "from the journal) instead of recording",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing FILE")
    p.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for the daemon (default 10)"
    )
    p.set_defaults(func=cmd_record)


def _backfill(text: str) -> float | None:
    """--backfill: seconds (≥ 0), or ``all`` (None: the whole history)."""
    if text == "all":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seconds or 'all', not {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, not {text}")
    return value


def backfill_summary(rec: Any, asked: float | None) -> dict[str, Any]:
    """What the file holds from before the recording started (history), for the summary."""
    header = rec.events[0] if rec.events and rec.events[0].get("kind") == "header" else {}
    rate = float((header.get("info") or {}).get("rate_hz") or 0.0)
    n = int(rec.stats.backfilled)
    return {
        "backfill_asked": "all" if asked is None else asked,
        "backfilled_s": round(n / rate, 3) if rate else None,
    }


class Progress:
    """A status line on a terminal, JSON lines every ``every_s`` otherwise (stderr)."""

    def __init__(self, stream: Any = None, every_s: float = 5.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every_s = every_s
        self._next = 0.0

    def __call__(self, stats: Any) -> None:
        d = stats.as_dict()
        if self.tty:
            drops = d["lost_samples"] + d["device_lost"]
            self.stream.write(
                f"\rrecording {d['elapsed_s']:8.1f} s  {d['samples']:>8} "
                f"samples  {d['size_bytes'] / 1e6:8.2f} MB  drops {drops}  "
                f"markers {d['markers']}  "
            )
            self.stream.flush()
        elif d["elapsed_s"] >= self._next:
            self._next = d["elapsed_s"] + self.every_s
            self.stream.write(json.dumps({"event": "progress", **d}) + "\n")
            self.stream.flush()

    def end(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def cmd_record(args: argparse.Namespace) -> int:
    require("h5py", "nirsd record")
    if args.bids is not None:
        if args.file is not None:
            raise NirsdError("give FILE.snirf or --bids ROOT, not both")
        from .cmd_record_bids import cmd_record_bids

        return cmd_record_bids(args)
    if args.file is None:
        raise NirsdError("give FILE.snirf (or --bids ROOT)")
    path = Path(args.file)
    if args.recover:
        return _recover(path)
    if path.exists() and not args.force:
        raise NirsdError(f"{path} exists (use --force to overwrite, --recover to repair)")
    return _record(args, path)


def _recover(path: Path) -> int:
    """``--recover``: make what a killed recorder wrote a valid file; its summary."""
    from nirsd.clients import recorder

    if not path.exists():
        raise NirsdError(f"{path}: no such file")
    print(json.dumps(recorder.recover_file(path, hb=True)))
    return 0


@contextmanager
def subscribed(args: argparse.Namespace, topics: Any) -> Iterator[Any]:
    """A ``Subscriber`` on the command's endpoints with its ``--timeout`` for control
    requests; warnings only in the log (progress has its own lines)."""
    from nirsd.daemon import logs

    from .subscriber import Subscriber

    logs.configure("warning")
    with Subscriber(topics, endpoints=endpoints(args), curve=curve(args)) as sub:
        sub.control.timeout_s = args.timeout
        yield sub


@contextmanager
def stopping_on_signals(rec: Any) -> Iterator[None]:
    """SIGINT and SIGTERM stop ``rec`` (which then ends its file cleanly) while the
    block runs; the previous handlers come back after it."""

    def on_signal(signum: int, frame: Any) -> None:
        rec.stop(signal.Signals(signum).name)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def _record(args: argparse.Namespace, path: Path) -> int:
    """Record into ``path`` until stopped; the summary on stdout; the exit status."""
    from nirsd.clients import recorder

    progress = Progress()
    topics = (*recorder.TOPICS, "derived")  # a device of computed values sends these
    with subscribed(args, topics) as sub:
        rec = _recorder_for(sub, path, args, progress)
        code = _run(rec, progress)
        progress.end()
        summary = _summary(rec, path, args)
        if progress.tty:
            _say_recorded(summary, path)
        print(json.dumps(summary))
        return code


def _recorder_for(sub: Any, path: Path, args: argparse.Namespace, progress: Progress) -> Any:
    """The recorder for what the daemon streams: ``Recorder`` for an optical probe,
    ``DerivedRecorder`` for a device of computed values (no optical channels)."""
    from nirsd.clients import recorder
    from nirsd.clients.snirf_writer import Meta

    meta = Meta(subject=args.subject, group=args.group, visit=args.visit)
    kind = recorder.Recorder
    if "derived" in (info := sub.control.info()) and not info.get("n_channels"):
        from .derived_recorder import DerivedRecorder as kind  # type: ignore[assignment]
    return kind(
        path,
        sub,
        meta,
        duration_s=args.duration,
        backfill_s=args.backfill,
        progress=progress,
        timeout_s=args.timeout,
        hb_file=True,
    )


def _run(rec: Any, progress: Progress) -> int:
    """Run ``rec`` until it stops; a write error after the file exists is reported and
    gives the exit status (74 for a full disk), an error before it is raised."""
    with stopping_on_signals(rec):
        try:
            rec.run()
        except NirsdError as err:
            if rec.writer is None:
                raise
            progress.end()
            print(f"nirsd: {err}", file=sys.stderr)
            return EXIT_IOERR if rec.stop_reason in ("disk full", "write failed") else 1
    return 0


def _summary(rec: Any, path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The summary line: file, stop reason, counters, backfill, the ΔHb file if any."""
    from nirsd.clients import recorder

    summary = {
        "file": str(path),
        "reason": rec.stop_reason,
        **rec.stats.as_dict(),
        **backfill_summary(rec, args.backfill),
    }
    hb_file = recorder.snirf_hb.hb_path(path)
    if hb_file.exists():
        summary["hb_file"] = str(hb_file)
    return summary


def _say_recorded(summary: dict[str, Any], path: Path) -> None:
    """The closing sentence on a terminal."""
    back = summary["backfilled_s"]
    print(
        f"nirsd: recorded {summary['samples']} samples into {path}"
        + (f", of which {back:g} s from before the start (--backfill)" if back else "")
        + f"; {summary['reason']}",
        file=sys.stderr,
    )
