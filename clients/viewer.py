"""``nirsd view``: a live terminal view of a running daemon (rich; works over SSH).

Per channel: the latest ΔHbO and ΔHbR (µM) with a sparkline of the last ``window_s``
seconds (30 s by default), and the signal quality.  Above the table: the daemon's state,
the sample rate (Hz, measured by the daemon and at the viewer), drops (messages lost by
this subscriber, samples missing from ``seq``, samples the device lost), the open epoch
and the running protocol step.

The view follows daemon restarts: a new ``stream`` id resets it, and after
``silence_s`` seconds without any message the SUB socket is rebuilt and the probe
description fetched again.  ``q`` (or Ctrl-C) quits.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import numpy as np
import zmq
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from nirsd.core.errors import NirsdError
from nirsd.daemon.endpoints import Endpoints
from nirsd.daemon.wire import Message

from .subscriber import ControlClient, Subscriber

TOPICS = ("hb", "marker", "epoch", "status")
BLOCKS = "▁▂▃▄▅▆▇█"
LOW_LIGHT, SATURATED, BASELINE_PENDING, POOR_SIGNAL = 2, 1, 4, 8


def sparkline(values: np.ndarray, width: int) -> str:
    """Unicode block sparkline of ``values`` (NaN shown as a space), ``width`` cells."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0 or width <= 0:
        return ""
    if v.size > width:  # block means over equal slices, newest at the right
        edges = np.linspace(0, v.size, width + 1).astype(int)
        with np.errstate(invalid="ignore"):
            sums = np.add.reduceat(np.nan_to_num(v), edges[:-1])
            counts = np.add.reduceat(np.isfinite(v).astype(np.int64), edges[:-1])
            v = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    finite = np.isfinite(v)
    if not finite.any():
        return " " * v.size
    lo, hi = float(v[finite].min()), float(v[finite].max())
    span = hi - lo if hi > lo else 1.0
    idx = np.clip(((np.nan_to_num(v, nan=lo) - lo) / span * 7.999).astype(int), 0, 7)
    return "".join(BLOCKS[i] if ok else " " for i, ok in zip(idx, finite))


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
        self.reset({})

    def reset(self, info: dict[str, Any]) -> None:
        """Start over for a (new) stream described by an ``info`` reply."""
        chans = info.get("channels") or []
        self.n_ch = int(info.get("n_channels") or len(chans) or 0)
        self.labels = [str(c.get("label", f"ch{i}")) for i, c in enumerate(chans)]
        self.labels += [f"ch{i}" for i in range(len(self.labels), self.n_ch)]
        self.rate_hz = float(info.get("rate_hz") or 10.0)
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


def _fmt(x: float) -> str:
    return "   nan" if not np.isfinite(x) else f"{x:+.3f}"


def _quality_cell(state: ViewState, i: int) -> Text:
    q = state.qual[-state.filled :, i] if state.filled else state.qual[:0, i]
    summary = state.status.get("quality")
    parts: list[tuple[str, str]] = []
    if q.size and q[-1] & BASELINE_PENDING:
        parts.append(("baseline", "yellow"))
    for bit, name in ((LOW_LIGHT, "low light"), (SATURATED, "saturated")):
        frac = float(np.mean((q & bit) > 0)) if q.size else 0.0
        if frac > 0:
            parts.append((f"{name} {frac:.0%}", "red"))
    if isinstance(summary, dict):
        poor, pi = summary.get("poor"), summary.get("pulsatility")
        if isinstance(pi, list) and i < len(pi) and pi[i] is not None:
            parts.append((f"PI {pi[i]:.2f}", "cyan"))
        if isinstance(poor, list) and i < len(poor):
            parts.append(("poor", "red") if poor[i] else ("good", "green"))
    elif q.size and q[-1] & POOR_SIGNAL:
        parts.append(("poor", "red"))
    if not parts:
        parts.append(("ok", "green"))
    text = Text()
    for j, (s, style) in enumerate(parts):
        text.append((" " if j else "") + s, style=style)
    return text


def _epoch_text(state: ViewState, now: float) -> str:
    """The open epoch: the label on the newest sample, its age from ``status`` if known."""
    st_epoch = state.status.get("epoch")
    if state.epoch is None:
        return "-"
    if (
        isinstance(st_epoch, dict)
        and st_epoch.get("label") == state.epoch
        and isinstance(st_epoch.get("onset_t"), (int, float))
    ):
        return f"{state.epoch} {max(0.0, now - st_epoch['onset_t']):.0f} s"
    return str(state.epoch)


def _describe(obj: Any) -> str:
    """A short text for a status ``epoch``/``protocol`` value of unknown shape."""
    if obj is None:
        return "-"
    if isinstance(obj, str):
        return obj
    if isinstance(obj, dict):
        if obj.get("finished"):
            return f"{obj.get('name', 'protocol')} finished"
        bits = [str(obj[k]) for k in ("name", "label") if obj.get(k)]
        if "step" in obj:
            bits.append(f"step {int(obj['step']) + 1}/{obj.get('steps', '?')}")
        for key in ("time_left_s", "elapsed_s", "duration_s"):
            if isinstance(obj.get(key), (int, float)):
                bits.append(f"{obj[key]:.0f} s {'left' if key == 'time_left_s' else ''}".strip())
                break
        return " ".join(bits) or "-"
    return str(obj)


def render(state: ViewState, now: float, width: int = 100) -> RenderableType:
    """The whole screen for the current state."""
    st = state.status
    counters = st.get("counters") or {}
    head = Text()
    head.append("nirsd ", style="bold")
    if not state.connected:
        head.append("waiting for the daemon… ", style="bold red")
    head.append(f"stream {state.stream or '-'}  state {st.get('state', '-')}  ")
    head.append(f"rate {float(st.get('rate_hz') or 0):.1f} Hz (recv {state.measured_rate():.1f})  ")
    head.append(
        f"drops msg {state.msg_lost} seq {state.seq_lost} device {counters.get('lost_samples', 0)}",
        style="red" if state.msg_lost or state.seq_lost else "",
    )
    if state.restarts:
        head.append(f"  restarts {state.restarts}", style="yellow")
    line2 = Text(f"epoch {_epoch_text(state, now)}   protocol {_describe(st.get('protocol'))}   ")
    if state.last_marker:
        m = state.last_marker
        line2.append(f"last marker {m.get('label')}/{m.get('action')} at seq {m.get('seq')}")
    spark_w = max(8, (width - 60) // 2)
    table = Table(expand=False, box=None, pad_edge=False, header_style="bold")
    table.add_column("channel")
    table.add_column("HbO µM", justify="right", style="red")
    table.add_column(f"HbO last {state.window_s:.0f} s", style="red", no_wrap=True)
    table.add_column("HbR µM", justify="right", style="blue")
    table.add_column(f"HbR last {state.window_s:.0f} s", style="blue", no_wrap=True)
    table.add_column("quality", no_wrap=True)
    n = state.filled
    for i, label in enumerate(state.labels):
        o = state.hbo[-n:, i] if n else state.hbo[:0, i]
        r = state.hbr[-n:, i] if n else state.hbr[:0, i]
        table.add_row(
            label,
            _fmt(o[-1]) if n else "-",
            sparkline(o, spark_w),
            _fmt(r[-1]) if n else "-",
            sparkline(r, spark_w),
            _quality_cell(state, i),
        )
    foot = Text("q quits", style="dim")
    if state.last_epoch:
        e = state.last_epoch
        foot = Text(
            f"last epoch {e.get('label')} {float(e.get('duration_s') or 0):.1f} s: "
            f"mean ΔHbO {' '.join(_fmt(float(x)) for x in e.get('mean_hbo') or [])}"
            "   (q quits)",
            style="dim",
        )
    return Group(head, line2, table, foot)


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
        self.ctx = zmq.Context.instance()
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
                    if stdin_fd is not None and _quit_pressed(stdin_fd):
                        return 0
                    self._receive(min(0.05, max(0.0, next_draw - time.monotonic())))
                    if time.monotonic() - self.last_msg > self.silence_s:
                        self.state.connected = False
                        self._connect()
        except KeyboardInterrupt:
            return 0
        finally:
            if restore is not None:
                import termios

                termios.tcsetattr(stdin_fd, termios.TCSADRAIN, restore)
            self.close()

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


def _quit_pressed(fd: int) -> bool:
    import select

    ready, _, _ = select.select([fd], [], [], 0)
    if not ready:
        return False
    data = os.read(fd, 64)
    return not data or b"q" in data or b"Q" in data
