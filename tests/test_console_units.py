"""The console's pure parts: decimation, the trace ring, quality words, the access rules."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("aiohttp")

from nirsd.clients.console.access import is_loopback, load_token, parse_listen  # noqa: E402
from nirsd.clients.console.state import ConsoleState, channel_quality, rate_sentence  # noqa: E402
from nirsd.clients.console.stream import jsonable  # noqa: E402
from nirsd.clients.console.trace import NO_EPOCH, Decimator, TraceRing  # noqa: E402
from nirsd.core.errors import ConfigError  # noqa: E402

LABELS = ["rest", "extension", "flexion"]


def blocks(rng, total, n_ch, sizes):
    """``total`` samples split into blocks of the given sizes (cycled)."""
    hb = rng.normal(size=(total, 3, n_ch))
    hb[5, 1, 2] = np.nan  # one NaN among the samples of a point
    hb[20:30, :, 1] = np.nan  # a whole point with no value on channel 1
    out, i, k = [], 0, 0
    while i < total:
        n = min(sizes[k % len(sizes)], total - i)
        out.append((i, hb[i : i + n]))
        i, k = i + n, k + 1
    return hb, out


def test_decimated_points_are_nan_aware_block_means_whatever_the_block_sizes():
    rng = np.random.default_rng(1)
    total, n_ch, factor = 103, 4, 10
    hb, parts = blocks(rng, total, n_ch, [1, 7, 3, 25])
    t = 1000.0 + np.arange(total) * 0.01
    epochs = [None] * 40 + ["extension"] * 40 + [None] * 23
    q = np.zeros((total, n_ch), np.uint8)
    q[13, 3] = 1  # saturated once inside the second point
    dec = Decimator(n_ch, factor, LABELS)
    got = []
    for seq0, block in parts:
        n = len(block)
        pts = dec.push(seq0, t[seq0 : seq0 + n], epochs[seq0 : seq0 + n], q[seq0 : seq0 + n], block)
        if pts is not None:
            got.append(pts)
    seq = np.concatenate([p.seq for p in got])
    mean = np.concatenate([p.hb for p in got])
    assert seq.tolist() == list(range(9, total, 10))  # stamped with their last sample
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning):
        expected = np.nanmean(hb[:100].reshape(10, 10, 3, n_ch), axis=1)
    np.testing.assert_allclose(mean, expected, rtol=1e-6, atol=1e-6)
    assert np.isnan(mean[2, :, 1]).all() and np.isfinite(mean[2, :, 0]).all()
    assert np.concatenate([p.t for p in got]).tolist() == t[9::10][:10].tolist()
    ep = np.concatenate([p.epoch for p in got])
    assert ep.tolist() == [NO_EPOCH] * 4 + [1] * 4 + [NO_EPOCH] * 2
    qual = np.concatenate([p.quality for p in got])
    assert qual[1, 3] == 1 and qual.sum() == 1


def test_points_json_is_channel_major_with_null_for_nan():
    dec = Decimator(2, 1, LABELS)
    hb = np.array([[[1.23456, np.nan], [2.0, 3.0], [4.0, 5.0]]])
    pts = dec.push(7, [10.0], ["rest"], np.zeros((1, 2), np.uint8), hb)
    body = json.loads(pts.to_json())
    assert body == {
        "seq": [7],
        "t": [10.0],
        "ep": [0],
        "hbo": [[1.235], [None]],
        "hbr": [[2.0], [3.0]],
        "hbt": [[4.0], [5.0]],
    }


def test_trace_ring_keeps_the_newest_points_in_order_and_cuts_a_window():
    dec = Decimator(1, 1, LABELS)
    ring = TraceRing(1, capacity=50)
    for start in range(0, 120, 12):
        n = 12
        t = np.arange(start, start + n) * 0.5
        hb = np.arange(start, start + n, dtype=float).reshape(n, 1, 1).repeat(3, axis=1)
        ring.append(dec.push(start, t, [None] * n, np.zeros((n, 1), np.uint8), hb))
    pts = ring.last()
    assert pts.seq.tolist() == list(range(70, 120))
    assert pts.hb[:, 0, 0].tolist() == list(range(70, 120))
    window = ring.last(seconds=5.0)  # points 0.5 s apart: the last 11 (both ends inside)
    assert window.seq.tolist() == list(range(109, 120))


def test_quality_words_follow_the_flags_and_the_daemons_summary():
    summary = {
        "poor": [False, True, False, False],
        "saturated_fraction": [0.0, 0.0, 0.2, 0.0],
        "low_light_fraction": [0.0, 0.0, 0.0, 0.0],
    }
    assert channel_quality(0, summary, 0) == "good"
    assert channel_quality(0, summary, 1) == "poor"
    assert channel_quality(0, summary, 2) == "saturated"
    assert channel_quality(2, summary, 3) == "bad light"
    assert channel_quality(1 | 2, summary, 3) == "saturated"  # the worse word wins
    assert channel_quality(16, None, 0) == "motion"
    assert channel_quality(4, None, 0) == "baseline"
    assert channel_quality(0, {"motion": [True]}, 0) == "motion"


def test_rate_sentence_names_the_last_gap_in_plain_words():
    assert rate_sentence(10, 9.98, [], 0) == "Sampling at 10.0 Hz (device set to 10 Hz). No gaps."
    gaps = [
        {"lost_samples": 3, "span_s": 0.3, "seen_t": 0},
        {"lost_samples": 12, "span_s": 1.2, "seen_t": 1.7e9, "cause": "disconnect"},
    ]
    text = rate_sentence(10, 10.0, gaps, 5)
    assert "2 gaps so far; the last: 12 samples (1.2 s) lost at" in text
    assert "after the probe was unplugged" in text
    assert "This console missed 5 samples" in text


def test_state_view_describes_the_protocol_step_and_the_next_one():
    s = ConsoleState()
    s.described(
        {"stream": "a", "channels": [{"label": "L3"}], "labels": LABELS, "rate_hz": 10},
        {"lumbar": [["rest", 5], ["extension", 15]]},
    )
    s.on_event(
        "status",
        {"event": "protocol", "protocol": {"name": "lumbar", "step": 0, "steps": 2,
                                           "label": "rest", "step_end_t": 104.0}},
        100.0,
    )  # fmt: skip
    p = s.view(101.5)["protocol"]
    assert p["time_left_s"] == pytest.approx(2.5)
    assert p["next"] == {"label": "extension", "seconds": 15}
    s.on_event("marker", {"label": "flexion", "action": "start", "t": 101.0, "seq": 9}, 101.0)
    assert s.view(102.0)["epoch"]["label"] == "flexion"
    s.on_event("marker", {"label": "flexion", "action": "end", "t": 102.0, "seq": 19}, 102.0)
    assert s.view(102.0)["epoch"] is None
    s.described({"stream": "b", "channels": [{"label": "L3"}]}, {})
    assert s.view(103.0)["restarts"] == 1


def test_jsonable_turns_nan_into_null_and_drops_bytes():
    out = jsonable({"a": float("nan"), "b": [1.0, float("inf")], "q": b"\x01", "c": (1, 2)})
    assert out == {"a": None, "b": [1.0, None], "c": [1, 2]}


def test_listen_and_loopback_rules():
    assert parse_listen("127.0.0.1:8765") == ("127.0.0.1", 8765)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("8765", "host:", "host:port", "h:70000"):
        with pytest.raises(ConfigError):
            parse_listen(bad)
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    assert not is_loopback("bedside.local")  # a name: treated as a network address


def test_token_file_is_read_and_must_be_private(tmp_path):
    f = tmp_path / "token"
    f.write_text("s3cret-token-of-some-length\n")
    f.chmod(0o600)
    assert load_token(str(f)) == "s3cret-token-of-some-length"
    f.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by other users"):
        load_token(str(f))
    f.chmod(0o600)
    f.write_text("short\n")
    with pytest.raises(ConfigError, match="at least 16"):
        load_token(str(f))
    with pytest.raises(ConfigError, match="cannot read"):
        load_token(str(tmp_path / "missing"))
    assert len(load_token(None)) >= 32 and load_token(None) != load_token(None)
    assert os.stat(f).st_mode & 0o777 == 0o600


def test_static_files_ship_with_the_package_and_uplot_is_the_recorded_version():
    import re
    import tomllib
    from importlib.resources import files
    from pathlib import Path

    static = files("nirsd.clients.console") / "static"
    for name in ("operator.html", "patient.html", "uPlot.iife.min.js", "uPlot.LICENSE"):
        assert (static / name).is_file(), name
    head = (static / "uPlot.iife.min.js").read_text()[:200]
    version = re.search(r"\(v(\d+\.\d+\.\d+)\)", head)[1]
    assert f"uPlot {version}" in (static / "README.md").read_text()
    root = Path(__file__).resolve().parents[1]
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "static/*" in data["package-data"]["nirsd.clients.console"]
    # no page loads anything from elsewhere: the bedside box has no internet
    for page in ("operator.html", "patient.html"):
        assert not re.search(r"(src|href)=\"(https?:)?//", (static / page).read_text())
