"""``nirsd record --bids ROOT [--sessions N]``: the BIDS mode of ``nirsd record``.

One JSON line per finished run on stdout (file, entities, session id, ``seq``,
``end_seq``, samples, reason), then a summary line.  ``--recover`` finishes the runs a
killed recorder left in ROOT.  Exit status as for ``nirsd record``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nirsd.core.errors import NirsdError

from .cmd_record import EXIT_IOERR, stopping_on_signals, subscribed


def cmd_record_bids(args: argparse.Namespace) -> int:
    try:
        from . import bids_recorder
    except ImportError as err:
        raise NirsdError(f"recording needs h5py: pip install 'nirsd[snirf]' ({err})") from err
    root = Path(args.bids)
    if args.recover and not root.is_dir():
        raise NirsdError(f"{root}: no such dataset")
    if args.sessions is not None and args.sessions < 1:
        raise NirsdError("--sessions must be at least 1")
    with bids_recorder.DatasetLock(root):
        if args.recover:
            runs = bids_recorder.recover_dataset(root)
            print(json.dumps({"root": str(root), "recovered": runs}))
            return 0
        for run in bids_recorder.recover_dataset(root):  # left by a killed recorder
            _say({"event": "recovered", **run})
        return _follow(args, root, bids_recorder)


def _follow(args: argparse.Namespace, root: Path, bids_recorder: Any) -> int:
    def on_run(result: Any) -> None:
        print(json.dumps(result.summary()), flush=True)

    with subscribed(args, bids_recorder.TOPICS) as sub:
        rec = bids_recorder.BidsRecorder(
            root,
            sub,
            max_sessions=args.sessions,
            placement=args.placement,
            timeout_s=args.timeout,
            on_run=on_run,
        )
        code = 0
        with stopping_on_signals(rec):
            try:
                rec.run(ready=lambda: _say({"event": "following", "root": str(root)}))
            except NirsdError as err:
                failed = rec.runs[-1].reason if rec.runs else None
                if failed not in ("disk full", "write failed"):
                    raise
                print(f"nirsd: {err}", file=sys.stderr)
                rec.stop_reason, code = failed, EXIT_IOERR
        print(json.dumps({"root": str(root), "runs": len(rec.runs), "reason": rec.stop_reason}))
    return code


def _say(event: dict[str, Any]) -> None:
    """A progress event as a JSON line on stderr."""
    print(json.dumps(event), file=sys.stderr, flush=True)
