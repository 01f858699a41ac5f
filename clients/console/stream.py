"""The live stream to the pages: Server-Sent Events, one encoding shared by every page.

Each page holds one ``GET /api/stream?seconds=W`` (EventSource).  It first receives a
``snapshot`` (the state and the last W seconds of trace), then ``hb`` (display points),
``marker``, ``epoch``, ``session``, ``status`` (event headers as the daemon sent them)
and ``state`` (what the pages show, at least once a second).  A message is encoded once
and queued for every page; a page whose queue is full (it stopped reading) is
disconnected and counted, and its EventSource reconnects to a fresh snapshot: a slow
tab can cost memory only up to its queue.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .state import ConsoleState
from .trace import Points, TraceRing

QUEUE_MESSAGES = 600  # about a minute of display points plus events per page
MAX_PAGES = 64  # open streams at once; more is a runaway script, not a ward
WINDOWS_S = (30.0, 120.0, 600.0)  # the windows a page offers


def jsonable(obj: Any) -> Any:
    """A header as JSON allows: NaN/inf as null, bytes left out, tuples as lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items() if not isinstance(v, bytes)}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "item"):  # numpy scalar
        return jsonable(obj.item())
    return obj


def dumps(obj: Any) -> str:
    return json.dumps(jsonable(obj), separators=(",", ":"), allow_nan=False)


def sse(event: str, data: str) -> bytes:
    """One SSE frame; ``data`` is JSON on one line (json.dumps never writes newlines)."""
    return f"event: {event}\ndata: {data}\n\n".encode()


class Hub:
    """Console state, trace ring and the pages' queues; used on the server's loop only."""

    def __init__(self, display_hz: float = 10.0) -> None:
        self.state = ConsoleState()
        self.display_hz = float(display_hz)
        self.ring: TraceRing | None = None
        self.pages: dict[asyncio.Queue[bytes | None], bool] = {}  # queue -> wants samples
        self.dropped_pages = 0
        self.fatal: str | None = None
        self.on_fatal: Callable[[str], None] | None = None  # the server stops

    # -- from the bridge (scheduled on the loop) -------------------------------------
    def sink(self, kind: str, payload: Any) -> None:
        now = time.time()
        if kind == "points":
            pts, text, _prefill = payload
            self._points(pts, text)
            return
        if kind == "event":
            topic, header, seen = payload
            self.state.on_event(topic, header, seen)
            if topic != "status" or header.get("event") not in (None, "periodic"):
                # the periodic status reaches the pages through ``state``, in words
                self.broadcast(sse(topic, dumps(header)))
        elif kind == "described":
            self._described(payload, now)
        elif kind == "lost":
            self.state.lost(payload)
        elif kind == "missed":
            self.state.missed += int(payload)
        elif kind == "fatal":
            self.fatal = str(payload)
            self.state.lost(now)
            if self.on_fatal is not None:
                self.on_fatal(self.fatal)
        self.broadcast_state()

    def _described(self, d: dict[str, Any], now: float) -> None:
        info = d["info"]
        self.state.described(info, d["protocols"])
        self.state.on_event("status", d["status"], now)
        sess = d.get("session") or {}
        self.state.sessions_supported = sess.get("supported")
        if sess.get("supported"):
            reply = sess.get("reply") or {}
            self.state.session = reply.get("session")
            self.state.last_session = reply.get("last") or self.state.last_session
        n_ch = int(info.get("n_channels") or len(info.get("channels") or []))
        if self.ring is None or self.ring.n_channels != n_ch:
            self.ring = TraceRing(n_ch, int(max(WINDOWS_S) * self.display_hz * 1.1) + 16)
        self.broadcast(sse("info", dumps(self._info())))

    def _points(self, pts: Points, text: str) -> None:
        if self.ring is None or self.ring.n_channels != pts.hb.shape[2]:
            return
        self.ring.append(pts)
        self.state.recent_bits = self.ring.recent_quality(max(1, int(self.display_hz)))
        self.broadcast(sse("hb", text), samples=True)

    def _info(self) -> dict[str, Any]:
        info = self.state.info
        return {
            "stream": info.get("stream"),
            "channels": [c.get("label") for c in info.get("channels") or []],
            "labels": list(info.get("labels") or []),
            "rate_hz": info.get("rate_hz"),
        }

    # -- to the pages ----------------------------------------------------------------
    def broadcast(self, frame: bytes, samples: bool = False) -> None:
        for q, wants in list(self.pages.items()):
            if samples and not wants:
                continue
            try:
                q.put_nowait(frame)
            except asyncio.QueueFull:
                self._drop(q)

    def _drop(self, q: asyncio.Queue[bytes | None]) -> None:
        """A page that stopped reading: end its stream (it reconnects to a snapshot)."""
        self.pages.pop(q, None)
        self.dropped_pages += 1
        while not q.empty():
            q.get_nowait()
        q.put_nowait(None)

    def close_pages(self) -> None:
        """End every page's stream (the server is stopping)."""
        for q in list(self.pages):
            self._drop(q)
        self.dropped_pages = 0

    def broadcast_state(self) -> None:
        self.broadcast(sse("state", dumps(self.state.view(time.time()))))

    def snapshot(self, seconds: float) -> bytes:
        trace = self.ring.last(seconds).to_json() if self.ring is not None else "null"
        body = (
            f'{{"info":{dumps(self._info())},"state":{dumps(self.state.view(time.time()))},'
            f'"trace":{trace}}}'
        )
        return sse("snapshot", body)

    async def tick(self, interval_s: float = 1.0) -> None:
        """The state at least once a second: clocks and outages move without events."""
        while True:
            await asyncio.sleep(interval_s)
            self.broadcast_state()

    async def serve(self, request: web.Request) -> web.StreamResponse:
        """``GET /api/stream?seconds=W[&samples=0]``: the snapshot (W s of trace), then live
        frames until the page goes; ``samples=0``: events and state only."""
        try:
            seconds = float(request.query.get("seconds", "30"))
        except ValueError:
            raise web.HTTPBadRequest(text="seconds must be a number") from None
        seconds = min(max(seconds, 0.0), max(WINDOWS_S))
        if len(self.pages) >= MAX_PAGES:
            raise web.HTTPServiceUnavailable(text=f"at most {MAX_PAGES} pages at once")
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await resp.prepare(request)
        q: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_MESSAGES)
        await resp.write(b"retry: 1000\n\n" + self.snapshot(seconds))
        self.pages[q] = request.query.get("samples", "1") != "0"
        try:
            while True:
                frame = await q.get()
                if frame is None:
                    break
                await resp.write(frame)
        except ConnectionResetError:
            pass  # the page went away
        finally:
            self.pages.pop(q, None)
        return resp
