"""The one-request commands: ``status``, ``info``, ``baseline``, ``mark``, ``protocol``.

Each sends one control request.  ``mark`` prints the acknowledgement as JSON (and says on
stderr which epoch it ended, if any); the others print a short summary for people when
stdout is a terminal, and the reply as JSON with ``--json`` or when stdout is a pipe or
a file (what scripts read).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from nirsd.core.errors import NirsdError
from nirsd.daemon.cmdline import curve, endpoint_args, endpoints, print_json

from . import readable

Text = Callable[[dict[str, Any]], list[str]]


def control_call(
    args: argparse.Namespace, fn: Callable[[Any], dict], text: Text | None = None
) -> int:
    """Open a control client on the command's endpoints and print ``fn(client)``: as JSON,
    or as ``text(reply)`` lines when there is a ``text`` form and stdout is a terminal."""
    from .subscriber import ControlClient

    client = ControlClient(endpoints(args).control, timeout_s=args.timeout, curve=curve(args))
    try:
        reply = fn(client)
    finally:
        client.close()
    if text is None or getattr(args, "json", False) or not sys.stdout.isatty():
        print_json(reply)
    else:
        print("\n".join(text(reply)))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    return control_call(args, lambda c: c.status(), readable.status_lines)


def cmd_info(args: argparse.Namespace) -> int:
    return control_call(args, lambda c: c.info(), readable.info_lines)


def cmd_baseline(args: argparse.Namespace) -> int:
    return control_call(args, lambda c: c.baseline(), lambda r: [readable.status_event_line(r)])


def cmd_mark(args: argparse.Namespace) -> int:
    action = "end" if args.end else ("instant" if args.instant else "start")
    if args.label is None and action != "end":
        args.parser.error("a LABEL is needed (only --end may go without: it ends the open epoch)")

    def mark(c: Any) -> dict:
        ack = c.mark(args.label, action, t=args.at)
        if ack.get("ended"):  # a start that ended another epoch, or an end
            print(f"nirsd: ended {readable.ended_words(ack['ended'])}", file=sys.stderr)
        return ack

    return control_call(args, mark)


def cmd_protocol(args: argparse.Namespace) -> int:
    if args.action == "start" and not args.name:
        raise NirsdError("protocol start needs a NAME (see `nirsd protocol list`)")
    fields = {"action": args.action, **({"name": args.name} if args.name else {})}
    return control_call(
        args, lambda c: c.request("protocol", **fields)[0], readable.protocol_reply_lines
    )


def _timeout_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait")
    p.add_argument(
        "--json",
        action="store_true",
        help="print the reply as JSON (the default when stdout is not a terminal; "
        "mark always prints JSON)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    for name, func, text in (
        ("status", cmd_status, "the daemon's status (a summary; JSON with --json or in a pipe)"),
        ("info", cmd_info, "the probe description (a summary; JSON with --json or in a pipe)"),
        ("baseline", cmd_baseline, "re-take the baseline I0 now"),
    ):
        p = sub.add_parser(name, help=text)
        endpoint_args(p)
        _timeout_arg(p)
        p.set_defaults(func=func)

    p = sub.add_parser("mark", help="send a marker; prints the acknowledgement as JSON")
    endpoint_args(p)
    p.add_argument("label", nargs="?", help="epoch label (may be left out with --end)")
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--end", action="store_true", help="end the epoch LABEL (no LABEL: the open epoch)"
    )
    group.add_argument("--instant", action="store_true", help="a point event, no epoch")
    p.add_argument(
        "--at",
        type=float,
        metavar="UNIX_SECONDS",
        help="the marker's time (default now); a past time is applied to the "
        "samples already published and reported with 'covers'",
    )
    _timeout_arg(p)
    p.set_defaults(func=cmd_mark, parser=p)

    p = sub.add_parser(
        "protocol", help="start, stop, skip, list or show (status) a timed exercise protocol"
    )
    endpoint_args(p)
    p.add_argument("action", choices=["start", "stop", "skip", "list", "status"])
    p.add_argument("name", nargs="?", help="protocol name from the config (with start)")
    _timeout_arg(p)
    p.set_defaults(func=cmd_protocol)
