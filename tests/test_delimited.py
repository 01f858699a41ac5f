"""Delimited-text driver: column mapping, validation naming the key, emulator on a pty."""

from __future__ import annotations

import numpy as np
import pytest

from nirsd.core.errors import ConfigError
from nirsd.drivers import registry
from nirsd.drivers.base import DeviceSettings
from nirsd.drivers.delimited import DelimitedDriver, DelimitedParser, parse_layout
from nirsd.drivers.sim.csv_emulator import DelimitedEmulator
from nirsd.drivers.testing import PortReader

WL = (760.0, 850.0)


def settings(**options) -> DeviceSettings:
    return DeviceSettings("/dev/null", wavelengths_nm=WL, rate_hz=10.0, options=options)


def test_columns_map_to_channels_and_wavelengths_in_any_order():
    d = DelimitedDriver(
        settings(
            columns=[
                "ignore",
                "ch1:850",
                {"channel": 0, "wavelength": 850},
                "time",
                "ch0:760",
                "ch1:760",
            ],
            time_unit="us",
            header=True,
        )
    )
    assert registry.get("csv") is DelimitedDriver
    info = d.default_info()
    assert info.n_channels == 2 and info.wavelengths_nm == WL
    p = d.make_parser()
    frames = p.feed(b"junk\nname,a,b,t,c,d\nx,11,12,5000,13,14\n")
    assert p.header == ["name", "a", "b", "t", "c", "d"]
    assert len(frames) == 1
    s = frames[0]
    assert s.t_dev == pytest.approx(0.005)
    assert s.intensity.tolist() == [[13.0, 12.0], [14.0, 11.0]]  # (channel, wavelength)
    assert p.counters.lines_skipped == 1  # the cut first line; the header is expected


@pytest.mark.parametrize(
    "delimiter,sep", [(",", b","), (";", b";"), ("\t", b"\t"), ("whitespace", b"  \t ")]
)
def test_delimiters(delimiter, sep):
    lay = parse_layout({"delimiter": delimiter, "columns": ["ch0:760", "ch0:850"]}, WL)
    p = DelimitedParser(lay, synced=True)
    got = p.feed(b"1" + sep + b"2\r\n3.5" + sep + b"-4e2\r\n")
    assert [s.intensity.tolist() for s in got] == [[[1.0, 2.0]], [[3.5, -400.0]]]
    assert all(s.t_dev is None for s in got)


def test_bad_lines_are_skipped_and_counted():
    lay = parse_layout({"columns": ["time", "ch0:760", "ch0:850"]}, WL)
    p = DelimitedParser(lay, synced=True)
    got = p.feed(b"1,2,3\n1,2\n1,2,3,4\n1,x,3\n1,nan,3\n-5,2,3\n,2,3\n2,5,6\n")
    assert [s.intensity.tolist() for s in got] == [[[2.0, 3.0]], [[5.0, 6.0]]]
    assert p.counters.lines_skipped == 6  # every line that is not a sample


@pytest.mark.parametrize(
    "options,key",
    [
        ({}, "device.options.columns"),
        ({"columns": "ch0:760"}, "device.options.columns"),
        ({"columns": ["ch0:760"]}, "device.options.columns"),  # 850 missing
        ({"columns": ["ch0:760", "ch0:850", "ch0:760"]}, "device.options.columns"),
        ({"columns": ["ch1:760", "ch1:850"]}, "device.options.columns"),  # no channel 0
        ({"columns": ["ch0:760", "ch0:850", "time", "time"]}, "device.options.columns"),
        (
            {
                "columns": [{"channel": 0}],
            },
            "device.options.columns",
        ),
        ({"columns": ["ch0:760", "ch0:850"], "delimiter": "|"}, "device.options.delimiter"),
        ({"columns": ["ch0:760", "ch0:850"], "time_unit": "min"}, "device.options.time_unit"),
        ({"columns": ["ch0:760", "ch0:850"], "header": "yes"}, "device.options.header"),
        ({"columns": ["ch0:760", "ch0:850"], "time_wrap": 10}, "device.options.time_wrap"),
        ({"columns": ["ch0:760", "ch0:850"], "colums": []}, "device.options.colums"),
    ],
)
def test_validation_names_the_key(options, key):
    with pytest.raises(ConfigError) as err:
        DelimitedDriver(settings(**options))
    assert err.value.key == key


def test_time_wrap_sets_the_clock_modulus():
    d = DelimitedDriver(
        settings(columns=["time", "ch0:760", "ch0:850"], time_unit="us", time_wrap=4294967296)
    )
    assert d.make_parser().clock_modulus_s == pytest.approx(4294.967296)
    assert DelimitedParser.clock_modulus_s is None


@pytest.mark.parametrize("delimiter,unit", [(",", "ms"), ("\t", None), (";", "us")])
def test_emulator_on_a_pty_matches_the_physiology(delimiter, unit):
    emu = DelimitedEmulator(n_channels=3, rate_hz=200.0, delimiter=delimiter, time_unit=unit)
    port = emu.start()
    d = DelimitedDriver(settings(**emu.options()))
    reader = PortReader(port, d.make_parser())
    try:
        reader.pump(lambda: len(reader.samples) >= 40)
        got = reader.samples
        first = got[0].intensity
        k0 = next(k for k in range(200) if np.array_equal(emu.physiology.counts([k])[0], first))
        k = k0 + np.arange(len(got))
        assert np.array_equal(
            np.stack([s.intensity for s in got]), emu.physiology.counts(k).astype(np.float64)
        )
        if unit is None:
            assert all(s.t_dev is None for s in got)
        else:
            step = {"ms": 1e-3, "us": 1e-6}[unit]
            assert np.allclose([s.t_dev for s in got], k / 200.0, atol=step)
    finally:
        reader.close()
        emu.stop()
