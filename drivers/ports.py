"""Serial ports on this machine, with what a udev rule or a config needs.

:func:`list_ports` uses pyserial's ``serial.tools.list_ports`` (sysfs on Linux) and adds
the stable names that point at each port: the ``/dev/serial/by-id`` and
``/dev/serial/by-path`` links udev makes, and the ``/dev/nirs/`` links of nirsd's own
udev rule.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

LINK_DIRS = ("/dev/serial/by-id", "/dev/serial/by-path", "/dev/nirs")


@dataclass
class PortInfo:
    """One serial port; ``vid``/``pid`` are USB ids as 4-digit hex, None if not USB."""

    device: str
    description: str = ""
    hwid: str = ""
    vid: str | None = None
    pid: str | None = None
    serial_number: str | None = None
    manufacturer: str | None = None
    product: str | None = None
    location: str | None = None
    links: list[str] = field(default_factory=list)

    @property
    def usb_id(self) -> str | None:
        """``VID:PID`` as lsusb prints it, or None."""
        return f"{self.vid}:{self.pid}" if self.vid and self.pid else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "usb_id": self.usb_id}


def links_to(device: str, dirs: Iterable[str] = LINK_DIRS) -> list[str]:
    """Symlinks in ``dirs`` that resolve to ``device`` (sorted)."""
    target = os.path.realpath(device)
    found = []
    for d in dirs:
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for name in names:
            path = os.path.join(d, name)
            if os.path.islink(path) and os.path.realpath(path) == target:
                found.append(path)
    return sorted(found)


def list_ports(dirs: Iterable[str] = LINK_DIRS) -> list[PortInfo]:
    """Every serial port pyserial finds, sorted by device path."""
    from serial.tools import list_ports as lp

    dirs = tuple(dirs)
    out = []
    for p in sorted(lp.comports(), key=lambda p: p.device):
        out.append(
            PortInfo(
                device=p.device,
                description=p.description or "",
                hwid=p.hwid or "",
                vid=f"{p.vid:04x}" if p.vid is not None else None,
                pid=f"{p.pid:04x}" if p.pid is not None else None,
                serial_number=p.serial_number,
                manufacturer=p.manufacturer,
                product=p.product,
                location=p.location,
                links=links_to(p.device, dirs),
            )
        )
    return out
