"""``nirsd simulate``: serve an emulated device on a pseudo-terminal until stopped."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .errors import ConfigError


def add_fault_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("fault injection")
    g.add_argument("--corrupt-rate", type=float, default=0.0,
                   help="probability per byte of a flipped bit")
    g.add_argument("--drop-rate", type=float, default=0.0,
                   help="probability a data frame is lost")
    g.add_argument("--garbage-every", type=float, default=0.0, metavar="S",
                   help="a burst of random bytes every S seconds")
    g.add_argument("--stall-every", type=float, default=0.0, metavar="S",
                   help="stop sending every S seconds ...")
    g.add_argument("--stall", type=float, default=0.0, metavar="S", help="... for S seconds")
    g.add_argument("--unplug-every", type=float, default=0.0, metavar="S",
                   help="unplug (close the pty) every S seconds ...")
    g.add_argument("--unplug", type=float, default=0.0, metavar="S",
                   help="... and plug back in after S seconds (same --link)")


def run_simulator(args: argparse.Namespace) -> int:
    from nirsd.drivers.emulator import Emulator, Faults
    from nirsd.drivers.physiology import Physiology

    if args.driver != "nirsb":
        raise ConfigError(f"no emulator for driver {args.driver!r} (available: nirsb)",
                          "--driver")
    try:
        wavelengths = tuple(float(x) for x in args.wavelengths.split(","))
    except ValueError:
        raise ConfigError(f"bad wavelength list {args.wavelengths!r}", "--wavelengths") from None
    faults = Faults(corrupt_rate=args.corrupt_rate, drop_rate=args.drop_rate,
                    garbage_every_s=args.garbage_every, stall_every_s=args.stall_every,
                    stall_s=args.stall, unplug_every_s=args.unplug_every,
                    unplug_s=args.unplug)
    phys = Physiology(args.channels, wavelengths, args.rate, noise=args.noise, seed=args.seed)
    emu = Emulator(n_channels=args.channels, rate_hz=args.rate, wavelengths_nm=wavelengths,
                   physiology=phys, link=args.link, faults=faults,
                   autostart=args.autostart)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    port = emu.start()
    print(port, flush=True)
    if args.link:
        print(f"{args.link} -> {port}", file=sys.stderr, flush=True)
    try:
        done.wait()
    finally:
        emu.stop()
    return 0
