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

from nirsd.cli.testing import DaemonProcess
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


class Collector:
    """Everything published on raw and status, with the monotonic time of arrival."""

    def __init__(self, sub) -> None:
        self.sub = sub
        self.raw: list[tuple[float, int, np.ndarray, np.ndarray]] = []  # (arrival, seq, raw, t)
        self.status: list[tuple[float, dict]] = []

    def pump_until(self, cond, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{what} not within {timeout} s")
            msg = self.sub.recv(timeout_s=min(left, 0.1))
            if msg is None:
                continue
            now = time.monotonic()
            if msg.topic == "raw":
                self.raw.append(
                    (
                        now,
                        msg.header["seq"],
                        msg.array.copy(),
                        np.asarray(msg.header["t"], dtype=np.float64),
                    )
                )
            else:
                self.status.append((now, msg.header))

    def samples_after(self, t0: float) -> int:
        return sum(len(a) for when, _, a, _ in self.raw if when >= t0)

    def events(self, name: str, after: float = 0.0) -> list[tuple[float, dict]]:
        return [(w, h) for w, h in self.status if h.get("event") == name and w >= after]


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
            c.pump_until(lambda: c.samples_after(t_sub) >= 25, 10, "samples before unplug")
            emu.unplug(OUTAGE_S)
            c.pump_until(
                lambda: emu.unplugged_at is not None and c.events("disconnected", emu.unplugged_at),
                3,
                "disconnected",
            )
            disconnected_after = c.events("disconnected", emu.unplugged_at)[0][0] - emu.unplugged_at
            c.pump_until(
                lambda: (
                    emu.replugged_at is not None
                    and emu.streaming
                    and c.samples_after(emu.stream_t0) >= 25
                ),
                10,
                "resumed samples",
            )
            first_after = min(w for w, _, _, _ in c.raw if w >= emu.stream_t0)
            resumed_after = first_after - emu.stream_t0
            reopened_after = emu.stream_t0 - emu.replugged_at
            c.pump_until(lambda: c.events("gap"), 3, "gap event")
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
    seqs = np.concatenate([s + np.arange(len(a)) for _, s, a, _ in c.raw])
    assert np.array_equal(seqs, np.arange(seqs[0], seqs[0] + len(seqs)))
    raw = np.concatenate([a for _, _, a, _ in c.raw])
    # every published sample is one the device produced, in the device's order
    k0 = next(
        k for k in range(emu.samples_sent) if np.array_equal(emu.physiology.counts([k])[0], raw[0])
    )
    produced = emu.physiology.counts(np.arange(k0, emu.samples_sent)).astype(np.float64)
    matches = [int(np.flatnonzero((produced == r).all(axis=(1, 2)))[0]) for r in raw]
    assert matches == sorted(set(matches))  # strictly increasing: no duplicates
    assert len(matches) == len(raw)
    # the gap: between the sample indices where the outage happened, its span in time
    ((_, gap),) = c.events("gap")
    assert gap["cause"] == "disconnect" and gap["lost_samples_estimated"] is True
    assert OUTAGE_S <= gap["span_s"] < OUTAGE_S + 2.0
    # what a device streaming on at RATE would have sent between the samples around it
    assert abs(gap["lost_samples"] - (round(gap["span_s"] * RATE) - 1)) <= 1
    assert gap["rate_hz"] == pytest.approx(RATE, rel=0.02)
    t = np.concatenate([tt for _, _, _, tt in c.raw])
    i = gap["seq"] - seqs[0]
    assert t[i] - t[i - 1] == pytest.approx(gap["span_s"], abs=1e-3)
    assert np.all(np.diff(t) > 0)  # host time keeps going forward across the restart
    assert abs(t[-1] - time.time()) < 1.0  # the device clock restart did not skew it
    counters = status["counters"]
    assert counters["reconnects"] == 1 and counters["lost_frames"] == 0
    assert status["gaps"][-1]["cause"] == "disconnect"
