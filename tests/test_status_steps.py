"""The periodic status in steps (``status.periodic_steps``): the same assessment as in
one go, several steps for the loop to run between frames, and a pipeline rebuilt in
between assessed afresh."""

from __future__ import annotations

import numpy as np

from nirsd.daemon import config
from nirsd.daemon.pipeline import Pipeline
from nirsd.daemon.status import periodic_steps
from nirsd.drivers.base import Info, Sample
from nirsd.drivers.nirsb import NirsbParser

N_CH, RATE = 8, 50.0


def pipeline() -> Pipeline:
    cfg = config.parse(
        {"device": {"driver": "nirsb", "port": "/dev/null"}, "baseline": {"seconds": 1.0}}
    )
    p = Pipeline(cfg, Info(1, N_CH, (760.0, 850.0), RATE, "t"), NirsbParser)
    rng = np.random.default_rng(3)
    t = np.arange(1000) / RATE
    pulse = 1 + 0.01 * np.sin(2 * np.pi * 1.2 * t)[:, None, None]
    x = 30_000 * pulse * np.exp(rng.normal(0, 0.001, (t.size, N_CH, 2)))
    x[980:, 5] *= 1.6  # a step on one channel in the last second: motion
    for k0 in range(0, t.size, 50):
        samples = [Sample(k, k / RATE, 0, x[k]) for k in range(k0, k0 + 50)]
        block, _ = p.ingest(samples, 1000.0 + k0 / RATE)
        p.store(block)
    return p


class Acq:
    """What periodic_steps uses of an Acquisition."""

    def __init__(self, p: Pipeline) -> None:
        self.pipeline = p
        self.published: list[tuple[str, dict | None]] = []

    def publish_status(self, event: str, quality: dict | None = None) -> None:
        self.published.append((event, quality))


def test_steps_give_what_one_assessment_gives():
    a, b = pipeline(), pipeline()
    whole = b.assess_quality()
    acq = Acq(a)
    steps = sum(1 for _ in periodic_steps(acq))
    assert steps >= 4  # quality window, summary, motion samples, detection, the message
    ((event, quality),) = acq.published
    assert event == "periodic" and quality == whole
    assert quality["motion"][5] and sum(quality["motion"]) == 1
    assert np.array_equal(a._poor, b._poor) and a._poor[5] != 0


def test_a_pipeline_rebuilt_between_steps_is_assessed_afresh():
    acq = Acq(pipeline())
    steps = periodic_steps(acq)
    next(steps)
    acq.pipeline = pipeline()  # e.g. the device described itself anew
    for _ in steps:
        pass
    assert acq.published == [("periodic", None)]  # assemble_status then assesses it
