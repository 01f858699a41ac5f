"""The marker channel through the real pipeline: pty -> daemon -> subscribers."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import zmq

from nirsd.cli.testing import Collector, DaemonProcess, device_config, simulated_config, wait_for
from nirsd.daemon import wire
from nirsd.drivers.sim.emulator import Emulator
from nirsd.drivers.sim.exercise import ExerciseResponse
from nirsd.drivers.sim.physiology import Physiology

Recorder = Collector


def _mark(daemon, *args) -> dict:
    result = daemon.cli("mark", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _check_tagging(rec: Recorder, start: dict, end: dict, label: str) -> None:
    seqs = sorted(rec.t)
    for s in seqs:
        inside = start["t"] <= rec.t[s] < end["t"]
        assert (rec.epoch[s] == label) == inside, (s, rec.t[s], rec.epoch[s])
    # the acknowledged seq is the first sample at or after the marker's time
    assert start["seq"] == min(s for s in seqs if rec.t[s] >= start["t"])
    assert end["seq"] == min(s for s in seqs if rec.t[s] >= end["t"])


def test_cli_markers_tag_samples_exactly_and_summarise(daemon):
    with daemon.subscriber(["hb", "marker", "epoch"]) as sub:
        rec = Recorder(sub)
        rec.until(lambda: len(rec.t) >= 5, what="samples before the marker")
        start = _mark(daemon, "extension")
        assert start["action"] == "start" and isinstance(start["id"], int)
        rec.until(lambda: max(rec.t.values()) >= start["t"] + 1.0, what="1 s of epoch")
        end = _mark(daemon, "extension", "--end")
        rec.until(lambda: rec.of("epoch"), what="epoch summary")
        rec.until(lambda: max(rec.t.values()) >= end["t"] + 0.3, what="samples after the end")
    _check_tagging(rec, start, end, "extension")
    markers = rec.of("marker")
    assert [(m["id"], m["action"], m["seq"]) for m in markers] == [
        (start["id"], "start", start["seq"]),
        (end["id"], "end", end["seq"]),
    ]
    summary = rec.of("epoch")[0]
    assert summary["label"] == "extension"
    assert (summary["onset_seq"], summary["end_seq"]) == (start["seq"], end["seq"])
    # the summary equals a recomputation from the published hb samples
    b0, b1 = summary["baseline_seq"]
    have = set(rec.hb)
    if summary["baseline_recomputed"]:  # the window began while I0 was provisional
        expect = _recomputed_summary(daemon, b0, b1, end["seq"])
        np.testing.assert_allclose(summary["mean_hbo"], expect[0], atol=1e-9)
        np.testing.assert_allclose(summary["mean_hbr"], expect[1], atol=1e-9)
    elif set(range(b0, end["seq"])) <= have:
        base = np.nanmean([rec.hb[s] for s in range(b0, b1)], axis=0)
        during = np.nanmean([rec.hb[s] for s in range(start["seq"], end["seq"])], axis=0)
        np.testing.assert_allclose(summary["mean_hbo"], (during - base)[0], atol=1e-9)
        np.testing.assert_allclose(summary["mean_hbr"], (during - base)[1], atol=1e-9)
        np.testing.assert_allclose(summary["mean_hbt"], (during - base)[2], atol=1e-9)
    else:  # the subscriber joined after the baseline window: fetch it from history
        hist = daemon.subscriber(["hb"])
        try:
            msg = hist.control.history(since=b0, until=end["seq"])["hb"]
        finally:
            hist.close()
        hb = msg.array
        split = b1 - b0
        expect = np.nanmean(hb[split:], 0) - np.nanmean(hb[:split], 0)
        np.testing.assert_allclose(summary["mean_hbo"], expect[0], atol=1e-9)


def _recomputed_summary(daemon, b0: int, b1: int, end: int) -> np.ndarray:
    """The summary from the held raw intensities against the final I0 (the mean of the
    first second, 10 samples): what the daemon publishes when the epoch's window holds
    samples converted with a provisional I0."""
    from nirsd.daemon.converter import Converter

    hist = daemon.subscriber(["hb"])
    try:
        raw = hist.control.history(since=0, until=end)["raw"].array
    finally:
        hist.close()
    conv = Converter((760.0, 850.0), np.full(8, 3.0), 6.0)
    conv.set_baseline(raw[:10].mean(axis=0))
    hb = conv.hb_from_raw(raw)
    return np.nanmean(hb[b1:end], 0) - np.nanmean(hb[b0:b1], 0)


def test_timed_protocol_emits_its_own_markers(tmp_path):
    extra = '[protocol.short]\nsteps = [["rest", 0.5], ["extension", 1.0], ["rest", 0.5]]\n'
    daemon = DaemonProcess(tmp_path, simulated_config(rate_hz=20.0, extra=extra)).start()
    try:
        with daemon.subscriber(["hb", "marker", "epoch", "status"]) as sub:
            rec = Recorder(sub)
            rec.until(lambda: len(rec.t) >= 3, what="samples")
            reply = json.loads(daemon.cli("protocol", "start", "short", check=True).stdout)
            assert reply["protocol"]["name"] == "short"
            rec.until(lambda: len(rec.of("epoch")) >= 3, what="three epoch summaries")
            rec.until(
                lambda: any(
                    s.get("event") == "protocol" and s.get("what") == "finished"
                    for s in rec.of("status")
                ),
                what="the protocol's end on status",
            )
        markers = [m for m in rec.of("marker") if m["source"] == "protocol"]
        assert [(m["label"], m["action"]) for m in markers] == [
            ("rest", "start"),
            ("rest", "end"),
            ("extension", "start"),
            ("extension", "end"),
            ("rest", "start"),
            ("rest", "end"),
        ]
        ext = [m for m in markers if m["label"] == "extension"]
        _check_tagging(rec, ext[0], ext[1], "extension")
        durations = [e["duration_s"] for e in rec.of("epoch")]
        np.testing.assert_allclose(durations, [0.5, 1.0, 0.5], atol=0.051)
        progress = [s for s in rec.of("status") if s.get("event") == "protocol"]
        assert progress[-1]["what"] == "finished"
        assert json.loads(daemon.cli("protocol", "status", check=True).stdout)["protocol"] is None
    finally:
        assert daemon.stop() == 0


RATE = 20.0
N_CH = 3


@pytest.fixture
def exercising(tmp_path):
    """A noise-free emulator with a known extension response from 3 s to 9 s."""
    phys = Physiology(N_CH, (760.0, 850.0), RATE, noise=0.0, seed=5)
    response = ExerciseResponse(3.0, 9.0, N_CH, "extension")
    phys.responses.append(response)
    emu = Emulator(n_channels=N_CH, rate_hz=RATE, physiology=phys)
    port = emu.start()
    extra = "[markers]\nbaseline_s = 2.0\n"
    daemon = DaemonProcess(tmp_path, device_config(port, baseline_s=1.0, extra=extra))
    try:
        daemon.start()
        yield emu, phys, response, daemon
    finally:
        assert daemon.stop() == 0
        emu.stop()


def test_device_event_frames_become_markers(exercising):
    emu, phys, response, daemon = exercising
    with daemon.subscriber(["hb", "marker", "epoch"]) as sub:
        rec = Recorder(sub)
        rec.until(lambda: len(rec.t) >= 3, what="samples")
        emu.send_event(1, "extension")
        rec.until(lambda: rec.of("marker"), what="device marker")
        rec.until(
            lambda: max(rec.t.values()) >= rec.of("marker")[0]["t"] + 0.5, what="epoch samples"
        )
        emu.send_event(2, "extension")
        rec.until(lambda: rec.of("epoch"), what="epoch summary")
        end_seq = rec.of("marker")[1]["seq"]
        rec.until(lambda: max(rec.t) >= end_seq + 2, what="samples after the end")
    start, end = rec.of("marker")[:2]
    assert (start["source"], start["action"], start["code"]) == ("device", "start", 1)
    assert (end["source"], end["action"], end["code"]) == ("device", "end", 2)
    # the emulator sends the event with the device time of the next data frame, so
    # that frame is the epoch's first sample
    assert start["t"] == pytest.approx(rec.t[start["seq"]], abs=1e-6)
    _check_tagging(rec, start, end, "extension")


def test_device_events_stamped_with_a_sent_sample_land_on_that_sample(exercising):
    """A footswitch pressed at the sample the device has just sent: the EVENT follows
    that DATA frame and carries its device time; the rule "first sample at or after the
    marker's time" gives that very sample, not the next one."""
    emu, phys, response, daemon = exercising
    with daemon.subscriber(["hb", "marker"]) as sub:
        rec = Recorder(sub)
        rec.until(lambda: len(rec.t) >= 3, what="samples")
        for i in range(6):
            emu.send_event(1, "extension", after=True)
            rec.until(lambda: len(rec.of("marker")) > i, what=f"device marker {i}")
        rec.until(lambda: max(rec.t) >= rec.of("marker")[-1]["seq"], what="tagged samples")
    markers = rec.of("marker")
    assert [m["action"] for m in markers] == ["start", "end"] * 3
    for m in markers:
        assert m["t"] == pytest.approx(rec.t[m["seq"]], abs=1e-3), m
        assert m["covers"] == [m["seq"], m["seq"] + 1], "applied to the published sample"
        assert rec.t[m["seq"] - 1] < m["t"]


def test_exercise_response_is_recovered_by_the_epoch_summary(exercising):
    emu, phys, response, daemon = exercising
    wait_for(lambda: daemon.control().status()["samples"] >= 12 * RATE, 30, what="12 s of data")
    with daemon.subscriber(["epoch"]) as sub:
        hist = sub.control.history(since=0)["hb"]
        t_dev, t = np.asarray(hist.header["t_dev"]), np.asarray(hist.header["t"])
        k = np.rint(t_dev * RATE).astype(int)
        k_on, k_off = int(3.0 * RATE), int(9.0 * RATE)
        at_on, at_off = t[k == k_on][0], t[k == k_off][0]
        start = _mark(daemon, "extension", "--at", repr(float(at_on)))
        end = _mark(daemon, "extension", "--end", "--at", repr(float(at_off)))
        assert start["covers"][0] == start["seq"], "a late marker says what it covers"
        assert end["action"] == "end" and end["seq"] > start["seq"]
        msg = wait_for(lambda: sub.recv(0.5), 10, what="epoch summary")
    summary = msg.header
    on = int(np.flatnonzero(k == k_on)[0]) + hist.seq
    off = int(np.flatnonzero(k == k_off)[0]) + hist.seq
    assert (summary["onset_seq"], summary["end_seq"]) == (on, off)
    nb = int(2.0 * RATE)
    truth = phys.hb_truth(np.arange(k_on - nb, k_off))
    expect = truth[nb:].mean(0) - truth[:nb].mean(0)  # (2, n_ch) µM
    np.testing.assert_allclose(summary["mean_hbo"], expect[0], atol=2e-3)
    np.testing.assert_allclose(summary["mean_hbr"], expect[1], atol=2e-3)
    # and the response itself dominates: oxy-Hb falls, deoxy-Hb rises, as simulated
    resp = response(np.arange(k_on, k_off) / RATE).mean(0)
    np.testing.assert_allclose(summary["mean_hbo"], resp[0], atol=0.5)
    np.testing.assert_allclose(summary["mean_hbr"], resp[1], atol=0.5)
    assert max(summary["mean_hbo"]) < -1.5 and min(summary["mean_hbr"]) > 0.8
    # the retagged history carries the label for exactly the epoch's samples
    again = daemon.subscriber(["hb"])
    try:
        labels = again.control.history(since=on - 2, until=off + 2)["hb"].header["epoch"]
    finally:
        again.close()
    assert labels == [None, None] + ["extension"] * (off - on) + [None, None]


def test_bad_markers_get_clear_errors(daemon):
    bad = daemon.cli("mark", "jumping")
    assert bad.returncode == 1 and "unknown label 'jumping'" in bad.stderr
    assert "rest, extension, flexion" in bad.stderr
    end = daemon.cli("mark", "flexion", "--end")
    assert end.returncode == 1 and "no open 'flexion' epoch" in end.stderr
    future = daemon.cli("mark", "rest", "--at", str(time.time() + 60))
    assert future.returncode == 1 and "future" in future.stderr
    inst = _mark(daemon, "footswitch-click", "--instant")
    assert inst["action"] == "instant" and inst["label"] == "footswitch-click"
    status = daemon.control().status()
    assert status["markers"]["rejected"] >= 2 and status["state"] == "streaming"


def test_malformed_and_flooding_control_requests_do_not_disturb_streaming(daemon):
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(daemon.endpoints.control)
    try:
        with daemon.subscriber(["hb"]) as sub:
            rec = Recorder(sub)
            rec.until(lambda: len(rec.t) >= 3, what="samples")
            bad = [
                [b"\xc1\xc1"],
                [wire.pack([1, 2])],
                [wire.pack({"nocmd": 1})],
                [wire.pack({"cmd": "reboot"})],
                [wire.pack({"cmd": "x", "p": "a" * 70000})],
                [wire.pack({"cmd": "info"}), b"extra"],
                [wire.pack({"cmd": "history", "since": "zero"})],
                [wire.pack({"cmd": "mark", "label": 7})],
                [wire.pack({"cmd": "mark", "label": "rest", "action": "sideways"})],
            ]
            for frames in bad:
                sock.send_multipart([b"", *frames])
            replies = []
            for _ in bad:
                assert sock.poll(5000), "every malformed request gets a reply"
                replies.append(wire.unpack(sock.recv_multipart()[-1]))
            assert all(r["ok"] is False and r["error"] for r in replies)
            # a flood: 1,000 markers per second for 2 s, replies collected as they come
            sent = got = 0
            t0 = time.monotonic()
            while time.monotonic() - t0 < 2.0:
                target = int((time.monotonic() - t0) * 1000)
                while sent < target:
                    sock.send_multipart(
                        [b"", wire.pack({"cmd": "mark", "label": "tick", "action": "instant"})]
                    )
                    sent += 1
                while sock.poll(0):
                    got += wire.unpack(sock.recv_multipart()[-1])["ok"]
                rec.pump(0.001)
            deadline = time.monotonic() + 10
            while got < sent and time.monotonic() < deadline:
                if sock.poll(100):
                    got += wire.unpack(sock.recv_multipart()[-1])["ok"]
            assert got == sent >= 1900
            rec.until(lambda: max(rec.t.values()) > time.time() - 0.5, what="fresh samples")
            seqs = sorted(rec.t)
            assert seqs == list(range(seqs[0], seqs[-1] + 1)), "no sample lost"
            status = daemon.control().status()
            assert status["state"] == "streaming"
            assert status["counters"]["control_rejected"] >= 5
    finally:
        sock.close(linger=0)


def test_late_marker_cannot_rewrite_epochs_marked_after_it(daemon):
    with daemon.subscriber(["hb"]) as sub:
        rec = Recorder(sub)
        rec.until(lambda: len(rec.t) >= 5, what="samples")
        t_past = max(rec.t.values())  # a published sample's time
        flexion = _mark(daemon, "flexion")
        rec.until(lambda: max(rec.t.values()) > flexion["t"] + 0.3, what="epoch samples")
        _mark(daemon, "flexion", "--end")
        late = daemon.cli("mark", "extension", "--at", repr(t_past))
        assert late.returncode == 1 and "before the last epoch change" in late.stderr
        # after the last change a late marker is fine, and says what it covers
        rec.until(lambda: max(rec.t.values()) > time.time() - 0.2, what="fresh samples")
        ok = _mark(daemon, "rest", "--at", repr(max(rec.t.values())))
        assert ok["seq"] <= ok["published_upto"] and ok["action"] == "start"
