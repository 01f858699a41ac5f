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
Draw a recorded session: ΔHbO (red) and ΔHbR (blue) per channel in µM against time,
every epoch shaded and labelled, and a table of the epoch summaries (mean ΔHbO, ΔHbR
and ΔHbT per epoch relative to the pre-epoch baseline, from the recording's journal
when present, else computed from the file).  Written with matplotlib's Agg backend, so
no display is needed.

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
    p.set_defaults(func=cmd_plot)


def cmd_plot(args: argparse.Namespace) -> int:
    for module in ("h5py", "matplotlib"):
        require(module, "nirsd plot", "plot")
    from nirsd.clients import plot

    size = plot.plot_file(
        args.file, args.output, width_in=args.width, dpi=args.dpi, title=args.title
    )
    print(
        json.dumps(
            {"file": args.file, "output": args.output, "width_px": size[0], "height_px": size[1]}
        )
    )
    return 0
