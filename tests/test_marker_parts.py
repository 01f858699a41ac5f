"""The marker channel's parts in-process: the aligner, the epoch tracker and the protocol
runner as pure functions (values in, values out), then the channel that wires them to a
real Acquisition (its real control and data sockets, samples fed by hand, no device).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import zmq
from stream_support import in_process, loop_config

from nirsd.cli.testing import wait_for
from nirsd.core.errors import ProtocolError
from nirsd.daemon import wire
from nirsd.daemon.acquisition import Acquisition
from nirsd.daemon.epoch_tracker import MAX_CLOSED, EpochTracker
from nirsd.daemon.marker_align import (
    DEVICE_FUTURE_S,
    NEXT_SAMPLE_S,
    Marker,
    align,
    enqueue,
    event_time,
)
from nirsd.daemon.marker_requests import RefusedMark, check_mark
from nirsd.daemon.protocol_runner import ProtocolEvent, ProtocolRunner, StepMark
from nirsd.daemon.ringbuffer import NO_EPOCH
from nirsd.drivers.base import Event, Info, Sample

LABELS = ["rest", "extension", "flexion"]


def marker(t: float, id_: int, label: str = "rest", action: str = "start", **kw) -> Marker:
    return Marker(t, id_, label, action, kw.pop("source", "control"), **kw)


def no_prev() -> float | None:
    raise AssertionError("the sample before the block was not needed")


# -- the aligner -------------------------------------------------------------------
def test_markers_at_between_and_before_samples_land_on_the_first_sample_at_or_after():
    t = np.array([10.0, 10.1, 10.2, 10.3])
    pending: list[Marker] = []
    for m in (
        marker(10.5, 1),  # after the block: waits
        marker(10.1, 2),  # exactly at a sample
        marker(10.15, 3),  # between two
        marker(9.0, 4),  # before the block (queued while no sample came)
        marker(10.3, 5),  # the last sample
    ):
        enqueue(pending, m)
    assert [m.id for m in pending] == [4, 2, 3, 5, 1]  # time order
    placed = align(pending, t, None, no_prev)
    assert [(p.marker.id, p.index) for p in placed] == [(4, 0), (2, 1), (3, 2), (5, 3)]
    assert [p.marker.t for p in placed] == [9.0, 10.1, 10.15, 10.3]  # host times kept
    assert [m.id for m in pending] == [1]
    assert align(pending, t, None, no_prev) == []
    assert [p.index for p in align(pending, np.array([10.4, 10.5]), None, no_prev)] == [1]


def test_equal_times_keep_the_order_markers_were_made():
    pending: list[Marker] = []
    enqueue(pending, marker(5.0, 7, action="end"))
    enqueue(pending, marker(5.0, 3))
    placed = align(pending, np.array([4.0, 5.0]), None, no_prev)
    assert [(p.marker.id, p.index) for p in placed] == [(3, 1), (7, 1)]


def test_device_time_alignment_lands_on_the_sample_and_reports_its_host_time():
    # two samples share a device time (a coarse device clock); the host times come from
    # a newer clock fit than the one that dated the events (offset 0.5 s vs 0.3 s)
    t_dev = np.array([1.00, 1.00, 1.01, 1.02])
    t = np.array([101.5, 101.500001, 101.51, 101.52])
    pending: list[Marker] = []
    enqueue(pending, marker(101.3, 1, t_dev=1.00, source="device"))
    enqueue(pending, marker(101.305, 2, t_dev=1.005, source="device"))
    enqueue(pending, marker(101.32, 3, t_dev=1.02, source="device"))
    placed = align(pending, t, t_dev, lambda: None)  # the first block: no sample before
    assert [(p.marker.id, p.index) for p in placed] == [(1, 0), (2, 2), (3, 3)]
    # stamped with a sample's device time: exactly that sample's host time
    assert placed[0].marker.t == t[0] and placed[2].marker.t == t[3]
    # between samples: by the landing sample's own offset, still after the one before
    assert placed[1].marker.t == pytest.approx(101.505, abs=1e-9)
    for p in placed:  # a reader aligning by host time finds the same sample
        assert int(np.searchsorted(t, p.marker.t, side="left")) == p.index


def test_a_device_timed_marker_on_a_blocks_first_sample_stays_after_the_sample_before():
    asked = []

    def prev() -> float:
        asked.append(True)
        return 200.0  # the held sample before the block

    # the block's first sample by the event's device time maps before the held one
    pending = [marker(0.0, 1, t_dev=4.99, source="device")]
    placed = align(pending, np.array([200.004, 200.01]), np.array([5.0, 5.01]), prev)
    assert asked == [True] and placed[0].index == 0
    assert placed[0].marker.t == pytest.approx(200.0 + NEXT_SAMPLE_S, abs=1e-12)
    assert 200.0 < placed[0].marker.t <= 200.004


def test_device_markers_without_block_device_times_align_by_host_time():
    pending = [marker(3.05, 1, t_dev=99.0, source="device")]
    placed = align(pending, np.array([3.0, 3.1]), None, no_prev)
    assert [(p.index, p.marker.t) for p in placed] == [(1, 3.05)]


def test_event_time_before_samples_without_a_clock_and_far_in_the_future():
    assert event_time((1.0, 50.0), None, 42.0) == (42.0, None, False)  # no sample yet
    assert event_time(None, 10.0, 42.0) == (10.0 + NEXT_SAMPLE_S, None, False)
    assert event_time((1.0, 10.5), 10.0, 42.0) == (10.5, 1.0, False)
    late = 10.0 + DEVICE_FUTURE_S + 0.1
    assert event_time((1.0, late), 10.0, 42.0) == (42.0, None, True)
    assert event_time((1.0, float("nan")), 10.0, 5.0) == (10.0 + NEXT_SAMPLE_S, None, True)


def test_mark_requests_are_checked_and_label_or_action_refusals_are_the_counted_kind():
    assert check_mark({"label": "rest"}, LABELS, 50.0) == ("rest", "start", 50.0)
    assert check_mark({"action": "end", "t": 49}, LABELS, 50.0) == (None, "end", 49)
    assert check_mark({"label": "cough", "action": "instant"}, LABELS, 50.0)[0] == "cough"
    for req, error in [
        ({"label": "cough"}, "unknown label 'cough'"),
        ({"label": "x" * 257, "action": "instant"}, "at most 256 characters, got 257"),
        ({"label": "rest", "action": "begin"}, "got 'begin'"),
        ({"label": "rest", "action": 1}, "action must be one of start, end, instant"),
    ]:
        with pytest.raises(RefusedMark, match=error):
            check_mark(req, LABELS, 50.0)
    for t, error in [(True, "Unix seconds"), (float("nan"), "Unix seconds"), (51.5, "1.500 s")]:
        with pytest.raises(ProtocolError, match=error) as raised:
            check_mark({"label": "rest", "t": t}, LABELS, 50.0)
        assert type(raised.value) is ProtocolError  # a bad time is not counted


# -- the epoch tracker -------------------------------------------------------------
def test_a_start_ends_the_open_epoch_and_its_ack_says_what_it_ended():
    tr = EpochTracker(LABELS, allow_overlap=False)
    first = tr.apply(marker(1.0, tr.new_id(), "rest"), 10, 1.0, 10, 50.0)
    assert first.error is None and first.body is not None and first.body["ended"] is None
    assert tr.current() == 0 and tr.last_change_seq == 10
    done = tr.apply(marker(2.0, tr.new_id(), "extension"), 60, 2.0, 60, 50.0)
    auto, start = done.published
    assert auto == {
        "id": 3,
        "label": "rest",
        "action": "end",
        "source": "auto",
        "t": 2.0,
        "seq": 60,
        "published_upto": 60,
        "ended_by": 2,
    }
    assert start is done.body and start["id"] == 2 and start["seq"] == 60
    assert start["ended"] == {
        "label": "rest",
        "start_id": 1,
        "end_id": 3,
        "onset_seq": 10,
        "end_seq": 60,
        "duration_s": 1.0,
    }
    assert [e.label for e in tr.open] == ["extension"] and tr.current() == 1
    assert [(e.label, e.onset_seq, e.end_seq, e.end_id) for e in tr.closed] == [("rest", 10, 60, 2)]
    assert tr.new_id() == 4  # ids come from one counter


def test_end_without_an_open_epoch_is_an_error_and_changes_nothing():
    tr = EpochTracker(LABELS, allow_overlap=False)
    done = tr.apply(marker(1.0, 1, "", "end"), 5, 1.0, 5, 50.0)
    assert done.error == "no open epoch to end" and done.published == [] and done.body is None
    tr.apply(marker(1.0, 2, "extension"), 7, 1.0, 7, 50.0)
    done = tr.apply(marker(1.1, 3, "rest", "end"), 9, 1.1, 9, 50.0)
    assert done.error == "no open 'rest' epoch to end"
    assert tr.last_change_seq == 7 and [e.label for e in tr.open] == ["extension"]
    assert tr.closed == []


def test_with_overlap_an_unlabelled_end_ends_the_newest_and_a_stim_offset_the_oldest():
    tr = EpochTracker(LABELS, allow_overlap=True)
    for i, (label, seq) in enumerate([("rest", 1), ("flexion", 2), ("rest", 3)], 1):
        assert tr.apply(marker(seq, i, label), seq, seq, seq, 0.0).published[0]["ended"] is None
    assert tr.current() == 0  # the most recently started
    done = tr.apply(marker(4, 4, "", "end"), 4, 4.0, 4, 0.0)
    assert done.body is not None and done.body["label"] == "rest"
    assert done.body["ended"]["start_id"] == 3 and done.body["ended"]["duration_s"] is None
    tr.apply(marker(5, 5, "rest"), 5, 5.0, 5, 0.0)
    stim = marker(6, 6, "rest", "end", source="device", extra={"code": 4})
    assert tr.apply(stim, 6, 6.0, 6, 0.0).body["ended"]["start_id"] == 1  # first in, first out
    assert [(e.label, e.start_id) for e in tr.open] == [("flexion", 2), ("rest", 5)]


def test_a_late_marker_covers_the_published_samples_and_instants_change_no_epoch():
    tr = EpochTracker(LABELS, allow_overlap=False)
    done = tr.apply(marker(1.0, 1, "flexion"), 40, 1.0, 45, 10.0)
    assert done.covers == (40, 45) and done.body["covers"] == [40, 45]
    edge = tr.apply(marker(1.5, 3, "", "end"), 44, 1.5, 45, 10.0)
    assert edge.covers == (44, 45) and edge.body["ended"]["duration_s"] == 0.4
    now = tr.apply(marker(1.6, 4, "flexion"), 45, 1.6, 45, 10.0)
    assert now.covers is None and "covers" not in now.body
    instant = tr.apply(marker(2.0, 2, "cough", "instant", extra={"code": 1}), 50, 2.0, 50, 10.0)
    assert instant.covers is None and "ended" not in instant.body
    assert instant.body["code"] == 1 and tr.last_change_seq == 45 and tr.current() == 2


def test_ended_epochs_beyond_the_bound_are_counted_not_kept():
    tr = EpochTracker(LABELS, allow_overlap=False)
    for i in range(MAX_CLOSED + 3):
        tr.apply(marker(i, 2 * i + 1, "rest"), 2 * i, i, 2 * i, 0.0)
        tr.apply(marker(i, 2 * i + 2, "rest", "end"), 2 * i + 1, i, 2 * i + 1, 0.0)
    assert len(tr.closed) == MAX_CLOSED and tr.summaries_dropped == 3
    assert tr.current() == NO_EPOCH


def test_take_ended_hands_over_only_epochs_whose_samples_are_all_held():
    tr = EpochTracker(LABELS, allow_overlap=False)
    for i, (on, end) in enumerate([(0, 10), (12, 20), (22, 30)]):
        tr.apply(marker(on, 2 * i + 1, "rest"), on, on, on, 0.0)
        tr.apply(marker(end, 2 * i + 2, "rest", "end"), end, end, end, 0.0)
    assert tr.take_ended(9) == []  # the first ends at 10: not all held yet
    assert [e.end_seq for e in tr.take_ended(25)] == [10, 20]  # oldest first
    assert [e.end_seq for e in tr.closed] == [30]  # the rest stays
    assert tr.take_ended(100, limit=0) == [] and len(tr.closed) == 1
    assert [e.end_seq for e in tr.take_ended(100, limit=1)] == [30] and tr.closed == []


# -- the protocol runner -----------------------------------------------------------
STEPS = {"lumbar": [("rest", 5.0), ("extension", 10.0), ("rest", 2.5)]}


def marks(happenings) -> list[tuple[float, str, str, int]]:
    return [(h.t, h.label, h.action, h.extra["step"]) for h in happenings if type(h) is StepMark]


def events(happenings) -> list[str]:
    return [h.what for h in happenings if type(h) is ProtocolEvent]


def test_protocol_steps_come_due_at_their_scheduled_times():
    run = ProtocolRunner(STEPS)
    assert events(run.start("lumbar", 100.0)) == ["started"]
    assert run.due(99.99, 0.0) == []
    first = run.due(100.0, 100.0)
    assert marks(first) == [(100.0, "rest", "start", 0)] and events(first) == ["step"]
    assert first[0].extra == {"protocol": "lumbar", "step": 0}
    assert first[1].body["step_end_t"] == 105.0 and first[1].body["time_left_s"] == 5.0
    assert run.due(104.999, 104.999) == []
    second = run.due(105.0, 105.0)
    assert marks(second) == [(105.0, "rest", "end", 0), (105.0, "extension", "start", 1)]
    # one late call: every boundary, in order, at its own time, then finished
    rest = run.due(200.0, 200.0)
    assert marks(rest) == [
        (115.0, "extension", "end", 1),
        (115.0, "rest", "start", 2),
        (117.5, "rest", "end", 2),
    ]
    assert events(rest) == ["step", "finished"] and rest[-1].body == {
        "name": "lumbar",
        "finished": True,
    }
    assert run.protocol is None and run.due(300.0, 300.0) == []


def test_stop_and_skip_end_the_open_step_now():
    run = ProtocolRunner(STEPS)
    run.start("lumbar", 0.0)
    assert marks(run.skip(1.0)) == []  # step 0 not started yet: nothing open to end
    assert run.protocol is not None and run.protocol.step == 1
    assert marks(run.due(1.0, 1.0)) == [(1.0, "extension", "start", 1)]
    skipped = run.skip(3.0)
    assert marks(skipped) == [(3.0, "extension", "end", 1)]
    assert run.protocol.step_start_t == 3.0 and run.protocol.step_end_t == 5.5
    run.due(3.0, 3.0)
    stopped = run.stop(4.0)
    assert marks(stopped) == [(4.0, "rest", "end", 2)] and events(stopped) == ["stopped"]
    assert run.protocol is None
    with pytest.raises(ProtocolError, match="no protocol is running"):
        run.stop(5.0)


def test_protocol_start_refuses_unknown_names_and_a_second_protocol():
    run = ProtocolRunner(STEPS)
    with pytest.raises(ProtocolError, match=r"unknown protocol 'nope' \(configured: lumbar\)"):
        run.start("nope", 0.0)
    with pytest.raises(ProtocolError, match="unknown protocol 'int'"):
        run.start(3, 0.0)
    run.start("lumbar", 0.0)
    with pytest.raises(ProtocolError, match="'lumbar' is running"):
        run.start("lumbar", 1.0)
    assert run.listing() == {"lumbar": [["rest", 5.0], ["extension", 10.0], ["rest", 2.5]]}


# -- the channel on a real Acquisition ---------------------------------------------
RATE_HZ = 50.0


@pytest.fixture
def acq(tmp_path):
    with in_process(loop_config(tmp_path)) as (acq, ctx):
        acq._on_info(Info(1, 2, (760.0, 850.0), RATE_HZ, "probe"))

        def socket(kind: int, endpoint: str) -> zmq.Socket:
            s = ctx.socket(kind)
            s.setsockopt(zmq.LINGER, 0)
            if kind == zmq.SUB:
                for topic in (b"marker", b"raw", b"status"):
                    s.setsockopt(zmq.SUBSCRIBE, topic)
            s.connect(endpoint)
            return s

        acq.test_socket = socket
        yield acq  # the sockets close with the context


def feed(acq: Acquisition, t0: float, k0: int, n: int) -> None:
    """Samples k0..k0+n-1 of a device whose clock reads k / RATE_HZ, arriving on time
    (host time t0 + k / RATE_HZ), one frame each."""
    for k in range(k0, k0 + n):
        sample = Sample(k, k / RATE_HZ, 0, np.full((2, 2), 1000.0))
        acq.handle_frames([sample], t0 + k / RATE_HZ)


def test_a_waiting_marker_is_published_before_the_block_it_tags_and_acked_exactly(acq):
    sub = acq.test_socket(zmq.SUB, acq.cfg.endpoints.data)
    dealer = acq.test_socket(zmq.DEALER, acq.cfg.endpoints.control)

    def joined() -> bool:
        acq.publisher.read_subscriptions()
        acq.publisher.publish_event("status", {"event": "hello"})
        return sub.poll(20) and wire.decode(sub.recv_multipart()).topic == "status"

    wait_for(joined, 10, 0.02, "subscription")
    while sub.poll(50):
        sub.recv_multipart()
    t0 = time.time() - 10.0
    feed(acq, t0, 0, 5)
    at = t0 + 7.5 / RATE_HZ  # between samples 7 and 8
    dealer.send_multipart([b"", wire.pack({"cmd": "mark", "label": "rest", "t": at})])
    wait_for(acq.control.serve_pending, 5, 0.005, "request served")
    assert not dealer.poll(50)  # deferred until its sample arrives
    feed(acq, t0, 5, 5)
    assert dealer.poll(5000)
    ack = wire.unpack(dealer.recv_multipart()[-1])
    assert ack["ok"] and ack["seq"] == 8 and ack["t"] == at and ack["ended"] is None
    assert ack["published_upto"] == 8 and acq.pipeline.ring.last() is not None
    order = []
    while sub.poll(200):
        m = wire.decode(sub.recv_multipart())
        order.append((m.topic, m.header["seq"] if m.topic != "status" else None))
    assert order.index(("marker", 8)) == order.index(("raw", 8)) - 1
    (epoch,) = acq.pipeline.ring.columns(0, 10, ("epoch",))
    assert epoch.tolist() == [NO_EPOCH] * 8 + [0, 0]


def test_a_device_event_at_a_published_samples_device_time_lands_on_it(acq):
    t0 = time.time() - 10.0
    feed(acq, t0, 0, 20)
    ring = acq.pipeline.ring
    acq.handle_frames([Event(None, 12 / RATE_HZ, 1, "extension")], t0 + 20 / RATE_HZ)
    (t, epoch) = ring.columns(0, 20, ("t", "epoch"))
    assert epoch.tolist() == [NO_EPOCH] * 12 + [1] * 8
    assert acq.markers.open[0].onset_seq == 12 and acq.markers.open[0].onset_t == t[12]
    assert acq.markers.outbox == []  # published at once (with covers), not left waiting
    assert acq.markers.status()["markers"]["accepted"] == 1


def test_streaming_one_sample_blocks_share_one_read_only_tag(acq):
    tag = acq.markers.tag
    first = tag(0, np.array([1.0]), np.array([0.0]))
    again = tag(1, np.array([1.02]), np.array([0.02]))
    assert first is again and not first.flags.writeable and first.tolist() == [NO_EPOCH]
