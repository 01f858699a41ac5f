"""The ``nirsd`` command: one entry point, one subcommand per job.

This module only assembles the parser: every subcommand lives beside what it drives, in a
module with ``register(subparsers)`` that adds its parser and sets ``func`` (heavy
dependencies are imported only when the command runs).  Daemon commands sit in
``nirsd.daemon``, client commands in ``nirsd.clients``; this package is above both.

Exit status: 0 done, 1 runtime error, 2 usage error (argparse), 74 device error,
78 configuration error (sysexits EX_CONFIG; systemd does not restart on it).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from importlib import import_module

from nirsd.core.errors import EXIT_CONFIG, EXIT_DEVICE, ConfigError, DeviceError, NirsdError
from nirsd.daemon.cmdline import EXIT_RUNTIME, err

COMMAND_MODULES: tuple[str, ...] = (
    "nirsd.daemon.cmd_run",
    "nirsd.daemon.cmd_simulate",
    "nirsd.clients.cmd_tail",
    "nirsd.clients.cmd_control",
    "nirsd.clients.cmd_session",
    "nirsd.daemon.cmd_keys",
    "nirsd.clients.cmd_view",
    "nirsd.clients.cmd_lsl",
    "nirsd.clients.cmd_record",
    "nirsd.clients.cmd_plot",
    "nirsd.clients.cmd_report",
    "nirsd.clients.cmd_console",
    "nirsd.daemon.cmd_ports",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nirsd", description="Real-time NIRS acquisition daemon and its clients."
    )
    from importlib.metadata import version

    parser.add_argument("--version", action="version", version=f"nirsd {version('nirsd')}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C ends every command, even one started where SIGINT is ignored (a
        # script's background job inherits SIG_IGN, which Python would keep)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code: int = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below
        return code
    except ConfigError as error:
        err(f"config error: {error}")
        return EXIT_CONFIG
    except DeviceError as error:
        err(f"device error: {error}")
        return EXIT_DEVICE
    except NirsdError as error:
        err(str(error))
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
