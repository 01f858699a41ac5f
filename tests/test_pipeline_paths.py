"""The pipeline's one-sample path (the usual streaming case) gives exactly what the block
path gives for the same samples: hb, quality bits, raw, flags, device times, epochs."""

from __future__ import annotations

import numpy as np

from nirsd.daemon import config
from nirsd.daemon.converter import BASELINE_PENDING, LOW_LIGHT, SATURATED
from nirsd.daemon.pipeline import Pipeline
from nirsd.drivers.base import FLAG_SATURATED, Info, Sample
from nirsd.drivers.nirsb import NirsbParser

N_CH, RATE, N = 4, 10.0, 60


def make() -> Pipeline:
    cfg = config.parse(
        {
            "device": {"driver": "nirsb", "port": "/dev/null"},
            "baseline": {"seconds": 1.0},
            "optics": {"saturation_level": 60000.0, "light_floor": 10.0},
        }
    )
    return Pipeline(cfg, Info(1, N_CH, (760.0, 850.0), RATE, "t"), NirsbParser)


def samples() -> list[Sample]:
    rng = np.random.default_rng(8)
    x = 30000 + rng.normal(0, 300, (N, N_CH, 2))
    x[20, 1, 0] = 65000.0  # saturated by level
    x[25, 2, 1] = 0.0  # no light
    x[30, 3, 0] = np.nan
    flags = np.zeros(N, np.uint8)
    flags[40] = FLAG_SATURATED  # the device says it clipped
    return [Sample(k, k / RATE, int(flags[k]), x[k]) for k in range(N)]


def test_one_by_one_equals_one_block():
    one, block = make(), make()
    parts = []
    for i, s in enumerate(samples()):
        parts.append(one.ingest([s], 1000.0 + i / RATE))
        one.store(parts[-1][0])
    ref, _ = block.ingest(samples(), 1000.0 + (N - 1) / RATE)
    got = {
        f: np.concatenate([getattr(b, f) for b, _ in parts])
        for f in ("hb", "quality", "raw", "flags", "t_dev", "epoch")
    }
    np.testing.assert_allclose(got["hb"], ref.hb, rtol=0, atol=1e-12, equal_nan=True)
    for f in ("quality", "raw", "flags", "t_dev", "epoch"):
        assert np.array_equal(got[f], getattr(ref, f), equal_nan=f in ("raw", "t_dev")), f
    q = got["quality"]
    assert q[20, 1] & SATURATED and q[25, 2] & LOW_LIGHT and q[30, 3] & LOW_LIGHT
    assert np.all(q[40] & SATURATED) and not np.any(q[41:] & (SATURATED | LOW_LIGHT))
    assert np.all(q[:10] & BASELINE_PENDING) and not np.any(q[10:] & BASELINE_PENDING)
    # HbT is HbO + HbR on the one-sample path too
    good = np.isfinite(got["hb"][:, 2])
    np.testing.assert_allclose(
        got["hb"][:, 2][good], (got["hb"][:, 0] + got["hb"][:, 1])[good], atol=1e-12
    )


def test_one_sample_of_the_wrong_shape_is_counted_not_converted():
    p = make()
    assert p.ingest([Sample(0, 0.0, 0, np.ones((N_CH + 1, 2)))], 1000.0) is None
    assert p.shape_errors == 1
    block, _ = p.ingest([Sample(1, 0.1, 0, np.full((N_CH, 2), 100.0))], 1000.1)
    assert block.n == 1 and block.seq == 0


def test_quality_window_is_fed_from_the_ring_at_assessment():
    """Every stored sample reaches the quality window exactly once, in order."""
    p = make()
    for i, s in enumerate(samples()):
        b, _ = p.ingest([s], 1000.0 + i / RATE)
        p.store(b)
        if i in (7, 33):
            p.assess_quality()
    p.assess_quality()
    window = p.quality._window()[0]
    ring, _ = p.ring.read(0)
    assert window.shape[0] == N
    np.testing.assert_array_equal(window, ring.hb[:, 0, :])


def test_tsi_only_when_someone_takes_hb():
    cfg = config.parse(
        {
            "device": {"driver": "nirsb", "port": "/dev/null"},
            "baseline": {"seconds": 0.1},
            "channel": [
                {"index": i, "source": 1, "detector": i + 1, "distance_mm": 35.0 + 5 * i}
                for i in range(3)
            ],
        }
    )
    p = Pipeline(cfg, Info(1, 3, (775.0, 810.0, 850.0), RATE, "t"), NirsbParser)
    assert p.srs
    light = np.array([[3e4, 3.2e4, 3.4e4], [2e4, 2.2e4, 2.4e4], [1.2e4, 1.4e4, 1.6e4]])
    p.want_tsi = False
    p.store(p.ingest([Sample(0, 0.0, 0, light)], 1000.0)[0])
    assert p.last_tsi is None
    p.want_tsi = True
    p.store(p.ingest([Sample(1, 0.1, 0, light)], 1000.1)[0])
    assert p.last_tsi.shape == (1, 1) and np.isfinite(p.last_tsi).all()
