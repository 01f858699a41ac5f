"""A device that describes a probe the config cannot use is reported, not fatal."""

from __future__ import annotations

from stream_support import in_process, loop_config

from nirsd.drivers.base import Info


def test_unusable_info_is_reported_and_the_loop_keeps_its_pipeline(tmp_path):
    cfg = loop_config(tmp_path)
    with in_process(cfg) as (acq, _):
        good = Info(1, 2, (760.0, 850.0), 10.0, "probe")
        acq._on_info(good)
        assert acq.pipeline is not None and acq.pipeline.info == good
        for bad in (
            Info(1, 0, (760.0, 850.0), 10.0, "p"),
            Info(1, 2, (760.0,), 10.0, "p"),
            Info(1, 2, (760.0, 850.0), 0.0, "p"),
            Info(1, 2, (760.0, 1500.0), 10.0, "p"),
        ):
            acq._on_info(bad)  # no exception escapes the loop
            assert acq.pipeline.info == good
            assert "describes itself" in acq.device.last_error
