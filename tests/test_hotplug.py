"""Unplug and replug the device while ``nirsd run`` streams (real pty, real subprocess).

The emulator closes its pty and removes the symlink (the host sees a hang-up), then after
a while powers on again behind the same symlink with its frame counter and clock
restarted.  The daemon must say "disconnected" within 1 s, reopen the link, resume within
1 s of the device streaming again, continue the sample indices with no duplicate or
invented sample, and report the outage's time span as a ``gap``.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from nirsd.cli.testing import Collector, DaemonProcess
from nirsd.drivers.sim.emulator import Emulator
from nirsd.drivers.sim.heg_emulator import HegEmulator

RATE = 50.0
OUTAGE_S = 1.5


def config(driver: str, port: str) -> str:
    wl = "[660, 880]" if driver == "heg" else "[760, 850]"
    return (
        f'[device]\ndriver = "{driver}"\nport = "{port}"\nrate_hz = {RATE}\n'
        f"reconnect_s = 0.2\n[optics]\nwavelengths_nm = {wl}\n"
        "[baseline]\nseconds = 0.5\n[status]\ninterval_s = 0.5\n"
    )


def samples_after(c: Collector, t0: float) -> int:
    """Raw samples that arrived at monotonic time ``t0`` or later."""
    return sum(1 for when in c.received["raw"].values() if when >= t0)


def events(c: Collector, name: str, after: float = 0.0) -> list[tuple[float, dict]]:
    """(arrival, header) of the status events ``name`` that came at ``after`` or later."""
    return [(w, h) for w, h in c.timed("status", after) if h.get("event") == name]


@pytest.mark.parametrize("driver", ["nirsb", "heg"])
def test_unplug_replug(driver, tmp_path):
    link = str(tmp_path / "probe")
    emu = (
        Emulator(n_channels=2, rate_hz=RATE, link=link)
        if driver == "nirsb"
        else HegEmulator(rate_hz=RATE, link=link)
    )
    emu.start()
    proc = DaemonProcess(tmp_path, config(driver, link))
    try:
        proc.start(timeout=20)
        with proc.subscriber(("raw", "status")) as sub:
            c = Collector(sub)
            t_sub = time.monotonic()
            c.until(lambda: samples_after(c, t_sub) >= 25, 10, "samples before unplug")
            emu.unplug(OUTAGE_S)
            c.until(
                lambda: (
                    emu.unplugged_at is not None and events(c, "disconnected", emu.unplugged_at)
                ),
                3,
                "disconnected",
            )
            disconnected_after = (
                events(c, "disconnected", emu.unplugged_at)[0][0] - emu.unplugged_at
            )
            c.until(
                lambda: (
                    emu.replugged_at is not None
                    and emu.streaming
                    and samples_after(c, emu.stream_t0) >= 25
                ),
                10,
                "resumed samples",
            )
            first_after = min(w for w in c.received["raw"].values() if w >= emu.stream_t0)
            resumed_after = first_after - emu.stream_t0
            reopened_after = emu.stream_t0 - emu.replugged_at
            c.until(lambda: events(c, "gap"), 3, "gap event")
            status = proc.control().status()
        assert proc.proc.poll() is None  # the daemon kept running
    finally:
        proc.stop()
        emu.stop()
    assert emu.error is None
    print(
        f"\n{driver}: disconnected after {disconnected_after:.3f} s, reopened "
        f"{reopened_after:.3f} s after replug, resumed {resumed_after:.3f} s after the "
        "device streamed again"
    )
    assert disconnected_after < 1.0
    assert resumed_after < 1.0
    # sample indices continue: no duplicate, no hole, no invented value
    seqs = np.array(list(c.raw))  # in the order they arrived
    assert c.repeated["raw"] == 0
    assert np.array_equal(seqs, np.arange(seqs[0], seqs[0] + len(seqs)))
    raw = np.stack([c.raw[s] for s in seqs])
    # every published sample is one the device produced, in the device's order
    k0 = next(
        k for k in range(emu.samples_sent) if np.array_equal(emu.physiology.counts([k])[0], raw[0])
    )
    produced = emu.physiology.counts(np.arange(k0, emu.samples_sent)).astype(np.float64)
    matches = [int(np.flatnonzero((produced == r).all(axis=(1, 2)))[0]) for r in raw]
    assert matches == sorted(set(matches))  # strictly increasing: no duplicates
    assert len(matches) == len(raw)
    # the gap: between the sample indices where the outage happened, its span in time
    ((_, gap),) = events(c, "gap")
    assert gap["cause"] == "disconnect" and gap["lost_samples_estimated"] is True
    assert OUTAGE_S <= gap["span_s"] < OUTAGE_S + 2.0
    # what a device streaming on at RATE would have sent between the samples around it
    assert abs(gap["lost_samples"] - (round(gap["span_s"] * RATE) - 1)) <= 1
    assert gap["rate_hz"] == pytest.approx(RATE, rel=0.02)
    t = np.array([c.t[s] for s in seqs])
    i = gap["seq"] - seqs[0]
    assert t[i] - t[i - 1] == pytest.approx(gap["span_s"], abs=1e-3)
    assert np.all(np.diff(t) > 0)  # host time keeps going forward across the restart
    assert abs(t[-1] - time.time()) < 1.0  # the device clock restart did not skew it
    counters = status["counters"]
    assert counters["reconnects"] == 1 and counters["lost_frames"] == 0
    assert status["gaps"][-1]["cause"] == "disconnect"
