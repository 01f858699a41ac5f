"""End to end: emulator on a real pty -> `nirsd run` subprocess -> ZeroMQ subscribers."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest

from nirsd.cli.testing import DaemonProcess, device_config, simulated_config, wait_for
from nirsd.daemon.converter import BASELINE_PENDING
from nirsd.drivers.sim.emulator import Emulator
from nirsd.drivers.sim.physiology import Physiology

RATE = 20.0
N_CH = 4


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    """A noise-free NIRSB emulator whose truth is known, and a daemon reading it: one for
    the module (its tests only subscribe, fetch history and tail; the 600 s ring keeps
    sample 0 for the backfill test)."""
    phys = Physiology(N_CH, (760.0, 850.0), RATE, distance_cm=3.0, dpf=6.0, noise=0.0, seed=3)
    emu = Emulator(n_channels=N_CH, rate_hz=RATE, physiology=phys, device_id="e2e")
    port = emu.start()
    daemon = DaemonProcess(tmp_path_factory.mktemp("e2e"), device_config(port, baseline_s=1.0))
    try:
        daemon.start()
        yield emu, phys, daemon
    finally:
        code = daemon.stop()
        emu.stop()
        assert code == 0, daemon.log()


def _collect(sub, n_samples: int, timeout: float = 20.0):
    """hb samples taken after the baseline window closed (quality bit 4 clear)."""
    seqs, t_dev, hb = [], [], []

    def more():
        msg = sub.recv(0.5)
        if msg is not None and msg.topic == "hb":
            quality = np.frombuffer(msg.header["quality"], np.uint8).reshape(msg.n, -1)
            done = ~np.any(quality & BASELINE_PENDING, axis=1)
            seqs.extend(np.arange(msg.seq, msg.seq + msg.n)[done])
            t_dev.extend(np.asarray(msg.header["t_dev"])[done])
            hb.append(msg.array[done])
        return len(seqs) >= n_samples

    wait_for(more, timeout, interval=0, what=f"{n_samples} hb samples")
    return np.array(seqs), np.array(t_dev), np.concatenate(hb)


def test_live_hb_matches_the_emulator_truth(emulated):
    emu, phys, daemon = emulated
    with daemon.subscriber(["hb"]) as sub:
        seqs, t_dev, hb = _collect(sub, 60)
    assert np.all(np.diff(seqs) == 1), "seq must be consecutive"
    k = np.rint(t_dev * RATE).astype(int)  # device time is k / rate exactly
    assert np.all(np.diff(k) == 1)
    truth = phys.hb_truth(k)  # (n, 2, n_ch) µM vs the reference
    diff = hb[:, :2, :] - truth
    # the daemon's I0 is its baseline mean, so the difference is one constant per channel;
    # anything else is conversion error (i32 quantisation of ~1e6 counts: ~1e-5 µM)
    assert np.max(np.std(diff, axis=0)) < 2e-4
    assert np.max(np.abs(truth - truth.mean(0))) > 0.2, "the signal must actually vary"
    np.testing.assert_allclose(hb[:, 2], hb[:, 0] + hb[:, 1], rtol=0, atol=1e-12)


def test_history_backfill_joins_live_without_gap_or_duplicate(emulated):
    emu, phys, daemon = emulated
    wait_for(lambda: daemon.control().status()["samples"] >= 40, 20, what="40 samples")
    with daemon.subscriber(["hb"]) as sub:
        seqs = []
        for msg in sub.backfilled(seconds=1000):
            seqs.extend(range(msg.seq, msg.seq + msg.n))
            if len(seqs) >= 80:
                break
    assert seqs[0] == 0, "backfill starts at the first sample the daemon holds"
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_tail_json_prints_the_contract_keys(emulated):
    emu, phys, daemon = emulated
    out = daemon.cli("tail", "--topic", "hb", "--json", "-n", "5", check=True).stdout
    lines = [json.loads(x) for x in out.splitlines()]
    assert len(lines) == 5
    for line in lines:
        assert {"seq", "t", "epoch", "hbo", "hbr", "hbt"} <= set(line)
        assert len(line["hbo"]) == N_CH and all(isinstance(v, float) for v in line["hbo"])
        assert abs(line["hbt"][0] - line["hbo"][0] - line["hbr"][0]) < 1e-9
        assert line["epoch"] is None
    assert [x["seq"] for x in lines] == list(range(lines[0]["seq"], lines[0]["seq"] + 5))
    raw = daemon.cli("tail", "--topic", "raw", "--json", "-n", "3", check=True).stdout
    first = json.loads(raw.splitlines()[0])
    k = round(first["t_dev"] * RATE)
    assert first["intensity"] == phys.counts(np.array([k]))[0].astype(float).tolist()


def test_sigint_stops_cleanly(tmp_path):
    daemon = DaemonProcess(tmp_path, simulated_config()).start()
    code = daemon.stop(signal.SIGINT)
    assert code == 0
    log = daemon.log()
    assert "Traceback" not in log
    assert not (daemon.runtime / "data").exists() and not (daemon.runtime / "control").exists()


def test_missing_serial_port_is_a_clear_error_not_a_traceback(tmp_path):
    daemon = DaemonProcess(tmp_path, device_config(str(tmp_path / "ttyNOPE")))
    daemon.start(wait_streaming=False)
    try:
        status = wait_for(lambda: _status(daemon), 15, what="status reply")
        assert status["state"] == "disconnected"
        assert "ttyNOPE" in status["last_error"] and "does not exist" in status["last_error"]
        wait_for(lambda: "device_unavailable" in daemon.log(), 10, what="log line")
    finally:
        assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()


def _status(daemon):
    try:
        return daemon.control().status()
    except Exception:
        return None


def test_embedded_default_runs_without_config(tmp_path):
    daemon = DaemonProcess(tmp_path, None).start()
    try:
        info = daemon.control().info()
        assert info["n_channels"] == 8 and info["wavelengths_nm"] == [760.0, 850.0]
        assert info["driver"] == "nirsb" and info["port"].startswith("/dev/pts/")
    finally:
        assert daemon.stop() == 0
