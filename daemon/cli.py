"""The ``nirsd`` command: one entry point, one subcommand per job.

Exit status: 0 done, 1 runtime error, 2 usage error (argparse), 74 device error,
78 configuration error (sysexits EX_CONFIG; systemd does not restart on it).
"""

from __future__ import annotations

import argparse
from importlib import import_module
import json
import signal
import sys
import threading
from typing import Any, Callable

from . import config as config_mod
from .endpoints import Endpoints, resolve
from .errors import EXIT_CONFIG, EXIT_DEVICE, ConfigError, DeviceError, NirsdError

EXIT_RUNTIME = 1


def _err(msg: str) -> None:
    print(f"nirsd: {msg}", file=sys.stderr)


def _endpoint_args(p: argparse.ArgumentParser, client: bool = True) -> None:
    """--config/--data/--control, plus the CURVE client keys for a ``client`` command."""
    p.add_argument("--config", "-c", metavar="FILE",
                   help="read endpoints (and more) from this config file")
    p.add_argument("--data", metavar="ENDPOINT", help="data endpoint (ZeroMQ PUB)")
    p.add_argument("--control", metavar="ENDPOINT", help="control endpoint (ZeroMQ ROUTER)")
    if not client:
        return
    p.add_argument("--server-key", metavar="KEY", help="CURVE: the daemon's public key "
                   "(Z85 or NAME.key file; default $NIRSD_SERVER_KEY)")
    p.add_argument("--client-key", metavar="FILE", help="CURVE: this client's NAME.key_secret "
                   "(default $NIRSD_CLIENT_KEY)")


def _curve(args: argparse.Namespace) -> Any:
    """Client CURVE keys from --server-key/--client-key, else None (then the env applies)."""
    server, client = getattr(args, "server_key", None), getattr(args, "client_key", None)
    if bool(server) != bool(client):
        raise ConfigError("--server-key and --client-key go together")
    if not server:
        return None
    from .security import ClientKeys
    return ClientKeys.load(server, client)


def _merge_endpoints(args: argparse.Namespace, configured: Endpoints | None) -> Endpoints:
    """--data/--control over the config; ConfigError names the flag that is wrong."""
    data, control = getattr(args, "data", None), getattr(args, "control", None)
    ep = resolve(data, control, configured)
    config_mod.check_endpoints(ep, "--data" if data else "endpoints.data",
                               "--control" if control else "endpoints.control")
    return ep


def _endpoints(args: argparse.Namespace) -> Endpoints:
    configured = config_mod.load(args.config).endpoints if args.config else None
    return _merge_endpoints(args, configured)


def _load_config(args: argparse.Namespace) -> config_mod.Config:
    cfg = config_mod.load(args.config) if args.config else config_mod.default()
    ep = _merge_endpoints(args, cfg.endpoints)
    if ep != cfg.endpoints:
        from dataclasses import replace
        cfg = replace(cfg, endpoints=ep)
        config_mod.check_transport(cfg)
    return cfg


# -- subcommands ----------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    from . import logs
    from .service import run_daemon
    cfg = _load_config(args)
    logs.configure(args.log_level, json=args.log_json)
    return run_daemon(cfg)


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args.file)
    from .dpf import resolve_dpf
    from .extinction import extinction_matrix
    from .device import make_driver
    make_driver(cfg, cfg.device.port or "")  # the driver validates its own settings
    extinction_matrix(cfg.optics.wavelengths_nm, cfg.optics.extinction)
    resolve_dpf(cfg.optics.dpf, cfg.optics.wavelengths_nm, cfg.optics.age_years)
    for ch in cfg.channels:
        if ch.dpf is not None:
            resolve_dpf(ch.dpf, cfg.optics.wavelengths_nm, cfg.optics.age_years)
    print(f"{args.file}: ok (driver {cfg.device.driver}, "
          f"{len(cfg.optics.wavelengths_nm)} wavelengths, data {cfg.endpoints.data})")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from .simulate import run_simulator
    return run_simulator(args)


def cmd_tail(args: argparse.Namespace) -> int:
    from nirsd.clients import tail
    from nirsd.clients.subscriber import Subscriber
    # status (every status.interval_s) shows the daemon is up when the topic is quiet
    topics = list(dict.fromkeys([args.topic, "status"]))
    with Subscriber(topics, endpoints=_endpoints(args), curve=_curve(args)) as sub:
        try:
            tail.run(sub, args.topic, args.json, args.n, backfill_s=args.backfill,
                     timeout_s=args.timeout)
        except BrokenPipeError:
            pass  # `nirsd tail | head` closed the pipe: a normal end
    return 0


def _control_call(args: argparse.Namespace, fn: Callable[[Any], dict]) -> int:
    from nirsd.clients.subscriber import ControlClient
    client = ControlClient(_endpoints(args).control, timeout_s=args.timeout, curve=_curve(args))
    try:
        print(json.dumps(fn(client), default=_json_default))
    finally:
        client.close()
    return 0


def _json_default(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return list(obj)
    raise TypeError(type(obj).__name__)


def cmd_status(args: argparse.Namespace) -> int:
    return _control_call(args, lambda c: c.status())


def cmd_info(args: argparse.Namespace) -> int:
    return _control_call(args, lambda c: c.info())


def cmd_baseline(args: argparse.Namespace) -> int:
    return _control_call(args, lambda c: c.baseline())


def cmd_mark(args: argparse.Namespace) -> int:
    action = "end" if args.end else ("instant" if args.instant else "start")
    return _control_call(args, lambda c: c.mark(args.label, action, t=args.at))


def cmd_protocol(args: argparse.Namespace) -> int:
    if args.action == "start" and not args.name:
        raise NirsdError("protocol start needs a NAME (see `nirsd protocol list`)")
    fields = {"action": args.action, **({"name": args.name} if args.name else {})}
    return _control_call(args, lambda c: c.request("protocol", **fields)[0])


# -- parser ---------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nirsd", description="Real-time NIRS acquisition daemon and its clients.")
    from importlib.metadata import version
    parser.add_argument("--version", action="version", version=f"nirsd {version('nirsd')}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the daemon (embedded simulated probe by default)")
    _endpoint_args(p, client=False)
    p.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-json", action=argparse.BooleanOptionalAction, default=None,
                   help="JSON log lines (default: when stderr is not a terminal)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("simulate", help="serve an emulated device on a pseudo-terminal")
    p.add_argument("--driver", default="nirsb", help="protocol to speak (default nirsb)")
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--rate", type=float, default=10.0, help="sample rate in Hz")
    p.add_argument("--wavelengths", default="760,850", help="nm, comma-separated")
    p.add_argument("--link", metavar="PATH", help="make PATH a symlink to the pty")
    p.add_argument("--autostart", action="store_true",
                   help="stream without waiting for the start command")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise", type=float, default=2e-4, help="relative intensity noise")
    from .simulate import add_fault_args
    add_fault_args(p)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("tail", help="print published samples or events")
    _endpoint_args(p)
    p.add_argument("--topic", default="hb",
                   choices=["hb", "raw", "od", "marker", "epoch", "status"])
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("-n", type=int, metavar="COUNT", help="stop after COUNT lines")
    p.add_argument("--backfill", type=float, metavar="SECONDS",
                   help="start with the last SECONDS from the daemon's history")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="exit 1 after S seconds without a message of --topic (status "
                        "messages do not count unless --topic status); default: keep "
                        "waiting, with a note on stderr after 5 s")
    p.set_defaults(func=cmd_tail)

    p = sub.add_parser("check-config", help="validate a config file")
    p.add_argument("file")
    p.set_defaults(func=cmd_check_config)

    for name, func, text in (("status", cmd_status, "print the daemon's status as JSON"),
                             ("info", cmd_info, "print the probe description as JSON"),
                             ("baseline", cmd_baseline, "re-take the baseline I0 now")):
        p = sub.add_parser(name, help=text)
        _endpoint_args(p)
        p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait")
        p.set_defaults(func=func)

    p = sub.add_parser("mark", help="send a marker; prints the acknowledgement as JSON")
    _endpoint_args(p)
    p.add_argument("label")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--end", action="store_true", help="end the epoch LABEL")
    group.add_argument("--instant", action="store_true", help="a point event, no epoch")
    p.add_argument("--at", type=float, metavar="UNIX_SECONDS",
                   help="the marker's time (default now); a past time is applied to the "
                        "samples already published and reported with 'covers'")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait")
    p.set_defaults(func=cmd_mark)

    p = sub.add_parser("protocol", help="start, stop, skip, list or show (status) a timed "
                       "exercise protocol")
    _endpoint_args(p)
    p.add_argument("action", choices=["start", "stop", "skip", "list", "status"])
    p.add_argument("name", nargs="?", help="protocol name from the config (with start)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait")
    p.set_defaults(func=cmd_protocol)

    for module in COMMAND_MODULES:
        import_module(module).register(sub)
    return parser


# Subcommands kept beside what they drive: each module has ``register(subparsers)``,
# which adds its parser and sets ``func`` (importing heavy dependencies only when run).
COMMAND_MODULES: tuple[str, ...] = (
    "nirsd.daemon.cmd_keys",
    "nirsd.daemon.cmd_view",
    "nirsd.daemon.cmd_lsl",
    "nirsd.daemon.cmd_record",
    "nirsd.daemon.cmd_plot",
    "nirsd.daemon.cmd_ports",
)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C ends every command, even one started where SIGINT is ignored (a
        # script's background job inherits SIG_IGN, which Python would keep)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below
        return code
    except ConfigError as err:
        _err(f"config error: {err}")
        return EXIT_CONFIG
    except DeviceError as err:
        _err(f"device error: {err}")
        return EXIT_DEVICE
    except NirsdError as err:
        _err(str(err))
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        # `nirsd status | head -c 10` closed the pipe: a normal end, without the
        # interpreter's second error when it flushes stdout at exit
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
