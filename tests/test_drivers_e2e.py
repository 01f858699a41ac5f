"""Every driver end to end: emulator on a pty -> ``nirsd run`` -> ``nirsd tail --json``.

All parts are real: the emulator thread writes the protocol's bytes on a pseudo-terminal
(reached through a symlink, as a udev name would be), the daemon is a subprocess reading
it through pyserial, and ``nirsd tail`` is another subprocess subscribing over ZeroMQ.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from nirsd.cli.testing import DaemonProcess
from nirsd.drivers.sim.csv_emulator import DelimitedEmulator
from nirsd.drivers.sim.emulator import Emulator
from nirsd.drivers.sim.heg_emulator import HegEmulator

RATE = 50.0


def toml_value(v) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return repr(v)


def config(driver: str, port: str, wavelengths, options: dict | None = None) -> str:
    text = f'[device]\ndriver = "{driver}"\nport = "{port}"\nrate_hz = {RATE}\nreconnect_s = 0.1\n'
    if options:
        text += "[device.options]\n" + "".join(
            f"{k} = {toml_value(v)}\n" for k, v in options.items()
        )
    wl = ", ".join(f"{w:g}" for w in wavelengths)
    return (
        text + f"[optics]\nwavelengths_nm = [{wl}]\n[baseline]\nseconds = 0.5\n"
        "[status]\ninterval_s = 0.5\n"
    )


def make(driver: str, link: str):
    if driver == "nirsb":
        emu = Emulator(n_channels=4, rate_hz=RATE, link=link)
        return emu, None, emu.wavelengths_nm
    if driver == "heg":
        emu = HegEmulator(rate_hz=RATE, link=link)
        return emu, None, emu.wavelengths_nm
    emu = DelimitedEmulator(n_channels=3, rate_hz=RATE, link=link, delimiter=";")
    return emu, emu.options(), emu.wavelengths_nm


def tail(proc: DaemonProcess, topic: str, n: int) -> list[dict]:
    out = proc.cli(
        "tail",
        "--topic",
        topic,
        "--json",
        "-n",
        str(n),
        "--data",
        proc.endpoints.data,
        "--control",
        proc.endpoints.control,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


@pytest.mark.parametrize("driver", ["nirsb", "heg", "csv"])
def test_driver_end_to_end(driver, tmp_path):
    link = str(tmp_path / f"{driver}-port")
    emu, options, wavelengths = make(driver, link)
    emu.start()
    proc = DaemonProcess(tmp_path, config(driver, link, wavelengths, options))
    try:
        proc.start(timeout=20)
        raw = tail(proc, "raw", 20)
        hb = tail(proc, "hb", 5)
        info = proc.control().info()
        status = proc.control().status()
    finally:
        proc.stop()
        emu.stop()
    assert emu.error is None
    n_ch = emu.n_channels
    assert info["driver"] == driver
    # 20 consecutive samples, each exactly as the emulator produced it
    seqs = [line["seq"] for line in raw]
    assert seqs == list(range(seqs[0], seqs[0] + 20))
    got = np.array([line["intensity"] for line in raw], dtype=np.float64)
    assert got.shape == (20, n_ch, len(wavelengths))
    k0 = next(
        k for k in range(emu.samples_sent) if np.array_equal(emu.physiology.counts([k])[0], got[0])
    )
    assert np.array_equal(got, emu.physiology.counts(k0 + np.arange(20)))
    # host times advance with the sample rate; device times are published too
    t = np.array([line["t"] for line in raw])
    assert np.allclose(np.diff(t), 1 / RATE, atol=0.02)
    if driver != "csv" or options.get("time_unit"):
        t_dev = np.array([line["t_dev"] for line in raw])
        assert np.allclose(np.diff(t_dev), 1 / RATE, atol=1e-3)
    assert all(len(line["hbo"]) == n_ch and len(line["hbr"]) == n_ch for line in hb)
    assert status["counters"]["lost_frames"] == 0
    # a steady device clock: no restart, nothing ignored by the clock fit
    assert status["counters"]["clock_restarts"] == 0 == status["counters"]["clock_outliers"]


@pytest.mark.parametrize("driver", ["heg", "csv"])
def test_nirsd_simulate_into_nirsd_run(driver, tmp_path):
    """``nirsd simulate`` (a subprocess) serves the protocol behind --link, with faults."""
    import subprocess
    import sys

    from nirsd.cli.testing import wait_for

    link = tmp_path / "sim"
    options = None
    if driver == "csv":
        options = {"columns": ["time", "ch0:760", "ch0:850", "ch1:760", "ch1:850"], "header": True}
    proc = DaemonProcess(tmp_path, config(driver, str(link), (760, 850), options))
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nirsd.cli",
            "simulate",
            "--driver",
            driver,
            "--rate",
            str(RATE),
            "--channels",
            "2",
            "--wavelengths",
            "760,850",
            "--link",
            str(link),
            "--garbage-every",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(link.exists, 10, what="simulator link")
        proc.start(timeout=20)
        raw = tail(proc, "raw", 30)
        status = proc.control().status()
    finally:
        try:
            proc.stop()
        finally:
            sim.terminate()
            try:
                sim.wait(10)
            except subprocess.TimeoutExpired:
                sim.kill()
                sim.wait()
    n_ch = 1 if driver == "heg" else 2
    assert np.array(raw[0]["intensity"]).shape == (n_ch, 2)
    seqs = [line["seq"] for line in raw]
    assert seqs == list(range(seqs[0], seqs[0] + 30))
    assert status["counters"]["lines_skipped"] >= 1  # the cut first line, garbage bursts
    assert sim.returncode == 0


def test_nirsd_ports(tmp_path):
    import os
    import subprocess
    import sys

    from nirsd.drivers.ports import links_to

    master, slave = os.openpty()
    try:
        path = os.ttyname(slave)
        (tmp_path / "by-id").mkdir()
        (tmp_path / "by-id" / "usb-Acme_NIRS_0001-if00").symlink_to(path)
        (tmp_path / "by-id" / "other").symlink_to("/dev/null")
        assert links_to(path, [str(tmp_path / "by-id"), str(tmp_path / "missing")]) == [
            str(tmp_path / "by-id" / "usb-Acme_NIRS_0001-if00")
        ]
    finally:
        os.close(master)
        os.close(slave)
    out = subprocess.run(
        [sys.executable, "-m", "nirsd.cli", "ports", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    for line in out.stdout.splitlines():
        port = json.loads(line)
        assert {"device", "usb_id", "serial_number", "links"} <= set(port)
