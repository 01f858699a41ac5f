"""The computed-values driver (Nonin 1 layout): the parser on the documented lines, and the
emulator end to end to ``derived``, an epoch summary, ``nirsd tail`` and a SNIRF file."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from nirsd.cli.testing import Collector, DaemonProcess, device_config
from nirsd.core.errors import ConfigError
from nirsd.drivers.base import Derived, DeviceSettings
from nirsd.drivers.nonin import ComputedValuesParser, NoninDriver
from nirsd.drivers.sim.emulator import Faults
from nirsd.drivers.sim.nonin_emulator import NoninEmulator

NAN = float("nan")


def values(frames) -> list[list[float]]:
    return [f.values.tolist() for f in frames if isinstance(f, Derived)]


def same(a: list[list[float]], b: list[list[float]]) -> bool:
    return np.array_equal(np.array(a, float), np.array(b, float), equal_nan=True)


DOC_LINES = (
    b"Nonin 7600 banner\r\n"  # the first line may be cut: always skipped
    b"Ch1=072 Ch2=068 Ch3=--- Ch4=---\r\n"  # two sensors connected
    b"Ch1=071 Ch2=069 Ch3=075 Ch4=080|rSO2=074|HbI=11.9\r\n"  # extra fields ignored
    b"Ch1=--- Ch2=--- Ch3=--- Ch4=---\r\n"  # no value at all
)


def test_documented_lines_missing_values_and_extra_fields():
    p = ComputedValuesParser()
    got = values(p.feed(DOC_LINES))
    assert same(got, [[72, 68, NAN, NAN], [71, 69, 75, 80], [NAN] * 4])
    assert p.counters.lines_skipped == 1 and p.counters.frames_ok == 3


def test_any_split_gives_the_same_frames():
    whole = values(ComputedValuesParser().feed(DOC_LINES))
    p = ComputedValuesParser()
    split = []
    for i in range(len(DOC_LINES)):
        split += values(p.feed(DOC_LINES[i : i + 1]))
    assert same(split, whole)


def test_channel_counts():
    two = b"x\r\nCh1=072 Ch2=068\r\n"
    four = ComputedValuesParser()  # the 4-channel layout needs every key
    assert values(four.feed(two)) == [] and four.counters.lines_skipped == 2
    p = ComputedValuesParser(fields=("Ch1", "Ch2"))
    assert values(p.feed(two)) == [[72.0, 68.0]]
    # more channels than configured: the extra keys are ignored
    assert values(p.feed(b"Ch1=050 Ch2=051 Ch3=052 Ch4=053\r\n")) == [[50.0, 51.0]]
    custom = ComputedValuesParser(fields=("rSO2", "HbI"))
    assert values(custom.feed(b"x\r\nCh1=072|rSO2=070|HbI=11.9\r\n")) == [[70.0, 11.9]]


def test_garbage_is_counted_and_never_a_frame():
    p = ComputedValuesParser()
    data = (
        b"\x00\xff\xfe junk\r\n"
        b"Ch1=072 Ch2=068 Ch3=--- Ch4=---\r\n"
        b"Ch1=7x2 Ch2=068 Ch3=070 Ch4=071\r\n"  # not a number
        b"Ch1=nan Ch2=068 Ch3=070 Ch4=071\r\n"  # not finite
        b"Ch1=072 Ch2 Ch3=070 Ch4=071\r\n"  # a field without '='
    )
    data += b"\xff" * 5000 + b"\r\nCh1=060 Ch2=061 Ch3=062 Ch4=063\r\n"  # an endless line
    assert same(values(p.feed(data)), [[72, 68, NAN, NAN], [60, 61, 62, 63]])
    assert p.counters.lines_skipped >= 4 and p.counters.garbage_bytes > 5000


@pytest.mark.parametrize(
    "options, key",
    [
        ({"colour": 1}, "device.options.colour"),
        ({"names": ["rso2"]}, "device.options.names"),
        ({"names": ["seq"] * 4}, "device.options.names"),
        ({"fields": ["Ch1", "ch1"]}, "device.options.fields"),
    ],
)
def test_bad_options_name_the_key(options, key):
    with pytest.raises(ConfigError) as err:
        NoninDriver(DeviceSettings("/dev/null", rate_hz=1.0, options=options))
    assert err.value.key == key


def test_emulator_prints_the_layout(tmp_path):
    from nirsd.drivers.testing import PortReader

    emu = NoninEmulator(rate_hz=20.0, missing=(3,))
    reader = PortReader(emu.start(), ComputedValuesParser())
    try:
        reader.pump(lambda: len(values(reader.frames)) >= 5, timeout=10)
    finally:
        reader.close()
        emu.stop()
    rows = np.array(values(reader.frames))
    assert np.isnan(rows[:, 3]).all() and np.isfinite(rows[:, :3]).all()
    assert abs((rows[:, 1] - rows[:, 0]).mean() - 4.0) < 3  # channel baselines 60, 64, 68 %


def _match_offset(emu: NoninEmulator, got: dict[int, tuple]) -> int:
    """The offset with emulator sample k = daemon seq + offset for every published row."""
    seqs = sorted(got)
    rows = np.nan_to_num(np.array([got[s][0] for s in seqs]), nan=-1.0)
    found = []
    for offset in range(-seqs[0], 2000):
        printed = [emu.printed(s + offset) for s in seqs]
        if all(p is not None for p in printed):
            if np.array_equal(np.nan_to_num(np.array(printed), nan=-1.0), rows):
                found.append(offset)
    assert len(found) == 1, found  # exactly one way to line them up
    return found[0]


def test_end_to_end_derived_epoch_tail_and_snirf(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the snirf package logs to pysnirf2.log in the cwd
    snirf = pytest.importorskip("snirf")
    h5py = pytest.importorskip("h5py")
    link = tmp_path / "oximeter"
    # garbage bursts between lines: skipped and counted, every line still arrives
    emu = NoninEmulator(rate_hz=10.0, missing=(3,), link=str(link), faults=Faults(0.0, 0.0, 0.3))
    extra = "[markers]\nbaseline_s = 2.0\n"
    d = DaemonProcess(tmp_path, device_config(str(link), driver="nonin", extra=extra))
    out = tmp_path / "derived.snirf"
    c: Collector | None = None
    emu.start()
    try:
        d.start(timeout=30)
        c = Collector(d.subscriber(("derived", "epoch", "marker")))
        start, end, tail = record_an_epoch(d, c, out)
        counters = d.control().status()["counters"]
    finally:
        if c is not None:
            c.close()
        d.stop()
        emu.stop()
    # every published row is one the device printed, in order, NaN for ---
    assert counters["lines_skipped"] > 3 and counters["garbage_bytes"] > 0
    header, got = c.last_header["derived"], c.samples["derived"]
    assert header["names"] == ["rso2"] * 4 and header["units"] == ["%"] * 4
    assert all(row.dtype == np.float64 for row in got.values()) and c.repeated["derived"] == 0
    seqs = sorted(got)
    assert seqs == list(range(seqs[0], seqs[-1] + 1))
    offset = _match_offset(emu, {s: (got[s], c.epoch[s]) for s in seqs})
    for s in seqs:
        np.testing.assert_array_equal(got[s], emu.printed(s + offset))
    # tagged with the epoch between the markers
    on, off = start["seq"], end["seq"]
    assert {c.epoch[s] for s in seqs if on <= s < off} == {"extension"}
    assert all(c.epoch[s] is None for s in seqs if s < on or s >= off)
    check_epoch_summary(c.of("epoch"), emu, offset, on, off)
    check_tail(tail)
    check_snirf(out, snirf, h5py, emu, offset, (off - on) / 10.0)


def record_an_epoch(d: DaemonProcess, c: Collector, out) -> tuple[dict, dict, Any]:
    """``nirsd record`` while an extension epoch is marked and ``nirsd tail`` reads the
    derived values; (start marker, end marker, the tail run)."""
    got = c.samples["derived"]
    c.until(lambda: len(got) >= 5, 20, what="derived samples")
    rec = subprocess.Popen(
        [sys.executable, "-m", "nirsd.cli", "record", str(out)],
        env=d.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # the recorder is subscribed once its file exists (it subscribes, then asks info,
    # then opens the file): a loaded machine took longer to start it than the 1 s below
    c.until(lambda: out.exists() or rec.poll() is not None, 60, what="the recorder's file")
    # the whole 2 s pre-epoch window is held (and seen) before the epoch starts
    seen = len(got)
    c.until(lambda: len(got) >= seen + 10 and max(got) - min(got) >= 25, 20, what="more samples")
    start = json.loads(d.cli("mark", "extension", check=True).stdout)
    c.until(lambda: max(got) >= start["seq"] + 15, 20, what="epoch samples")
    end = json.loads(d.cli("mark", "extension", "--end", check=True).stdout)
    c.until(lambda: c.of("epoch"), 20, what="derived epoch summary")
    tail = d.cli("tail", "--topic", "derived", "--json", "-n", "2", check=True)
    # one more second: the recorder, on the same PUB stream, has the epoch by then
    c.until(lambda: max(got) >= end["seq"] + 10, 20, what="samples after")
    rec.send_signal(signal.SIGTERM)
    stdout, stderr = rec.communicate(timeout=60)
    assert rec.returncode == 0, stderr
    return start, end, tail


def check_epoch_summary(epochs: list[dict], emu: NoninEmulator, offset: int, on: int, off: int):
    """The summary: mean during minus the 2 s (20 samples) before, from the device's
    values."""
    (summary,) = epochs
    assert summary["kind"] == "derived" and (summary["onset_seq"], summary["end_seq"]) == (on, off)
    assert summary["n_baseline"] == 20 and summary["n_samples"] == off - on
    truth = np.array([emu.printed(s + offset) for s in range(on - 20, off)])
    want = truth[20:, :3].mean(0) - truth[:20, :3].mean(0)
    np.testing.assert_allclose(summary["mean_rso2"][:3], want, rtol=0, atol=1e-9)
    assert summary["mean_rso2"][3] is None or np.isnan(summary["mean_rso2"][3])


def check_tail(tail: Any) -> None:
    """nirsd tail --topic derived --json: seq, t, epoch and one list per value name."""
    lines = [json.loads(x) for x in tail.stdout.splitlines()]
    assert len(lines) == 2 and set(lines[0]) >= {"seq", "t", "epoch", "rso2"}
    assert len(lines[0]["rso2"]) == 4 and lines[0]["rso2"][3] is None


def check_snirf(out, snirf, h5py, emu: NoninEmulator, offset: int, epoch_s: float) -> None:
    """The SNIRF file: valid, the published rows, the epoch as a stim."""
    assert snirf.validateSnirf(str(out)).is_valid()
    with h5py.File(out) as f:
        rows = f["nirs/data1/dataTimeSeries"][:]
        seq = f["nirs/aux1/dataTimeSeries"][:, 0].astype(int)
        labels = [f[f"nirs/data1/measurementList{j}/dataTypeLabel"][()] for j in (1, 4)]
        stims = {
            f[f"nirs/{k}/name"][()].decode(): f[f"nirs/{k}/data"][:]
            for k in f["nirs"]
            if k.startswith("stim")
        }
    assert labels == [b"rso2", b"rso2"] and len(seq) >= 30
    for s, row in zip(seq, rows):
        np.testing.assert_array_equal(row, emu.printed(s + offset))
    (stim,) = stims["extension"]
    assert stim[1] == pytest.approx(epoch_s, abs=0.25)
