"""The benchmarks' device is nirsd's emulator: the bytes it puts on a real pty, its pace
and the write times it records for the latency figures."""

from __future__ import annotations

import os
import select
import sys
import time
from pathlib import Path

import numpy as np

from nirsd.cli.testing import wait_for
from nirsd.drivers import nirsb

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from common import BASE_COUNTS, MARK, Load, PtyDevice  # noqa: E402


def expected_wire(load: Load, n: int) -> bytes:
    """INFO then DATA frames 0..n-1, built here from DEVICES.md's layout."""
    counts = np.full((load.channels, load.wavelengths), BASE_COUNTS, np.int32)
    counts += np.arange(load.values, dtype=np.int32).reshape(counts.shape) % 97
    wire = nirsb.encode_info(load.channels, [760, 850], int(load.rate_hz * 1000), "bench")
    for k in range(n):
        counts[0, 0] = MARK + k
        wire += nirsb.encode_data(k, round(k * 1e6 / load.rate_hz), counts)
    return wire


def read_until(fd: int, size: int, timeout: float) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while len(got) < size and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.05)[0]:
            got += os.read(fd, 1 << 16)
    return got


def test_the_bench_device_writes_info_then_marked_frames_at_its_rate():
    load = Load(4, 2, 50.0)
    dev = PtyDevice(load)
    fd = os.open(dev.port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        os.write(fd, b"?b")
        want = expected_wire(load, 25)
        got = read_until(fd, len(want), 20.0)
        assert got[: len(want)] == want  # byte for byte: one INFO, then frames 0..24
        write_ns = dev.write_ns(25)
        assert (write_ns > 0).all()
        gaps = np.diff(write_ns) / 1e9
        # paced at absolute deadlines: the mean period is the rate's (generous bounds)
        assert 0.012 < gaps.mean() < 0.04 and (gaps >= 0).all()
        # the device thread counts a write once it returns: the reader may be first
        wait_for(lambda: dev.bytes_written >= len(want), 5, what="the write counted")
    finally:
        os.close(fd)
        dev.close()


def test_lockstep_sends_one_frame_per_step():
    load = Load(2, 2, 10.0)
    dev = PtyDevice(load, lockstep=True)
    fd = os.open(dev.port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        os.write(fd, b"?b")
        dev.wait_streaming(timeout_s=20)
        want = expected_wire(load, 3)
        info = nirsb.encode_info(2, [760, 850], 10_000, "bench")
        assert read_until(fd, len(info), 20.0) == info
        assert read_until(fd, 1, 0.3) == b""  # nothing until asked
        for _ in range(3):
            dev.step()
        assert read_until(fd, len(want) - len(info), 20.0) == want[len(info) :]
        assert dev.emulator.samples_sent == 3
    finally:
        os.close(fd)
        dev.close()
