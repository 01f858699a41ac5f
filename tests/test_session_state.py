"""The session state machine in-process: a real Acquisition fed samples by hand, its real
control socket (a DEALER) and data socket (a SUB); no device, no subprocess.

The rig plays a 50 Hz device: one sample every 20 ms of wall-clock time (a device's
pace, not a wait for a condition), timed by its arrival.  Every alignment is checked
exactly, against the marker channel's own (a protocol's markers) and against the ring's
sample times (the first sample at or after the requested time).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import zmq
from stream_support import in_process, loop_config

from nirsd.cli.testing import wait_for
from nirsd.daemon import wire
from nirsd.daemon.acquisition import Acquisition
from nirsd.drivers.base import Info, Sample

PERIOD_S = 0.02
STEPS = [["rest", 0.1], ["extension", 0.12]]


@pytest.fixture
def rig(tmp_path):
    cfg = loop_config(tmp_path, protocol={"p": {"steps": STEPS}})
    with in_process(cfg) as (acq, ctx):  # closes the rig's sockets too
        acq._on_info(Info(1, 2, (760.0, 850.0), 1 / PERIOD_S, "probe"))
        yield Rig(acq, ctx, tmp_path)


class Rig:
    def __init__(self, acq: Acquisition, ctx: zmq.Context, tmp_path) -> None:
        self.acq, self.ctx = acq, ctx
        self.dealer = ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.connect(f"ipc://{tmp_path}/control")
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        for topic in (b"session", b"marker", b"status"):
            self.sub.setsockopt(zmq.SUBSCRIBE, topic)
        self.sub.connect(f"ipc://{tmp_path}/data")
        self.events: list[wire.Message] = []

        def joined() -> bool:  # the subscription has reached the publisher
            acq.publisher.publish_event("status", {"event": "hello"})
            return any(m.topic == "status" for m in self.pump())

        wait_for(joined, 10, 0.02, "subscription")
        self.next_t = time.time()

    def feed(self, count: int = 1) -> None:
        """``count`` samples at the device's pace, each stamped with its arrival."""
        for _ in range(count):
            time.sleep(max(0.0, self.next_t - time.time()))
            self.next_t = max(self.next_t, time.time()) + PERIOD_S
            intensity = np.full((2, 2), 1000.0)
            self.acq.handle_frames([Sample(None, None, 0, intensity)], time.time())

    def send(self, cmd: str, **fields) -> None:
        self.dealer.send_multipart([b"", wire.pack({"cmd": cmd, **fields})])
        wait_for(self.acq.control.serve_pending, 5, 0.005, "request served")

    def feed_until_reply(self, max_samples: int = 250) -> dict:
        """Samples until the deferred reply comes (its sample has arrived)."""
        for _ in range(max_samples):
            self.feed()
            reply = self.reply(0)
            if reply is not None:
                return reply
        raise AssertionError(f"no reply within {max_samples} samples")

    def reply(self, timeout: float = 2.0) -> dict | None:
        if not self.dealer.poll(int(timeout * 1000)):
            return None
        return wire.unpack(self.dealer.recv_multipart()[-1])

    def request(self, cmd: str, **fields) -> dict:
        self.send(cmd, **fields)
        reply = self.reply()
        assert reply is not None
        return reply

    def pump(self) -> list[wire.Message]:
        out = []
        while self.sub.poll(50):
            out.append(wire.decode(self.sub.recv_multipart()))
        self.events += out
        return out

    def of(self, topic: str) -> list[dict]:
        self.pump()
        return [m.header for m in self.events if m.topic == topic]

    def t(self, seq: int) -> float:
        ring = self.acq.pipeline.ring
        return float(ring._t[seq % ring.capacity])


def test_start_waits_for_its_first_sample_then_stop_for_its_end(rig):
    rig.feed(5)
    rig.send("session_start", subject="P01", session="week0", group="eperisone", task="lumbar")
    assert rig.reply(0.2) is None  # deferred until the first sample at or after now
    assert rig.acq.status()["session"]["state"] == "starting"
    ack = rig.feed_until_reply()
    assert ack["ok"] and ack["seq"] >= 5 and ack["state"] == "running"
    assert rig.t(ack["seq"]) >= ack["start_t"] > rig.t(ack["seq"] - 1)
    assert (ack["subject"], ack["session"], ack["group"], ack["task"]) == (
        "P01",
        "week0",
        "eperisone",
        "lumbar",
    )
    refused = rig.request("session_start", subject="P02", session="week0")
    assert not refused["ok"] and "one session at a time" in refused["error"]
    assert ack["session_id"] in refused["error"]
    assert rig.acq.status()["session"]["session_id"] == ack["session_id"]
    rig.feed(3)
    rig.send("session_stop")
    assert rig.reply(0.2) is None
    end = rig.feed_until_reply()
    assert end["reason"] == "stopped" and end["state"] == "ended"
    assert rig.t(end["end_seq"]) >= end["end_t"] > rig.t(end["end_seq"] - 1)
    assert rig.acq.status()["session"] is None
    sessions = rig.of("session")
    assert [(s["event"], s["session_id"]) for s in sessions] == [
        ("start", ack["session_id"]),
        ("end", ack["session_id"]),
    ]
    assert sessions[1]["seq"] == ack["seq"] and sessions[1]["end_seq"] == end["end_seq"]
    status = rig.request("session_status")
    assert status["session"] is None and status["last"]["end_seq"] == end["end_seq"]
    assert not rig.request("session_stop")["ok"]


def test_protocol_session_spans_exactly_the_protocol(rig):
    rig.feed(3)
    rig.send("session_start", subject="P01", session="week0", protocol="p")
    ack = rig.feed_until_reply()
    assert rig.t(ack["seq"]) >= ack["start_t"] > rig.t(ack["seq"] - 1)
    last = None
    for _ in range(100):  # the protocol lasts 0.22 s: about 11 samples
        rig.feed()
        last = rig.request("session_status")["last"]
        if last is not None:
            break
    end = last
    assert end["session_id"] == ack["session_id"] and end["reason"] == "protocol finished"
    marks = [m for m in rig.of("marker") if m.get("protocol") == "p"]
    starts = [m["seq"] for m in marks if m["action"] == "start"]
    ends = [m["seq"] for m in marks if m["action"] == "end"]
    assert starts[0] == ack["seq"] and ends[-1] == end["end_seq"]
    assert rig.t(end["end_seq"]) >= end["end_t"] > rig.t(end["end_seq"] - 1)
    assert end["end_t"] == pytest.approx(ack["start_t"] + 0.22)
    assert len(starts) == len(ends) == 2
    assert rig.acq.markers.protocol is None


def test_stopping_the_protocol_or_the_session_ends_both(rig):
    rig.feed(2)
    rig.send("session_start", subject="P01", session="w0", protocol="p")
    ack = rig.feed_until_reply()
    rig.feed(2)
    assert rig.request("protocol", action="stop")["ok"]
    end = None
    for _ in range(250):
        rig.feed()
        end = rig.request("session_status")["last"]
        if end is not None:
            break
    assert end["reason"] == "protocol stopped"
    stop_marker = [m for m in rig.of("marker") if m.get("protocol") == "p"][-1]
    assert stop_marker["action"] == "end" and stop_marker["seq"] == end["end_seq"]
    assert stop_marker["t"] == end["end_t"] and end["end_seq"] > ack["seq"]

    rig.send("session_start", subject="P01", session="w1", protocol="p")
    second = rig.feed_until_reply()
    rig.send("session_stop")
    end = rig.feed_until_reply()
    assert end["session_id"] == second["session_id"] and end["reason"] == "protocol stopped"
    assert rig.acq.markers.protocol is None


def test_refusals_change_nothing(rig):
    rig.feed()
    for fields, match in (
        ({"subject": "P-1", "session": "w0"}, "letters and digits"),
        ({"subject": "P1", "session": "w0", "protocol": "nope"}, "unknown protocol"),
        ({"subject": "P1", "session": "w0", "att_mm": [1, 2, 3]}, "one per channel"),
        ({"subject": "P1"}, "session must be"),
    ):
        reply = rig.request("session_start", **fields)
        assert not reply["ok"] and match in reply["error"], reply
    assert rig.request("protocol", action="start", name="p")["ok"]
    reply = rig.request("session_start", subject="P1", session="w0", protocol="p")
    assert not reply["ok"] and "is running" in reply["error"]
    assert rig.acq.status()["session"] is None and rig.of("session") == []


def test_a_session_without_samples_ends_at_once(rig):
    rig.feed(4)
    rig.send("session_start", subject="P01", session="w0", att_mm=6.0)
    ack = rig.feed_until_reply()
    assert ack["att_mm"] == [6.0, 6.0]
    rig.acq.device.state = "disconnected"  # unplugged: no sample can follow
    end = rig.request("session_stop")
    assert end["end_seq"] == rig.acq.next_seq > ack["seq"]
    rig.send("session_start", subject="P02", session="w0")
    pending = rig.reply()
    assert pending["pending"] and pending["seq"] is None
    first = rig.acq.next_seq
    rig.feed()  # samples again: the pending session starts on the first one
    assert rig.acq.status()["session"]["seq"] == first
