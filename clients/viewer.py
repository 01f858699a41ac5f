"""``nirsd view``: a live terminal view of a running daemon (rich; works over SSH).

Per channel: the latest ΔHbO and ΔHbR (µM) with a sparkline of the last ``window_s``
seconds (30 s by default; one scale for all sparklines, shown above the table), and the
signal quality.  Above the table: the daemon's state, the sample rate (Hz, measured by
the daemon and at the viewer), drops in words (samples the device lost, messages this
view missed, samples missing from ``seq``), the open epoch and the running protocol
step; below it the last epoch summary and the key legend.  Drawing is in
:mod:`nirsd.clients.view_render`.

Keys: ``1``..``9`` start the daemon's marker label of that number (``info`` ``labels``),
the same key again (or ``e``) ends it; ``q`` (or Ctrl-C) quits.

The view follows daemon restarts: a new ``stream`` id resets it, and after
``silence_s`` seconds without any message the SUB socket is rebuilt and the probe
description fetched again.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import numpy as np
import zmq
from rich.console import Console
from rich.live import Live

from nirsd.core.errors import NirsdError
from nirsd.daemon.endpoints import Endpoints
from nirsd.daemon.wire import Message

from . import readable
from .subscriber import ControlClient, Subscriber
from .view_render import render

TOPICS = ("hb", "marker", "epoch", "status")
MARK_TIMEOUT_S = 2.0  # a mark's reply waits for its sample: a few sample periods


class ViewState:
    """What the view shows, updated from messages; arrays sized from the probe description."""

    def __init__(self, window_s: float = 30.0) -> None:
        self.window_s = float(window_s)
        self.stream: str | None = None
        self.labels: list[str] = []
        self.n_ch = 0
        self.rate_hz = 0.0
        self.connected = False
        self.msg_seen: dict[str, int] = {}
        self.msg_lost = 0
        self.seq_lost = 0
        self.restarts = 0
        self.vocabulary: list[str] = []  # the daemon's marker labels: keys 1..9
        self.note = ""  # the outcome of the last marker key
        self.reset({})

    def reset(self, info: dict[str, Any]) -> None:
        """Start over for a (new) stream described by an ``info`` reply."""
        chans = info.get("channels") or []
        self.n_ch = int(info.get("n_channels") or len(chans) or 0)
        self.labels = [str(c.get("label", f"ch{i}")) for i, c in enumerate(chans)]
        self.labels += [f"ch{i}" for i in range(len(self.labels), self.n_ch)]
        self.rate_hz = float(info.get("rate_hz") or 10.0)
        self.vocabulary = [str(x) for x in info.get("labels") or self.vocabulary]
        if self.stream is not None and info.get("stream") not in (None, self.stream):
            self.restarts += 1
        self.stream = info.get("stream", self.stream)
        cap = max(2, int(round(self.window_s * self.rate_hz)))
        self.hbo = np.full((cap, self.n_ch), np.nan)
        self.hbr = np.full((cap, self.n_ch), np.nan)
        self.qual = np.zeros((cap, self.n_ch), np.uint8)
        self.filled = 0
        self.next_seq: int | None = None
        self.epoch: str | None = None
        self.status: dict[str, Any] = {}
        self.last_marker: dict[str, Any] | None = None
        self.last_epoch: dict[str, Any] | None = None
        self.msg_seen = {}
        self.stale = False
        self.arrivals: list[tuple[float, int]] = []

    def _count_msg(self, msg: Message) -> None:
        n = msg.header.get("msg")
        if isinstance(n, int):
            prev = self.msg_seen.get(msg.topic)
            if prev is not None and n > prev + 1:
                self.msg_lost += n - prev - 1
            self.msg_seen[msg.topic] = n

    def on_message(self, msg: Message, now: float) -> None:
        self._count_msg(msg)
        if msg.topic == "hb" and msg.array is not None:
            self._on_hb(msg, now)
        elif msg.topic == "status":
            self.status = msg.header
        elif msg.topic == "marker":
            self.last_marker = msg.header
        elif msg.topic == "epoch":
            self.last_epoch = msg.header

    def _on_hb(self, msg: Message, now: float) -> None:
        arr = msg.array
        if arr is None:
            raise ValueError("an hb message without a sample array")  # the caller checks
        if arr.ndim != 3 or arr.shape[1] < 2 or arr.shape[2] != self.n_ch:
            self.stale = True  # not the probe we were told about: describe again
            return
        if self.next_seq is not None:
            if msg.seq + msg.n <= self.next_seq:
                return  # already shown (history prefill overlaps live data)
            if msg.seq > self.next_seq:
                self.seq_lost += msg.seq - self.next_seq
            elif msg.seq < self.next_seq:
                skip = self.next_seq - msg.seq
                arr = arr[skip:]
                msg = Message(
                    msg.topic,
                    {
                        **msg.header,
                        "seq": self.next_seq,
                        "n": msg.n - skip,
                        "epoch": (msg.header.get("epoch") or [])[skip:],
                        "quality": None,
                    },
                    arr,
                )
        self.next_seq = msg.seq + msg.n
        for name, block in (("hbo", arr[:, 0]), ("hbr", arr[:, 1])):
            ring = getattr(self, name)
            k = min(len(block), len(ring))
            ring[:-k] = ring[k:]
            ring[-k:] = block[-k:]
        q = msg.header.get("quality")
        k = min(msg.n, len(self.qual))
        self.qual[:-k] = self.qual[k:]
        if isinstance(q, bytes) and len(q) == msg.n * self.n_ch:
            self.qual[-k:] = np.frombuffer(q, np.uint8).reshape(msg.n, self.n_ch)[-k:]
        else:
            self.qual[-k:] = 0
        self.filled = min(len(self.hbo), self.filled + msg.n)
        epochs = msg.header.get("epoch") or [None]
        self.epoch = epochs[-1]
        self.arrivals.append((now, msg.n))
        while self.arrivals and now - self.arrivals[0][0] > 5.0:
            self.arrivals.pop(0)

    def measured_rate(self) -> float:
        """Samples per second received over the last ~5 s (Hz)."""
        if len(self.arrivals) < 2:
            return 0.0
        span = self.arrivals[-1][0] - self.arrivals[0][0]
        return sum(n for _, n in self.arrivals[1:]) / span if span > 0 else 0.0


class Viewer:
    """Subscribes to ``hb``, ``marker``, ``epoch``, ``status`` and redraws a few times a second."""

    def __init__(
        self,
        endpoints: Endpoints,
        window_s: float = 30.0,
        refresh_hz: float = 4.0,
        silence_s: float = 3.0,
        curve: Any = None,
    ) -> None:
        self.endpoints = endpoints
        self.curve = curve  # ClientKeys for CURVE endpoints (None: from the environment)
        self.state = ViewState(window_s)
        self.refresh_s = 1.0 / refresh_hz
        self.silence_s = silence_s
        self.ctx: zmq.Context = zmq.Context.instance()
        self.sub: Subscriber | None = None
        self.last_msg = 0.0
        self._described = 0.0
        self.frames = 0

    def _connect(self) -> None:
        """(Re)build the SUB socket and fetch the probe description; tolerate no daemon."""
        if self.sub is not None:
            self.sub.close()
        self.sub = Subscriber(TOPICS, endpoints=self.endpoints, ctx=self.ctx, curve=self.curve)
        self.last_msg = time.monotonic()
        self._describe()

    def _describe(self) -> bool:
        self._described = time.monotonic()
        client = ControlClient(self.endpoints.control, self.ctx, timeout_s=1.0, curve=self.curve)
        try:  # the client is closed however this ends (Ctrl-C included)
            try:
                self.state.reset(client.info())
                self.state.connected = True
            except NirsdError:
                self.state.connected = False
                return False
            try:  # fill the trend window from the daemon's history
                hist = client.history(seconds=self.state.window_s)["hb"]
                if hist.n and hist.array is not None:
                    self.state.on_message(hist, time.monotonic())
                    self.state.arrivals.clear()
            except (NirsdError, KeyError, ValueError):
                pass
            return True
        finally:
            client.close()

    def _receive(self, timeout_s: float) -> None:
        assert self.sub is not None
        msg = self.sub.recv(timeout_s)
        for _ in range(10_000):  # drain what is queued, then redraw
            if msg is None:
                return
            now = time.monotonic()
            self.last_msg = now
            stream = msg.header.get("stream")
            stale = self.state.stale and now - self._described > 1.0
            if stream != self.state.stream or not self.state.connected or stale:
                if not self._describe():
                    return
            if stream == self.state.stream:
                self.state.on_message(msg, now)
            msg = self.sub.recv(0)

    def run(self, console: Console, frames: int | None = None, keys: bool = True) -> int:
        """Draw until ``q``/Ctrl-C, or ``frames`` redraws; returns the exit status (0)."""
        self._connect()
        stdin_fd = sys.stdin.fileno() if keys and sys.stdin.isatty() else None
        restore = None
        if stdin_fd is not None:
            import termios
            import tty

            restore = termios.tcgetattr(stdin_fd)
            tty.setcbreak(stdin_fd)
        try:
            with Live(console=console, auto_refresh=False, transient=False) as live:
                next_draw = time.monotonic()
                while True:
                    now = time.monotonic()
                    if now >= next_draw:
                        live.update(render(self.state, time.time(), console.width), refresh=True)
                        self.frames += 1
                        next_draw = now + self.refresh_s
                        if frames is not None and self.frames >= frames:
                            return 0
                    if stdin_fd is not None and not self._keys(stdin_fd):
                        return 0
                    self._receive(min(0.05, max(0.0, next_draw - time.monotonic())))
                    if time.monotonic() - self.last_msg > self.silence_s:
                        self.state.connected = False
                        self._connect()
        except KeyboardInterrupt:
            return 0
        finally:
            if restore is not None and stdin_fd is not None:  # restore implies stdin_fd
                import termios

                termios.tcsetattr(stdin_fd, termios.TCSADRAIN, restore)
            self.close()

    def _keys(self, fd: int) -> bool:
        """Act on typed keys; False when the view should quit (q, or input closed).

        ``1``..``9`` start the configured label of that number, or end it when it is
        the open epoch; ``e`` ends the open epoch.
        """
        data = _read_keys(fd)
        if data is None or b"q" in data or b"Q" in data:
            return False
        for key in data.decode("ascii", "ignore"):
            if key == "e":
                self.mark(None, "end")
            elif key.isdigit() and 0 < int(key) <= len(self.state.vocabulary):
                label = self.state.vocabulary[int(key) - 1]
                self.mark(label, "end" if self.state.epoch == label else "start")
        return True

    def mark(self, label: str | None, action: str) -> None:
        """Send a marker; its outcome goes to the note line of the screen."""
        client = ControlClient(
            self.endpoints.control, self.ctx, timeout_s=MARK_TIMEOUT_S, curve=self.curve
        )
        try:
            ack = client.mark(label, action)
        except NirsdError as err:
            self.state.note = f"marker not sent: {err}"
            return
        finally:
            client.close()
        self.state.note = f"sent: {readable.marker_line(ack)}"
        if ack.get("action") == "end" and ack.get("ended"):
            self.state.note += f"; ended {readable.ended_words(ack['ended'])}"
        # the samples that carry the new label may not have arrived yet
        self.state.epoch = ack.get("label") if ack.get("action") == "start" else None

    def once(self, console: Console, wait_s: float = 5.0) -> int:
        """Print one frame once data (and a status) arrived; 1 if the daemon never answered."""
        self._connect()
        try:
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and not (self.state.filled and self.state.status):
                self._receive(0.1)
            console.print(render(self.state, time.time(), console.width))
            return 0 if self.state.filled else 1
        finally:
            self.close()

    def close(self) -> None:
        if self.sub is not None:
            self.sub.close()
            self.sub = None


def _read_keys(fd: int) -> bytes | None:
    """What was typed since the last look (b"" if nothing), None at end of input."""
    import select

    ready, _, _ = select.select([fd], [], [], 0)
    if not ready:
        return b""
    return os.read(fd, 64) or None
