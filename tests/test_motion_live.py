"""Motion in the daemon: the MOTION quality bit after an assessment that found it, and
``motion_fraction`` in epoch summaries (nirsd.daemon.motion, off the frame path)."""

from __future__ import annotations

import numpy as np

from nirsd.daemon import config
from nirsd.daemon.epochs import Epoch, summarize
from nirsd.daemon.motion import MOTION, detect_live
from nirsd.daemon.pipeline import Pipeline
from nirsd.drivers.base import Info, Sample
from nirsd.drivers.nirsb import NirsbParser

N_CH, RATE = 4, 10.0


def make() -> Pipeline:
    cfg = config.parse(
        {"device": {"driver": "nirsb", "port": "/dev/null"}, "baseline": {"seconds": 1.0}}
    )
    return Pipeline(cfg, Info(1, N_CH, (760.0, 850.0), RATE, "t"), NirsbParser)


def light(rng: np.random.Generator, n: int) -> np.ndarray:
    """Clean intensities with a slow physiological swing and a little noise."""
    t = np.arange(n) / RATE
    swing = 1 + 0.01 * np.sin(2 * np.pi * 0.1 * t)[:, None, None]
    return 30000 * swing * np.exp(rng.normal(0, 0.002, (n, N_CH, 2)))


def feed(p: Pipeline, x: np.ndarray, k0: int) -> np.ndarray:
    """Ingest and store x one sample at a time; returns the quality bits published."""
    out = []
    for i, row in enumerate(x):
        k = k0 + i
        block, _ = p.ingest([Sample(k, k / RATE, 0, row)], 1000.0 + k / RATE)
        p.store(block)
        out.append(block.quality[0])
    return np.array(out)


def test_an_assessment_that_finds_motion_sets_the_bit_until_the_next_one():
    rng = np.random.default_rng(3)
    p = make()
    feed(p, light(rng, 100), 0)
    summary = p.assess_quality()
    assert summary["motion"] == [False] * N_CH
    x = light(rng, 20)
    x[15:18, 2, :] *= 0.7  # the probe on channel 2 lifts for 0.3 s
    feed(p, x, 100)
    assert p.assess_quality()["motion"] == [False, False, True, False]
    bits = feed(p, light(rng, 20), 120)
    assert (bits[:, 2] & MOTION).all() and not (bits[:, [0, 1, 3]] & MOTION).any()
    assert p.assess_quality()["motion"] == [False] * N_CH  # the last second was clean
    bits = feed(p, light(rng, 5), 140)
    assert not (bits & MOTION).any()


def test_epoch_summaries_carry_the_motion_fraction():
    rng = np.random.default_rng(4)
    p = make()
    x = light(rng, 200)
    x[150:153, 1, :] *= 0.6
    feed(p, x, 0)
    epoch = Epoch("extension", 1, 120, 1012.0, 2, 200)
    body = summarize(epoch, p.ring, 20, RATE, ["a", "b", "c", "d"])
    frac = body["motion_fraction"]
    assert len(frac) == N_CH and frac[0] == frac[2] == frac[3] == 0.0
    # the 0.3 s artifact and Homer's ±1 s mask, over the 10 s of baseline + epoch
    assert 0.2 <= frac[1] <= 0.3


def test_fast_probes_are_judged_on_bucket_means():
    rng = np.random.default_rng(5)
    n, rate = 20000, 1000.0
    raw = 30000 * np.exp(rng.normal(0, 0.002, (n, 16, 2)))
    raw[12000:12300, 5, :] *= 0.6
    flags = detect_live(raw, rate)
    assert flags.shape == (n, 16)
    assert flags[12000:12300, 5].all() and flags[:, 5].mean() < 0.2
    assert not np.delete(flags, 5, axis=1).any()
