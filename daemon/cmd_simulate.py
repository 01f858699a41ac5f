"""``nirsd simulate``: serve an emulated device on a pseudo-terminal until stopped.

``--driver nirsb`` (default), ``heg`` (HEGduino line protocol) or ``csv`` (delimited
text); every fault flag works with every protocol.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from nirsd.core.errors import ConfigError

EMULATED = ("nirsb", "heg", "csv", "nonin")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="serve an emulated device on a pseudo-terminal")
    p.add_argument("--driver", default="nirsb", help="protocol to speak (default nirsb)")
    p.add_argument("--channels", type=int, default=None, help="default 8 (nonin: 4)")
    p.add_argument(
        "--rate", type=float, default=None, help="sample rate in Hz (default 10; nonin: 1)"
    )
    p.add_argument("--wavelengths", default="760,850", help="nm, comma-separated")
    p.add_argument("--link", metavar="PATH", help="make PATH a symlink to the pty")
    p.add_argument(
        "--autostart", action="store_true", help="stream without waiting for the start command"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise", type=float, default=2e-4, help="relative intensity noise")
    g = p.add_argument_group("replay a recording")
    g.add_argument("--replay", metavar="FILE.snirf", help="play a SNIRF file's CW amplitudes")
    g.add_argument("--speed", type=float, default=1.0, help="replay speed factor (default 1)")
    g.add_argument("--loop", action="store_true", help="start the recording over at its end")
    g.add_argument(
        "--write-config",
        metavar="CFG.toml",
        help="write the config a separate `nirsd run` needs to read the replay",
    )
    add_fault_args(p)
    p.set_defaults(func=run_simulator)


def add_fault_args(p: argparse.ArgumentParser) -> None:
    """The protocol options and the fault-injection flags, shared by every emulator."""
    add_protocol_args(p)
    add_injection_args(p)


def add_protocol_args(p: argparse.ArgumentParser) -> None:
    """Options of one wire protocol (each help says which)."""
    proto = p.add_argument_group("protocol options")
    proto.add_argument(
        "--fast", action="store_true", help="heg: the 3-field form red|ir|ratio (no time field)"
    )
    proto.add_argument(
        "--delimiter",
        default=",",
        help="csv: field separator: ',', ';', 'tab' or ' ' (default ',')",
    )
    proto.add_argument(
        "--no-header", dest="header", action="store_false", help="csv: no header line at power-on"
    )
    proto.add_argument(
        "--missing",
        default="",
        metavar="CH,...",
        help="nonin: channels (1-based) that print --- (no sensor)",
    )
    proto.add_argument(
        "--dropout-rate",
        type=float,
        default=0.0,
        help="nonin: probability a value prints --- (signal too poor)",
    )
    proto.add_argument(
        "--time-unit",
        default="ms",
        choices=["s", "ms", "us", "none"],
        help="csv: unit of the time column, or none (default ms)",
    )


def add_injection_args(p: argparse.ArgumentParser) -> None:
    """Faults the emulator injects: corrupt bytes, lost frames, garbage, stalls, unplugs."""
    g = p.add_argument_group("fault injection")
    g.add_argument(
        "--corrupt-rate", type=float, default=0.0, help="probability per byte of a flipped bit"
    )
    g.add_argument("--drop-rate", type=float, default=0.0, help="probability a data frame is lost")
    g.add_argument(
        "--garbage-every",
        type=float,
        default=0.0,
        metavar="S",
        help="a burst of random bytes every S seconds",
    )
    g.add_argument(
        "--stall-every",
        type=float,
        default=0.0,
        metavar="S",
        help="stop sending every S seconds ...",
    )
    g.add_argument("--stall", type=float, default=0.0, metavar="S", help="... for S seconds")
    g.add_argument(
        "--unplug-every",
        type=float,
        default=0.0,
        metavar="S",
        help="unplug (close the pty) every S seconds ...",
    )
    g.add_argument(
        "--unplug",
        type=float,
        default=0.0,
        metavar="S",
        help="... and plug back in after S seconds (same --link)",
    )


def run_simulator(args: argparse.Namespace) -> int:
    from nirsd.drivers.sim.csv_emulator import DelimitedEmulator
    from nirsd.drivers.sim.emulator import Emulator
    from nirsd.drivers.sim.heg_emulator import HegEmulator
    from nirsd.drivers.sim.physiology import Physiology

    if getattr(args, "replay", None):
        return run_replay(args, faults_from(args))
    if args.driver not in EMULATED:
        raise ConfigError(
            f"no emulator for driver {args.driver!r} (available: {', '.join(EMULATED)})", "--driver"
        )
    try:
        wavelengths = tuple(float(x) for x in args.wavelengths.split(","))
    except ValueError:
        raise ConfigError(f"bad wavelength list {args.wavelengths!r}", "--wavelengths") from None
    faults = faults_from(args)
    if args.driver == "nonin":
        return run_nonin(args, faults)
    args.channels = 8 if args.channels is None else args.channels
    args.rate = 10.0 if args.rate is None else args.rate
    n_ch = 1 if args.driver == "heg" else args.channels
    if args.driver == "heg" and len(wavelengths) != 2:
        raise ConfigError("heg needs two wavelengths (red, infrared)", "--wavelengths")
    phys = Physiology(n_ch, wavelengths, args.rate, noise=args.noise, seed=args.seed)
    common = dict(
        rate_hz=args.rate,
        wavelengths_nm=wavelengths,
        physiology=phys,
        link=args.link,
        faults=faults,
    )
    emu: Emulator
    if args.driver == "heg":
        emu = HegEmulator(fast=getattr(args, "fast", False), autostart=args.autostart, **common)
    elif args.driver == "csv":
        delim = {"tab": "\t", "\\t": "\t"}.get(args.delimiter, args.delimiter)
        if delim not in (",", ";", "\t", " "):
            raise ConfigError(f"unsupported delimiter {args.delimiter!r}", "--delimiter")
        unit = None if args.time_unit == "none" else args.time_unit
        emu = DelimitedEmulator(
            n_channels=n_ch, delimiter=delim, header=args.header, time_unit=unit, **common
        )
        print(f"csv options: {emu.options()}", file=sys.stderr, flush=True)
    else:
        emu = Emulator(n_channels=n_ch, autostart=args.autostart, **common)
    return serve(emu, args.link)


def serve(emu: Any, link: str | None, on_port: Any = None) -> int:
    """Start ``emu``, print its port (and the link), run until SIGINT/SIGTERM."""
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    port = emu.start()
    if on_port is not None:
        on_port(port)
    print(port, flush=True)
    if link:
        print(f"{link} -> {port}", file=sys.stderr, flush=True)
    try:
        done.wait()
    finally:
        emu.stop()
    return 0


def run_nonin(args: argparse.Namespace, faults: Any) -> int:
    """``--driver nonin``: a tissue oximeter printing rSO2 lines (the Nonin 1 layout)."""
    from nirsd.drivers.sim.nonin_emulator import NoninEmulator

    try:
        missing = tuple(int(x) - 1 for x in args.missing.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"bad channel list {args.missing!r}", "--missing") from None
    n_ch = 4 if args.channels is None else args.channels
    if any(not 0 <= c < n_ch for c in missing):
        raise ConfigError(f"channels are 1 to {n_ch}", "--missing")
    emu = NoninEmulator(
        n_channels=n_ch,
        rate_hz=1.0 if args.rate is None else args.rate,
        missing=missing,
        dropout_rate=args.dropout_rate,
        link=args.link,
        faults=faults,
    )
    return serve(emu, args.link)


def faults_from(args: argparse.Namespace) -> Any:
    from nirsd.drivers.sim.emulator import Faults

    return Faults(
        corrupt_rate=args.corrupt_rate,
        drop_rate=args.drop_rate,
        garbage_every_s=args.garbage_every,
        stall_every_s=args.stall_every,
        stall_s=args.stall,
        unplug_every_s=args.unplug_every,
        unplug_s=args.unplug,
    )


def run_replay(args: argparse.Namespace, faults: Any) -> int:
    """``--replay FILE``: the recording as a NIRSB probe; ``--write-config`` the config
    a daemon needs to read it (channels, labels, device clock)."""
    from pathlib import Path

    from nirsd.drivers.sim.replay_emulator import ReplayEmulator
    from nirsd.drivers.snirf_source import read_recording

    from . import config as config_mod
    from .replay import config_toml

    if not args.speed > 0:
        raise ConfigError(f"must be positive, got {args.speed:g}", "--speed")
    rec = read_recording(args.replay)
    base = config_mod.load(args.config) if getattr(args, "config", None) else config_mod.default()
    emu = ReplayEmulator(
        rec,
        speed=args.speed,
        loop=args.loop,
        link=args.link,
        faults=faults,
        autostart=args.autostart,
    )
    print(
        f"replay {rec.path.name}: {rec.n_samples} samples, {rec.n_channels} channels, "
        f"{rec.rate_hz:.6g} Hz, gain {rec.gain:g}, {len(rec.stims)} stims",
        file=sys.stderr,
        flush=True,
    )

    def write_config(port: str) -> None:
        if args.write_config:
            text = config_toml(rec, args.link or port, base)
            Path(args.write_config).write_text(text)
            print(f"config written to {args.write_config}", file=sys.stderr, flush=True)

    return serve(emu, args.link, write_config)
