"""``nirsd plot FILE.snirf -o OUT.png``: a session figure from a recorded file.

Exit status: 0 written, 1 the file cannot be read or has no hemoglobin data,
2 usage error.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from nirsd.core.optional import require

DESCRIPTION = """\
Draw a recorded session: per channel ΔHbO (red), ΔHbR (blue) and ΔHbT (green) in µM
against time on one shared y-scale (--scale per-channel: each its own), every epoch
shaded and labelled, baseline re-takes dashed; per exercise the epoch-locked average
± SD over the repetitions with the pre-epoch baseline shaded; and a table of the
per-channel mean ± SD change from the pre-epoch baseline.  Every number is computed
from the file (baseline window: the daemon's, from the journal beside the file, else
10 s).  Written with matplotlib's Agg backend, so no display is needed.

exit status: 0 written, 1 unreadable file or no hemoglobin data, 2 usage error."""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "plot",
        help="draw a recorded SNIRF session to a PNG",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE.snirf")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT.png",
        help="image to write (format from the suffix: png, pdf, svg)",
    )
    p.add_argument("--width", type=float, default=12.0, help="inches (default 12)")
    p.add_argument("--dpi", type=int, default=100, help="pixels per inch (default 100)")
    p.add_argument("--title", help="figure title (default: subject, group, visit, date)")
    p.add_argument(
        "--scale",
        choices=["shared", "per-channel"],
        default="shared",
        help="y-scale of the channel panels: one for all (default; a probe over one "
        "muscle group) or one per channel",
    )
    p.set_defaults(func=cmd_plot)


def cmd_plot(args: argparse.Namespace) -> int:
    for module in ("h5py", "matplotlib"):
        require(module, "nirsd plot", "plot")
    from nirsd.clients import plot

    size = plot.plot_file(
        args.file,
        args.output,
        width_in=args.width,
        dpi=args.dpi,
        title=args.title,
        scale=args.scale,
    )
    print(
        json.dumps(
            {"file": args.file, "output": args.output, "width_px": size[0], "height_px": size[1]}
        )
    )
    return 0
