"""Command-line pieces every subcommand shares: endpoint flags, CURVE client keys, config.

They sit in the daemon package because both the daemon's own commands (``run``,
``check-config``, ``simulate``, ``keys``, ``ports``) and the clients' commands use them, and
clients may import the daemon package but never the other way round.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from nirsd.core.errors import ConfigError

from . import config as config_mod
from .endpoints import Endpoints, resolve

EXIT_RUNTIME = 1


def err(msg: str) -> None:
    """One ``nirsd: …`` line on stderr."""
    print(f"nirsd: {msg}", file=sys.stderr)


def endpoint_args(p: argparse.ArgumentParser, client: bool = True) -> None:
    """--config/--data/--control, plus the CURVE client keys for a ``client`` command."""
    p.add_argument(
        "--config", "-c", metavar="FILE", help="read endpoints (and more) from this config file"
    )
    p.add_argument("--data", metavar="ENDPOINT", help="data endpoint (ZeroMQ PUB)")
    p.add_argument("--control", metavar="ENDPOINT", help="control endpoint (ZeroMQ ROUTER)")
    if not client:
        return
    p.add_argument(
        "--server-key",
        metavar="KEY",
        help="CURVE: the daemon's public key (Z85 or NAME.key file; default $NIRSD_SERVER_KEY)",
    )
    p.add_argument(
        "--client-key",
        metavar="FILE",
        help="CURVE: this client's NAME.key_secret (default $NIRSD_CLIENT_KEY)",
    )


def curve(args: argparse.Namespace) -> Any:
    """Client CURVE keys from --server-key/--client-key, else None (then the env applies)."""
    server, client = getattr(args, "server_key", None), getattr(args, "client_key", None)
    if bool(server) != bool(client):
        raise ConfigError("--server-key and --client-key go together")
    if not server:
        return None
    from .security import ClientKeys

    return ClientKeys.load(server, str(client))


def merge_endpoints(args: argparse.Namespace, configured: Endpoints | None) -> Endpoints:
    """--data/--control over the config; ConfigError names the flag that is wrong."""
    data, control = getattr(args, "data", None), getattr(args, "control", None)
    ep = resolve(data, control, configured)
    config_mod.check_endpoints(
        ep, "--data" if data else "endpoints.data", "--control" if control else "endpoints.control"
    )
    return ep


def endpoints(args: argparse.Namespace) -> Endpoints:
    """The endpoints a client command talks to: flags, else --config, else the defaults."""
    configured = config_mod.load(args.config).endpoints if args.config else None
    return merge_endpoints(args, configured)


def load_config(args: argparse.Namespace) -> config_mod.Config:
    """The daemon's config: --config (else the embedded default) with the endpoint flags."""
    cfg = config_mod.load(args.config) if args.config else config_mod.default()
    ep = merge_endpoints(args, cfg.endpoints)
    if ep != cfg.endpoints:
        cfg = replace(cfg, endpoints=ep)
        config_mod.check_transport(cfg)
    return cfg


def json_default(obj: Any) -> Any:
    """JSON for the few non-JSON values a reply can hold (bytes as a list of ints)."""
    if isinstance(obj, bytes):
        return list(obj)
    raise TypeError(type(obj).__name__)


def print_json(value: Any) -> None:
    print(json.dumps(value, default=json_default))


Handler = Callable[[argparse.Namespace], int]
