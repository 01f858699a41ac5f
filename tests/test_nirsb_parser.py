"""NIRSB v1 encoders and parser: DEVICES.md test vectors, resynchronisation, counters."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nirsd.drivers.base import Event, Info, Sample
from nirsd.drivers.nirsb import (
    DATA,
    EVENT,
    INFO,
    NirsbDriver,
    NirsbParser,
    crc16,
    data_payload,
    encode_data,
    encode_event,
    encode_frame,
    encode_info,
    info_payload,
    to_wire,
)


def h(s: str) -> bytes:
    return bytes.fromhex(s)


DATA_FRAME = h(
    "01 00 02 01 40 42 0f 00 02 00 02 00 e0 2e 00 00 98 3a 00 00 f8 2a 00 00 b0 36 00 00 3f d6"
)
DATA_WIRE = h(
    "02 01 06 02 01 40 42 0f 02 02 02 02 03 e0 2e 01 03 98 3a 01 03 f8 2a 01 03 "
    "b0 36 01 03 3f d6 00"
)
INFO_FRAME = h("02 00 00 00 00 00 00 00 01 02 02 00 10 27 00 00 f8 02 52 03 03 73 69 6d ab 16")
INFO_WIRE = h("02 02 01 01 01 01 01 01 04 01 02 02 03 10 27 01 0b f8 02 52 03 03 73 69 6d ab 16 00")
EVENT_FRAME = h("03 00 03 01 50 69 0f 00 01 09 65 78 74 65 6e 73 69 6f 6e 55 c2")
EVENT_WIRE = h("02 03 06 03 01 50 69 0f 0e 01 09 65 78 74 65 6e 73 69 6f 6e 55 c2 00")
VECTOR_COUNTS = np.array([[12000, 15000], [11000, 14000]])
STREAM = DATA_WIRE + INFO_WIRE + EVENT_WIRE


def check_vectors(frames: list) -> None:
    assert len(frames) == 3
    s, i, e = frames
    assert isinstance(s, Sample) and isinstance(i, Info) and isinstance(e, Event)
    assert (s.seq, s.t_dev, s.flags) == (258, 1.0, 0)
    assert s.intensity.dtype == np.float64 and s.intensity.shape == (2, 2)
    assert np.array_equal(s.intensity, VECTOR_COUNTS)
    assert i == Info(1, 2, (760.0, 850.0), 10.0, "sim")
    assert e == Event(259, 1.01, 1, "extension")


def test_crc_check_value() -> None:
    assert crc16(b"123456789") == 0x29B1


def test_encode_vectors() -> None:
    assert encode_frame(DATA, 0, 258, 1_000_000, data_payload(VECTOR_COUNTS)) == DATA_FRAME
    assert to_wire(DATA_FRAME) == DATA_WIRE
    assert encode_data(258, 1_000_000, VECTOR_COUNTS) == DATA_WIRE
    assert encode_frame(INFO, 0, 0, 0, info_payload(2, (760, 850), 10000, "sim")) == INFO_FRAME
    assert to_wire(INFO_FRAME) == INFO_WIRE
    assert encode_info(2, (760.0, 850.0), 10000, "sim") == INFO_WIRE
    assert to_wire(EVENT_FRAME) == EVENT_WIRE
    assert encode_event(259, 1_010_000, 1, "extension") == EVENT_WIRE
    assert EVENT_FRAME[0] == EVENT


def test_parse_vectors() -> None:
    p = NirsbParser()
    check_vectors(p.feed(STREAM))
    c = p.counters
    assert (c.frames_ok, c.lost_frames, c.garbage_bytes) == (3, 0, 0)
    assert (c.crc_errors, c.length_errors, c.decode_errors) == (0, 0, 0)
    assert NirsbParser.seq_modulus == 65536
    assert NirsbParser.clock_modulus_s == 2**32 / 1e6


@pytest.mark.parametrize("cut", range(len(STREAM) + 1))
def test_split_at_every_byte(cut: int) -> None:
    p = NirsbParser()
    frames = p.feed(STREAM[:cut]) + p.feed(STREAM[cut:])
    check_vectors(frames)
    assert p.counters.garbage_bytes == 0


def test_one_byte_at_a_time() -> None:
    p = NirsbParser()
    frames = []
    for b in STREAM:
        frames += p.feed(bytes([b]))
    check_vectors(frames)


def test_garbage_between_frames() -> None:
    noise = b"\x09hello"  # COBS code 9 promises 8 bytes, 5 follow: a decode error
    flipped = bytearray(DATA_WIRE)
    flipped[13] ^= 0x10  # one bit error inside a data byte (index 12 is a COBS code)
    cut = DATA_WIRE[:15]  # a frame cut short by a reconnect
    stream = (
        noise
        + b"\x00"
        + DATA_WIRE
        + b"\x00"
        + INFO_WIRE
        + cut
        + b"\x00"
        + bytes(flipped)
        + EVENT_WIRE
    )
    p = NirsbParser()
    frames = p.feed(stream)
    check_vectors(frames)
    c = p.counters
    assert c.frames_ok == 3
    assert c.decode_errors >= 1 and c.crc_errors >= 1  # the noise; the flipped frame
    assert c.garbage_bytes == (len(noise) + 1) + 1 + (len(cut) + 1) + len(flipped)
    assert c.crc_errors + c.length_errors + c.decode_errors == 3  # noise, cut, flipped
    assert c.lost_frames == 0


def test_every_single_bit_flip_is_dropped() -> None:
    for pos in range(len(DATA_WIRE) - 1):
        for bit in range(8):
            bad = bytearray(DATA_WIRE)
            bad[pos] ^= 1 << bit
            p = NirsbParser()
            frames = p.feed(b"\x00" + bytes(bad) + b"\x00" + INFO_WIRE)
            assert frames == [Info(1, 2, (760.0, 850.0), 10.0, "sim")], (pos, bit)


def test_length_checks() -> None:
    # a DATA frame with a valid CRC whose length disagrees with n_ch x n_wl
    short = encode_frame(DATA, 0, 1, 0, data_payload(VECTOR_COUNTS)[:-4])
    tiny = encode_frame(DATA, 0, 1, 0, b"")
    unknown = encode_frame(9, 0, 1, 0, b"abc")
    p = NirsbParser()
    assert p.feed(to_wire(short) + to_wire(tiny) + to_wire(b"\x01\x02") + to_wire(unknown)) == []
    assert p.counters.length_errors == 3
    assert p.counters.decode_errors == 1
    assert p.feed(b"\x00") == []  # an empty chunk is one garbage byte
    assert p.counters.garbage_bytes == sum(len(to_wire(f)) for f in (short, tiny, unknown)) + 4 + 1


def test_long_undelimited_run_is_bounded() -> None:
    from nirsd.drivers import nirsb

    p = NirsbParser()
    junk = b"\x01" * (nirsb.MAX_PENDING // 4)
    for _ in range(6):
        assert p.feed(junk) == []
    assert p.feed(junk + b"\x00" + DATA_WIRE)[0].seq == 258
    assert p.counters.garbage_bytes == 7 * len(junk) + 1


def test_lost_frames_with_wrap() -> None:
    p = NirsbParser()
    wire = b"".join(encode_data(s, 0, VECTOR_COUNTS) for s in (65533, 65534, 65535, 0))
    assert p.feed(wire) and p.counters.lost_frames == 0  # 65535 -> 0 wraps cleanly
    wire = b"".join(encode_data(s, 0, VECTOR_COUNTS) for s in (3, 4))
    wire += encode_info(2, (760, 850), 10000, "sim")  # seq 0, takes no part
    wire += encode_event(4, 0, 2, "button")  # a repeat: a step back, not 65535 lost
    wire += b"".join(encode_data(s, 0, VECTOR_COUNTS) for s in (65535, 1))
    frames = p.feed(wire)
    assert len(frames) == 6 and p.counters.frames_ok == 10
    # 0->3 loses 2; 4->4 and 4->65535 step back (a restart or a reorder); 65535->1 loses 1
    assert p.counters.lost_frames == 2 + 1
    assert p.counters.seq_backsteps == 2


def test_driver() -> None:
    from nirsd.drivers.base import DeviceSettings

    d = NirsbDriver(DeviceSettings(port="loop://"))
    assert d.name == "nirsb" and d.self_describing
    assert isinstance(d.make_parser(), NirsbParser)
    assert d.start_commands() == b"?b" and d.stop_commands() == b"s"


# ---------------------------------------------------------------- property test

valid_frames = st.one_of(
    st.builds(
        lambda seq, t, n_ch, n_wl, seed, fl: encode_data(
            seq, t, np.random.default_rng(seed).integers(-(2**31), 2**31, (n_ch, n_wl)), fl
        ),
        st.integers(0, 65535),
        st.integers(0, 2**32 - 1),
        st.integers(1, 6),
        st.integers(1, 3),
        st.integers(0, 1000),
        st.integers(0, 3),
    ),
    st.builds(
        encode_event,
        st.integers(0, 65535),
        st.integers(0, 2**32 - 1),
        st.integers(0, 255),
        st.text(max_size=20).filter(lambda s: len(s.encode()) < 256),
    ),
    st.builds(
        lambda n, wl, r, i: encode_info(n, wl, r, i),
        st.integers(0, 300),
        st.lists(st.integers(250, 1000), max_size=4),
        st.integers(0, 2**32 - 1),
        st.text(max_size=12).filter(lambda s: len(s.encode()) < 256),
    ),
)
# garbage always ends with a delimiter, so the frame after it starts cleanly
garbage = st.binary(max_size=40).map(lambda b: b + b"\x00")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), garbage, valid_frames), max_size=12),
    st.lists(st.integers(0, 10_000), max_size=8),
)
def test_property_garbage_and_splits(items: list, cuts: list) -> None:
    stream = b""
    expected = []
    for with_garbage, junk, wire in items:
        if with_garbage:
            stream += junk
        stream += wire
        expected += NirsbParser().feed(wire)
    assert all(len(NirsbParser().feed(w)) == 1 for _, _, w in items)
    p = NirsbParser()
    got = []
    prev = 0
    for cut in sorted(c % (len(stream) + 1) for c in cuts) + [len(stream)]:
        got += p.feed(stream[prev:cut])
        prev = cut
    # Garbage that happens to be a valid frame with a good CRC is astronomically unlikely.
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        if isinstance(a, Sample):
            assert (a.seq, a.t_dev, a.flags) == (b.seq, b.t_dev, b.flags)
            assert np.array_equal(a.intensity, b.intensity)
        else:
            assert a == b
    assert p.counters.frames_ok == len(expected)
