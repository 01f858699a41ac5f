"""Edge cases at the command line: config values, gap estimates, tail, closed pipes, csv."""

from __future__ import annotations

import math
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nirsd.cli.testing import DaemonProcess, free_port, simulated_config, wait_for
from nirsd.clients.tail import sample_lines
from nirsd.daemon import config
from nirsd.daemon.device import NOTHING, DeviceLink
from nirsd.daemon.stream_accounting import StreamAccounting
from nirsd.daemon.wire import Message, decode, encode_array
from nirsd.drivers.delimited import DelimitedParser, parse_layout
from nirsd.drivers.sim.csv_emulator import DelimitedEmulator

ROOT = Path(__file__).resolve().parents[1]


def _nirsd(
    args: list[str], tmp_path: Path, timeout: float = 30.0, **kwargs
) -> subprocess.CompletedProcess:
    env = {**os.environ, "NIRSD_RUNTIME_DIR": str(tmp_path / "run")}
    (tmp_path / "run").mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "nirsd.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


# ---------------------------------------------------------------------- config

BAD = [
    ("[device]\nrate_hz = inf\n", "device.rate_hz", "finite"),
    ("[device]\nreconnect_s = nan\n", "device.reconnect_s", "finite"),
    ("[optics]\nwavelengths_nm = [760, inf]\n", "optics.wavelengths_nm", "finite"),
    ("[optics]\ndpf = [6.0, nan]\n", "optics.dpf", "finite"),
    ("[optics]\ndpf = {760 = inf, 850 = 6.0}\n", "optics.dpf", "finite"),
    ("[optics]\nlight_floor = inf\n", "optics.light_floor", "finite"),
    ("[[channel]]\nindex = 0\nsource_pos_mm = [0.0, -inf]\n", "channel[0].source_pos_mm", "finite"),
    (
        '[markers]\nlabels = ["rest"]\n[protocol.p]\nsteps = [["rest", inf]]\n',
        "protocol.p.steps",
        "finite",
    ),
    (
        '[endpoints]\ndata = "ipc:///tmp/same"\ncontrol = "ipc:///tmp/same"\n',
        "endpoints.control",
        "must differ from endpoints.data",
    ),
    ('[markers]\nlabels = ["rest", "flexion", "rest"]\n', "markers.labels", "duplicate"),
    ('[endpoints]\ndata = "http://x"\n', "endpoints.data", "unsupported scheme"),
    ('[endpoints]\ncontrol = "ws://127.0.0.1:5"\n', "endpoints.control", "unsupported scheme"),
]


@pytest.mark.parametrize("text,key,words", BAD, ids=[k + ":" + w for _, k, w in BAD])
def test_parse_rejects_with_the_key(text, key, words):
    import tomllib

    with pytest.raises(config.ConfigError) as err:
        config.parse(tomllib.loads(text))
    assert err.value.key == key and words in str(err.value)


@pytest.mark.parametrize("cmd", ["check-config", "run"])
def test_infinite_rate_exits_78_through_check_config_and_run(tmp_path, cmd):
    path = tmp_path / "inf.toml"
    path.write_text('[device]\ndriver = "simulated"\nrate_hz = inf\n')
    args = [cmd, str(path)] if cmd == "check-config" else [cmd, "--config", str(path)]
    result = _nirsd(args, tmp_path)
    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "device.rate_hz" in lines[0] and "finite" in lines[0]


def test_http_endpoint_says_unsupported_scheme_not_curve(tmp_path):
    path = tmp_path / "http.toml"
    path.write_text('[endpoints]\ndata = "http://x"\n')
    result = _nirsd(["check-config", str(path)], tmp_path)
    assert result.returncode == 78
    assert "unsupported scheme" in result.stderr and "curve" not in result.stderr


@pytest.mark.parametrize(
    "flags,name,words",
    [
        (["--data", "http://x"], "--data", "unsupported scheme"),
        (["--control", "pgm://eth0;239.1.1.1:5555"], "--control", "unsupported scheme"),
        (
            ["--data", "ipc://{tmp}/same", "--control", "ipc://{tmp}/same"],
            "--control",
            "must differ from --data",
        ),
        (["--data", "tcp://127.0.0.1:{port}"], "endpoints.data", "set [security] curve"),
    ],
)
def test_run_flags_are_validated_and_exit_78(tmp_path, flags, name, words):
    # unique paths and a free port: were validation ever to pass, nothing is shared
    flags = [f.format(tmp=tmp_path, port=free_port()) for f in flags]
    result = _nirsd(["run", *flags], tmp_path)
    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and words in lines[0], result.stderr


def test_client_flags_are_validated(tmp_path):
    result = _nirsd(["status", "--data", "http://x"], tmp_path)
    assert result.returncode == 78 and "--data" in result.stderr


# ---------------------------------------------------------------------- gap estimate


def test_disconnect_gap_estimates_the_lost_samples():
    stream = StreamAccounting(10.0)
    t = 1000.0 + np.arange(100) / 50.0  # 2 s at 50 Hz (the configured 10 Hz is wrong)
    assert stream.note_block(0, t[0], t[49], 50, 0) is None
    assert stream.note_block(50, t[50], t[99], 50, 0) is None
    stream.disconnected(2000.0)  # unplugged
    t_after = t[99] + 1.5  # 1.5 s from the last sample to the next
    gap = stream.note_block(100, t_after, t_after + 0.2, 11, 1)
    assert gap["cause"] == "disconnect" and gap["seq"] == 100
    assert gap["span_s"] == pytest.approx(1.5)
    assert gap["rate_hz"] == pytest.approx(50.0)
    assert gap["lost_samples"] == 74 and gap["lost_samples_estimated"] is True
    assert gap["disconnected_at"] == 2000.0 and gap["reconnects"] == 1
    assert list(stream.gaps) == [gap] and stream.next_seq == 111
    assert stream.note_block(111, t_after + 0.22, t_after + 0.3, 5, 1) is None


def test_short_run_before_unplug_uses_the_configured_rate():
    stream = StreamAccounting(20.0)
    stream.note_block(0, 10.0, 10.05, 2, 0)
    stream.disconnected(11.0)
    gap = stream.note_block(2, 10.06, 10.06, 1, 1)  # back at once: nothing lost
    assert gap["lost_samples"] == 0 and gap["rate_hz"] == 20.0


def test_lost_frames_make_one_gap_each_time_the_count_grows():
    stream = StreamAccounting(10.0)
    assert stream.note_lost(0, 0, 10.0) is None
    gap = stream.note_lost(3, 40, 10.0)
    assert gap == {"event": "gap", "seq": 40, "lost_samples": 3, "span_s": 0.3}
    assert stream.note_lost(3, 50, 10.0) is None  # no new loss
    assert stream.note_lost(5, 60, None) is None  # no probe description yet: not a gap
    assert stream.lost_samples == 3 and stream.gaps.appended == 1


# ---------------------------------------------------------------------- tail


def test_tail_json_lines_carry_tsi():
    arr = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
    header = {
        "v": 1,
        "stream": "s",
        "topic": "hb",
        "seq": 7,
        "n": 2,
        "t": [1.0, 1.1],
        "t_dev": [0.0, 0.1],
        "epoch": [None, "rest"],
        "fields": ["hbo", "hbr", "hbt"],
        "units": "uM",
        "tsi": [[61.5, math.nan], [62.0, 70.25]],
    }
    msg = decode(encode_array("hb", header, arr))
    lines = list(sample_lines(msg))
    assert [line["tsi"] for line in lines] == [[61.5, None], [62.0, 70.25]]
    assert lines[1]["hbr"] == arr[1, 1].tolist()
    no_tsi = Message("hb", {k: v for k, v in header.items() if k != "tsi"}, arr)
    assert all("tsi" not in line for line in sample_lines(no_tsi))


def test_tail_timeout_exits_1_with_a_message(tmp_path):
    t0 = time.monotonic()
    result = _nirsd(["tail", "--timeout", "1"], tmp_path)
    assert result.returncode == 1
    assert "no data from ipc://" in result.stderr and "nirsd run" in result.stderr
    assert 1.0 <= time.monotonic() - t0 < 20


def test_tail_says_it_is_waiting_then_keeps_waiting(tmp_path):
    (tmp_path / "run").mkdir()
    env = {**os.environ, "NIRSD_RUNTIME_DIR": str(tmp_path / "run")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nirsd.cli", "tail"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        t0 = time.monotonic()
        ready, _, _ = select.select([proc.stderr], [], [], 30)
        assert ready, "no note on stderr within 30 s"
        line = proc.stderr.readline()
        waited = time.monotonic() - t0
        assert "no data from ipc://" in line and "still waiting" in line
        assert waited >= 4.5
        assert proc.poll() is None  # it keeps waiting: a daemon may start later
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


def _closed_pipe_run(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess:
    """Run a command whose stdout is a pipe nobody reads any more (`| head -c 0`)."""
    r, w = os.pipe()
    os.close(r)
    try:
        return subprocess.run(
            [sys.executable, "-m", "nirsd.cli", *args],
            env=daemon.env,
            stdout=w,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
        )
    finally:
        os.close(w)


def test_printing_commands_end_quietly_on_a_closed_pipe(tmp_path):
    daemon = DaemonProcess(tmp_path, simulated_config(channels=2))
    try:
        daemon.start()
        ep = ["--data", daemon.endpoints.data, "--control", daemon.endpoints.control]
        for args in (
            ["status", *ep],
            ["info", *ep],
            ["mark", "rest", *ep],
            ["protocol", "status", *ep],
            ["keys", "--out", str(tmp_path)],
            ["tail", "-n", "5", *ep],
        ):
            result = _closed_pipe_run(daemon, *args)
            assert result.returncode == 0, (args, result.stderr)
            assert result.stderr == "", (args, result.stderr)
    finally:
        assert daemon.stop() == 0


# ---------------------------------------------------------------------- CLI help


def test_help_texts(tmp_path):
    top = _nirsd(["--help"], tmp_path).stdout
    assert "start, stop, skip, list or show" in top
    run = _nirsd(["run", "--help"], tmp_path).stdout
    assert "--data" in run and "--server-key" not in run and "--client-key" not in run
    tail = _nirsd(["tail", "--help"], tmp_path).stdout
    assert "--timeout" in tail and "--server-key" in tail


# ---------------------------------------------------------------------- csv columns


def test_delimited_parser_names_the_column_mismatch():
    layout = parse_layout({"columns": ["time", "ch0:760", "ch0:850"]}, (760.0, 850.0))
    parser = DelimitedParser(layout, synced=True)
    assert parser.no_frame_hint() is None
    line = ",".join(str(100 + i) for i in range(9)) + "\n"
    assert parser.feed(b"time,a,b,c\nhello\n" + line.encode() * 4) == []
    assert parser.column_mismatch == 4
    assert parser.no_frame_hint() == "lines have 9 columns, config maps 3 (device.options.columns)"


def test_csv_board_with_more_channels_than_mapped_is_explained(tmp_path):
    emu = DelimitedEmulator(n_channels=8, rate_hz=200.0)  # `nirsd simulate --driver csv`
    port = emu.start()
    text = (ROOT / "config" / "csv.toml").read_text().replace('"/dev/ttyACM0"', f'"{port}"')
    path = tmp_path / "csv.toml"
    path.write_text(text)
    link = DeviceLink(config.load(path))
    try:

        def flagged():
            if link.try_open(time.monotonic()) and select.select([link.fileno()], [], [], 0.1)[0]:
                assert link.read() is NOTHING  # bytes, but no valid frame
            return link.last_error

        error = wait_for(flagged, 20, interval=0.0, what="no-valid-frame error")
        assert "lines have 17 columns, config maps 5 (device.options.columns)" in error
    finally:
        link.close()
        emu.stop()
