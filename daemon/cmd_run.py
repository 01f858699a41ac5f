"""``nirsd run`` (the daemon) and ``nirsd check-config FILE``."""

from __future__ import annotations

import argparse
import os

from . import config as config_mod
from .cmdline import endpoint_args, load_config

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
    logs.configure(args.log_level, json=args.log_json)
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
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check-config", help="validate a config file")
    p.add_argument("file")
    p.set_defaults(func=cmd_check_config)
