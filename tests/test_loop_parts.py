"""The acquisition loop's parts on their own: what a device read says happened (a real
pseudo-terminal), and when the periodic status goes out."""

from __future__ import annotations

import os
import pty
import select
import time

import numpy as np
import pytest

from nirsd.cli.testing import wait_for
from nirsd.daemon import config
from nirsd.daemon.device import DISCONNECTED, NOTHING, PORT_LOST, STREAMING, DeviceLink
from nirsd.daemon.status import (
    STATUS_QUIET_MAX_S,
    STATUS_SLACK_S,
    STATUS_STEP_WAIT_MAX_S,
    StatusSchedule,
    quiet_s,
    step_gap,
)
from nirsd.drivers.base import Sample
from nirsd.drivers.nirsb import encode_data


@pytest.fixture
def pty_link():
    master, slave = pty.openpty()
    cfg = config.parse({"device": {"driver": "nirsb", "port": os.ttyname(slave)}})
    link = DeviceLink(cfg)
    try:
        yield link, master
    finally:
        link.close()
        os.close(slave)
        try:
            os.close(master)
        except OSError:
            pass  # closed by the test


def _reads(link: DeviceLink, until) -> list:
    """What each read said, until ``until(results)`` (reads only when polled readable)."""
    results: list = []

    def done() -> bool:
        if select.select([link.fileno()], [], [], 0.1)[0]:
            results.append(link.read())
        return until(results)

    wait_for(done, 10, 0.0, "the reads expected")
    return results


def test_read_says_frames_nothing_or_port_lost(pty_link):
    link, master = pty_link
    assert link.try_open(time.monotonic()) and link.state == "connecting"
    os.write(master, b"no frame in these bytes\x00")
    assert _reads(link, lambda r: r) == [NOTHING]
    counts = np.array([[1000, 2000], [3000, 4000]])
    os.write(master, encode_data(7, 100_000, counts))
    got = _reads(link, lambda r: any(x is not NOTHING for x in r))[-1]
    assert isinstance(got, list) and len(got) == 1 and isinstance(got[0], Sample)
    np.testing.assert_array_equal(got[0].intensity, counts)
    os.close(master)  # the device end goes away: reads fail (EIO) or hit end of file
    results = _reads(link, lambda r: PORT_LOST in r)
    assert results.count(PORT_LOST) == 1 and set(results) <= {NOTHING, PORT_LOST}
    assert link.state == DISCONNECTED and "serial port" in (link.last_error or "")
    assert link.fileno() is None  # closed: the loop stops polling it


def test_the_link_changes_its_own_state(pty_link):
    link, _ = pty_link
    link.info_rejected("Info(...)", "outside the accepted limits: 0 channels")
    assert link.last_error.startswith("device describes itself as Info(...)")
    link.info_accepted()
    assert link.last_error is None
    link.last_error = "serial port gone"  # another complaint is not the description's
    link.info_accepted()
    assert link.last_error == "serial port gone"
    link.mark_streaming()
    assert link.state == STREAMING


def test_status_waits_for_a_frame_then_a_third_of_its_period():
    s = StatusSchedule(1.0, now=100.0)
    assert s.timeout_ms(50, 100.0) == 50
    assert not s.due(100.5, True, lambda: 10.0)  # not due yet
    assert not s.due(101.0, True, lambda: 100.0)  # due: placed after this frame
    assert s.at_s == pytest.approx(101.0 + 1 / 300)
    assert s.timeout_ms(50, 101.0) == 4  # wakes in time for it
    assert s.due(101.0 + 1 / 300, False, lambda: 100.0)
    assert s.next_s == pytest.approx(102.0 + 1 / 300) and s.at_s is None


def test_status_steps_run_in_the_gap_after_a_frame():
    s = StatusSchedule(1.0, now=0.0)
    assert s.may_step(5.0, 1000.0) and s.step_timeout_ms(5.0, 1000.0) == 0  # no frame yet
    s.frame_s = 10.0  # a 1 kHz frame was handled at 10 s
    assert step_gap(1000.0) == pytest.approx((0.0, 0.0005, 0.002))
    assert s.may_step(10.0001, 1000.0) and s.step_timeout_ms(10.0001, 1000.0) == 0
    assert not s.may_step(10.0006, 1000.0)  # the next frame is near: wait for it
    assert s.step_timeout_ms(10.0006, 1000.0) == 2  # or for the sign that none comes
    assert s.may_step(10.0021, 1000.0)  # none came: steps go on without frames
    s.frame_s = 20.0  # 10 Hz: from when the frame is on its way to 1 ms before the next
    assert step_gap(10.0) == pytest.approx((STATUS_QUIET_MAX_S, 0.099, 0.2))
    assert not s.may_step(20.0055, 10.0) and s.step_timeout_ms(20.0055, 10.0) == 15
    assert s.may_step(20.05, 10.0) and s.may_step(20.098, 10.0)
    assert not s.may_step(20.0995, 10.0) and s.step_timeout_ms(20.0995, 10.0) == 101
    s.frame_s = 30.0  # under 1 Hz: any time from quiet_s after a frame (the gap is long,
    # and a stalled probe is not waited for beyond STATUS_STEP_WAIT_MAX_S)
    assert step_gap(0.5)[2] == STATUS_STEP_WAIT_MAX_S
    assert not s.may_step(30.01, 0.9) and s.may_step(30.7, 0.9) and s.may_step(31.5, 0.9)


def test_status_without_frames_goes_out_slack_late():
    s = StatusSchedule(1.0, now=0.0)
    assert not s.due(1.0, False, lambda: 10.0)
    assert not s.due(1.0 + STATUS_SLACK_S - 0.01, False, lambda: 10.0)
    assert s.due(1.0 + STATUS_SLACK_S, False, lambda: 10.0)
    assert quiet_s(1.0) == STATUS_QUIET_MAX_S and quiet_s(0.0) == 0.0
