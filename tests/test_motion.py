"""The motion-artifact detector (daemon/motion.py) on synthetic data with injected
spikes and steps: recall ≥ 0.9, false positives on clean data ≤ 1 % of samples."""

from __future__ import annotations

import numpy as np
import pytest

from nirsd.clients import report_testing as rt
from nirsd.daemon.motion import MotionMonitor, MotionParams, detect

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
