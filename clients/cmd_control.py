"""The one-request commands: ``status``, ``info``, ``baseline``, ``mark``, ``protocol``.

Each sends one control request and prints the reply as JSON.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from nirsd.core.errors import NirsdError
from nirsd.daemon.cmdline import curve, endpoint_args, endpoints, print_json


def control_call(args: argparse.Namespace, fn: Callable[[Any], dict]) -> int:
    """Open a control client on the command's endpoints, print ``fn(client)`` as JSON."""
    from .subscriber import ControlClient

    client = ControlClient(endpoints(args).control, timeout_s=args.timeout, curve=curve(args))
    try:
        print_json(fn(client))
    finally:
        client.close()
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    return control_call(args, lambda c: c.status())


def cmd_info(args: argparse.Namespace) -> int:
    return control_call(args, lambda c: c.info())


def cmd_baseline(args: argparse.Namespace) -> int:
    return control_call(args, lambda c: c.baseline())


def cmd_mark(args: argparse.Namespace) -> int:
    action = "end" if args.end else ("instant" if args.instant else "start")
    return control_call(args, lambda c: c.mark(args.label, action, t=args.at))


def cmd_protocol(args: argparse.Namespace) -> int:
    if args.action == "start" and not args.name:
        raise NirsdError("protocol start needs a NAME (see `nirsd protocol list`)")
    fields = {"action": args.action, **({"name": args.name} if args.name else {})}
    return control_call(args, lambda c: c.request("protocol", **fields)[0])


def _timeout_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait")


def register(sub: argparse._SubParsersAction) -> None:
    for name, func, text in (
        ("status", cmd_status, "print the daemon's status as JSON"),
        ("info", cmd_info, "print the probe description as JSON"),
        ("baseline", cmd_baseline, "re-take the baseline I0 now"),
    ):
        p = sub.add_parser(name, help=text)
        endpoint_args(p)
        _timeout_arg(p)
        p.set_defaults(func=func)

    p = sub.add_parser("mark", help="send a marker; prints the acknowledgement as JSON")
    endpoint_args(p)
    p.add_argument("label")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--end", action="store_true", help="end the epoch LABEL")
    group.add_argument("--instant", action="store_true", help="a point event, no epoch")
    p.add_argument(
        "--at",
        type=float,
        metavar="UNIX_SECONDS",
        help="the marker's time (default now); a past time is applied to the "
        "samples already published and reported with 'covers'",
    )
    _timeout_arg(p)
    p.set_defaults(func=cmd_mark)

    p = sub.add_parser(
        "protocol", help="start, stop, skip, list or show (status) a timed exercise protocol"
    )
    endpoint_args(p)
    p.add_argument("action", choices=["start", "stop", "skip", "list", "status"])
    p.add_argument("name", nargs="?", help="protocol name from the config (with start)")
    _timeout_arg(p)
    p.set_defaults(func=cmd_protocol)
