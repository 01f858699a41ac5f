"""The pure parts of the hostile-input limits: config bounds, INFO limits, bounded
containers, text-device time ranges, the HEG ratio at ir = 0, socket path checks and
recording file modes.  Fast: no daemon (tests/test_hostile.py drives a real one)."""

from __future__ import annotations

import logging
import os
import socket
import stat

import numpy as np
import pytest

from nirsd.core.errors import ConfigError
from nirsd.daemon import config as config_mod
from nirsd.daemon.bounded import BoundedList, LruCounter, RateLimitedLog, TokenBucket
from nirsd.daemon.endpoints import check_ipc_endpoint, ipc_access_problem, remove_ipc
from nirsd.daemon.guard import LoopGuard
from nirsd.drivers.base import DeviceSettings, Info
from nirsd.drivers.delimited import DelimitedDriver
from nirsd.drivers.heg import HegParser, format_line
from nirsd.drivers.limits import info_problem

# ---------------------------------------------------------------------- config bounds

OUT_OF_RANGE = [
    ("markers", "baseline_s", 1e308),
    ("markers", "baseline_s", 3601),
    ("baseline", "seconds", 1e308),
    ("buffer", "seconds", 1e308),
    ("buffer", "seconds", 86_401),
    ("buffer", "max_mb", 1e12),
    ("device", "baudrate", 2**63 - 1),
    ("device", "baudrate", 10),
    ("device", "channels", 4097),
    ("device", "rate_hz", 1e6),
    ("device", "reconnect_s", 1e9),
    ("status", "interval_s", 0.001),
    ("optics", "distance_mm", 1e300),
    ("optics", "age_years", 1000),
    ("optics", "dpf", 1e9),
    ("optics", "light_floor", 1e300),
    ("optics", "wavelengths_nm", [760, 1e9]),
    ("optics", "wavelengths_nm", [800] * 17),
]


@pytest.mark.parametrize(("section", "key", "value"), OUT_OF_RANGE)
def test_every_number_is_bounded(section, key, value):
    with pytest.raises(ConfigError, match=rf"{section}\.{key}: "):
        config_mod.parse({section: {key: value}})


def test_sane_values_still_pass():
    cfg = config_mod.parse(
        {
            "device": {"baudrate": 921_600, "channels": 256, "rate_hz": 2000.0},
            "buffer": {"seconds": 86_400, "max_mb": 0.5},
            "markers": {"baseline_s": 30.0},
            "optics": {"wavelengths_nm": [690, 760, 830, 850], "saturation_level": 2e9},
        }
    )
    assert cfg.device.baudrate == 921_600 and cfg.buffer.seconds == 86_400


def test_protocol_steps_are_bounded():
    too_many = {"steps": [["rest", 1.0]] * 10, "repeat": 10_001}
    with pytest.raises(ConfigError, match="protocol.p"):
        config_mod.parse({"protocol": {"p": too_many}})
    with pytest.raises(ConfigError, match="step 0"):
        config_mod.parse({"protocol": {"p": {"steps": [["rest", 1e308]]}}})


def test_deep_nesting_is_one_config_error(tmp_path):
    path = tmp_path / "deep.toml"
    path.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        config_mod.load(path)


def test_a_huge_value_is_shown_short():
    with pytest.raises(ConfigError) as err:
        config_mod.parse({"optics": {"wavelengths_nm": "x" * 100_000}})
    assert len(str(err.value)) < 300


# ---------------------------------------------------------------------- INFO limits


@pytest.mark.parametrize(
    ("info", "needle"),
    [
        (Info(1, 65535, (760.0, 850.0), 10.0, "x"), "65535 channels"),
        (Info(1, 0, (760.0, 850.0), 10.0, "x"), "0 channels"),
        (Info(1, 8, (800.0,) * 255, 10.0, "x"), "255 wavelengths"),
        (Info(1, 8, (760.0, 65535.0), 10.0, "x"), "wavelength 65535 nm"),
        (Info(1, 8, (760.0, 850.0), 4e6, "x"), "rate 4e+06 Hz"),
        (Info(1, 8, (760.0, 850.0), 0.0, "x"), "rate 0 Hz"),
    ],
)
def test_info_limits(info, needle):
    assert needle in info_problem(info)


def test_real_probes_are_within_the_limits():
    assert info_problem(Info(1, 256, (690.0, 760.0, 830.0, 850.0), 2000.0, "big")) is None
    assert info_problem(Info(1, 1, (660.0, 940.0), 10.0, "heg")) is None


# ---------------------------------------------------------------------- bounded containers


def test_lru_counter_keeps_the_newest_keys():
    c = LruCounter(3)
    for key in "abcab":
        c.add(key)
    c.add("d")  # evicts c, the least recently seen
    assert "c" not in c and c.get("a") == 2 and c.get("b") == 2 and len(c) == 3
    assert c.total == 6 and c.evicted == 1
    for i in range(10_000):
        c.add(i)
    assert len(c) == 3 and c.total == 10_006


def test_bounded_list_keeps_the_last_n():
    gaps = BoundedList(100)
    for i in range(1000):
        gaps.append({"seq": i})
    assert len(gaps) == 100 and gaps.appended == 1000 and gaps.dropped == 900
    assert [g["seq"] for g in gaps[-3:]] == [997, 998, 999] and gaps[0]["seq"] == 900


def test_token_bucket_allows_the_burst_then_the_rate():
    bucket = TokenBucket(rate_hz=50.0, burst=100)
    taken = sum(bucket.take() for _ in range(5000))  # a flood within a few ms
    assert 100 <= taken <= 110
    bucket._at -= 1.0  # one second later: 50 more
    assert sum(bucket.take() for _ in range(5000)) in range(50, 53)


class _Collect:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict]] = []

    def warning(self, event: str, **kw) -> None:
        self.lines.append((event, kw))


def test_rate_limited_log_counts_the_flood():
    sink = _Collect()
    rl = RateLimitedLog(sink, "curve_client_rejected", burst=10, window_s=3600)
    written = sum(rl(key=i) for i in range(22_663))
    assert written == 10 and len(sink.lines) == 10
    assert rl.suppressed == 22_653 and rl.total == 22_663
    rl._window_start -= 3600  # the window ends: the next call says what was suppressed
    rl(key="next")
    assert sink.lines[-2] == (
        "curve_client_rejected_suppressed",
        {"suppressed": 22_653, "window_s": 3600},
    )


def test_loop_guard_counts_and_logs_once_per_kind(caplog):
    guard = LoopGuard()

    def boom(kind: type[Exception]) -> None:
        raise kind("bad frame")

    with caplog.at_level(logging.ERROR):
        for _ in range(50):
            assert guard.run("samples", boom, ValueError) is None
            guard.run("samples", boom, KeyError)
    assert guard.errors == 100 and len(guard.kinds) == 2
    assert guard.last_error.startswith("samples: KeyError")
    assert guard.run("samples", lambda: 7) == 7
    with pytest.raises(KeyboardInterrupt):
        guard.run("samples", boom, KeyboardInterrupt)


# ---------------------------------------------------------------------- text devices


def test_csv_time_far_beyond_any_clock_is_skipped():
    options = {"columns": ["time", "ch0:760", "ch0:850"], "time_unit": "ms"}
    driver = DelimitedDriver(
        DeviceSettings("/dev/null", wavelengths_nm=(760.0, 850.0), rate_hz=10.0, options=options)
    )
    p = driver.make_parser()
    frames = p.feed(b"\n1000,5,6\n1e21,5,6\n100000000000000000000,5,6\n2000.5,7,8\n")
    times = [f.t_dev for f in frames]
    assert times == [1.0, 2.0005] and p.counters.lines_skipped >= 2


def test_heg_ratio_checked_when_ir_is_zero():
    p = HegParser(synced=True)
    good = format_line(1000, 100, 0)  # the HEGduino prints ratio 0 without infrared
    text = b"1000|48211|0|1.2345|0|0|0\r\n5|0|9999.9999\r\n" + good
    frames = p.feed(text)
    assert len(frames) == 1 and frames[0].intensity.tolist() == [[100.0, 0.0]]
    assert p.counters.lines_skipped == 2


def test_heg_random_digits_rarely_pass():
    rng = np.random.default_rng(3)
    lines = b"".join(
        b"%d|%d|%d.%04d\r\n"
        % (rng.integers(0, 99999), rng.integers(0, 3), rng.integers(0, 9), rng.integers(0, 9999))
        for _ in range(2000)
    )
    p = HegParser(synced=True)
    accepted = p.feed(lines)
    assert len(accepted) < 20  # ir of 1 or 2 with a matching ratio, or 0 with ratio 0


# ---------------------------------------------------------------------- socket paths


def test_socket_path_checks(tmp_path):
    tmp_path.chmod(0o700)
    ok = tmp_path / "run"
    check_ipc_endpoint(f"ipc://{ok / 'control'}")  # created, mode 0750
    assert stat.S_IMODE(ok.stat().st_mode) & 0o022 == 0
    ok.chmod(0o777)
    with pytest.raises(ConfigError, match="writable by every user"):
        check_ipc_endpoint(f"ipc://{ok / 'control'}")
    ok.chmod(0o750)
    target = tmp_path / "precious"
    target.write_text("x")
    (ok / "control").symlink_to(target)
    with pytest.raises(ConfigError, match="symbolic link"):
        check_ipc_endpoint(f"ipc://{ok / 'control'}")
    (ok / "data").write_text("x")
    with pytest.raises(ConfigError, match="not a socket"):
        check_ipc_endpoint(f"ipc://{ok / 'data'}")
    remove_ipc(f"ipc://{ok / 'control'}")  # a link: left alone
    remove_ipc(f"ipc://{ok / 'data'}")  # a file: left alone
    assert (ok / "control").is_symlink() and (ok / "data").read_text() == "x"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(ok / "sock"))
    sock.close()
    check_ipc_endpoint(f"ipc://{ok / 'sock'}")  # our own stale socket: fine
    remove_ipc(f"ipc://{ok / 'sock'}")
    assert not (ok / "sock").exists()
    check_ipc_endpoint("tcp://127.0.0.1:5555")  # not a path: nothing to check


def test_access_problem_is_none_for_a_free_path(tmp_path):
    assert ipc_access_problem(f"ipc://{tmp_path / 'nothing'}") is None
    assert ipc_access_problem("tcp://127.0.0.1:1") is None


# ---------------------------------------------------------------------- recordings


def test_recordings_are_not_world_readable(tmp_path):
    pytest.importorskip("h5py")
    from nirsd.clients.snirf_writer import RECORDING_MODE, create_private

    old = os.umask(0o022)
    try:
        create_private(tmp_path / "a.snirf")
        existing = tmp_path / "b.snirf"
        existing.write_text("old")
        existing.chmod(0o666)
        create_private(existing)
    finally:
        os.umask(old)
    assert RECORDING_MODE == 0o640
    assert stat.S_IMODE((tmp_path / "a.snirf").stat().st_mode) == 0o640
    assert stat.S_IMODE(existing.stat().st_mode) == 0o640 and existing.read_bytes() == b""
