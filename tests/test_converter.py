"""Streaming modified Beer-Lambert converter."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from nirsd.core.errors import ConfigError
from nirsd.core.extinction import extinction_matrix
from nirsd.daemon.converter import (
    BASELINE_PENDING,
    LOW_LIGHT,
    POOR_SIGNAL,
    SATURATED,
    Converter,
    mbll_matrices,
)

# DESIGN.md cross-check vector: 760/850 nm, d = 3 cm, DPF 6, I/I0 = 0.95 and 0.98.
XCHECK_HBO, XCHECK_HBR = -0.081698, 0.830117
MNE_HBO, MNE_HBR = -0.08168, 0.82997


def _xcheck_intensity() -> np.ndarray:
    return np.array([[[0.95, 0.98]]])


def test_cross_check_vector_exact_ln10():
    conv = Converter([760, 850], [3.0], 6.0)
    conv.set_baseline([[1.0, 1.0]])
    hb, q = conv.process(_xcheck_intensity())
    assert hb.shape == (1, 3, 1) and hb.dtype == np.float64
    assert q.dtype == np.uint8 and q[0, 0] == 0
    # The published figures are rounded to 6 decimals (half a unit: 5e-7 µM) ...
    assert hb[0, 0, 0] == pytest.approx(XCHECK_HBO, abs=5e-7)
    assert hb[0, 1, 0] == pytest.approx(XCHECK_HBR, abs=5e-7)
    # ... and an independent 2x2 solution (Cramer's rule, exact ln 10) agrees to 1e-6 rel.
    eps = extinction_matrix([760, 850])
    a = math.log(10) * eps * 3.0 * 6.0
    od = -np.log([0.95, 0.98])
    det = a[0, 0] * a[1, 1] - a[0, 1] * a[1, 0]
    hbo = (od[0] * a[1, 1] - a[0, 1] * od[1]) / det * 1e6
    hbr = (a[0, 0] * od[1] - a[1, 0] * od[0]) / det * 1e6
    assert hb[0, 0, 0] == pytest.approx(hbo, rel=1e-6)
    assert hb[0, 1, 0] == pytest.approx(hbr, rel=1e-6)
    assert hb[0, 2, 0] == pytest.approx(hbo + hbr, rel=1e-6)
    np.testing.assert_allclose(conv.last_od[0, 0], -np.log([0.95, 0.98]), rtol=1e-15)


def test_cross_check_vector_mne_rounding():
    # Same matrices with ln 10 rounded to 2.303 as MNE does.
    _, P = mbll_matrices([760, 850], [3.0], 6.0, ln10=2.303)
    dc = P[0] @ (-np.log([0.95, 0.98]))
    assert dc[0] == pytest.approx(MNE_HBO, rel=2e-4)
    assert dc[1] == pytest.approx(MNE_HBR, rel=2e-4)
    # ... and the relative difference to exact ln 10 is 1 − 2.303/ln 10 ≈ 1.8e-4.
    _, P_exact = mbll_matrices([760, 850], [3.0], 6.0)
    exact = P_exact[0] @ (-np.log([0.95, 0.98]))
    np.testing.assert_allclose(dc / exact - 1, math.log(10) / 2.303 - 1, rtol=1e-9)
    assert abs(dc[1] / exact[1] - 1) == pytest.approx(1.8e-4, abs=0.1e-4)


def test_against_mne_beer_lambert_law():
    mne = pytest.importorskip("mne")
    from mne.preprocessing.nirs import beer_lambert_law, optical_density

    names = ["S1_D1 760", "S1_D1 850"]
    info = mne.create_info(names, sfreq=10.0, ch_types="fnirs_cw_amplitude")
    for ch, wl in zip(info["chs"], (760.0, 850.0)):
        ch["loc"][3:6] = [0.0, 0.0, 0.0]  # source (m)
        ch["loc"][6:9] = [0.03, 0.0, 0.0]  # detector, 3 cm away
        ch["loc"][0:3] = [0.015, 0.0, 0.0]  # channel midpoint
        ch["loc"][9] = wl
    rng = np.random.default_rng(1)
    data = 1.0 + 0.05 * rng.standard_normal((2, 20))
    raw = mne.io.RawArray(data, info, verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hb_raw = beer_lambert_law(optical_density(raw, verbose=False), ppf=6.0)
    mne_hb = hb_raw.get_data() * 1e6  # M -> µM
    conv = Converter([760, 850], [3.0], 6.0)
    conv.set_baseline(data.mean(axis=1)[None, :])  # MNE's I0 is the recording mean
    hb, _ = conv.process(data.T[:, None, :])
    np.testing.assert_allclose(hb[:, 0, 0], mne_hb[0], rtol=2e-4, atol=1e-9)
    np.testing.assert_allclose(hb[:, 1, 0], mne_hb[1], rtol=2e-4, atol=1e-9)


def test_zero_change_is_exactly_zero():
    conv = Converter([760, 850], [3.0, 3.5], 6.0)
    i0 = np.array([[1000.0, 2000.0], [1500.0, 2500.0]])
    conv.set_baseline(i0)
    hb, q = conv.process(np.repeat(i0[None], 5, axis=0))
    assert np.all(hb == 0.0) and np.all(q == 0)


@pytest.mark.parametrize("wavelengths", [[760, 850], [730, 805, 850], [690, 760, 830, 890]])
def test_forward_model_recovery(wavelengths):
    rng = np.random.default_rng(len(wavelengths))
    n, n_ch, n_wl = 50, 4, len(wavelengths)
    d = np.array([2.5, 3.0, 3.5, 4.0])
    dpf = rng.uniform(4.0, 7.0, (n_ch, n_wl))
    eps = extinction_matrix(wavelengths)
    dc_um = rng.normal(0.0, 2.0, (n, n_ch, 2))  # ground truth, µM
    od = math.log(10) * np.einsum("wj,cw,ncj->ncw", eps, d[:, None] * dpf, dc_um * 1e-6)
    i0 = rng.uniform(500.0, 5000.0, (n_ch, n_wl))
    intensity = i0 * np.exp(-od)
    conv = Converter(wavelengths, d, dpf)
    conv.set_baseline(i0)
    hb, q = conv.process(intensity)
    assert np.all(q == 0)
    np.testing.assert_allclose(hb[:, 0, :], dc_um[:, :, 0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(hb[:, 1, :], dc_um[:, :, 1], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(hb[:, 2, :], dc_um.sum(axis=2), rtol=1e-9, atol=1e-12)


def test_provisional_baseline_and_pending_bits():
    B = 10
    rng = np.random.default_rng(2)
    intensity = rng.uniform(900.0, 1100.0, (25, 3, 2))
    conv = Converter([760, 850], [3.0, 3.0, 3.0], 6.0, baseline_samples=B)
    assert not conv.baseline_ready
    hb, q = conv.process(intensity[:1])
    assert np.all(hb == 0.0)
    assert np.all(q == BASELINE_PENDING)
    hb, q = conv.process(intensity[1:])
    assert np.all(np.isfinite(hb))
    assert np.all(q[: B - 1] == BASELINE_PENDING)  # samples 1..B-1 of the stream
    assert np.all(q[B - 1 :] == 0)
    assert conv.baseline_ready
    np.testing.assert_allclose(conv.i0, intensity[:B].mean(axis=0), rtol=1e-14)
    # Provisional I0 at sample t is the running mean of samples 0..t.
    run = np.cumsum(intensity[:B], axis=0) / np.arange(1, B + 1)[:, None, None]
    od5 = np.log(run[5]) - np.log(intensity[5])
    np.testing.assert_allclose(conv.pinv @ od5[:, :, None], hb[4, :2, :].T[:, :, None], rtol=1e-12)
    # After the window the frozen mean is used.
    od20 = np.log(intensity[:B].mean(axis=0)) - np.log(intensity[20])
    np.testing.assert_allclose((conv.pinv @ od20[:, :, None])[:, :, 0], hb[19, :2, :].T, rtol=1e-12)


def test_rebaseline_takes_effect_from_next_sample():
    conv = Converter([760, 850], [3.0], 6.0, baseline_samples=3)
    conv.process(np.full((5, 1, 2), 1000.0))
    assert conv.baseline_ready
    hb, _ = conv.process(np.full((1, 1, 2), 900.0))
    assert np.all(hb[0, :2] != 0)
    conv.rebaseline()
    assert not conv.baseline_ready
    hb, q = conv.process(np.full((4, 1, 2), 900.0))
    assert np.all(hb == 0.0)
    assert list(q[:, 0]) == [BASELINE_PENDING] * 3 + [0]
    np.testing.assert_allclose(conv.i0, [[900.0, 900.0]])


def test_bad_light_gives_nan_and_bits_and_is_excluded_from_baseline():
    conv = Converter(
        [760, 850], [3.0] * 4, 6.0, baseline_samples=4, saturation_level=4000.0, light_floor=10.0
    )
    I = np.full((6, 4, 2), 1000.0)
    I[:, 0] = [1000.0, 1200.0]  # channel 0 always good
    I[1, 1, 0] = 0.0  # ≤ 0
    I[2, 1, 1] = -5.0
    I[1, 2, 1] = np.nan  # non-finite
    I[3, 2, 0] = np.inf
    I[2, 3, 0] = 4000.0  # saturated (at the level)
    I[4, 3, 1] = 5.0  # below floor
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from log of bad light
        hb, q = conv.process(I)
    bad = {
        (1, 1): LOW_LIGHT,
        (2, 1): LOW_LIGHT,
        (1, 2): LOW_LIGHT,
        (3, 2): LOW_LIGHT,
        (2, 3): SATURATED,
        (4, 3): LOW_LIGHT,
    }
    for t in range(6):
        for c in range(4):
            bits = bad.get((t, c), 0)
            assert q[t, c] & (SATURATED | LOW_LIGHT) == bits, (t, c)
            assert np.all(np.isnan(hb[t, :, c])) == bool(bits), (t, c)
    # Baseline mean per channel over its first 4 valid samples only: all equal 1000.
    np.testing.assert_allclose(conv.i0[1:], 1000.0)
    # Channel 0's window completes with sample 3; channel 1 had 2 bad samples, so its
    # window completes with sample 5 (the completing sample is the last pending one).
    assert q[3, 0] & BASELINE_PENDING and not q[4, 0] & BASELINE_PENDING
    assert q[5, 1] & BASELINE_PENDING
    assert conv.baseline_ready
    assert np.all(np.isfinite(hb[5]))


def test_first_samples_dark_then_light():
    conv = Converter([760, 850], [3.0], 6.0, baseline_samples=2)
    hb, q = conv.process(np.array([[[0.0, 0.0]], [[500.0, 600.0]], [[550.0, 650.0]]]))
    assert np.all(np.isnan(hb[0])) and q[0, 0] == LOW_LIGHT | BASELINE_PENDING
    assert np.all(hb[1] == 0.0)
    np.testing.assert_allclose(conv.i0, [[525.0, 625.0]])


def test_device_saturation_flag():
    conv = Converter([760, 850], [3.0, 3.0], 6.0, baseline_samples=2)
    I = np.full((4, 2, 2), 1000.0)
    I[1] = 5000.0  # flagged sample: not in the baseline
    hb, q = conv.process(I, saturated=np.array([False, True, False, False]))
    assert np.all(q[1] & SATURATED) and not np.any(q[[0, 2, 3]] & SATURATED)
    assert np.all(np.isfinite(hb[1]))  # hb still computed for flagged samples
    np.testing.assert_allclose(conv.i0, 1000.0)


def test_block_equals_one_by_one():
    rng = np.random.default_rng(3)
    I = rng.uniform(800.0, 1200.0, (40, 5, 3))
    I[rng.random((40, 5)) < 0.1, 0] = 0.0
    sat = rng.random(40) < 0.1
    kw = dict(
        wavelengths_nm=[760, 810, 850],
        distances_cm=[3.0, 3.2, 3.4, 3.6, 3.8],
        dpf=[6.0, 5.8, 5.5],
        baseline_samples=7,
        saturation_level=1190.0,
    )
    block = Converter(**kw)
    hb_b, q_b = block.process(I, saturated=sat)
    single = Converter(**kw)
    parts = [single.process(I[t : t + 1], saturated=sat[t : t + 1]) for t in range(40)]
    hb_s = np.concatenate([p[0] for p in parts])
    q_s = np.concatenate([p[1] for p in parts])
    np.testing.assert_array_equal(q_b, q_s)
    # Baseline state and bits are identical; hb may differ in the last bit because the
    # batched contraction may sum in a different order for different block sizes.
    np.testing.assert_allclose(hb_b, hb_s, rtol=1e-12, atol=1e-13)
    np.testing.assert_array_equal(np.isnan(hb_b), np.isnan(hb_s))
    np.testing.assert_array_equal(block.i0, single.i0)


def test_config_errors():
    with pytest.raises(ConfigError, match="2 wavelengths"):
        Converter([760], [3.0], 6.0)
    with pytest.raises(ConfigError, match="DPF"):
        Converter([760, 850], [3.0, 3.0, 3.0], np.ones((2, 2)))
    with pytest.raises(ConfigError, match="distances"):
        Converter([760, 850], [0.0], 6.0)
    with pytest.raises(ConfigError, match="baseline"):
        Converter([760, 850], [3.0], 6.0, baseline_samples=0)
    conv = Converter([760, 850], [3.0], 6.0)
    with pytest.raises(ConfigError):
        conv.set_baseline([[1.0, -1.0]])
    with pytest.raises(ValueError):
        conv.process(np.ones((3, 2, 2)))


def test_bit_values():
    assert (SATURATED, LOW_LIGHT, BASELINE_PENDING, POOR_SIGNAL) == (1, 2, 4, 8)
