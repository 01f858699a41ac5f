"""``nirsd ports``: list serial ports with USB ids, serial numbers and stable links."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ports", help="list serial ports (USB vendor:product, serial number, udev links)"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per port per line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nirsd.drivers.ports import list_ports

    ports = list_ports()
    if args.json:
        for port in ports:
            print(json.dumps(port.as_dict()), flush=True)
        return 0
    if not ports:
        print("no serial ports found")
        return 0
    print(f"{'device':<20} {'usb id':<10} {'serial':<20} description / links")
    for port in ports:
        print(
            f"{port.device:<20} {port.usb_id or '-':<10} {port.serial_number or '-':<20} "
            f"{port.description}"
        )
        for link in port.links:
            print(f"{'':<52} {link}")
    return 0
