"""The compiled per-frame kernel (daemon/_lean.c through daemon/kernel.py) against the
Python it replaces: ``NirsbParser.feed_one`` for what a frame is (the same frames taken,
the same ones left to the general path, on well-formed and on hostile bytes), numpy for
the conversion (within a few units in the last place: libm's logarithm against numpy's),
``Pipeline.store`` for the ring row; and a clear error for a kernel set up wrongly."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nirsd.daemon import config, kernel
from nirsd.daemon.pipeline import Pipeline
from nirsd.daemon.ringbuffer import NO_EPOCH
from nirsd.drivers import nirsb
from nirsd.drivers.base import Info, Sample

pytestmark = pytest.mark.skipif(not kernel.built(), reason="the kernel was not built")

N_CH, N_WL, RATE = 6, 2, 10.0


def pipeline(extra: dict | None = None) -> Pipeline:
    cfg = config.parse(
        {
            "device": {"driver": "nirsb", "port": "/dev/null"},
            "baseline": {"seconds": 0.1},
            **(extra or {}),
        }
    )
    p = Pipeline(cfg, Info(1, N_CH, (760.0, 850.0), RATE, "t"), nirsb.NirsbParser)
    x = np.full((1, N_CH, N_WL), 30_000.0)
    block, _ = p.ingest([Sample(0, 0.0, 0, x[0])], 1000.0)  # the one-sample baseline
    p.store(block)
    assert p.converter.baseline_ready
    return p


def counts(k: int) -> np.ndarray:
    return (20_000 + 1_013 * np.arange(N_CH * N_WL).reshape(N_CH, N_WL) + 97 * k).astype(np.int32)


def make(p: Pipeline) -> tuple[object, np.ndarray, int, bytes]:
    length, head = nirsb.NirsbParser.data_head(N_CH, N_WL)
    od = np.empty((1, N_CH, N_WL))
    return kernel.frame_kernel(length, head, p.converter, od, p.ring), od, length, head


def test_a_frame_decodes_and_converts_as_the_python_path_does():
    p = pipeline()
    k, od, length, head = make(p)
    parser = nirsb.NirsbParser()
    parser._last_seq = 4
    wire = nirsb.encode_data(5, 500_000, counts(5), flags=nirsb.FLAG_AMBIENT)
    got = k.frame(b"", wire, 4)
    want = parser.feed_one(wire, length, head)
    assert want is not None and got is not None
    seq, flags, t_us, raw, hb = got
    assert (seq, flags, t_us, raw) == want
    I = counts(5).astype(np.float64)[None]
    conv = p.converter
    od_np = conv._log_i0 - np.log(I)
    hb_np = np.einsum("cjw,ncw->njc", conv._P3, od_np)
    np.testing.assert_array_max_ulp(od, od_np, maxulp=4)
    hb_c = np.frombuffer(hb, "<f8").reshape(1, 3, N_CH)
    np.testing.assert_allclose(hb_c, hb_np, rtol=1e-12, atol=1e-12)
    assert np.all(np.abs(hb_c[0, :2]) > 0.1)  # a real change, not zeros
    np.testing.assert_allclose(hb_c[0, 2], hb_c[0, 0] + hb_c[0, 1], rtol=1e-14)  # HbT
    # the converter's general path uses the same routine: the same bits
    od_g, hb_g = kernel.mbll(conv._log_i0, conv._P3, I)
    assert hb_g.tobytes() == hb and np.array_equal(od_g, od)


def test_a_frame_split_across_reads_and_the_ones_left_to_the_general_path():
    p = pipeline({"optics": {"saturation_level": 60_000.0, "light_floor": 100.0}})
    k, _, _, _ = make(p)
    wire = nirsb.encode_data(8, 800_000, counts(8))
    assert k.frame(wire[:5], wire[5:], 7)[0] == 8  # pending + the rest
    assert k.frame(b"", wire, 8) is None  # does not continue the counter
    assert k.frame(b"", wire[:-1], 7) is None  # no delimiter yet
    assert k.frame(b"", wire + wire, 7) is None  # two frames in one read
    assert k.frame(b"", nirsb.encode_data(8, 0, counts(8)[:3]), 7) is None  # other shape
    info = nirsb.encode_info(N_CH, [760, 850], 10_000, "x")
    assert k.frame(b"", info, 7) is None
    damaged = bytearray(wire)
    damaged[6] ^= 0x01
    assert k.frame(b"", bytes(damaged), 7) is None  # CRC
    low = counts(8)
    low[2, 1] = 50  # below the light floor: the general path's per-value checks
    assert k.frame(b"", nirsb.encode_data(8, 0, low), 7)[4] is None
    high = counts(8)
    high[0, 0] = 60_000  # at the saturation level
    assert k.frame(b"", nirsb.encode_data(8, 0, high), 7)[4] is None
    flagged = nirsb.encode_data(8, 0, counts(8), flags=nirsb.FLAG_SATURATED)
    assert k.frame(b"", flagged, 7)[4] is None
    assert k.frame(b"", nirsb.encode_data(0, 0, counts(0)), 65535)[0] == 0  # the wrap


@settings(max_examples=300, deadline=None)
@given(
    base=st.integers(0, 40),
    cut=st.integers(0, 80),
    flips=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
    tail=st.binary(max_size=6),
)
def test_hostile_bytes_take_exactly_the_frames_feed_one_takes(base, cut, flips, tail):
    p = pipeline()
    k, _, length, head = make(p)
    wire = bytearray(nirsb.encode_data(base + 1, 123, counts(base)))
    for at, value in flips:
        if at < len(wire):
            wire[at] = value
    data = bytes(wire) + tail
    pending, data = data[: cut % max(1, len(data))], data[cut % max(1, len(data)) :]
    parser = nirsb.NirsbParser()
    parser._last_seq, parser._pending = base, pending
    want = parser.feed_one(data, length, head)
    got = k.frame(pending, data, base)
    if want is None:
        assert got is None
    else:
        assert got is not None and got[:4] == want


def test_the_ring_row_is_what_the_general_store_writes():
    p = pipeline()
    k, _, _, _ = make(p)
    i = p.ring.head
    seq, flags, t_us, raw, hb = k.frame(b"", nirsb.encode_data(1, 100_000, counts(1)), 0)
    quality = bytes([0, 8, 0, 16, 0, 0])
    k.store(i, 1000.1, 0.1, flags, 3, quality, hb)
    c = i % p.ring.capacity
    assert p.ring._t[c] == 1000.1 and p.ring._t_dev[c] == 0.1
    np.testing.assert_array_equal(p.ring._raw[c], counts(1))
    assert p.ring._hb[c].tobytes() == hb
    assert p.ring._quality[c].tobytes() == quality
    assert p.ring._flags[c] == flags and p.ring._epoch[c] == 3
    k.store(i + p.ring.capacity, 2.0, 2.0, 0, NO_EPOCH, quality, hb)  # the same slot
    assert p.ring._t[c] == 2.0 and p.ring._epoch[c] == NO_EPOCH
    with pytest.raises(ValueError, match="bad row"):
        k.store(i, 1.0, 1.0, 0, 0, b"short", hb)


def test_a_kernel_set_up_wrongly_says_what_is_wrong():
    p = pipeline()
    length, head = nirsb.NirsbParser.data_head(N_CH, N_WL)
    with pytest.raises(ValueError, match="od"):
        kernel.frame_kernel(length, head, p.converter, np.empty((1, N_CH, 3)), p.ring)
    with pytest.raises(ValueError, match="inconsistent"):
        kernel.frame_kernel(length + 4, head, p.converter, np.empty((1, N_CH, N_WL)), p.ring)
    with pytest.raises(ValueError, match="od"):  # read-only: the kernel writes there
        od = np.empty((1, N_CH, N_WL))
        od.flags.writeable = False
        kernel.frame_kernel(length, head, p.converter, od, p.ring)


def test_nirsd_kernel_0_leaves_the_work_to_numpy():
    code = "from nirsd.daemon import kernel; print(kernel.built(), kernel.enabled)"
    env = {**os.environ, "NIRSD_KERNEL": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["True", "False"], out.stderr


def test_a_big_frame_is_checked_and_taken_whole():
    """4096 x 2: COBS blocks of 254 bytes, a 32 kB CRC (the table-driven one)."""
    cfg = config.parse(
        {"device": {"driver": "nirsb", "port": "/dev/null"}, "baseline": {"seconds": 0.1}}
    )
    n_ch = 4096
    p = Pipeline(cfg, Info(1, n_ch, (760.0, 850.0), RATE, "t"), nirsb.NirsbParser)
    block, _ = p.ingest([Sample(0, 0.0, 0, np.full((n_ch, 2), 30_000.0))], 1000.0)
    p.store(block)
    length, head = nirsb.NirsbParser.data_head(n_ch, 2)
    od = np.empty((1, n_ch, 2))
    k = kernel.frame_kernel(length, head, p.converter, od, p.ring)
    values = (25_000 + np.arange(n_ch * 2).reshape(n_ch, 2) % 5000).astype(np.int32)
    wire = nirsb.encode_data(1, 100_000, values)
    parser = nirsb.NirsbParser()
    parser._last_seq = 0
    want = parser.feed_one(wire, length, head)
    got = k.frame(b"", wire, 0)
    assert want is not None and got is not None and got[:4] == want
    np.testing.assert_array_max_ulp(od[0], p.converter._log_i0 - np.log(values), maxulp=4)
    damaged = bytearray(wire)
    damaged[len(wire) // 2] ^= 0x40
    assert k.frame(b"", bytes(damaged), 0) is None


@pytest.mark.parametrize("n_ch, n_wl", [(1, 2), (1, 3), (2, 3), (5, 2), (7, 3)])
def test_the_crc_eight_bytes_at_a_time_holds_at_every_length(n_ch, n_wl):
    """The CRC takes eight bytes a step and the rest one at a time: frames whose checked
    length leaves either remainder are taken, and a flipped bit anywhere (in an eight-byte
    step or in the tail) or a wrong CRC is not."""
    cfg = config.parse(
        {"device": {"driver": "nirsb", "port": "/dev/null"}, "baseline": {"seconds": 0.1}}
    )
    wl = (690.0, 760.0, 850.0)[:n_wl]
    p = Pipeline(cfg, Info(1, n_ch, wl, RATE, "t"), nirsb.NirsbParser)
    block, _ = p.ingest([Sample(0, 0.0, 0, np.full((n_ch, n_wl), 30_000.0))], 1000.0)
    p.store(block)
    length, head = nirsb.NirsbParser.data_head(n_ch, n_wl)
    k = kernel.frame_kernel(length, head, p.converter, np.empty((1, n_ch, n_wl)), p.ring)
    values = (21_000 + 977 * np.arange(n_ch * n_wl).reshape(n_ch, n_wl)).astype(np.int32)
    raw = nirsb.encode_data(1, 100_000, values)
    assert k.frame(b"", raw, 0) is not None
    decoded = bytearray(nirsb.cobs.decode(raw[:-1]))
    for at in (0, 3, 7, len(decoded) - 3):  # header, an eight-byte step, the tail, CRC
        bad = bytearray(decoded)
        bad[at] ^= 0x10
        assert k.frame(b"", nirsb.cobs.encode(bytes(bad)) + b"\x00", 0) is None


def _head(seq: int, t: float, t_dev: float, label, msg: int, quality: bytes, n_ch: int) -> dict:
    """An hb header as Publisher.publish_block lays it out (docs/protocol.md)."""
    return {
        "v": 1,
        "stream": "0123456789abcdef",
        "seq": seq,
        "n": 1,
        "t": [t],
        "t_dev": [t_dev],
        "epoch": [label],
        "topic": "hb",
        "msg": msg,
        "fields": ["hbo", "hbr", "hbt"],
        "units": "uM",
        "quality": quality,
        "dtype": "<f8",
        "shape": [1, 3, n_ch],
    }


def test_the_kernel_packs_hb_headers_as_msgpack_does():
    """The kernel's header is msgpack.packb's, byte for byte: ints at every width
    boundary, floats of every kind, no epoch or labels of every str width (UTF-8 too),
    quality of every bin width."""
    from nirsd.daemon import wire

    k, *_ = make(pipeline())
    for n_ch in (6, 300, 70_000):
        k.sender(0, 0, kernel.hb_segments(_head(0, 0.0, 0.0, None, 0, b"", n_ch)))
        ints = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1]
        floats = [0.0, -0.0, 1.5, -2.25e-300, 1.7e9 + 0.123, float("inf"), float("nan")]
        labels = [None, "extension", "é" * 15, "x" * 31, "x" * 32, "y" * 255, "z" * 256]
        labels.append("w" * 70_000)
        for i, seq in enumerate(ints):
            msg = ints[-1 - i]
            t, t_dev = floats[i % len(floats)], floats[(i + 3) % len(floats)]
            label = labels[i % len(labels)]
            quality = bytes(range(256)) * (n_ch // 256) + bytes(n_ch % 256)
            got = k.hb_header(seq, t, t_dev, label, msg, quality)
            assert got == wire.pack(_head(seq, t, t_dev, label, msg, quality, n_ch))
            assert wire.unpack(got)["seq"] == seq
    with pytest.raises(TypeError, match="label"):
        k.hb_header(1, 0.0, 0.0, 5, 1, b"")
    with pytest.raises(OverflowError):
        k.hb_header(-1, 0.0, 0.0, None, 1, b"")
    with pytest.raises(ValueError, match="per-frame fields in another order"):
        h = _head(0, 0.0, 0.0, None, 0, b"", 6)
        kernel.hb_segments({"msg": 0, **{key: v for key, v in h.items() if key != "msg"}})


def test_the_kernel_sends_the_hb_message_on_a_real_socket(tmp_path):
    """send_hb through libzmq's own zmq_send: a SUB receives the three frames Python's
    sends would have made (topic, the packed header, the payload)."""
    import zmq

    from nirsd.daemon import wire

    p = pipeline()
    k, *_ = make(p)
    ctx = zmq.Context()
    pub = ctx.socket(zmq.XPUB)
    sub = ctx.socket(zmq.SUB)
    try:
        pub.bind(f"ipc://{tmp_path}/d")
        sub.connect(f"ipc://{tmp_path}/d")
        sub.setsockopt(zmq.SUBSCRIBE, b"hb")
        assert pub.poll(5000) and pub.recv() == b"\x01hb"
        assert kernel.hb_sender(k, pub, _head(0, 0.0, 0.0, None, 0, b"", N_CH))
        hb = np.arange(3 * N_CH, dtype="<f8").tobytes()
        q = bytes([8] + [0] * (N_CH - 1))
        for seq in (5, 300):
            k.send_hb(seq, 12.5, 0.5, "flexion", seq + 1, q, hb)
            assert sub.poll(5000)
            topic, head, payload = sub.recv_multipart()
            assert (topic, payload) == (b"hb", hb)
            assert head == wire.pack(_head(seq, 12.5, 0.5, "flexion", seq + 1, q, N_CH))
        os.environ["NIRSD_KERNEL_SEND"] = "0"
        try:
            assert not kernel.hb_sender(k, pub, _head(0, 0.0, 0.0, None, 0, b"", N_CH))
        finally:
            del os.environ["NIRSD_KERNEL_SEND"]
    finally:
        sub.close(0)
        pub.close(0)
        ctx.term()
    k2, *_ = make(p)
    with pytest.raises(ValueError, match="sender not set"):
        k2.send_hb(1, 0.0, 0.0, None, 1, b"", hb)
