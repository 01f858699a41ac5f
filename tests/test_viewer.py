"""``nirsd view`` against a live daemon subprocess, inside a real pseudo-terminal."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading

import numpy as np
import pytest

pytest.importorskip("rich")

from nirsd.cli.testing import DaemonProcess, simulated_config, wait_for  # noqa: E402

LABELS = ("L3 left", "L4 right", "L5 mid")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r")


def config_text() -> str:
    chans = "".join(f'[[channel]]\nindex = {i}\nlabel = "{lab}"\n' for i, lab in enumerate(LABELS))
    return simulated_config(channels=len(LABELS), rate_hz=20.0, extra=chans)


def start(d: DaemonProcess) -> str:
    """Start the daemon; its stream id once the baseline is taken."""
    d.start()
    wait_for(lambda: d.control().status().get("baseline_ready"), 20, what="baseline")
    return d.control().info()["stream"]


class PtyView:
    """``nirsd view`` with stdin/stdout on the slave side of a 40×``cols`` pty."""

    def __init__(self, env: dict[str, str], *args: str, cols: int = 120) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, cols, 0, 0))
        self.master = master
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nirsd.cli", "view", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            env={**env, "TERM": "xterm-256color", "COLUMNS": str(cols), "LINES": "40"},
        )
        os.close(slave)
        self.buf = bytearray()
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            with self.lock:
                self.buf += data

    def text(self) -> str:
        with self.lock:
            return ANSI.sub("", self.buf.decode("utf-8", "replace"))

    def last_frame(self) -> str:
        """The text of the last complete frame (each frame ends with the key hint)."""
        frames = self.text().split("q quits")
        return frames[-2] if len(frames) >= 2 else ""

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


@pytest.fixture
def daemon(tmp_path):
    d = DaemonProcess(tmp_path, config_text())
    try:
        yield d
    finally:
        d.stop()


def _row_values(frame: str, label: str) -> tuple[float, float]:
    for line in frame.splitlines():
        if line.startswith(label):
            nums = re.findall(r"[+-]\d+\.\d{3}", line[len(label) :])
            return float(nums[0]), float(nums[1])
    raise AssertionError(f"no row for {label!r} in frame:\n{frame}")


def test_view_shows_channels_with_daemon_values_and_quits_on_q(daemon):
    stream = start(daemon)
    view = PtyView(daemon.env)
    try:
        wait_for(lambda: view.text().count("q quits") >= 6, 20, what="six frames")
        frame = view.last_frame()
        assert f"stream {stream}" in frame
        assert "state streaming" in frame
        rate = float(re.search(r"rate ([\d.]+) Hz", frame).group(1))
        assert 15.0 < rate < 25.0
        assert "drops: no samples lost" in frame
        # every number shown is one of the daemon's samples (rounded to 3 decimals)
        hb = daemon.control().history(since=0)["hb"].array
        for i, label in enumerate(LABELS):
            hbo, hbr = _row_values(frame, label)
            assert np.min(np.abs(hb[:, 0, i] - hbo)) <= 0.0005 + 1e-12, (label, hbo)
            assert np.min(np.abs(hb[:, 1, i] - hbr)) <= 0.0005 + 1e-12, (label, hbr)
        mark = daemon.cli("mark", "extension")
        assert mark.returncode == 0, mark.stderr
        wait_for(
            lambda: re.search(r"epoch extension \d+ s", view.last_frame()),
            10,
            what="the open epoch on screen",
        )
        assert "last marker extension/start" in view.last_frame()
        os.write(view.master, b"q")
        assert view.proc.wait(10) == 0
    finally:
        view.close()


def test_view_recovers_when_the_daemon_restarts(daemon):
    first = start(daemon)
    view = PtyView(daemon.env, "--refresh", "8")
    try:
        wait_for(lambda: f"stream {first}" in view.last_frame(), 20, what="the first stream")
        daemon.stop()
        wait_for(
            lambda: "waiting for the daemon" in view.last_frame(),
            20,
            what="the viewer to notice the daemon is gone",
        )
        second = start(daemon)
        assert second != first
        wait_for(
            lambda: (
                f"stream {second}" in view.last_frame() and "state streaming" in view.last_frame()
            ),
            20,
            what="the second stream",
        )
        wait_for(
            lambda: re.search(r"L3 left\s+[+-]\d", view.last_frame()),
            10,
            what="values of the new stream",
        )
        assert "restarts 1" in view.last_frame()
        os.killpg(view.proc.pid, signal.SIGINT)
        assert view.proc.wait(10) == 0
    finally:
        view.close()


def test_view_once_prints_one_frame(daemon):
    start(daemon)
    out = subprocess.run(
        [sys.executable, "-m", "nirsd.cli", "view", "--once"],
        env={**daemon.env, "COLUMNS": "120"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    for label in LABELS:
        assert label in out.stdout
    assert out.stdout.count("q quits") == 1


def test_view_once_without_daemon_exits_1(tmp_path):
    env = {**os.environ, "NIRSD_RUNTIME_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "nirsd.cli", "view", "--once", "--wait", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 1
    assert "waiting for the daemon" in out.stdout
    assert "Traceback" not in out.stderr


def _epoch_now(daemon: DaemonProcess):
    epoch = daemon.control().status().get("epoch")
    return epoch["label"] if epoch else None


def test_view_keys_start_and_end_markers(daemon):
    start(daemon)
    view = PtyView(daemon.env)
    try:
        wait_for(lambda: "keys: 1 rest · 2 extension · 3 flexion" in view.last_frame(), 20)
        with daemon.subscriber(["epoch"]) as sub:
            os.write(view.master, b"2")
            wait_for(lambda: _epoch_now(daemon) == "extension", 10, what="extension started")
            wait_for(lambda: "sent: extension start at sample" in view.last_frame(), 10)
            os.write(view.master, b"2")  # the same key again ends it
            wait_for(lambda: _epoch_now(daemon) is None, 10, what="extension ended")
            wait_for(lambda: "ended extension (started by marker" in view.last_frame(), 10)
            summary = sub.recv(10.0).header
        # at 120 columns the table shows the last epoch per channel: the daemon's values
        wait_for(lambda: "last epoch ΔHbO/ΔHbR" in view.last_frame(), 10)
        frame = view.last_frame()
        for i, label in enumerate(LABELS):
            row = next(line for line in frame.splitlines() if line.startswith(label))
            hbo, hbr = (float(x) for x in row.split()[-1].split("/"))
            assert hbo == pytest.approx(summary["mean_hbo"][i], abs=0.005 + 1e-9)
            assert hbr == pytest.approx(summary["mean_hbr"][i], abs=0.005 + 1e-9)
        os.write(view.master, b"3")
        wait_for(lambda: _epoch_now(daemon) == "flexion", 10, what="flexion started")
        os.write(view.master, b"e")
        wait_for(lambda: _epoch_now(daemon) is None, 10, what="flexion ended by e")
        os.write(view.master, b"q")
        assert view.proc.wait(10) == 0
    finally:
        view.close()
    acks = daemon.control().status()["markers"]
    assert acks["accepted"] >= 4 and acks["rejected"] == 0


def test_view_fits_80_columns_with_a_labelled_last_epoch(daemon):
    start(daemon)
    view = PtyView(daemon.env, cols=80)
    try:
        ack = json.loads(daemon.cli("mark", "extension", check=True).stdout)
        # the epoch holds samples before it ends (its summary is their mean ± SD)
        wait_for(lambda: daemon.control().info()["seq"] >= ack["seq"] + 5, 10, what="epoch data")
        daemon.cli("mark", "--end", check=True)
        pattern = re.compile(
            r"ΔHbO [+-]\d+\.\d{3} ± \d+\.\d{3}   ΔHbR [+-]\d+\.\d{3} ± \d+\.\d{3}"
            r"   ΔHbT [+-]\d+\.\d{3} ± \d+\.\d{3}$"
        )
        wait_for(
            lambda: any(pattern.search(x) for x in view.last_frame().splitlines()),
            15,
            what="the last epoch's values on one line",
        )
        frame = view.last_frame()
        assert "last epoch: extension," in frame and "mean ± SD of 3 channels:" in frame
        assert all(len(line) <= 80 for line in frame.splitlines()), frame
        # the sparklines' common scale is stated
        assert re.search(r"one scale for all: ▁ [+-]\d+\.\d\d … █ [+-]\d+\.\d\d µM", frame)
    finally:
        view.close()


def test_sparklines_share_one_scale():
    from rich.console import Console

    from nirsd.clients.view_render import render
    from nirsd.clients.viewer import ViewState
    from nirsd.daemon.wire import Message

    state = ViewState(window_s=10.0)
    state.reset(
        {"n_channels": 2, "rate_hz": 10.0, "channels": [{"label": "noise"}, {"label": "step"}]}
    )
    n = 100
    hb = np.zeros((n, 3, 2))
    hb[:, 0, 0] = 0.1 * np.sin(np.arange(n))  # noise, ±0.1 µM
    hb[50:, 0, 1] = 10.0  # a real 10 µM change
    state.on_message(Message("hb", {"seq": 0, "n": n, "epoch": [None] * n}, hb), 0.0)
    console = Console(width=80, record=True, color_system=None)
    console.print(render(state, 0.0, 80))
    text = console.export_text()
    assert "one scale for all: ▁ -0.10 … █ +10.00 µM" in text
    rows = {
        line.split()[0]: line for line in text.splitlines() if line.startswith(("noise", "step"))
    }
    noise_spark = rows["noise"].split()[2]
    assert set(noise_spark) <= {"▁"}, noise_spark  # noise stays flat on the common scale
    assert "█" in rows["step"] and "▁" in rows["step"]
