"""``nirsd run`` (the daemon) and ``nirsd check-config FILE``."""

from __future__ import annotations

import argparse
import os
import sys

from . import config as config_mod
from .cmdline import endpoint_args, err, load_config


def absent_port(cfg: config_mod.Config) -> str | None:
    """The configured serial port when it is a filesystem path that does not exist now
    (a URL such as ``socket://`` or ``loop://`` is never checked), else None."""
    port = cfg.device.port
    if cfg.device.driver in config_mod.PORTLESS_DRIVERS or not port or "://" in port:
        return None
    return None if os.path.exists(port) else port


#: BLAS pools the daemon runs with, unless the environment says otherwise: its loop is
#: one thread, and idle OpenBLAS workers spin for a while after each call (the clock
#: fit, quality spectra), taking the core a subscriber is waiting for.
BLAS_THREADS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def cmd_run(args: argparse.Namespace) -> int:
    for name, value in BLAS_THREADS.items():  # before numpy is first imported
        os.environ.setdefault(name, value)
    from . import logs
    from .service import run_daemon

    cfg = load_config(args)
    if getattr(args, "replay", None):
        from .replay import replay_config

        if not args.speed > 0:
            raise config_mod.ConfigError(f"must be positive, got {args.speed:g}", "--speed")
        cfg, _ = replay_config(cfg, args.replay, speed=args.speed, loop=args.loop)
    logs.configure(args.log_level, json=args.log_json)
    port = absent_port(cfg)
    terminal = next((f for f in (sys.stderr, sys.stdout) if f.isatty()), None)
    if port is not None and terminal is not None:
        # the log line says it too, but as a structured record (JSON when stderr is
        # piped); a person at the terminal gets one sentence, and the daemon keeps
        # waiting for the device, as a service must
        print(
            f"nirsd: the device port {port} does not exist; waiting for it (retrying every "
            f"{cfg.device.reconnect_s:g} s). Plug the probe in, or check [device] port"
            f"{' in ' + str(args.config) if args.config else ''}.",
            file=terminal,
            flush=True,
        )
    return run_daemon(cfg)


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args.file)
    from nirsd.core.extinction import extinction_matrix

    from .device import make_driver
    from .dpf import resolve_dpf

    make_driver(cfg, cfg.device.port or "")  # the driver validates its own settings
    extinction_matrix(cfg.optics.wavelengths_nm, cfg.optics.extinction)
    resolve_dpf(cfg.optics.dpf, cfg.optics.wavelengths_nm, cfg.optics.age_years)
    for ch in cfg.channels:
        if ch.dpf is not None:
            resolve_dpf(ch.dpf, cfg.optics.wavelengths_nm, cfg.optics.age_years)
    print(
        f"{args.file}: ok (driver {cfg.device.driver}, "
        f"{len(cfg.optics.wavelengths_nm)} wavelengths, data {cfg.endpoints.data})"
    )
    port = absent_port(cfg)
    if port is not None:  # valid, but `nirsd run` would wait for the device
        err(
            f"warning: device.port {port} does not exist now; `nirsd run` will wait "
            f"for it (is the probe plugged in? `nirsd ports` lists serial ports)"
        )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the daemon (embedded simulated probe by default)")
    endpoint_args(p, client=False)
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--log-json",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="JSON log lines (default: when stderr is not a terminal)",
    )
    g = p.add_argument_group("replay a recording")
    g.add_argument(
        "--replay",
        metavar="FILE.snirf",
        help="play a SNIRF file's CW amplitudes as the probe (through a pty and the "
        "NIRSB driver; --config still gives baseline, DPF, endpoints)",
    )
    g.add_argument("--speed", type=float, default=1.0, help="replay speed factor (default 1)")
    g.add_argument("--loop", action="store_true", help="start the recording over at its end")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check-config", help="validate a config file")
    p.add_argument("file")
    p.set_defaults(func=cmd_check_config)
