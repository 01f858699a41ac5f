"""Helpers for tests of nirsd and of programs built on it (shipped with the package).

``DaemonProcess`` runs ``nirsd run`` as a real subprocess on its own runtime
directory and config, waits until it streams, and stops it with SIGTERM.
``wait_for`` polls a condition against a deadline (never a bare sleep).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nirsd.core.errors import NirsdError
from nirsd.daemon.endpoints import Endpoints


def wait_for(
    cond: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = "condition"
) -> Any:
    """Call ``cond`` until it returns something truthy; TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout:g} s")
        time.sleep(interval)


#: liblsl settings that keep LSL discovery on this machine: no multicast beyond the host,
#: the loopback peer only, no IPv6; liblsl logs errors only
LOCAL_LSL_CONFIG = """\
[ports]
IPv6 = disable

[multicast]
ResolveScope = machine

[lab]
KnownPeers = {127.0.0.1}

[log]
level = -2
"""


def keep_lsl_local(directory: Path) -> Path:
    """Write LOCAL_LSL_CONFIG to ``directory``/lsl_api.cfg and point ``$LSLAPICFG`` at it
    (before liblsl starts), so tests and benchmarks never send LSL traffic off the host."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "lsl_api.cfg"
    path.write_text(LOCAL_LSL_CONFIG)
    os.environ["LSLAPICFG"] = str(path)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def simulated_config(
    channels: int = 8, rate_hz: float = 10.0, baseline_s: float = 1.0, extra: str = ""
) -> str:
    return (
        f'[device]\ndriver = "simulated"\nchannels = {channels}\nrate_hz = {rate_hz}\n'
        f"[baseline]\nseconds = {baseline_s}\n[status]\ninterval_s = 0.5\n{extra}"
    )


def device_config(
    port: str,
    driver: str = "nirsb",
    baseline_s: float = 1.0,
    extra: str = "",
    status_s: float = 0.5,
) -> str:
    """A config for ``driver`` on ``port`` (status every ``status_s``: tests wait less
    than with the default)."""
    return (
        f'[device]\ndriver = "{driver}"\nport = "{port}"\nreconnect_s = 0.1\n'
        f"[baseline]\nseconds = {baseline_s}\n[status]\ninterval_s = {status_s}\n{extra}"
    )


class DaemonProcess:
    """``nirsd run`` in a subprocess, with endpoints under ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        config_text: str | None = None,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.runtime = self.workdir / "run"
        self.runtime.mkdir(parents=True, exist_ok=True)
        self.config_path: Path | None = None
        if config_text is not None:
            self.config_path = self.workdir / "nirsd.toml"
            self.config_path.write_text(config_text)
        self.env = {**os.environ, "NIRSD_RUNTIME_DIR": str(self.runtime), **(env or {})}
        self.args = args or []
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / "daemon.log"

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints(f"ipc://{self.runtime / 'data'}", f"ipc://{self.runtime / 'control'}")

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "nirsd.cli", "run", *self.args]
        if self.config_path is not None:
            cmd += ["--config", str(self.config_path)]
        return cmd + ["--data", self.endpoints.data, "--control", self.endpoints.control]

    def start(self, wait_streaming: bool = True, timeout: float = 20.0) -> DaemonProcess:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.command(),
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        if wait_streaming:
            try:
                wait_for(
                    lambda: self._status_state() == "streaming",
                    timeout,
                    interval=0.05,
                    what="daemon streaming",
                )
            except BaseException:
                self.stop(signal.SIGKILL, timeout=5)  # never leave a daemon behind
                raise
        return self

    def _status_state(self) -> str | None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return self.control().status().get("state")
        except NirsdError:
            return None

    def control(self, timeout_s: float = 1.0):
        from nirsd.clients.subscriber import ControlClient

        client = ControlClient(self.endpoints.control, timeout_s=timeout_s)
        return _Closing(client)

    def subscriber(self, topics=("hb",)):
        from nirsd.clients.subscriber import Subscriber

        return Subscriber(topics, endpoints=self.endpoints)

    def cli(
        self, *args: str, timeout: float = 30.0, check: bool = False, input: str | None = None
    ) -> subprocess.CompletedProcess:
        """Run another ``nirsd`` subcommand against this daemon's endpoints."""
        cmd = [sys.executable, "-m", "nirsd.cli", *args]
        return subprocess.run(
            cmd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            input=input,
        )

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Closing:
    """A ControlClient that closes itself after each call (tests make many)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*a: Any, **k: Any) -> Any:
            try:
                return attr(*a, **k)
            finally:
                self._client.close()

        return call


class Collector:
    """A test-side subscriber that keeps what it receives: samples by ``seq`` per topic
    (``raw``, ``hb``, ``od``, ``derived``), their host and device times and epoch labels,
    the newest header of each topic, every other message as an event, and when each
    arrived.  One collector for every test that reads the stream, so each reads it the
    same way."""

    SAMPLE_TOPICS = ("raw", "hb", "od", "derived")

    def __init__(self, sub: Any) -> None:
        self.sub = sub
        self.samples: dict[str, dict[int, Any]] = {t: {} for t in self.SAMPLE_TOPICS}
        self.t: dict[int, float] = {}
        self.t_dev: dict[int, float] = {}
        self.epoch: dict[int, str | None] = {}
        self.events: list[Any] = []
        #: (monotonic arrival, topic, first seq or None, the message's newest sample time)
        self.arrivals: list[tuple[float, str, int | None, float | None]] = []
        #: monotonic arrival of each live sample, per topic and ``seq``
        self.received: dict[str, dict[int, float]] = {t: {} for t in self.SAMPLE_TOPICS}
        #: wall-clock receipt minus the newest sample time ``t`` of each live message, s
        self.latency: dict[str, list[float]] = {t: [] for t in self.SAMPLE_TOPICS}
        #: live samples received again with a ``seq`` already held (a duplicate)
        self.repeated: dict[str, int] = dict.fromkeys(self.SAMPLE_TOPICS, 0)
        self.last_header: dict[str, dict] = {}
        self._event_arrivals: list[float] = []

    @property
    def hb(self) -> dict[int, Any]:
        return self.samples["hb"]

    @property
    def raw(self) -> dict[int, Any]:
        return self.samples["raw"]

    def take(self, msg: Any, live: bool = True) -> None:
        """Keep one message; ``live=False`` for history (no arrival, latency or repeat)."""
        now = time.monotonic()
        if msg.topic not in self.samples:
            self.events.append(msg)
            self._event_arrivals.append(now)
            self.arrivals.append((now, msg.topic, None, None))
            return
        store, header = self.samples[msg.topic], msg.header
        self.last_header[msg.topic] = header
        for i in range(msg.n):
            s = msg.seq + i
            if live:
                self.repeated[msg.topic] += s in store
                self.received[msg.topic].setdefault(s, now)
            store[s] = msg.array[i]
            self.t[s] = header["t"][i]
            if "t_dev" in header:
                self.t_dev[s] = header["t_dev"][i]
            if "epoch" in header:
                self.epoch[s] = header["epoch"][i]
        if live:
            self.arrivals.append((now, msg.topic, msg.seq, header["t"][-1] if msg.n else None))
            if msg.n:
                self.latency[msg.topic].append(time.time() - header["t"][-1])

    def pump(self, seconds: float = 0.05) -> int:
        """Receive for ``seconds``; the newest sample ``seq`` held (-1 if none)."""
        end = time.monotonic() + seconds
        while True:
            msg = self.sub.recv(max(0.0, end - time.monotonic()))
            if msg is None:
                return max(self.t, default=-1)
            self.take(msg)

    def until(self, cond: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
        """Receive until ``cond()`` is truthy; TimeoutError after ``timeout`` s."""

        def step() -> Any:
            self.pump()
            return cond()

        return wait_for(step, timeout, interval=0, what=what)

    def until_seq(self, seq: int, timeout: float = 15.0) -> None:
        """Receive until sample ``seq`` has arrived."""
        self.until(lambda: max(self.t, default=-1) >= seq, timeout, what=f"sample {seq}")

    def of(self, topic: str) -> list[dict]:
        """Headers of the events received on ``topic``, in order."""
        return [m.header for m in self.events if m.topic == topic]

    def timed(self, topic: str, after: float = 0.0) -> list[tuple[float, dict]]:
        """(monotonic arrival, header) of the events on ``topic`` that came at ``after``
        or later."""
        return [
            (when, m.header)
            for when, m in zip(self._event_arrivals, self.events)
            if m.topic == topic and when >= after
        ]

    def status(self, event: str) -> list[dict]:
        """Headers of the ``status`` messages announcing ``event`` (e.g. ``gap``)."""
        return [h for h in self.of("status") if h.get("event") == event]

    def backfill(self, topic: str = "raw") -> None:
        """Take from history every ``topic`` sample before the first one received."""
        first = min(self.samples[topic])
        if first > 0:
            self.take(self.sub.control.history(since=0, until=first)[topic], live=False)

    def lost(self, topic: str = "raw", timeout: float = 10.0) -> int:
        """Samples [0, head) the daemon accepted that this collector does not hold after
        catching up live to the head and backfilling the start from history."""
        head = self.sub.control.info()["seq"]
        held = self.samples[topic]
        self.until(lambda: max(held, default=-1) >= head - 1, timeout, "catch up to head")
        self.backfill(topic)
        return sum(1 for s in range(head) if s not in held)

    def close(self) -> None:
        self.sub.close()


def start_recorder(
    daemon: DaemonProcess,
    path: Path,
    *args: str,
    preexec: Callable[[], Any] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen:
    """``nirsd record PATH --backfill all ARGS`` on ``daemon``'s endpoints, as a subprocess
    with pipes (the file starts at the stream's first sample; a later flag wins)."""
    cmd = [sys.executable, "-m", "nirsd.cli", "record", str(path)]
    cmd += ["--data", daemon.endpoints.data, "--control", daemon.endpoints.control]
    cmd += ["--backfill", "all", *args]
    return subprocess.Popen(
        cmd,
        env=daemon.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec,
        cwd=cwd,
    )


def finish(proc: subprocess.Popen, timeout: float) -> tuple[Any, Any]:
    """``proc.communicate(timeout=timeout)``; a process still running after it (timed
    out, or the caller's error) is killed, never left behind."""
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
