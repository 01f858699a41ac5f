"""``nirsd lsl``: pylsl inlets in the test receive what a Subscriber receives."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

pylsl = pytest.importorskip("pylsl")

from nirsd.cli.testing import DaemonProcess, simulated_config, wait_for  # noqa: E402
from nirsd.daemon import wire  # noqa: E402

LABELS = ("L3 left", "L4 right", "L5 mid")
N_CH = len(LABELS)


def config_text() -> str:
    chans = "".join(f'[[channel]]\nindex = {i}\nlabel = "{lab}"\n' for i, lab in enumerate(LABELS))
    return simulated_config(channels=N_CH, rate_hz=20.0, extra=chans)


def _started(d: DaemonProcess):
    d.start()
    try:
        wait_for(lambda: d.control().status().get("baseline_ready"), 20, what="baseline")
        yield d
    finally:
        d.stop()


@pytest.fixture
def daemon(tmp_path):
    """A daemon of the test's own (the restart test stops and starts it)."""
    yield from _started(DaemonProcess(tmp_path, config_text()))


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One daemon for the tests that only read its stream or mark a closed epoch."""
    yield from _started(DaemonProcess(tmp_path_factory.mktemp("lsl"), config_text()))


@pytest.fixture
def prefix() -> str:
    return f"nirsdtest{uuid.uuid4().hex[:10]}"


def start_bridge(d: DaemonProcess, prefix: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "nirsd.cli", "lsl", "--name", prefix],
        env=d.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def stop_bridge(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def resolve(name: str) -> pylsl.StreamInfo:
    found = pylsl.resolve_byprop("name", name, minimum=1, timeout=15)
    assert found, f"no LSL stream named {name}"
    return found[0]


def channels(info: pylsl.StreamInfo) -> list[dict[str, str]]:
    out, ch = [], info.desc().child("channels").child("channel")
    while not ch.empty():
        out.append({k: ch.child_value(k) for k in ("label", "type", "unit", "wavelength")})
        ch = ch.next_sibling()
    return out


def test_lsl_hb_and_raw_match_the_subscriber(shared, prefix):
    daemon = shared
    stream = daemon.control().info()["stream"]
    sub = daemon.subscriber(("hb", "raw"))
    bridge = start_bridge(daemon, prefix)
    hb_in = raw_in = None
    try:
        hb_info = resolve(f"{prefix}_hb")
        assert hb_info.type() == "NIRS"
        assert hb_info.source_id() == f"nirsd-{stream}-hb"
        assert hb_info.nominal_srate() == 20.0
        assert hb_info.channel_format() == pylsl.cf_double64
        hb_in = pylsl.StreamInlet(hb_info)
        full = hb_in.info(timeout=10)
        chans = channels(full)
        assert [c["label"] for c in chans] == [
            f"S{i}_D{i} {f}" for i in range(1, N_CH + 1) for f in ("hbo", "hbr")
        ]
        assert [c["type"] for c in chans] == ["HbO", "HbR"] * N_CH
        assert {c["unit"] for c in chans} == {"M"}
        raw_in = pylsl.StreamInlet(resolve(f"{prefix}_raw"))
        raw_chans = channels(raw_in.info(timeout=10))
        assert [c["label"] for c in raw_chans] == [
            f"S{i}_D{i} {w}" for i in range(1, N_CH + 1) for w in (760, 850)
        ]
        assert {c["unit"] for c in raw_chans} == {"counts"}
        hb_in.open_stream(timeout=10)
        raw_in.open_stream(timeout=10)

        got: list[np.ndarray] = []
        stamps: list[float] = []
        raw_got: list[np.ndarray] = []

        def pull() -> bool:
            data, ts = hb_in.pull_chunk(timeout=0.2)
            if data:
                got.extend(np.asarray(data))
                stamps.extend(ts)
            rdata, _ = raw_in.pull_chunk(timeout=0.0)
            if rdata:
                raw_got.extend(np.asarray(rdata))
            return len(got) >= 40 and len(raw_got) >= 20

        wait_for(pull, 20, interval=0.0, what="40 hb samples over LSL")
        offset = pylsl.local_clock() - time.time()

        # everything the subscriber received so far, by value of the first channel's HbO
        by_value: dict[float, tuple[int, np.ndarray, float]] = {}
        raw_by_value: dict[float, np.ndarray] = {}
        wanted = {float(x[0]) for x in got}
        raw_wanted = {float(x[0]) for x in raw_got}
        deadline = time.monotonic() + 10
        while (
            not (wanted <= by_value.keys() and raw_wanted <= raw_by_value.keys())
            and time.monotonic() < deadline
        ):
            msg = sub.recv(0.5)
            if msg is None:
                continue
            for i in range(msg.n):
                if msg.topic == "hb":
                    # channel-major HbO, HbR in M, as the bridge computes it
                    row = msg.array[i : i + 1, :2].transpose(0, 2, 1).reshape(1, -1)[0] * 1e-6
                    by_value[float(row[0])] = (msg.seq + i, row, msg.header["t"][i])
                else:
                    row = msg.array[i].reshape(-1)
                    raw_by_value[float(row[0])] = row
        seqs = []
        for sample, ts in zip(got, stamps):
            assert float(sample[0]) in by_value, "an LSL hb sample the subscriber never saw"
            seq, row, t = by_value[float(sample[0])]
            np.testing.assert_array_equal(sample, row)
            assert abs(ts - (t + offset)) < 0.01
            seqs.append(seq)
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # contiguous, in order
        for sample in raw_got:
            np.testing.assert_array_equal(sample, raw_by_value[float(sample[0])])
        assert stop_bridge(bridge) == 0
    finally:
        for inlet in (hb_in, raw_in):
            if inlet is not None:
                inlet.close_stream()
        stop_bridge(bridge)
        sub.close()


def test_lsl_markers_from_nirsd_mark(shared, prefix):
    daemon = shared
    probe = daemon.cli("mark", "--help")
    if probe.returncode != 0:
        pytest.skip("nirsd mark not available")
    bridge = start_bridge(daemon, prefix)
    inlet = None
    try:
        # the bridge builds its outlets on the first message it sees
        info = resolve(f"{prefix}_markers")
        assert info.type() == "Markers"
        assert info.channel_format() == pylsl.cf_string
        assert info.nominal_srate() == pylsl.IRREGULAR_RATE
        inlet = pylsl.StreamInlet(info)
        inlet.open_stream(timeout=10)
        acks = []
        for action in ("start", "end"):
            out = daemon.cli("mark", "extension", *(["--end"] if action == "end" else []))
            if out.returncode != 0 and "unknown cmd" in out.stderr:
                pytest.skip("the daemon has no marker channel yet")
            assert out.returncode == 0, out.stderr
            acks.append(out.stdout)
        received: list[tuple[str, float]] = []

        def pull() -> bool:
            sample, ts = inlet.pull_sample(timeout=0.2)
            if sample:
                received.append((sample[0], ts, sample[4]))
            return len(received) >= 2

        wait_for(pull, 15, interval=0.0, what="two markers over LSL")
        assert [r[0] for r in received] == ["extension/start", "extension/end"]
        acked = [json.loads(a) for a in acks]
        assert [r[2] for r in received] == [str(a["seq"]) for a in acked]
        assert received[0][1] <= received[1][1]
        assert abs(received[1][1] - pylsl.local_clock()) < 10.0
    finally:
        if inlet is not None:
            inlet.close_stream()
        stop_bridge(bridge)


def test_bridge_pushes_marker_messages_with_mapped_timestamps(prefix):
    """The marker outlet in-process: decoded wire messages in, LSL strings out."""
    from nirsd.clients.lsl_bridge import LslBridge

    info = {
        "stream": uuid.uuid4().hex[:16],
        "n_channels": 2,
        "rate_hz": 10.0,
        "wavelengths_nm": [760.0, 850.0],
        "channels": [{"index": 0, "label": "a"}, {"index": 1, "label": "b"}],
    }
    bridge = LslBridge(info, prefix=prefix)
    inlet = None
    try:
        found = pylsl.resolve_byprop(
            "source_id", f"nirsd-{info['stream']}-markers", minimum=1, timeout=15
        )
        assert found
        inlet = pylsl.StreamInlet(found[0])
        inlet.open_stream(timeout=10)
        t0 = time.time()
        sent = [("flexion", "start", t0), ("flexion", "end", t0 + 1.5), ("rest", "instant", t0)]
        for i, (label, action, t) in enumerate(sent):
            frames = wire.encode_event(
                "marker",
                {
                    "v": 1,
                    "stream": info["stream"],
                    "topic": "marker",
                    "msg": i + 1,
                    "label": label,
                    "action": action,
                    "t": t,
                    "seq": 10 * i,
                    "source": "control",
                },
            )
            bridge.handle(wire.decode(frames))
        offset = pylsl.local_clock() - time.time()
        received = []

        def pull() -> bool:
            sample, ts = inlet.pull_sample(timeout=0.2)
            if sample:
                received.append((sample[0], ts))
            return len(received) >= 3

        wait_for(pull, 15, interval=0.0, what="three markers")
        assert [r[0] for r in received] == ["flexion/start", "flexion/end", "rest/instant"]
        for (_, ts), (_, _, t) in zip(received, sent):
            assert abs(ts - (t + offset)) < 0.01
        # a sample message of the wrong shape is a counted drop, not an exception
        bad = wire.decode(
            wire.encode_array(
                "hb",
                {
                    "v": 1,
                    "stream": info["stream"],
                    "topic": "hb",
                    "msg": 1,
                    "seq": 0,
                    "n": 1,
                    "t": [t0],
                },
                np.zeros((1, 3, 5)),
            )
        )
        bridge.handle(bad)
        assert bridge.dropped == 1
    finally:
        if inlet is not None:
            inlet.close_stream()
        bridge.close()


def test_lsl_follows_a_daemon_restart(daemon, prefix):
    bridge = start_bridge(daemon, prefix)
    inlets = []
    try:
        for round_ in range(2):
            if round_:
                daemon.stop()
                daemon.start()
                wait_for(
                    lambda: daemon.control().status().get("baseline_ready"),
                    20,
                    what="baseline after restart",
                )
            stream = daemon.control().info()["stream"]
            found = pylsl.resolve_byprop("source_id", f"nirsd-{stream}-hb", minimum=1, timeout=15)
            assert found, f"no hb outlet for stream {stream}"
            inlet = pylsl.StreamInlet(found[0])
            inlets.append(inlet)
            inlet.open_stream(timeout=10)
            got: list = []

            def pull() -> bool:
                data, _ = inlet.pull_chunk(timeout=0.2)
                got.extend(data)
                return len(got) >= 10

            wait_for(pull, 15, interval=0.0, what=f"hb samples of stream {stream}")
            assert all(len(s) == 2 * N_CH for s in got)  # HbO, HbR per channel
        assert bridge.poll() is None
        assert stop_bridge(bridge) == 0
        lines = bridge.stdout.read().splitlines()
        assert len([x for x in lines if x.startswith("nirsd lsl: stream")]) == 2
    finally:
        for inlet in inlets:
            inlet.close_stream()
        stop_bridge(bridge)
