"""Signal quality and tissue saturation through the real pipeline (pty -> daemon)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nirsd.cli.testing import DaemonProcess, device_config, wait_for
from nirsd.core.extinction import extinction_matrix
from nirsd.daemon.converter import LOW_LIGHT, POOR_SIGNAL, SATURATED
from nirsd.daemon.srs import H_PER_NM
from nirsd.drivers.sim.emulator import Emulator
from nirsd.drivers.sim.physiology import Physiology

RATE = 20.0


def _run(tmp_path, phys, n_ch, wavelengths, extra):
    emu = Emulator(n_channels=n_ch, rate_hz=RATE, wavelengths_nm=wavelengths, physiology=phys)
    port = emu.start()
    daemon = DaemonProcess(tmp_path, device_config(port, baseline_s=0.5, extra=extra))
    return emu, daemon


def test_saturated_dark_and_noise_only_channels_are_flagged(tmp_path):
    phys = Physiology(5, (760.0, 850.0), RATE, noise=2e-3, seed=11)
    phys.i_ref_cw[0] = 3.0e6  # above the configured saturation level
    phys.i_ref_cw[1] = 0.0  # no light at all
    phys._gain[0, 2] = 0.0  # channel 2: no cardiac pulse, only noise and drift
    emu, daemon = _run(
        tmp_path,
        phys,
        5,
        (760.0, 850.0),
        "[optics]\nsaturation_level = 2500000\nlight_floor = 100\n",
    )
    try:
        daemon.start()
        # the quality window needs a few seconds of data before it judges
        status = wait_for(lambda: _judged(daemon), 30, interval=0.2, what="quality verdict")
        q = status["quality"]
        assert q["poor"] == [True, True, True, False, False], q
        assert q["saturated_fraction"][0] == 1.0 and q["low_light_fraction"][1] == 1.0
        assert q["pulsatility"][3] > 0.5 and q["pulsatility"][4] > 0.5
        assert q["pulsatility"][2] < 0.3
        with daemon.subscriber(["hb"]) as sub:
            msg = wait_for(lambda: _poor_flagged(sub), 10, what="POOR_SIGNAL in hb")
        quality = np.frombuffer(msg.header["quality"], np.uint8).reshape(msg.n, -1)
        assert np.all(quality[:, 0] & SATURATED) and np.all(quality[:, 1] & LOW_LIGHT)
        assert np.all(np.isnan(msg.array[:, :, 1])), "dark channel gives NaN, not a number"
        assert np.all(np.isfinite(msg.array[:, :, 3:]))
        assert np.all(quality[:, 2] & POOR_SIGNAL) and not np.any(quality[:, 3:])
    finally:
        assert daemon.stop() == 0
        emu.stop()


def _judged(daemon):
    status = daemon.control().status()
    q = status.get("quality")
    return status if q and q["window_s"] >= 8.0 else None


def _poor_flagged(sub):
    msg = sub.recv(0.5)
    if msg is None:
        return None
    q = np.frombuffer(msg.header["quality"], np.uint8).reshape(msg.n, -1)
    return msg if np.all(q[:, 2] & POOR_SIGNAL) else None


def test_multi_distance_probe_publishes_tissue_saturation(tmp_path):
    wl = (775.0, 810.0, 850.0)
    rho = np.array([3.5, 4.0, 4.5])  # cm from one source
    so2, hbt = 0.60, 80e-6
    eps = extinction_matrix(wl)
    mua = math.log(10) * eps @ np.array([so2 * hbt, (1 - so2) * hbt])
    musp = 10.0 / (1.0 - H_PER_NM * 800.0) * (1.0 - H_PER_NM * np.array(wl))
    mueff = np.sqrt(3.0 * mua * musp)
    # far-distance diffusion reflectance, R ∝ exp(−μeff ρ)/ρ²: the SRS model
    reflect = np.exp(-rho[:, None] * mueff[None, :]) / rho[:, None] ** 2
    phys = Physiology(3, wl, RATE, noise=0.0, seed=1)
    phys._gain[:] = 0.0  # a static phantom
    phys.i_ref_cw[:] = 2.0e9 * reflect / reflect.max()
    channels = "".join(
        f"[[channel]]\nindex = {i}\nsource = 1\ndetector = {i + 1}\ndistance_mm = {rho[i] * 10}\n"
        for i in range(3)
    )
    emu, daemon = _run(tmp_path, phys, 3, wl, channels)
    try:
        daemon.start()
        info = daemon.control().info()
        assert info["tsi_groups"] == [
            {"source": 1, "channels": [0, 1, 2], "distances_mm": [35.0, 40.0, 45.0]}
        ]
        with daemon.subscriber(["hb"]) as sub:
            msg = wait_for(lambda: sub.recv(0.5), 10, what="hb with tsi")
        tsi = np.asarray(msg.header["tsi"])
        assert tsi.shape == (msg.n, 1)
        assert tsi[0, 0] == pytest.approx(100 * so2, abs=0.1)
    finally:
        assert daemon.stop() == 0
        emu.stop()
