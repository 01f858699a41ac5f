"""Test helpers for drivers (shipped with the package): read a port into a parser."""

from __future__ import annotations

import select
import time
from collections.abc import Callable

import serial

from nirsd.drivers.base import Parser, Sample


class PortReader:
    def __init__(self, port: str, parser: Parser) -> None:
        self.port = serial.serial_for_url(port, baudrate=115200, timeout=0)
        self.parser = parser
        self.frames: list = []

    def write(self, data: bytes) -> None:
        self.port.write(data)
        self.port.flush()

    def pump(self, until: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"timed out; got {len(self.frames)} frames, {self.parser.counters}"
                )
            select.select([self.port.fileno()], [], [], min(left, 0.05))
            data = self.port.read(65536)
            if data:
                self.frames += self.parser.feed(data)

    @property
    def samples(self) -> list[Sample]:
        return [f for f in self.frames if isinstance(f, Sample)]

    def close(self) -> None:
        self.port.close()
