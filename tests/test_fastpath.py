"""The lean per-frame path (daemon/fastpath.py) publishes exactly what the general path
publishes: the same bytes in every frame of every sample message, the same ring, the
same counters, for the same input bytes, across the switches between the two paths
(the baseline, a marker, a lost frame, a burst, a split frame, bad light, a saturation
flag, an open epoch, a late subscriber to raw and od)."""

from __future__ import annotations

import os
import tty
from pathlib import Path

import numpy as np
import pytest
import zmq
from stream_support import in_process

from nirsd.cli.testing import device_config, wait_for
from nirsd.daemon import config, kernel
from nirsd.daemon.acquisition import Acquisition
from nirsd.drivers import nirsb

N_CH, RATE = 4, 10.0
BASELINE_S = 1.0  # 10 frames
SAMPLE_TOPICS = (b"hb", b"raw", b"od")


class Pty:
    """The device side of a real pseudo-terminal."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            os.close(fd)


def counts(k: int) -> np.ndarray:
    x = 30_000 + 37 * np.arange(N_CH * 2).reshape(N_CH, 2) + (k * 131) % 997
    return x.astype(np.int32)


def data(k: int, flags: int = 0, values: np.ndarray | None = None) -> bytes:
    return nirsb.encode_data(
        k % 65536, int(k * 1e6 / RATE), counts(k) if values is None else values, flags
    )


def script() -> list[tuple[str, object]]:
    """Writes and actions, in order: ("write", bytes) is one read of the port."""
    info = nirsb.encode_info(N_CH, [760, 850], int(RATE * 1000), "lean-test")
    steps: list[tuple[str, object]] = [("write", info)]
    k = 0

    def frames(n: int) -> None:
        nonlocal k
        for _ in range(n):
            steps.append(("write", data(k)))
            k += 1

    frames(15)  # the baseline (general path), then lean frames
    steps.append(("subscribe", b"raw"))
    frames(3)
    steps.append(("mark", {"cmd": "mark", "label": "extension"}))  # pending, then open
    frames(4)
    steps.append(("write", data(k) + data(k + 1)))  # a burst: one read, two frames
    k += 2
    frames(2)
    k += 1  # a lost frame: the gap goes the general way
    frames(3)
    whole = data(k)
    # split across three reads (the first two kept for the frame, the third ends it)
    steps += [("write", whole[:7]), ("write", whole[7:20]), ("write", whole[20:])]
    k += 1
    frames(2)
    bad = counts(k)
    bad[1, 0] = 0  # no light on one channel
    steps.append(("write", data(k, values=bad)))
    k += 1
    steps.append(("write", data(k, flags=nirsb.FLAG_SATURATED)))
    k += 1
    frames(2)
    steps.append(("mark", {"cmd": "mark", "label": "extension", "action": "end"}))
    frames(3)
    steps.append(("subscribe", b"od"))
    frames(3)
    steps.append(("write", data(k, flags=nirsb.FLAG_AMBIENT)))
    k += 1
    frames(2)
    return steps


def run(tmp: Path, lean: bool, extra: str = "") -> tuple[list[list[bytes]], Acquisition, dict]:
    """Play the script through a real pty into an Acquisition; the sample messages."""
    pty = Pty()
    run_dir = tmp / (("lean" if lean else "general") + str(len(extra)))
    run_dir.mkdir()
    os.environ["NIRSD_RUNTIME_DIR"] = str(run_dir)
    (run_dir / "c.toml").write_text(device_config(pty.port, baseline_s=BASELINE_S, extra=extra))
    cfg = config.load(run_dir / "c.toml")
    with in_process(cfg) as (acq, ctx):  # closes the SUB below too
        acq.publisher.stream = "0" * 16
        acq.lean.enabled = lean
        clock = {"t": 1_700_000_000.0}  # the same arrival stamps on both paths

        def now() -> float:
            clock["t"] += 0.1
            return clock["t"]

        acq.lean.now = now
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"hb")
        sub.connect(cfg.endpoints.data)
        got: list[list[bytes]] = []

        def drain() -> None:
            while sub.poll(0):
                msg = sub.recv_multipart()
                if msg[0] in SAMPLE_TOPICS:
                    got.append(msg)

        def subscribed(topic: str) -> bool:
            acq.publisher.read_subscriptions()
            return acq.publisher.wants(topic)

        try:
            wait_for(lambda: subscribed("hb"), 10, what="hb subscription")
            assert acq.device.try_open(0.0)
            os.read(pty.master, 100)  # the ?b start command
            for action, arg in script():
                if action == "write":
                    pty.write(arg)
                    fd = acq.device.fileno()
                    wait_for(lambda: _readable(fd), 10, what="bytes on the pty")
                    acq.lean.turn(0.0)
                elif action == "mark":
                    acq.markers._cmd_mark({**arg, "t": clock["t"] + 0.15})
                elif action == "subscribe":
                    sub.setsockopt(zmq.SUBSCRIBE, arg)
                    wait_for(lambda: subscribed(arg.decode()), 10, what="subscription")
                drain()
            sent = sum(acq.publisher.counts[t.decode()] for t in SAMPLE_TOPICS)
            wait_for(lambda: (drain(), len(got) >= sent)[1], 10, what="every message")
            ring = acq.pipeline.ring
            state = {
                "ring": ring.read(0)[0],
                "counters": acq.device.counters(),
                "lost": acq.stream.lost_samples,
                "gaps": [dict(g) for g in acq.stream.gaps],
                "next_seq": acq.next_seq,
                "clock": (acq.pipeline.clock.clamped, acq.pipeline.clock.outliers),
            }
            return got, acq, state
        finally:
            pty.close()


def _readable(fd: int) -> bool:
    import select

    return bool(select.select([fd], [], [], 0)[0])


#: the default optics, and a saturation level and light floor (checked on the lean path
#: too: the frame with a 0 is then also below the floor, and one count is saturated)
OPTICS = ("", "[optics]\nsaturation_level = 31200.0\nlight_floor = 100.0\n")


#: the lean path with the compiled kernel (daemon/kernel.py), where it was built, and
#: with numpy (as where it could not be built); the general path follows the same switch
KERNEL = (True, False) if kernel.built() else (False,)


@pytest.fixture(
    scope="module",
    params=[(o, k) for k in KERNEL for o in OPTICS],
    ids=lambda v: ("levels" if v[0] else "default") + ("-compiled" if v[1] else "-numpy"),
)
def both(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("lean")
    extra, compiled = request.param
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kernel, "enabled", compiled)
        general = run(tmp, lean=False, extra=extra)
        lean = run(tmp, lean=True, extra=extra)
    assert (lean[1].lean._prep.kernel is not None) is compiled  # the path meant was taken
    assert lean[1].lean._prep.sends_hb is compiled  # and the kernel sent the hb messages
    return general, lean


def test_lean_and_general_paths_send_the_same_bytes(both):
    (general, acq_g, _), (lean, acq_l, _) = both
    assert acq_g.lean.frames == 0
    assert acq_l.lean.frames >= 20  # most streaming frames went the lean way
    assert acq_l.lean.partial_reads == 2 and acq_g.lean.partial_reads == 0
    assert len(lean) == len(general) > 60
    for a, b in zip(general, lean):
        assert a == b, (a[0], a[1])
    topics = [m[0] for m in lean]
    assert topics.count(b"raw") > 10 and topics.count(b"od") > 3


def test_the_switches_keep_the_state_the_same(both):
    (_, _, sg), (_, _, sl) = both
    for field in ("t", "t_dev", "raw", "hb", "quality", "flags", "epoch"):
        a, b = getattr(sg["ring"], field), getattr(sl["ring"], field)
        assert a.shape == b.shape and np.array_equal(a, b, equal_nan=True), field
    assert sg["counters"] == sl["counters"]
    assert sg["counters"]["lost_frames"] == 1
    assert sg["lost"] == sl["lost"] == 1
    assert sg["gaps"] == sl["gaps"] and sg["gaps"][0]["lost_samples"] == 1
    assert sg["next_seq"] == sl["next_seq"] and sg["clock"] == sl["clock"]
    # the marker's epoch reached the samples on both paths
    assert (sl["ring"].epoch != -1).sum() >= 8


def test_the_clock_in_one_call_matches_unwrap_and_to_host():
    """DeviceClock.host_one (the lean path's) = unwrap_one + to_host_one, through the
    floor estimate, the drift fit, wraps of the device clock, jitter, late and early
    blocks, a restart and reordered frames."""
    from nirsd.daemon.clock import DeviceClock

    rng = np.random.default_rng(3)
    modulus = 2**32 / 1e6
    a, b = DeviceClock(modulus, 100.0), DeviceClock(modulus, 100.0)
    t_dev, host = modulus - 20.0, 1.7e9  # wraps after 20 s
    for k in range(6000):
        t_dev += 0.01
        host += 0.01 * (1 + 2e-5)  # a drifting crystal
        arrival = host + 0.002 + rng.exponential(0.0005)
        if k % 997 == 500:
            arrival += 0.5  # a late block
        if k % 1499 == 700:
            arrival -= 0.4  # implausibly early: an outlier
        if k % 1201 == 900:
            arrival -= 0.1  # early, yet plausible: the sample is given its arrival
        raw = t_dev % modulus
        if k == 4000:
            raw = 3.0  # the device restarted
            t_dev = 3.0
        if k in (5000, 5001):  # two frames out of order
            raw = (t_dev + (0.01 if k == 5000 else -0.01)) % modulus
        want_dev = a.unwrap_one(raw)
        want = (want_dev, a.to_host_one(want_dev, arrival))
        assert b.host_one(raw, arrival) == want, k
    assert (a.restarts, a.outliers, a.clamped) == (b.restarts, b.outliers, b.clamped)
    assert a._fit == b._fit and a._fit is not None and a.outliers > 0
