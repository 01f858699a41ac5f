"""``nirsd tail``: print what the daemon publishes, one sample or event per line."""

from __future__ import annotations

import argparse

from nirsd.daemon.cmdline import curve, endpoint_args, endpoints


def cmd_tail(args: argparse.Namespace) -> int:
    from . import tail
    from .subscriber import Subscriber

    # status (every status.interval_s) shows the daemon is up when the topic is quiet
    topics = list(dict.fromkeys([args.topic, "status"]))
    with Subscriber(topics, endpoints=endpoints(args), curve=curve(args)) as sub:
        try:
            tail.run(
                sub, args.topic, args.json, args.n, backfill_s=args.backfill, timeout_s=args.timeout
            )
        except BrokenPipeError:
            pass  # `nirsd tail | head` closed the pipe: a normal end
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tail", help="print published samples or events")
    endpoint_args(p)
    p.add_argument(
        "--topic",
        default="hb",
        choices=["hb", "raw", "od", "derived", "marker", "epoch", "status", "session"],
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("-n", type=int, metavar="COUNT", help="stop after COUNT lines")
    p.add_argument(
        "--backfill",
        type=float,
        metavar="SECONDS",
        help="start with the last SECONDS from the daemon's history",
    )
    p.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="exit 1 after S seconds without a message of --topic (status "
        "messages do not count unless --topic status); default: keep "
        "waiting, with a note on stderr after 5 s",
    )
    p.set_defaults(func=cmd_tail)
