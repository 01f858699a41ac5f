"""HEG line protocol: parser, driver settings, and the HEGduino emulator on a real pty."""

from __future__ import annotations

import numpy as np
import pytest

from nirsd.core.errors import ConfigError
from nirsd.daemon.clock import DeviceClock
from nirsd.drivers import registry
from nirsd.drivers.base import DeviceSettings
from nirsd.drivers.heg import HegDriver, HegParser, format_line
from nirsd.drivers.sim.heg_emulator import HegEmulator
from nirsd.drivers.testing import PortReader


def test_both_forms_and_skipped_lines():
    p = HegParser()  # not synced: the first (possibly cut) line is dropped
    data = (
        b"567|48211|61022|0.7901|312|64|97\r\n"  # cut first line
        b"10234567|48211|61022|0.7901|312|64|97\r\n"
        b"HEGduino ready\r\n"
        b"48211|61022|0.7901\r\n"
        b"1|2|3\r\n"
    )  # ratio 3 != 1/2: corrupt
    frames = p.feed(data)
    assert len(frames) == 2
    a, b = frames
    assert a.t_dev == pytest.approx(10.234567) and a.seq is None
    assert a.intensity.tolist() == [[48211.0, 61022.0]]
    assert b.t_dev is None and b.intensity.tolist() == [[48211.0, 61022.0]]
    assert p.counters.lines_skipped == 3 and p.counters.frames_ok == 2


def test_any_split_gives_the_same_samples():
    lines = b"".join(format_line(1000 * k, 40000 + k, 50000 - k) for k in range(50))
    whole = HegParser(synced=True).feed(lines)
    p = HegParser(synced=True)
    pieces = [p.feed(lines[i : i + 7]) for i in range(0, len(lines), 7)]
    split = [s for part in pieces for s in part]
    assert len(whole) == len(split) == 50
    for x, y in zip(whole, split):
        assert x.t_dev == y.t_dev and np.array_equal(x.intensity, y.intensity)


def test_ratio_check_can_be_disabled():
    line = b"10|100|200|0.9000|0|0|0\r\n"
    assert HegParser(synced=True).feed(line) == []
    assert len(HegParser(synced=True, check_ratio=False).feed(line)) == 1


def test_rejects_out_of_range_time_and_bad_numbers():
    p = HegParser(synced=True)
    bad = [
        b"4294967296|100|200|0.5000|0|0|0",
        b"1.5|100|200|0.5000|0|0|0",
        b"1|1-0|200|0.5000|0|0|0",
        b"1||200|0.5000|0|0|0",
        b"100|200",
        b"1|2|3|4|5|6|7|8",
    ]
    assert p.feed(b"\r\n".join(bad) + b"\r\n") == []
    assert p.counters.lines_skipped == len(bad)


def test_t_us_wraps_at_2_32():
    period = 1 << 32
    t_us = [period - 200_000, period - 100_000, 0 + 0, 100_000]
    p = HegParser(synced=True)
    samples = p.feed(b"".join(format_line(t, 100, 200) for t in t_us))
    clock = DeviceClock(HegParser.clock_modulus_s, 10.0)
    t = clock.unwrap(np.array([s.t_dev for s in samples]), len(samples))
    assert np.allclose(np.diff(t), 0.1)


def test_driver_settings_and_registry():
    assert registry.get("heg") is HegDriver
    d = HegDriver(
        DeviceSettings("/dev/null", wavelengths_nm=(660, 880), rate_hz=20.0, n_channels=8)
    )
    info = d.default_info()
    assert info.n_channels == 1 and info.wavelengths_nm == (660.0, 880.0)
    assert info.rate_hz == 20.0
    assert d.start_commands() == b"t" and d.stop_commands() == b"f"
    with pytest.raises(ConfigError) as err:
        HegDriver(DeviceSettings("/dev/null", wavelengths_nm=(660, 850, 880), rate_hz=10))
    assert err.value.key == "optics.wavelengths_nm"
    with pytest.raises(ConfigError) as err:
        HegDriver(
            DeviceSettings("/dev/null", wavelengths_nm=(660, 880), rate_hz=10, options={"bogus": 1})
        )
    assert err.value.key == "device.options.bogus"


@pytest.mark.parametrize("fast", [False, True])
def test_emulator_on_a_pty_matches_the_physiology(fast):
    emu = HegEmulator(rate_hz=200.0, fast=fast)
    port = emu.start()
    reader = PortReader(port, HegParser())
    try:
        reader.write(b"t")
        reader.pump(lambda: len(reader.samples) >= 50)
        reader.write(b"f")
        got = reader.samples
        # The first line after opening is dropped as possibly cut: it is the banner, or
        # sample 0 when pyserial's open flushed the banner.  After it, every sample.
        first = got[0].intensity
        k0 = next(k for k in range(3) if np.array_equal(emu.physiology.counts([k])[0], first))
        k = k0 + np.arange(len(got))
        truth = emu.physiology.counts(k).astype(np.float64)
        assert np.array_equal(np.stack([s.intensity for s in got]), truth)
        if fast:
            assert all(s.t_dev is None for s in got)
        else:
            assert np.allclose([s.t_dev for s in got], k / 200.0, atol=1e-6)
        assert emu.error is None
    finally:
        reader.close()
        emu.stop()
