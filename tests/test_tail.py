"""``nirsd tail --timeout``: only messages of the asked-for topic count as data."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import numpy as np
import pytest

from nirsd.cli.testing import DaemonProcess, device_config, wait_for
from nirsd.core.errors import NirsdError
from nirsd.daemon import wire


def _tail(daemon: DaemonProcess, *args: str, timeout: float = 30.0):
    cmd = [
        sys.executable,
        "-m",
        "nirsd.cli",
        "tail",
        "--data",
        daemon.endpoints.data,
        "--control",
        daemon.endpoints.control,
        *args,
    ]
    t0 = time.monotonic()
    result = subprocess.run(cmd, env=daemon.env, capture_output=True, text=True, timeout=timeout)
    return result, time.monotonic() - t0


def _state(daemon: DaemonProcess) -> str | None:
    try:
        return daemon.control().status().get("state")
    except NirsdError:
        return None


@pytest.mark.timing
@pytest.mark.parametrize("extra", [[], ["--backfill", "3"]], ids=["live", "backfill"])
def test_timeout_ignores_status_from_a_daemon_without_device(tmp_path, extra):
    port = tmp_path / "no-such-port"
    daemon = DaemonProcess(tmp_path, device_config(str(port)))
    daemon.start(wait_streaming=False)
    try:
        wait_for(lambda: _state(daemon) == "disconnected", 20, what="daemon up, no device")
        result, took = _tail(daemon, "--timeout", "2", *extra)
        # status still counts as data when asked for
        status, _ = _tail(daemon, "--topic", "status", "--json", "-n", "1", "--timeout", "5")
    finally:
        daemon.stop()
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    err = result.stderr
    assert "Traceback" not in err
    assert f"no hb messages from {daemon.endpoints.data} within 2 s" in err
    assert "the daemon is up, device disconnected" in err and "does not exist" in err
    assert 2.0 <= took < 15.0, took
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["state"] == "disconnected"


@pytest.mark.timing
def test_timeout_counts_silence_after_data_too(daemon):
    """A daemon that stops publishing mid-tail ends a --timeout tail with exit 1."""
    cmd = [
        sys.executable,
        "-m",
        "nirsd.cli",
        "tail",
        "--json",
        "--timeout",
        "2",
        "--data",
        daemon.endpoints.data,
        "--control",
        daemon.endpoints.control,
    ]
    proc = subprocess.Popen(
        cmd, env=daemon.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        first = proc.stdout.readline()  # data flows: no timeout
        assert json.loads(first)["hbo"]
        daemon.stop()
        t_stop = time.monotonic()
        out, err = proc.communicate(timeout=20)
        took = time.monotonic() - t_stop
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    assert "within 2 s" in err and "Traceback" not in err
    assert took < 15.0


def test_plain_is_json_ready():
    header = {
        "a": b"\x01\x02",
        "b": [1.5, math.nan, math.inf],
        "c": (np.float32(2.5),),
        "d": {"e": np.int64(7), "f": b"x"},
        "g": np.array([[1.0, np.nan]]),
    }
    assert wire.plain(header) == {
        "a": [1, 2],
        "b": [1.5, None, None],
        "c": [2.5],
        "d": {"e": 7, "f": [120]},
        "g": [[1.0, None]],
    }
    assert wire.plain(header, drop_bytes=True) == {
        "b": [1.5, None, None],
        "c": [2.5],
        "d": {"e": 7},
        "g": [[1.0, None]],
    }
    assert wire.plain(b"xy", drop_bytes=True) is None
    json.dumps(wire.plain(header), allow_nan=False)
    ints = np.arange(4, dtype=np.uint16)
    assert wire.plain(ints) == [0, 1, 2, 3]
