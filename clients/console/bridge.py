"""The daemon side of the console: one thread owns the ZeroMQ sockets.

It subscribes to ``hb`` and the event topics, decimates samples into display points and
hands everything to the web server's event loop with ``call_soon_threadsafe`` (the
server's state is only ever touched on that loop).  It follows daemon restarts as the
terminal viewer does: a new ``stream`` id means describing the daemon again (probe,
labels, protocols) and prefilling the trace from its history; ``silence_s`` without any
message means the daemon is gone: the SUB socket is rebuilt and the daemon asked again,
every second, until it answers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import zmq

from nirsd.core.errors import NirsdError
from nirsd.daemon import wire
from nirsd.daemon.endpoints import Endpoints
from nirsd.daemon.wire import Message

from ..subscriber import ControlClient, Subscriber
from .trace import Decimator

EVENT_TOPICS = ("marker", "epoch", "status", "session")
PREFILL_PAGE = 2000  # samples per history request while prefilling (bounded replies)

Sink = Callable[[str, Any], None]


class DaemonBridge(threading.Thread):
    """Receives from the daemon; ``sink(kind, payload)`` runs on the server's loop."""

    def __init__(
        self,
        endpoints: Endpoints,
        post: Callable[[str, Any], None],
        curve: Any = None,
        display_hz: float = 10.0,
        prefill_s: float = 600.0,
        silence_s: float = 3.0,
        ctx: zmq.Context | None = None,
    ) -> None:
        super().__init__(name="nirsd-console-bridge", daemon=True)
        self.endpoints = endpoints
        self.post = post  # thread-safe: schedules the sink on the server's loop
        self.curve = curve
        self.display_hz = float(display_hz)
        self.prefill_s = float(prefill_s)
        self.silence_s = float(silence_s)
        self.ctx = ctx or zmq.Context.instance()
        self.stop_event = threading.Event()
        self.sub: Subscriber | None = None
        self.stream: str | None = None
        self.labels: list[str] = []
        self.decimator: Decimator | None = None
        self.next_seq: int | None = None
        self.error: BaseException | None = None
        self.stale = False  # samples do not match the description
        self.described_at = 0.0

    # -- the thread ------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._loop()
        except BaseException as err:  # a thread never dies silently
            self.error = err
            self.post("fatal", str(err) if isinstance(err, NirsdError) else repr(err))
        finally:
            if self.sub is not None:
                self.sub.close()

    def stop(self) -> None:
        self.stop_event.set()

    def _loop(self) -> None:
        self._subscribe()
        last_msg = time.monotonic()
        next_try = 0.0
        while not self.stop_event.is_set():
            assert self.sub is not None
            msg = self.sub.recv(0.1)
            now = time.monotonic()
            if msg is None:
                if now - last_msg > self.silence_s and now >= next_try:
                    # the outage began with the silence, not when it was noticed
                    self.post("lost", time.time() - (now - last_msg))
                    self.stream = None
                    self._subscribe()
                    next_try = now + 1.0
                    if self._describe():
                        last_msg = time.monotonic()
                continue
            last_msg = now
            # a new stream, or samples of another shape than described (the daemon was
            # asked before its device said what it is): describe again, once a second
            stale = self.stale and now - self.described_at > 1.0
            if (msg.header.get("stream") != self.stream or stale) and not self._describe():
                continue
            self._dispatch(msg)

    def _subscribe(self) -> None:
        if self.sub is not None:
            self.sub.close()
        topics = ["hb", *(t for t in EVENT_TOPICS if t in wire.TOPICS)]
        self.sub = Subscriber(topics, endpoints=self.endpoints, ctx=self.ctx, curve=self.curve)
        if "session" not in wire.TOPICS:  # a daemon newer than this wire module may send it
            self.sub.sock.setsockopt(zmq.SUBSCRIBE, b"session")
            self.sub.topics = (*self.sub.topics, "session")

    def _client(self, timeout_s: float = 2.0) -> ControlClient:
        return ControlClient(
            self.endpoints.control, self.ctx, timeout_s=timeout_s, curve=self.curve
        )

    # -- describing the daemon -------------------------------------------------------
    def _describe(self) -> bool:
        """Ask the daemon who it is; prefill the trace from its history.  False if silent."""
        self.described_at = time.monotonic()
        self.stale = False
        client = self._client()
        try:
            try:
                info = client.info()
                protocols = client.request("protocol", action="list")[0].get("protocols", {})
                status = client.status()
            except NirsdError:
                return False
            session = self._session_status(client)
            self.stream = info.get("stream")
            n_ch = int(info.get("n_channels") or len(info.get("channels") or []))
            self.labels = [str(x) for x in info.get("labels") or []]
            rate = float(info.get("rate_hz") or self.display_hz)
            factor = max(1, round(rate / self.display_hz))
            self.decimator = Decimator(n_ch, factor, self.labels)
            self.post(
                "described",
                {"info": info, "protocols": protocols, "status": status, "session": session},
            )
            self.next_seq = None
            self._prefill(client, int(info.get("seq") or 0), rate)
            return True
        finally:
            client.close()

    def _session_status(self, client: ControlClient) -> dict[str, Any]:
        try:
            reply = client.request("session_status")[0]
        except NirsdError as err:
            if "unknown" in str(err).lower():
                return {"supported": False}
            return {"supported": None}
        return {"supported": True, "reply": reply}

    def _prefill(self, client: ControlClient, head: int, rate: float) -> None:
        """The last ``prefill_s`` seconds from the daemon's ring, a page at a time."""
        since = max(0, head - int(self.prefill_s * rate))
        while since < head:
            try:
                reply, frames = client.request(
                    "history", since=since, until=head, max_samples=PREFILL_PAGE
                )
            except NirsdError:
                return
            n = int(reply.get("n") or 0)
            if n == 0 or "hb" not in reply or len(frames) < 2:
                return
            hb = wire.array_from(reply["hb"], frames[1])
            header = {"seq": reply["seq"], "n": n, **{k: reply.get(k) for k in ("t", "epoch")}}
            header["quality"] = reply.get("quality")
            self._samples(Message("hb", header, hb), prefill=True)
            since = int(reply.get("next") or reply["seq"] + n)
            if not reply.get("more"):
                break
        self.next_seq = head

    # -- messages --------------------------------------------------------------------
    def _dispatch(self, msg: Message) -> None:
        if msg.topic == "hb":
            self._samples(msg)
        else:
            self.post("event", (msg.topic, msg.header, time.time()))

    def _samples(self, msg: Message, prefill: bool = False) -> None:
        dec, arr = self.decimator, msg.array
        if dec is None or arr is None or arr.ndim != 3 or arr.shape[2] != dec.n_channels:
            self.stale = True
            return
        if not prefill and self.next_seq is not None:
            if msg.seq + msg.n <= self.next_seq:
                return  # already prefilled from history
            if msg.seq > self.next_seq:
                self.post("missed", msg.seq - self.next_seq)
        self.next_seq = msg.seq + msg.n
        q = msg.header.get("quality")
        if isinstance(q, bytes) and len(q) == msg.n * dec.n_channels:
            quality = np.frombuffer(q, np.uint8).reshape(msg.n, dec.n_channels)
        else:
            quality = np.zeros((msg.n, dec.n_channels), np.uint8)
        t = msg.header.get("t") or [time.time()] * msg.n
        pts = dec.push(msg.seq, t, msg.header.get("epoch") or [], quality, arr)
        if pts is not None:
            self.post("points", (pts, pts.to_json(), prefill))
