"""Test helpers for ``nirsd console``: the console as a subprocess, HTTP and SSE clients.

Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from nirsd.cli.browser_testing import chromium as chromium  # the browser tests' skip check
from nirsd.cli.browser_testing import headless_chromium
from nirsd.cli.testing import DaemonProcess, wait_for


class ConsoleProcess:
    """``nirsd console`` for ``daemon``; ``url`` is the printed operator URL."""

    def __init__(self, daemon: DaemonProcess, *args: str, listen: str = "127.0.0.1:0") -> None:
        self.daemon = daemon
        self.args = ["--listen", listen, *args]
        self.lines: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout: float = 30.0) -> ConsoleProcess:
        cmd = [sys.executable, "-m", "nirsd.cli", "console", *self.args]
        self.proc = subprocess.Popen(
            cmd,
            env=self.daemon.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        try:
            line = wait_for(self._operator_line, timeout, 0.05, "the console's URL")
        except BaseException:
            self.stop()
            raise
        self.url = line.split(": ", 1)[1].strip()
        return self

    def _operator_line(self) -> str | None:
        if self.proc is not None and self.proc.poll() is not None and not self.lines:
            raise RuntimeError(f"console exited with {self.proc.returncode}")
        return next((x for x in self.lines if x.startswith("operator page: ")), None)

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def base(self) -> str:
        """``http://127.0.0.1:PORT`` (the printed host replaced by 127.0.0.1)."""
        parts = urllib.parse.urlsplit(self.url)
        return f"http://127.0.0.1:{parts.port}"

    @property
    def token(self) -> str | None:
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.url).query)
        return q.get("token", [None])[0]

    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> ConsoleProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def request(
    url: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    method: str | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any, dict[str, str]]:
    """(status, parsed JSON or text, headers); POST when a body is given."""
    data = raw if raw is not None else json.dumps(body).encode() if body is not None else None
    hdrs = {"Content-Type": "application/json"} if body is not None else {}
    req = urllib.request.Request(url, data=data, headers={**hdrs, **(headers or {})})
    if method:
        req.method = method
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=10) as resp:
            status, text, h = resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        status, text, h = err.code, err.read().decode(), dict(err.headers)
    try:
        return status, json.loads(text), h
    except ValueError:
        return status, text, h


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class EventStream:
    """A reader of ``/api/stream``: events as (name, data) pairs, on a thread."""

    def __init__(self, base: str, query: str = "seconds=30", headers: dict | None = None):
        parts = urllib.parse.urlsplit(base)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        self.conn.request("GET", f"/api/stream?{query}", headers=headers or {})
        self.resp = self.conn.getresponse()
        self.events: list[tuple[str, Any, float]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        name, data = None, []
        try:
            for raw in self.resp:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data.append(line[6:])
                elif line == "" and name:
                    self.events.append((name, json.loads("".join(data)), time.time()))
                    name, data = None, []
        except (OSError, ValueError, AttributeError):
            return  # closed (http.client drops its file object on close)

    def named(self, name: str) -> list[Any]:
        return [d for n, d, _ in list(self.events) if n == name]

    def close(self) -> None:
        self.conn.close()


def browser(user_data_dir: Path, size: str = "1400,900") -> Any:
    """Headless Chromium through Selenium, with a fresh profile; logs kept for reading."""
    return headless_chromium(user_data_dir, size)
