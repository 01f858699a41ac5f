"""SampleBlock: the text parsers' block path gives exactly the per-line samples and
counters for any split and any garbage, and the pipeline takes blocks and samples mixed."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nirsd.drivers.base import Sample, SampleBlock, expand_blocks
from nirsd.drivers.delimited import DelimitedParser, parse_layout
from nirsd.drivers.heg import HegParser, format_line
from nirsd.drivers.lines import parse_int_tokens

LAYOUT = parse_layout(
    {"columns": ["time", "ch0:760", "ch0:850", "ignore", "ch1:850", "ch1:760"], "time_unit": "us"},
    (760, 850),
)


def key(f: Sample) -> tuple:
    return (f.seq, f.t_dev, f.flags, f.intensity.tolist())


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


def both(make, pieces: list[bytes]) -> tuple[list, list, dict, dict]:
    p, q = make(), make()
    per_line = [f for piece in pieces for f in p.feed(piece)]
    blocks = [f for piece in pieces for f in q.feed_blocks(piece)]
    return per_line, blocks, p.counters.as_dict(), q.counters.as_dict()


heg_line = st.builds(
    lambda t, r, i, fast: format_line(None if fast else t, r, i),
    st.integers(0, (1 << 32) + 5),
    st.integers(0, 10**7),
    st.integers(0, 10**7),
    st.booleans(),
)
csv_number = st.one_of(
    st.integers(-(10**16), 10**16).map(lambda v: b"%+d" % v),
    st.integers(-(10**9), 10**9).map(lambda v: b"%d" % v),
    st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: b"%r" % v),
)
csv_line = st.builds(
    lambda t, xs, end: b",".join([b"%d" % t, *xs]) + end,
    st.integers(-5, 10**12),
    st.lists(csv_number, min_size=4, max_size=6),
    st.sampled_from([b"\n", b"\r\n", b"\r\r\n"]),
)
noise = st.binary(max_size=30)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(heg_line, heg_line, noise), max_size=40),
    st.lists(st.integers(0, 10**5), max_size=8),
    st.booleans(),
    st.booleans(),
)
def test_heg_blocks_equal_per_line_samples(items, cuts, synced, check_ratio):
    data = b"".join(items)
    per_line, blocks, c1, c2 = both(lambda: HegParser(synced, check_ratio), split(data, cuts))
    assert [key(f) for f in expand_blocks(blocks)] == [key(f) for f in per_line]
    assert c1 == c2
    assert all(type(f) in (Sample, SampleBlock) for f in blocks)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(csv_line, csv_line, noise), max_size=40),
    st.lists(st.integers(0, 10**5), max_size=8),
)
def test_delimited_blocks_equal_per_line_samples(items, cuts):
    data = b"".join(items)
    per_line, blocks, c1, c2 = both(lambda: DelimitedParser(LAYOUT), split(data, cuts))
    assert [key(f) for f in expand_blocks(blocks)] == [key(f) for f in per_line]
    assert c1 == c2


def test_clean_chunk_is_one_block_with_exact_values():
    lines = b"".join(format_line(k * 1000, 40000 + k, 50000 - k, 1, 2, 3) for k in range(100))
    p = HegParser(synced=True)
    out = p.feed_blocks(lines)
    assert len(out) == 1 and type(out[0]) is SampleBlock and len(out[0]) == 100
    b = out[0]
    assert b.intensity.shape == (100, 1, 2) and b.flags.dtype == np.uint8
    assert np.array_equal(b.intensity[:, 0, 0], 40000 + np.arange(100))
    assert np.array_equal(b.t_dev, np.arange(100) * 1000 / 1e6)
    assert p.counters.frames_ok == 100


def test_parse_int_tokens_exact():
    text = b" 12 -5 +7 0 -0 999999999999999   1000000000000000 "
    assert parse_int_tokens(text, 7) is None  # 16 digits: not exact, refused
    v = parse_int_tokens(text.replace(b"1000000000000000", b""), 6)
    assert v.tolist() == [12.0, -5.0, 7.0, 0.0, -0.0, 999999999999999.0]
    assert parse_int_tokens(b"1 2", 3) is None


def test_pipeline_ingests_blocks_and_samples_mixed():
    from nirsd.daemon import config
    from nirsd.daemon.pipeline import Pipeline
    from nirsd.drivers.base import Info

    cfg = config.parse(
        {
            "device": {"driver": "heg", "port": "/dev/null", "rate_hz": 10.0},
            "optics": {"wavelengths_nm": [660, 880]},
            "baseline": {"seconds": 0.5},
        }
    )
    info = Info(1, 1, (660.0, 880.0), 10.0, "heg")
    rng = np.random.default_rng(5)
    x = 40000 + rng.integers(0, 1000, (30, 1, 2)).astype(np.float64)
    t = np.arange(30) * 0.1
    samples = [Sample(None, float(t[k]), 0, x[k]) for k in range(30)]
    a, b = Pipeline(cfg, info, HegParser), Pipeline(cfg, info, HegParser)
    ref = a.ingest(samples, 1000.0)[0]
    mixed = [
        SampleBlock(None, t[:12], np.zeros(12, np.uint8), x[:12]),
        *samples[12:15],
        SampleBlock(None, t[15:], np.zeros(15, np.uint8), x[15:]),
        SampleBlock(None, t[:2], np.zeros(2, np.uint8), np.ones((2, 3, 2))),
    ]  # bad shape
    got = b.ingest(mixed, 1000.0)[0]
    assert got.n == ref.n == 30 and b.shape_errors == 2
    assert np.array_equal(got.raw, ref.raw) and np.array_equal(got.t_dev, ref.t_dev)
    assert np.allclose(got.hb, ref.hb, equal_nan=True)
