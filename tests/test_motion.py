"""The motion-artifact detector (daemon/motion.py) on synthetic data with injected
spikes and steps: recall ≥ 0.9, false positives on clean data ≤ 1 % of samples."""

from __future__ import annotations

import numpy as np
import pytest

from nirsd.clients import report_testing as rt
from nirsd.daemon.motion import (
    SORTED_MEDIAN_MAX,
    MotionMonitor,
    MotionParams,
    _median_rows,
    detect,
)
from nirsd.daemon.motion import od_of as motion_od_of

FS = 10.0


def synthetic_run(seed: int, minutes: float = 10.0, n_ch: int = 8):
    rng = np.random.default_rng(seed)
    time = np.arange(int(minutes * 60 * FS)) / FS
    events = rt.schedule(minutes)
    amps = {"extension": (-6.0, 2.0), "flexion": (4.0, -2.0)}  # strong, fast responses
    dc = rt.synth_dc(rng, time, events, amps, n_ch)
    dist = rng.uniform(3.0, 3.5, n_ch)
    intensity = rt.amplitudes(dc, dist, 6.0, rng.uniform(2e3, 2e4, (n_ch, 2)))
    return rng, intensity


def od_of(intensity: np.ndarray) -> np.ndarray:
    return -np.log(intensity / intensity.mean(axis=0))


def recall(flags: np.ndarray, spans) -> float:
    """Share of the injected artifact samples (each spike's samples, each step's first
    sample) that are flagged."""
    hit = total = 0
    for ch, first, end in spans:
        hit += int(flags[first:end, ch].sum())
        total += end - first
    return hit / total


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_clean_data_is_almost_never_flagged(seed):
    _, intensity = synthetic_run(seed)
    flags = detect(od_of(intensity), FS)
    assert flags.shape == intensity.shape[:2]
    assert flags.mean() <= 0.01


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_spikes_and_steps_are_flagged(seed):
    rng, intensity = synthetic_run(seed)
    dirty, spans = rt.inject_motion(rng, intensity, FS, n_spikes=12, n_steps=8)
    flags = detect(od_of(dirty), FS)
    assert recall(flags, spans) >= 0.9
    hit_events = [flags[max(0, a - 1) : b + 1, ch].any() for ch, a, b in spans]
    assert np.mean(hit_events) >= 0.9
    # flags stay near the artifacts: channels without one keep ≤ 1 % flagged
    clean = sorted(set(range(8)) - {ch for ch, _, _ in spans})
    if clean:
        assert flags[:, clean].mean() <= 0.01


def test_the_thresholds_and_mask_follow_homer():
    """A single 0.5-OD jump in an otherwise flat, noisy record: AMPthresh catches it even
    with STDEVthresh disabled, and ±tMask around it is flagged, nothing else."""
    rng = np.random.default_rng(0)
    od = rng.normal(0, 1e-3, (600, 1, 2))
    od[300:, 0, :] += 0.5
    p = MotionParams(t_motion_s=0.5, t_mask_s=1.0, stdev_thresh=1e9, amp_thresh=0.3, robust=False)
    flags = detect(od, FS, p)[:, 0]
    # differences i in 295..299 reach across the step (lags 1-5); ±10 samples of mask;
    # flags sit on sample i + 1, as in Homer
    expected = np.zeros(600, bool)
    expected[295 - 10 + 1 : 299 + 10 + 2] = True
    np.testing.assert_array_equal(flags, expected)
    assert not detect(od, FS, MotionParams(stdev_thresh=1e9, amp_thresh=0.6))[:, 0].any()


def test_nan_light_is_not_motion():
    _, intensity = synthetic_run(4, minutes=2.0)
    od = od_of(intensity)
    od[100:150, 2, :] = np.nan
    assert detect(od, FS).mean() <= 0.01


@pytest.mark.parametrize("block", [1, 7, 100])
def test_the_streaming_monitor_finds_the_same_artifacts(block):
    rng, intensity = synthetic_run(5)
    dirty, spans = rt.inject_motion(rng, intensity, FS, n_spikes=12, n_steps=8)
    od = od_of(dirty)
    mon = MotionMonitor(8, 2, FS)
    flags = np.concatenate([mon.update(od[i : i + block]) for i in range(0, len(od), block)])
    assert flags.shape == od.shape[:2]
    assert recall(flags, spans) >= 0.9
    ref = MotionMonitor(8, 2, FS)
    one = np.concatenate([ref.update(od[i : i + 1]) for i in range(len(od))])
    np.testing.assert_array_equal(flags, one)  # the block size changes nothing
    _, clean = synthetic_run(6)
    mon = MotionMonitor(8, 2, FS)
    quiet = np.concatenate([mon.update(x) for x in np.array_split(od_of(clean), 60)])
    assert quiet.mean() <= 0.01


def _record(rng, n, ch, nan_share=0.0, step=0.0):
    x = rng.normal(0, 0.004, (n, ch, 2)).cumsum(axis=0)
    if step:
        x[int(rng.integers(0, n)) :] += step
    if nan_share:
        x[rng.random(x.shape) < nan_share] = np.nan
    return x


@pytest.mark.parametrize("seed", range(6))
def test_the_last_flags_alone_are_the_record_s_last_flags(seed):
    """``detect(..., last=k)`` takes the lags only where the last k flags come from; they
    are exactly ``detect(...)[-k:]`` (mask, lags, NaN light, a step, records shorter than
    k), the live check's case (200 samples at 20 Hz, the last 20) among them."""
    rng = np.random.default_rng(seed)
    cases = [(200, 20.0, MotionParams(), 20)]
    for _ in range(30):
        mask = float(rng.choice([0.0, 0.3, 1.0]))
        cases.append(
            (
                int(rng.integers(1, 120)),
                float(rng.choice([5.0, 10.0, 20.0])),
                MotionParams(t_mask_s=mask, robust=bool(rng.random() < 0.8)),
                int(rng.integers(1, 140)),
            )
        )
    flagged = 0
    for n, rate, params, last in cases:
        od = _record(rng, n, 3, nan_share=0.05 * (rng.random() < 0.3), step=0.5 * (n > 40))
        whole = detect(od, rate, params)
        got = detect(od, rate, params, last=last)
        assert got.shape == (min(n, last), 3)
        np.testing.assert_array_equal(got, whole[-last:])
        flagged += int(got.any())
    assert flagged >= 5  # the steps were found, so the flags compared were not all False


def test_the_sorted_median_is_numpy_s_median():
    """σ's median of short rows by sorting: the values of ``np.median`` (odd and even
    lengths, ties), and long rows still go to numpy."""
    rng = np.random.default_rng(7)
    for m in (1, 2, 3, 198, 199, 200, SORTED_MEDIAN_MAX + 1):
        rows = rng.normal(size=(5, m))
        np.testing.assert_array_equal(_median_rows(rows), np.median(rows, axis=1))
        ties = np.round(rows, 1)
        np.testing.assert_array_equal(_median_rows(ties), np.median(ties, axis=1))


def test_od_of_clean_light_equals_the_nan_skipping_mean():
    """Clean light takes a plain mean: the same OD as the NaN-skipping one; bad light
    (zero, negative, NaN) is still skipped and comes out NaN."""
    rng = np.random.default_rng(8)
    raw = 3e4 * np.exp(rng.normal(0, 0.01, (150, 16, 2)))
    expect = np.log(np.nanmean(raw, axis=0)) - np.log(raw)
    np.testing.assert_array_equal(motion_od_of(raw), expect)
    bad = raw.copy()
    bad[3, 2, 0], bad[9, 4, 1], bad[11, 5, 0] = 0.0, -2.0, np.nan
    od = motion_od_of(bad)
    assert np.isnan(od[[3, 9, 11], [2, 4, 5], [0, 1, 0]]).all()
    keep = np.where(bad > 0, bad, np.nan)
    mean = np.nanmean(keep, axis=0)
    np.testing.assert_array_equal(od[:, 2, 0][1:3], np.log(mean[2, 0]) - np.log(bad[1:3, 2, 0]))
