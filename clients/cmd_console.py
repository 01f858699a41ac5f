"""``nirsd console``: the bedside web console (needs the ``console`` extra: aiohttp)."""

from __future__ import annotations

import argparse
import sys

from nirsd.core.errors import NirsdError
from nirsd.core.optional import require
from nirsd.daemon.cmdline import curve, endpoint_args, endpoints

HELP = """\
Serves the bedside web console, a client of the daemon like the recorder:
  /          the operator page: traces (ΔHbO/ΔHbR/ΔHbT, µM) with epochs shaded, signal
             quality per channel, marker and baseline buttons, the session and protocol
  /patient   for a screen facing the patient: the instruction, a countdown, the next step
  /api/      the HTTP API and the live stream (docs/console.md)
It prints the URLs.  On a loopback address (the default 127.0.0.1:8765) it serves the
users of this machine; on any other address every request needs the token in the
printed URL (a new random one each start, or the first line of --token-file).  A remote
daemon is reached over CURVE as by the other clients (--server-key/--client-key).
Follows daemon restarts.  Ctrl-C stops it.  Exit status: 0 stopped; 1 runtime error
(e.g. the port is taken); 2 usage error; 78 bad --listen or --token-file."""


def cmd_console(args: argparse.Namespace) -> int:
    require("aiohttp", "nirsd console", "console")
    import asyncio

    from nirsd.clients.console.access import is_loopback, load_token, parse_listen
    from nirsd.clients.console.server import Console

    host, port = parse_listen(args.listen)
    token = "" if is_loopback(host) and args.token_file is None else load_token(args.token_file)
    console = Console(
        endpoints(args),
        host=host,
        port=port,
        token=token,
        curve=curve(args),
        display_hz=args.display_rate,
    )

    def ready(urls: dict[str, str]) -> None:
        print(f"operator page: {urls['operator']}")
        print(f"patient page:  {urls['patient']}")
        if not console.loopback:
            print("(listening beyond this machine: every request needs the token in the URL)")
        sys.stdout.flush()

    try:
        asyncio.run(console.serve(ready))
    except OSError as err:
        raise NirsdError(f"cannot listen on {args.listen}: {err.strerror or err}") from None
    if console.failed:
        raise NirsdError(f"the console stopped: its daemon client failed: {console.failed}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "console",
        help="bedside web console: operator and patient pages, HTTP API",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    endpoint_args(p)
    p.add_argument(
        "--listen",
        default="127.0.0.1:8765",
        metavar="HOST:PORT",
        help="address to serve on (default 127.0.0.1:8765; port 0 picks a free one)",
    )
    p.add_argument(
        "--token-file",
        metavar="FILE",
        help="read the access token from the first line of FILE (mode 0600) instead of "
        "making a new one; required by every request when not on loopback",
    )
    p.add_argument(
        "--display-rate",
        type=float,
        default=10.0,
        metavar="HZ",
        help="points per second sent to the pages (block means; default 10)",
    )
    p.set_defaults(func=cmd_console)
