"""The serial transport: every port opened by pyserial URL, read without blocking.

Paths (``/dev/ttyACM0``, a pty, a udev symlink) and pyserial URLs (``loop://``,
``rfc2217://``) both work.  Errors become :class:`DeviceError` with the port named, so the
daemon can report "disconnected" and retry instead of dying.
"""

from __future__ import annotations

import os

import serial

from nirsd.core.errors import DeviceError

READ_CHUNK = 1 << 16


class SerialTransport:
    def __init__(self, url: str, baudrate: int = 115200) -> None:
        self.url = url
        self.baudrate = baudrate
        self._port: serial.SerialBase | None = None
        self._fd: int | None = None

    @property
    def is_open(self) -> bool:
        return self._port is not None

    def open(self) -> None:
        """Open the port (non-blocking reads); DeviceError if it cannot be opened."""
        if self._port is not None:
            return
        if "://" not in self.url and not os.path.exists(self.url):
            raise DeviceError(f"serial port {self.url} does not exist (unplugged?)")
        try:
            port = serial.serial_for_url(
                self.url, baudrate=self.baudrate, timeout=0, write_timeout=1.0
            )
        except (serial.SerialException, OSError, ValueError) as err:
            raise DeviceError(f"cannot open serial port {self.url}: {err}") from err
        self._port = port
        try:
            self._fd = port.fileno()
        except (AttributeError, NotImplementedError, serial.SerialException, OSError):
            self._fd = None  # URL handlers such as loop:// have no descriptor

    def fileno(self) -> int | None:
        """The descriptor to poll on, or None when the port must be polled by time."""
        return self._fd

    def read(self) -> bytes:
        """Whatever bytes are waiting (possibly none); DeviceError when the port is gone."""
        if self._port is None:
            raise DeviceError(f"serial port {self.url} is not open")
        try:
            if self._fd is not None:
                return os.read(self._fd, READ_CHUNK)
            return self._port.read(READ_CHUNK)
        except BlockingIOError:
            return b""
        except (serial.SerialException, OSError) as err:
            raise DeviceError(f"serial port {self.url} failed: {err}") from err

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self._port is None:
            raise DeviceError(f"serial port {self.url} is not open")
        try:
            self._port.write(data)
            self._port.flush()
        except (serial.SerialException, OSError) as err:
            raise DeviceError(f"cannot write to serial port {self.url}: {err}") from err

    def close(self) -> None:
        port, self._port, self._fd = self._port, None, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError):
                pass  # already gone: closing a vanished device is not an error

    def __enter__(self) -> SerialTransport:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
