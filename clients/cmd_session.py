"""``nirsd session start|stop|status``: tell the daemon a study session begins or ends.

``start`` prints the acknowledgement (``session_id``, ``seq`` = the session's first
sample, the labels) once that sample has arrived; ``stop`` prints the ended session
(``end_seq``) once its last sample has; ``status`` prints the running and the last
session.  Labels are checked here too, so a bad one is refused before anything is sent.
"""

from __future__ import annotations

import argparse
from typing import Any

from nirsd.core.errors import NirsdError, ProtocolError
from nirsd.daemon.cmdline import endpoint_args
from nirsd.daemon.session import DEFAULT_TASK, check_att, check_label

from .cmd_control import control_call


def parse_att(text: str) -> list[float]:
    """``--att-mm 6.5`` or ``--att-mm 6.5,7,8.2`` (one per channel) in mm."""
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError as err:
        raise NirsdError(f"--att-mm: {text!r} is not a number or a comma-separated list") from err
    try:
        return check_att(values, None) or []
    except ProtocolError as err:
        raise NirsdError(f"--att-mm: {err}") from err


def start_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The ``session_start`` request fields from the command line (labels checked)."""
    try:
        fields: dict[str, Any] = {
            "subject": check_label("--subject", args.subject),
            "session": check_label("--session", args.session),
            "task": check_label("--task", args.task),
            "group": args.group,
        }
    except ProtocolError as err:
        raise NirsdError(str(err)) from err
    for key in ("run", "protocol", "note", "age", "sex"):
        value = getattr(args, key)
        if value is not None:
            fields[key] = value
    if args.att_mm is not None:
        fields["att_mm"] = parse_att(args.att_mm)
    return fields


def cmd_session(args: argparse.Namespace) -> int:
    if args.action == "start":
        fields = start_fields(args)
        return control_call(args, lambda c: c.request("session_start", **fields)[0])
    return control_call(args, lambda c: c.request(f"session_{args.action}")[0])


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "session",
        help="start, stop or show a study session (one patient visit)",
        description="A session is one visit of one subject: the samples from its start "
        "to its end.  `nirsd record --bids ROOT` writes one BIDS run per session.",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    start = actions.add_parser("start", help="begin a session; prints the acknowledgement")
    start.add_argument("--subject", required=True, metavar="ID", help="letters and digits")
    start.add_argument(
        "--session", required=True, metavar="LABEL", help="the visit, e.g. week0 (letters, digits)"
    )
    start.add_argument("--group", default="", metavar="G", help="study group (participants.tsv)")
    start.add_argument(
        "--task", default=DEFAULT_TASK, metavar="T", help="task label (default lumbar)"
    )
    start.add_argument("--run", type=int, metavar="N", help="run number (default: the next free)")
    start.add_argument(
        "--protocol", metavar="NAME", help="start this timed protocol; the session ends with it"
    )
    start.add_argument("--note", metavar="TEXT", help="free text kept with the session")
    start.add_argument("--age", type=float, metavar="YEARS", help="participant age")
    start.add_argument("--sex", metavar="SEX", help="participant sex (e.g. M, F)")
    start.add_argument(
        "--att-mm",
        metavar="MM[,MM...]",
        help="adipose tissue thickness under the probe: one value, or one per channel",
    )
    for name, text in (
        ("stop", "end the running session; prints it with end_seq"),
        ("status", "print the running session and the last one"),
    ):
        actions.add_parser(name, help=text)
    for q in (start, actions.choices["stop"], actions.choices["status"]):
        endpoint_args(q)
        q.add_argument("--timeout", type=float, default=5.0, help="seconds to wait")
        q.set_defaults(func=cmd_session)
