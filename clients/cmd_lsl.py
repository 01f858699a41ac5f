"""``nirsd lsl``: republish hb, raw and markers as Lab Streaming Layer outlets (``lsl`` extra)."""

from __future__ import annotations

import argparse

from nirsd.core.optional import require
from nirsd.daemon.cmdline import curve, endpoint_args, endpoints

HELP = """\
Republish the daemon's data as LSL outlets, so LabRecorder and mne-lsl can use nirsd as
a source: PREFIX_hb (type NIRS, ΔHbO/ΔHbR per channel in mol/L, MNE names "S1_D1 hbo",
XDF NIRS channel meta-data with optodes and locations), PREFIX_raw (type NIRS,
intensities per channel and wavelength, "S1_D1 760"), PREFIX_markers (type Markers:
marker "extension/start", label, action, id, seq, duration_s) and PREFIX_epochs (type
Markers, epoch summaries as JSON).  Timestamps are the samples' host times mapped to the
LSL clock; a marker carries the time of the sample it is aligned to.  Follows daemon
restarts (new outlets with the new stream id).  Exit status: 0 on Ctrl-C/SIGTERM, 1
runtime error, 2 usage error."""


def cmd_lsl(args: argparse.Namespace) -> int:
    require("pylsl", "nirsd lsl")
    from nirsd.clients.lsl_bridge import run_bridge

    return run_bridge(endpoints(args), prefix=args.name, raw=not args.no_raw, curve=curve(args))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lsl",
        help="republish hb, raw, markers and epoch summaries as LSL outlets",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    endpoint_args(p)
    p.add_argument(
        "--name",
        default="nirsd",
        metavar="PREFIX",
        help="outlet name prefix (default nirsd: nirsd_hb, nirsd_raw, nirsd_markers, nirsd_epochs)",
    )
    p.add_argument("--no-raw", action="store_true", help="do not publish the raw outlet")
    p.set_defaults(func=cmd_lsl)
