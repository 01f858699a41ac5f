"""Signals on a real daemon subprocess: SIGTERM flushes and exits 0, SIGHUP reloads."""

from __future__ import annotations

import json
import signal
import time

import pytest

from nirsd.cli.testing import DaemonProcess, simulated_config, wait_for


def _log_events(proc: DaemonProcess, event: str) -> list[dict]:
    out = []
    for line in proc.log().splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if obj.get("event") == event:
            out.append(obj)
    return out


@pytest.mark.timing
def test_sigterm_during_streaming_exits_0_flushed_and_clean(tmp_path):
    proc = DaemonProcess(tmp_path, simulated_config(channels=8, rate_hz=50.0))
    proc.start()
    try:
        with proc.subscriber(["hb", "raw"]) as sub:
            end = {"hb": 0, "raw": 0}

            def streamed_a_while() -> bool:
                msg = sub.recv(0.5)
                if msg is not None:
                    end[msg.topic] = msg.seq + msg.n
                return min(end.values()) >= 25

            wait_for(streamed_a_while, 10.0, what="0.5 s of live samples")
            t0 = time.monotonic()
            proc.proc.send_signal(signal.SIGTERM)
            rc = proc.proc.wait(5.0)
            elapsed = time.monotonic() - t0
            assert rc == 0, proc.log()
            assert elapsed < 2.0, f"SIGTERM took {elapsed:.2f} s"
            # what was published before the exit is all there, up to the last sample
            while (msg := sub.recv(1.0)) is not None:
                end[msg.topic] = msg.seq + msg.n
        stopped = _log_events(proc, "stopped")
        assert len(stopped) == 1
        assert end["hb"] == end["raw"] == stopped[0]["samples"] >= 25
        assert _log_events(proc, "stop_requested")[0]["signal"] == "SIGTERM"
        for name in ("data", "control"):
            assert not (proc.runtime / name).exists(), f"{name} socket left behind"
    finally:
        proc.stop()


def test_sigint_also_stops_cleanly(tmp_path):
    proc = DaemonProcess(tmp_path, simulated_config(channels=2, rate_hz=20.0))
    proc.start()
    try:
        assert proc.stop(signal.SIGINT, timeout=5.0) == 0
        assert not (proc.runtime / "control").exists()
    finally:
        proc.stop()


def test_sighup_reloads_the_config_in_place(tmp_path):
    proc = DaemonProcess(tmp_path, simulated_config(channels=4, rate_hz=20.0))
    proc.start()
    try:
        info = proc.control().info()
        old_stream, pid = info["stream"], proc.proc.pid
        proc.config_path.write_text(simulated_config(channels=2, rate_hz=20.0))
        proc.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _log_events(proc, "reloaded"), 10.0, what="reloaded")
        with proc.subscriber(["hb"]) as sub:

            def two_channels():
                msg = sub.recv(0.5)
                return msg if msg is not None and msg.array.shape[1:] == (3, 2) else None

            msg = wait_for(two_channels, 10.0, what="hb from the reloaded 2-channel config")
            assert msg.header["stream"] != old_stream
        assert proc.proc.pid == pid and proc.proc.poll() is None
        assert proc.control().info()["endpoints"]["data"] == proc.endpoints.data
    finally:
        assert proc.stop() == 0


def test_sighup_with_a_bad_config_keeps_running(tmp_path):
    proc = DaemonProcess(tmp_path, simulated_config(channels=4, rate_hz=20.0))
    proc.start()
    try:
        stream = proc.control().info()["stream"]
        proc.config_path.write_text('[device]\nchannels = "four"\n')
        proc.proc.send_signal(signal.SIGHUP)
        failed = wait_for(lambda: _log_events(proc, "reload_failed"), 10.0, what="reload_failed")
        assert "device.channels" in failed[0]["error"]
        info = proc.control().info()
        assert info["stream"] == stream and info["state"] == "streaming"
        with proc.subscriber(["hb"]) as sub:
            msg = wait_for(lambda: sub.recv(0.5), 10.0, what="still streaming")
            assert msg.array.shape[1:] == (3, 4)
    finally:
        assert proc.stop() == 0


def _catches_sigint(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as f:
        caught = next(line for line in f if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGINT - 1)))


def test_ctrl_c_ends_a_command_started_with_sigint_ignored(tmp_path):
    """A script's background job inherits SIGINT ignored; nirsd's commands take it back."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NIRSD_RUNTIME_DIR": str(tmp_path)}  # no daemon there
    proc = subprocess.Popen(
        [sys.executable, "-m", "nirsd.cli", "tail"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        wait_for(lambda: _catches_sigint(proc.pid), 20, what="tail to take SIGINT back")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
