"""sd_notify through a real NOTIFY_SOCKET: READY, STATUS, WATCHDOG, STOPPING, a stalled loop."""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from nirsd.cli.testing import DaemonProcess, device_config, simulated_config, wait_for

WATCHDOG_USEC = 400_000  # the daemon pings every 0.2 s


class NotifySocket:
    """An AF_UNIX datagram socket standing in for systemd: records (monotonic t, fields)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append((time.monotonic(), fields))

    def first(self, key: str, value: str | None = None) -> tuple[float, dict[str, str]] | None:
        for t, fields in list(self.messages):
            if key in fields and (value is None or fields[key] == value):
                return t, fields
        return None

    def times(self, key: str) -> list[float]:
        return [t for t, fields in list(self.messages) if key in fields]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def notify(tmp_path):
    ns = NotifySocket(tmp_path / "notify.sock")
    try:
        yield ns
    finally:
        ns.close()


def _env(ns: NotifySocket, watchdog: bool = True) -> dict[str, str]:
    env = {"NOTIFY_SOCKET": str(ns.path), "NIRSD_TEST_HOOKS": "1"}
    if watchdog:
        env["WATCHDOG_USEC"] = str(WATCHDOG_USEC)
    return env


def test_ready_after_data_flows_and_stopping_on_sigterm(tmp_path, notify):
    proc = DaemonProcess(
        tmp_path, simulated_config(channels=4, rate_hz=20.0), env=_env(notify, watchdog=False)
    )
    proc.start(wait_streaming=False)
    try:
        t_ready, fields = wait_for(lambda: notify.first("READY", "1"), 20.0, what="READY=1")
        assert fields["STATUS"].startswith("streaming from /dev/pts/")
        # READY=1 is sent right after the first block was published: data has flowed
        status = proc.control().status()
        assert status["state"] == "streaming" and status["samples"] > 0
        with proc.subscriber(["hb"]) as sub:
            msg = sub.recv(5.0)
            assert msg is not None and msg.n >= 1
        # periodic STATUS= lines carry the rate and the drops
        wait_for(
            lambda: any(
                "Hz" in f.get("STATUS", "") and "lost" in f.get("STATUS", "")
                for _, f in notify.messages
            ),
            5.0,
            what="STATUS with rate",
        )
        assert notify.first("STOPPING") is None
        assert proc.stop(signal.SIGTERM) == 0
        wait_for(lambda: notify.first("STOPPING", "1"), 5.0, what="STOPPING=1")
        assert notify.first("STOPPING")[0] > t_ready
        assert not notify.times("WATCHDOG"), "no WATCHDOG_USEC, no pings"
    finally:
        proc.stop()


def test_ready_while_waiting_for_a_missing_device(tmp_path, notify):
    port = tmp_path / "no-such-tty"
    proc = DaemonProcess(tmp_path, device_config(str(port)), env=_env(notify, watchdog=False))
    proc.start(wait_streaming=False)
    try:
        _, fields = wait_for(lambda: notify.first("READY", "1"), 20.0, what="READY=1")
        assert fields["STATUS"] == f"waiting for device on {port}"
        assert proc.control().status()["state"] == "disconnected"
    finally:
        assert proc.stop() == 0


def test_watchdog_pings_at_interval_and_stop_when_the_loop_stalls(tmp_path, notify):
    proc = DaemonProcess(tmp_path, simulated_config(channels=4, rate_hz=20.0), env=_env(notify))
    proc.start(wait_streaming=True)
    try:
        wait_for(lambda: len(notify.times("WATCHDOG")) >= 10, 10.0, what="10 pings")
        pings = notify.times("WATCHDOG")
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        half = WATCHDOG_USEC / 2e6
        mean = sum(gaps) / len(gaps)
        assert half * 0.9 <= mean <= half * 1.6, f"mean ping interval {mean:.3f} s"
        assert max(gaps) < WATCHDOG_USEC / 1e6, "a ping later than the watchdog timeout"

        # the test hook blocks the loop for 1.5 s: no pings in that time, then again
        before = len(notify.times("WATCHDOG"))
        result: dict = {}

        def stall() -> None:
            result["reply"] = proc.control(timeout_s=10.0).request("test_stall", seconds=1.5)[0]

        t0 = time.monotonic()
        thread = threading.Thread(target=stall)
        thread.start()
        thread.join(15.0)
        assert result["reply"]["stalled_s"] == 1.5
        wait_for(lambda: len(notify.times("WATCHDOG")) >= before + 3, 5.0, what="pings resume")
        pings = [t for t in notify.times("WATCHDOG") if t >= t0 - half]
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        assert max(gaps) >= 1.4, f"pings went on during the stall: {gaps}"
        assert proc.proc.poll() is None
    finally:
        assert proc.stop() == 0
