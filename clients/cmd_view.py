"""``nirsd view``: the live terminal viewer (needs the ``view`` extra: rich)."""

from __future__ import annotations

import argparse

from nirsd.core.optional import require
from nirsd.daemon.cmdline import curve, endpoint_args, endpoints

HELP = """\
A live terminal view of the daemon: per channel the latest ΔHbO/ΔHbR (µM) with
sparklines of the last --window seconds and the signal quality; the sample rate, drops
(messages this viewer lost, seq gaps, samples the device lost), the open epoch and the
running protocol step.  Works over SSH.  Follows daemon restarts.  Keys: q quits
(Ctrl-C too).  Exit status: 0 on q/Ctrl-C or after --frames; 1 with --once when no data
arrived; 2 usage error."""


def cmd_view(args: argparse.Namespace) -> int:
    require("rich", "nirsd view")
    from rich.console import Console

    from nirsd.clients.viewer import Viewer

    viewer = Viewer(
        endpoints(args), window_s=args.window, refresh_hz=args.refresh, curve=curve(args)
    )
    console = Console()
    try:
        if args.once:
            return viewer.once(console, wait_s=args.wait)
        return viewer.run(console, frames=args.frames)
    finally:
        # a Ctrl-C can land between opening a socket and closing it: nothing left
        # open may hold the exit
        viewer.ctx.destroy(linger=0)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "view",
        help="live terminal view of channels, epochs and quality",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    endpoint_args(p)
    p.add_argument(
        "--window",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="seconds of trend in the sparklines (default 30)",
    )
    p.add_argument(
        "--refresh", type=float, default=4.0, metavar="HZ", help="redraws per second (default 4)"
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--once",
        action="store_true",
        help="print one frame when data has arrived, then exit (for scripts)",
    )
    g.add_argument("--frames", type=int, metavar="N", help="exit after N redraws")
    p.add_argument(
        "--wait",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="with --once: how long to wait for data (default 5)",
    )
    p.set_defaults(func=cmd_view)
