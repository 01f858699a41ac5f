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
    port: str, driver: str = "nirsb", baseline_s: float = 1.0, extra: str = ""
) -> str:
    return (
        f'[device]\ndriver = "{driver}"\nport = "{port}"\nreconnect_s = 0.1\n'
        f"[baseline]\nseconds = {baseline_s}\n[status]\ninterval_s = 0.5\n{extra}"
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
