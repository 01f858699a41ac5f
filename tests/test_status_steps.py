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


def pipeline(n_ch: int = N_CH, rate: float = RATE) -> Pipeline:
    """20 s of pulsing light on ``n_ch`` channels, one of which (5) moved in the last
    0.4 s."""
    cfg = config.parse(
        {"device": {"driver": "nirsb", "port": "/dev/null"}, "baseline": {"seconds": 1.0}}
    )
    p = Pipeline(cfg, Info(1, n_ch, (760.0, 850.0), rate, "t"), NirsbParser)
    rng = np.random.default_rng(3)
    t = np.arange(int(20 * rate)) / rate
    pulse = 1 + 0.01 * np.sin(2 * np.pi * 1.2 * t)[:, None, None]
    x = 30_000 * pulse * np.exp(rng.normal(0, 0.001, (t.size, n_ch, 2)))
    x[-int(0.4 * rate) :, 5] *= 1.6  # a step on one channel in the last second: motion
    block_n = int(rate)
    for k0 in range(0, t.size, block_n):
        samples = [Sample(k, k / rate, 0, x[k]) for k in range(k0, k0 + block_n)]
        block, _ = p.ingest(samples, 1000.0 + k0 / rate)
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


def test_a_fast_probe_takes_smaller_steps_with_the_same_result():
    from nirsd.daemon.quality import step_share

    assert [step_share(r) for r in (1000.0, 250.0, 100.0, 10.0, 0.0)] == [1, 4, 10, 100, 1]
    counts = {}
    for rate in (1000.0, 100.0):
        a, b = pipeline(64, rate), pipeline(64, rate)
        whole = b.assess_quality()
        acq = Acq(a)
        counts[rate] = sum(1 for _ in periodic_steps(acq))
        ((_, quality),) = acq.published
        assert quality == whole and quality["motion"][5] and sum(quality["motion"]) == 1
    # 1 kHz: the window, two shares of spectra, motion for a share of channels at a time
    assert counts[1000.0] >= 8 and counts[100.0] <= 6


def test_a_probe_whose_status_brings_few_rows_is_fed_at_the_assessment_alone(monkeypatch):
    """At 100 Hz a status (1 s) brings 100 rows, two feeds' worth at most: the quality
    window is fed by the assessment only, and comes out as when fed every few rows; a
    1 kHz probe is still fed every QUALITY_FEED_MIN rows between assessments."""
    from nirsd.daemon import pipeline as pipeline_module

    once = pipeline(rate=100.0)
    assert once._quality_seq == 0  # 20 s stored, nothing fed yet
    fast = Pipeline(
        config.parse({"device": {"driver": "nirsb", "port": "/dev/null"}}),
        Info(1, 4, (760.0, 850.0), 1000.0, "t"),
        NirsbParser,
    )
    assert fast._quality_every == pipeline_module.QUALITY_FEED_MIN
    monkeypatch.setattr(pipeline_module, "QUALITY_FEED_MIN", 7)
    often = pipeline(rate=100.0)  # the same data, fed every 7 rows as it came
    assert often._quality_every == 7 and often._quality_seq > 1900
    assert once.assess_quality() == often.assess_quality()
