"""``nirsd lsl``: republish hb, raw and markers as Lab Streaming Layer outlets (``lsl`` extra)."""

from __future__ import annotations

import argparse

from nirsd.core.optional import require
from nirsd.daemon.cmdline import curve, endpoint_args, endpoints

HELP = """\
Republish the daemon's data as LSL outlets, so LabRecorder and mne-lsl can use nirsd as
a source: PREFIX_hb (type NIRS, ΔHbO/ΔHbR/ΔHbT per channel in uM, channel metadata in
desc/channels), PREFIX_raw (type NIRS, intensities per channel and wavelength) and
PREFIX_markers (type Markers, strings like "extension/start").  Timestamps are the
samples' host times mapped to the LSL clock.  Follows daemon restarts (new outlets with
the new stream id).  Exit status: 0 on Ctrl-C/SIGTERM, 1 runtime error, 2 usage error."""


def cmd_lsl(args: argparse.Namespace) -> int:
    require("pylsl", "nirsd lsl")
    from nirsd.clients.lsl_bridge import run_bridge

    return run_bridge(endpoints(args), prefix=args.name, raw=not args.no_raw, curve=curve(args))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lsl",
        help="republish hb, raw and markers as LSL outlets",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    endpoint_args(p)
    p.add_argument(
        "--name",
        default="nirsd",
        metavar="PREFIX",
        help="outlet name prefix (default nirsd: nirsd_hb, nirsd_raw, nirsd_markers)",
    )
    p.add_argument("--no-raw", action="store_true", help="do not publish the raw outlet")
    p.set_defaults(func=cmd_lsl)
