"""The control endpoint: a ZeroMQ ROUTER socket served inside the acquisition loop.

Requests are one msgpack map with ``cmd``; replies are a msgpack map with ``ok`` (and
``error`` when false) followed by any array frames.  A malformed, oversized or unknown
request gets an error reply; nothing a client sends can stop the loop.

Limits (docs/security.md "Limits"): a request over ``MAX_REQUEST_BYTES`` gets an error
reply, a frame over ``MAX_FRAME_BYTES`` makes ZeroMQ drop the connection before it is
read into memory.  Bulk replies (``history``) are sent zero-copy and tracked, so the
daemon knows how many of their bytes still wait in its queues for each client: a client
with ``PEER_REPLY_BUDGET`` bytes unread (or all clients together with
``TOTAL_REPLY_BUDGET``) gets an error instead of another bulk reply, counted in
``refused``.  A failing handler is answered ``internal error``, counted in ``failed``
and logged once per kind of failure (:class:`~nirsd.daemon.guard.LoopGuard`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog
import zmq

from nirsd.core.errors import NirsdError, ProtocolError

from . import wire
from .endpoints import remove_ipc
from .guard import LoopGuard
from .publisher import bind_socket

MAX_REQUEST_BYTES = 64 * 1024
MAX_FRAME_BYTES = 1024 * 1024  # ZMQ_MAXMSGSIZE: a larger frame drops the connection
MAX_PER_POLL = 100  # requests served per loop turn, so a flood cannot starve samples
MAX_SERVE_S = 0.02  # and at most this long (bulk replies take a millisecond or more each)
PEER_REPLY_BUDGET = 32 * 1024 * 1024  # bulk reply bytes one client may leave unread
TOTAL_REPLY_BUDGET = 256 * 1024 * 1024  # and all clients together
BULK_COMMANDS = frozenset({"history"})  # replies that can be megabytes
PRUNE_EVERY_S = 0.1  # how often finished bulk replies are forgotten

Reply = tuple[dict[str, Any], list[bytes]]
#: a handler returns this to answer later with ControlServer.send_reply(token, ...)
DEFERRED: Reply = ({"deferred": True}, [])
Handler = Callable[[dict[str, Any]], Reply]

log = structlog.get_logger("nirsd.control")


class ControlServer:
    def __init__(self, ctx: zmq.Context, endpoint: str, guard: LoopGuard | None = None) -> None:
        """``guard``: where failing handlers are counted (the acquisition loop's own)."""
        self.endpoint = endpoint
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        try:
            bind_socket(self.sock, endpoint, max_msg_bytes=MAX_FRAME_BYTES)
        except BaseException:
            self.sock.close(linger=0)  # an open socket would block Context.term()
            raise
        self.handlers: dict[str, Handler] = {}
        self.served = 0
        self.rejected = 0
        self.refused = 0  # bulk requests refused: the client's replies are unread
        self.failed = 0  # handler exceptions answered "internal error"
        self.guard = guard or LoopGuard()
        self.current: list[bytes] | None = None  # envelope of the request being handled
        # bulk replies still queued: peer identity -> [(tracker, bytes)]
        self._queued: dict[bytes, list[tuple[zmq.MessageTracker, int]]] = {}
        self._queued_bytes = 0
        self._pruned_at = 0.0

    def register(self, cmd: str, handler: Handler) -> None:
        self.handlers[cmd] = handler

    def serve_pending(self) -> int:
        """Answer the requests waiting now (at most MAX_PER_POLL, for at most MAX_SERVE_S:
        the rest wait for the next loop turn, after the device); returns how many."""
        done = 0
        until = time.monotonic() + MAX_SERVE_S
        while done < MAX_PER_POLL and (done == 0 or time.monotonic() < until):
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                break
            done += 1
            self._serve(frames)
        return done

    def _serve(self, frames: list[bytes]) -> None:
        # ROUTER envelope: identity, then (from REQ) an empty delimiter, then the body
        try:
            split = frames.index(b"", 1) + 1
        except ValueError:
            split = 1
        envelope, body = frames[:split], frames[split:]
        if split == 1:
            envelope = [frames[0], b""]
        self.current = envelope
        try:
            reply, extra = self._dispatch(body)
            if reply is DEFERRED[0]:
                return
        except ProtocolError as err:
            self.rejected += 1
            reply, extra = {"ok": False, "error": str(err)}, []
        except NirsdError as err:
            reply, extra = {"ok": False, "error": str(err)}, []
        except Exception as err:  # a handler bug must not take the loop down
            self.failed += 1
            self.guard.note("control", err)  # traceback once per kind, then counted
            text = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
            reply, extra = {"ok": False, "error": f"internal error: {text}"}, []
        self.send_reply(envelope, reply, extra)

    def send_reply(
        self, token: list[bytes], reply: dict[str, Any], extra: list[bytes] | None = None
    ) -> None:
        """Answer a request; ``token`` is the envelope saved from ``current``."""
        reply.setdefault("ok", True)
        frames = [*token, wire.pack(reply), *(extra or [])]
        size = sum(len(f) for f in extra or ())
        try:
            if size < 64 * 1024:
                self.sock.send_multipart(frames, zmq.NOBLOCK)
            else:  # bulk: zero-copy, tracked until it has left the daemon's queues
                tracker = self.sock.send_multipart(frames, zmq.NOBLOCK, copy=False, track=True)
                self._queued.setdefault(token[0], []).append((tracker, size))
                self._queued_bytes += size
        except zmq.ZMQError:
            log.warning("control_reply_dropped", error="peer gone or queue full")
        self.served += 1

    def queued_bytes(self, peer: bytes | None = None) -> int:
        """Bulk reply bytes not yet sent on, for one peer (identity) or for all."""
        self._prune(force=True)
        if peer is None:
            return self._queued_bytes
        return sum(n for _, n in self._queued.get(peer, ()))

    def _prune(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self._queued or (not force and now - self._pruned_at < PRUNE_EVERY_S):
            return
        self._pruned_at = now
        for peer in list(self._queued):
            items = self._queued[peer]
            left = [(t, n) for t, n in items if not t.done]
            self._queued_bytes -= sum(n for t, n in items if t.done)
            if left:
                self._queued[peer] = left
            else:
                del self._queued[peer]

    def _check_budget(self, cmd: str) -> None:
        """Refuse a bulk request while earlier bulk replies wait unread (ProtocolError)."""
        if cmd not in BULK_COMMANDS or self.current is None:
            return
        self._prune()
        peer = self.current[0]
        mine = sum(n for _, n in self._queued.get(peer, ()))
        if mine < PEER_REPLY_BUDGET and self._queued_bytes < TOTAL_REPLY_BUDGET:
            return
        self._prune(force=True)  # the newest figures before refusing
        mine = sum(n for _, n in self._queued.get(peer, ()))
        if mine >= PEER_REPLY_BUDGET:
            self.refused += 1
            raise ProtocolError(
                f"reply budget exceeded: {mine} bytes of earlier replies to this client "
                f"are still unread (limit {PEER_REPLY_BUDGET}); read them, then ask again"
            )
        if self._queued_bytes >= TOTAL_REPLY_BUDGET:
            self.refused += 1
            raise ProtocolError(
                f"reply budget exceeded: {self._queued_bytes} bytes of replies to all "
                f"clients are still unread (limit {TOTAL_REPLY_BUDGET}); ask again later"
            )

    def _dispatch(self, body: list[bytes]) -> Reply:
        if len(body) != 1:
            raise ProtocolError(f"a request is one frame, got {len(body)}")
        if len(body[0]) > MAX_REQUEST_BYTES:
            raise ProtocolError(f"request of {len(body[0])} bytes exceeds {MAX_REQUEST_BYTES}")
        req = wire.unpack(body[0])
        if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
            raise ProtocolError('a request is a map with a string "cmd"')
        handler = self.handlers.get(req["cmd"])
        if handler is None:
            raise ProtocolError(
                f"unknown cmd {req['cmd'][:64]!r} (known: {', '.join(sorted(self.handlers))})"
            )
        self._check_budget(req["cmd"])
        return handler(req)

    def close(self) -> None:
        self.sock.close(linger=0)
        remove_ipc(self.endpoint)
