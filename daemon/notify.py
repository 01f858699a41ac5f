"""systemd notification protocol (sd_notify) without libsystemd.

A datagram to ``$NOTIFY_SOCKET`` (a path, or an abstract socket starting with '@').
Outside systemd the variable is unset and every call is a no-op.
"""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    """Sends sd_notify(3) datagrams: READY=1, STATUS=, WATCHDOG=1, RELOADING=1, STOPPING=1.

    ``watchdog_interval_s`` is half of ``$WATCHDOG_USEC`` (seconds), or None when systemd
    set no watchdog for this process.
    """

    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self._sock: socket.socket | None = None
        self._reloading = False
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        ok_pid = pid is None or pid == str(os.getpid())
        # ping at half the timeout, as sd_watchdog_enabled(3) recommends
        self.watchdog_interval_s = (int(usec) / 2e6) if usec and usec.isdigit() and ok_pid else None

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *fields: str) -> None:
        """Send ``KEY=VALUE`` fields; errors are swallowed (systemd may be restarting)."""
        if self._sock is None:
            return
        try:
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError:
            pass

    def ready(self, status: str = "") -> None:
        self._reloading = False
        self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> None:
        """RELOADING=1 (with MONOTONIC_USEC, as Type=notify-reload wants); READY=1 ends it.

        Until then ``stopping()`` is silent: the acquisition being replaced is not the
        service stopping.
        """
        self._reloading = True
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading the configuration")

    def status(self, text: str) -> None:
        self.notify(f"STATUS={text}")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def stopping(self) -> None:
        if not self._reloading:
            self.notify("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
