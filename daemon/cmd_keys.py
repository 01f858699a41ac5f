"""``nirsd keys``: generate a CURVE key pair for the daemon or for a remote client.

Writes ``NAME.key`` (public, 0644) and ``NAME.key_secret`` (both keys, 0600) in ZeroMQ's
zcert text format, then prints the paths and the public key as one JSON object.  The
server's secret file goes to ``[security] server_secret_key_file``; each client's
``NAME.key`` (or its public key text) goes to ``allowed_clients`` / ``control_clients``;
a client uses ``--server-key server.key --client-key NAME.key_secret``.
"""

from __future__ import annotations

import argparse
import json


def cmd_keys(args: argparse.Namespace) -> int:
    from .security import generate_keypair, load_key_file

    public_path, secret_path = generate_keypair(args.out, args.name, force=args.force)
    public, _ = load_key_file(public_path, "--out")
    print(
        json.dumps(
            {
                "name": args.name,
                "public_key": public.decode(),
                "public_file": str(public_path),
                "secret_file": str(secret_path),
            }
        )
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("keys", help="generate a CURVE key pair (server or client)")
    p.add_argument(
        "--out",
        default=".",
        metavar="DIR",
        help="directory for NAME.key and NAME.key_secret (default: .)",
    )
    p.add_argument(
        "--name",
        default="server",
        help="file name stem, e.g. server or a client's name (default: server)",
    )
    p.add_argument("--force", action="store_true", help="replace existing key files")
    p.set_defaults(func=cmd_keys)
