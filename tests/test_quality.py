"""Live per-channel signal quality."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from nirsd.daemon.converter import LOW_LIGHT, POOR_SIGNAL, SATURATED
from nirsd.daemon.quality import QualityMonitor

FS = 10.0


def _signals(n_s: float = 20.0, seed: int = 0):
    """Channels: 0-2 good (1.2 Hz pulse + modest noise + drift), 3 saturated, 4 dark,
    5 noise only."""
    rng = np.random.default_rng(seed)
    n = int(n_s * FS)
    t = np.arange(n) / FS
    x = np.empty((n, 6))
    q = np.zeros((n, 6), dtype=np.uint8)
    for c in range(3):
        x[:, c] = (
            0.3 * np.sin(2 * np.pi * 1.2 * t + c)
            + 0.05 * rng.standard_normal(n)
            + 0.5 * np.sin(2 * np.pi * 0.1 * t)
            + 0.02 * t
        )
    x[:, 3] = np.nan
    q[:, 3] = SATURATED
    x[:, 4] = np.nan
    q[:, 4] = LOW_LIGHT
    x[:, 5] = 0.1 * rng.standard_normal(n)
    return x, q


@pytest.mark.parametrize("block", [1, 7, 100, 500])
def test_flags_bad_channels_not_good_ones(block):
    x, q = _signals()
    mon = QualityMonitor(6, FS, window_s=10.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for i in range(0, len(x), block):
            mon.update(x[i : i + block], q[i : i + block])
        s = mon.summary()
    assert s["poor"] == [False, False, False, True, True, True]
    assert s["window_s"] == pytest.approx(10.0)
    assert all(p > 0.8 for p in s["pulsatility"][:3])
    assert s["pulsatility"][3] is None and s["pulsatility"][4] is None
    assert s["pulsatility"][5] < 0.3
    assert s["saturated_fraction"] == [0, 0, 0, 1, 0, 0]
    assert s["low_light_fraction"] == [0, 0, 0, 0, 1, 0]
    np.testing.assert_array_equal(mon.flags(), [0, 0, 0, POOR_SIGNAL, POOR_SIGNAL, POOR_SIGNAL])


def test_window_slides():
    x, q = _signals(30.0)
    x[:150, 0] = np.nan  # bad during the first 15 s only
    q[:150, 0] = LOW_LIGHT
    mon = QualityMonitor(6, FS, window_s=10.0)
    mon.update(x[:150], q[:150])
    assert mon.summary()["poor"][0]
    mon.update(x[150:], q[150:])
    s = mon.summary()
    assert not s["poor"][0] and s["low_light_fraction"][0] == 0


def test_occasional_bad_samples_tolerated_up_to_limit():
    x, q = _signals()
    q[::50, 0] = SATURATED  # 2 % of the window
    q[::10, 1] = LOW_LIGHT  # 10 %
    mon = QualityMonitor(6, FS)
    mon.update(x, q)
    poor = mon.summary()["poor"]
    assert not poor[0] and poor[1]


def test_empty_and_short_windows_are_poor():
    mon = QualityMonitor(2, FS)
    assert mon.summary()["poor"] == [True, True]
    mon.update(np.zeros((5, 2)))
    assert mon.summary()["pulsatility"] == [None, None]
    with pytest.raises(ValueError):
        mon.update(np.zeros((5, 3)))


@pytest.mark.parametrize("block", [1, 13, 1000])
def test_fast_probe_is_judged_on_a_decimated_window(block):
    fs = 1000.0
    rng = np.random.default_rng(2)
    n = int(12 * fs)
    t = np.arange(n) / fs
    x = np.empty((n, 3))
    x[:, 0] = 0.3 * np.sin(2 * np.pi * 1.2 * t) + 0.05 * rng.standard_normal(n)
    x[:, 1] = 0.1 * rng.standard_normal(n)  # noise only
    x[:, 2] = x[:, 0]
    q = np.zeros((n, 3), np.uint8)
    q[: n // 2, 2] = SATURATED  # saturated half the time
    mon = QualityMonitor(3, fs, window_s=10.0)
    for i in range(0, n, block):
        mon.update(x[i : i + block], q[i : i + block])
    s = mon.summary()
    assert mon._x.shape[0] == 200, "10 s kept at 20 Hz, not 10,000 rows"
    assert s["window_s"] == pytest.approx(10.0)
    assert s["pulsatility"][0] > 0.8 and s["pulsatility"][1] < 0.3
    assert s["poor"] == [False, True, True]
    assert s["saturated_fraction"][2] == pytest.approx(0.4, abs=0.01)  # 4 of the last 10 s


def test_big_probe_assesses_a_share_of_channels_per_call():
    n_ch, fs = 1200, 10.0
    t = np.arange(120) / fs
    x = np.tile(0.3 * np.sin(2 * np.pi * 1.2 * t)[:, None], (1, n_ch))
    x[:, 1:n_ch:2] = np.random.default_rng(4).normal(0, 0.1, (120, n_ch // 2))
    mon = QualityMonitor(n_ch, fs)
    mon.update(x)
    full = mon.pulsatility()  # every channel at once, for reference
    first = mon.summary()
    np.testing.assert_allclose(
        np.array(first["pulsatility"][:512], dtype=float), full[:512], atol=1e-4
    )
    assert all(p is None for p in first["pulsatility"][512:])  # not assessed yet
    assert all(first["poor"][512:])  # unknown counts as poor
    mon.summary()
    third = mon.summary()
    np.testing.assert_allclose(np.array(third["pulsatility"], dtype=float), full, atol=1e-4)
    assert sum(third["poor"][0::2]) == 0 and sum(third["poor"][1::2]) > 550
