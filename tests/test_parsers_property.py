"""Property tests: every parser, any interleaving of valid frames with garbage, any split.

With garbage that ends at a delimiter (0x00 for NIRSB, a line end for the text
protocols), the parser yields exactly the valid frames, in order.  With garbage anywhere
(inside frames too) it never raises and its counters stay consistent.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nirsd.drivers import nirsb
from nirsd.drivers.base import Event, Info, Sample
from nirsd.drivers.delimited import DelimitedParser, parse_layout
from nirsd.drivers.heg import HegParser, format_line

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

u32 = st.integers(0, (1 << 32) - 1)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


def feed_all(parser, pieces: list[bytes]) -> list:
    return [f for piece in pieces for f in parser.feed(piece)]


def key(frame) -> tuple:
    if isinstance(frame, Sample):
        return ("S", frame.seq, frame.t_dev, frame.flags, frame.intensity.tolist())
    if isinstance(frame, Event):
        return ("E", frame.seq, frame.t_dev, frame.code, frame.label)
    assert isinstance(frame, Info)
    return ("I", frame)


# --------------------------------------------------------------------------- NIRSB


@st.composite
def nirsb_frame(draw, seq: int) -> bytes:
    kind = draw(st.sampled_from(["data", "data", "data", "event", "info"]))
    t_us = draw(u32)
    if kind == "data":
        n_ch, n_wl = draw(st.integers(1, 4)), draw(st.integers(1, 3))
        values = draw(
            st.lists(
                st.integers(-(1 << 31), (1 << 31) - 1), min_size=n_ch * n_wl, max_size=n_ch * n_wl
            )
        )
        flags = draw(st.integers(0, 3))
        return nirsb.encode_data(seq, t_us, np.array(values).reshape(n_ch, n_wl), flags)
    if kind == "event":
        return nirsb.encode_event(seq, t_us, draw(st.integers(1, 2)), draw(st.text(max_size=20)))
    wl = draw(st.lists(st.integers(600, 1000), min_size=1, max_size=4))
    return nirsb.encode_info(
        draw(st.integers(1, 64)), wl, draw(st.integers(1, 10**6)), draw(st.text(max_size=12))
    )


def delimited_garbage(end: bytes, forbid: bytes):
    return st.binary(max_size=40).map(lambda b: bytes(x for x in b if x not in forbid) + end)


@st.composite
def nirsb_stream(draw):
    seq0 = draw(st.integers(0, 65535))
    items, valid, seq = [], [], seq0
    for _ in range(draw(st.integers(0, 12))):
        if draw(st.booleans()):
            g = draw(delimited_garbage(b"\x00", b"\x00"))
            assume(not nirsb.NirsbParser().feed(g))
            items.append(g)
        else:
            wire = draw(nirsb_frame(seq % 65536))
            frame = nirsb.NirsbParser().feed(wire)[0]
            if not isinstance(frame, Info):
                seq += 1
            items.append(wire)
            valid.append(frame)
    return b"".join(items), valid


@SETTINGS
@given(nirsb_stream(), st.lists(st.integers(0, 10**6), max_size=20))
def test_nirsb_exactly_the_valid_frames(stream, cuts):
    data, valid = stream
    p = nirsb.NirsbParser()
    got = feed_all(p, split(data, cuts))
    assert [key(f) for f in got] == [key(f) for f in valid]
    assert p.counters.frames_ok == len(valid)
    assert p.counters.lost_frames == 0  # consecutive counters, wrapping at 65536


@SETTINGS
@given(
    st.lists(st.binary(max_size=64), max_size=10),
    nirsb_stream(),
    st.lists(st.integers(0, 10**6), max_size=10),
)
def test_nirsb_never_raises_on_any_bytes(noise, stream, cuts):
    data, valid = stream
    spliced = bytearray(data)
    for i, chunk in enumerate(noise):
        pos = (cuts[i] if i < len(cuts) else i * 7) % (len(spliced) + 1)
        spliced[pos:pos] = chunk
    p = nirsb.NirsbParser()
    got = feed_all(p, split(bytes(spliced), cuts))
    assert p.counters.frames_ok == len(got)
    assert all(isinstance(f, (Sample, Info, Event)) for f in got)


# --------------------------------------------------------------------------- HEG


@st.composite
def heg_line(draw) -> bytes:
    red, ir = draw(st.integers(1, 10**7)), draw(st.integers(1, 10**7))
    if draw(st.booleans()):
        return format_line(None, red, ir)
    return format_line(
        draw(u32),
        red,
        ir,
        draw(st.integers(0, 9999)),
        draw(st.integers(0, 250)),
        draw(st.integers(0, 100)),
    )


@st.composite
def heg_stream(draw):
    items, valid = [], []
    for _ in range(draw(st.integers(0, 15))):
        if draw(st.booleans()):
            g = draw(delimited_garbage(b"\r\n", b"\n"))
            assume(not HegParser(synced=True).feed(g))
            items.append(g)
        else:
            line = draw(heg_line())
            items.append(line)
            valid.append(HegParser(synced=True).feed(line)[0])
    return b"".join(items), valid


@SETTINGS
@given(heg_stream(), st.lists(st.integers(0, 10**6), max_size=20), st.booleans())
def test_heg_exactly_the_valid_lines(stream, cuts, synced):
    data, valid = stream
    p = HegParser(synced=synced)
    if not synced:
        data = b"partial|line\r\n" + data
    got = feed_all(p, split(data, cuts))
    assert [key(f) for f in got] == [key(f) for f in valid]


@SETTINGS
@given(st.binary(max_size=300), st.lists(st.integers(0, 10**6), max_size=10))
def test_heg_never_raises_on_any_bytes(data, cuts):
    p = HegParser()
    got = feed_all(p, split(data, cuts))
    assert p.counters.frames_ok == len(got)


# --------------------------------------------------------------------------- delimited

LAYOUT = parse_layout(
    {"columns": ["time", "ch0:760", "ch0:850", "ignore", "ch1:850", "ch1:760"], "time_unit": "us"},
    (760, 850),
)
number = st.one_of(
    st.integers(-(10**9), 10**9).map(lambda v: b"%d" % v),
    st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: b"%r" % v),
)


@st.composite
def csv_line(draw) -> bytes:
    fields = [b"%d" % draw(st.integers(0, 10**12))] + [draw(number) for _ in range(5)]
    return b",".join(fields) + draw(st.sampled_from([b"\n", b"\r\n"]))


@st.composite
def csv_stream(draw):
    items, valid = [], []
    for _ in range(draw(st.integers(0, 15))):
        if draw(st.booleans()):
            g = draw(delimited_garbage(b"\n", b"\n"))
            assume(not DelimitedParser(LAYOUT, synced=True).feed(g))
            items.append(g)
        else:
            line = draw(csv_line())
            items.append(line)
            valid.append(DelimitedParser(LAYOUT, synced=True).feed(line)[0])
    return b"".join(items), valid


@SETTINGS
@given(csv_stream(), st.lists(st.integers(0, 10**6), max_size=20))
def test_delimited_exactly_the_valid_lines(stream, cuts):
    data, valid = stream
    p = DelimitedParser(LAYOUT, synced=True)
    got = feed_all(p, split(data, cuts))
    assert [key(f) for f in got] == [key(f) for f in valid]


@SETTINGS
@given(st.binary(max_size=300), st.lists(st.integers(0, 10**6), max_size=10))
def test_delimited_never_raises_on_any_bytes(data, cuts):
    p = DelimitedParser(LAYOUT)
    got = feed_all(p, split(data, cuts))
    assert p.counters.frames_ok == len(got)
