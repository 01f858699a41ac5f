"""The control endpoint: a ZeroMQ ROUTER socket served inside the acquisition loop.

Requests are one msgpack map with ``cmd``; replies are a msgpack map with ``ok`` (and
``error`` when false) followed by any array frames.  A malformed, oversized or unknown
request gets an error reply; nothing a client sends can stop the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
import zmq

from nirsd.core.errors import NirsdError, ProtocolError

from . import wire
from .endpoints import remove_ipc
from .publisher import bind_socket

MAX_REQUEST_BYTES = 64 * 1024
MAX_PER_POLL = 100  # requests served per loop turn, so a flood cannot starve samples

Reply = tuple[dict[str, Any], list[bytes]]
#: a handler returns this to answer later with ControlServer.send_reply(token, ...)
DEFERRED: Reply = ({"deferred": True}, [])
Handler = Callable[[dict[str, Any]], Reply]

log = structlog.get_logger("nirsd.control")


class ControlServer:
    def __init__(self, ctx: zmq.Context, endpoint: str) -> None:
        self.endpoint = endpoint
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        try:
            bind_socket(self.sock, endpoint)
        except BaseException:
            self.sock.close(linger=0)  # an open socket would block Context.term()
            raise
        self.handlers: dict[str, Handler] = {}
        self.served = 0
        self.rejected = 0
        self.current: list[bytes] | None = None  # envelope of the request being handled

    def register(self, cmd: str, handler: Handler) -> None:
        self.handlers[cmd] = handler

    def serve_pending(self) -> int:
        """Answer the requests waiting now (at most MAX_PER_POLL); returns how many."""
        done = 0
        while done < MAX_PER_POLL:
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
            log.exception("control_handler_failed")
            reply, extra = {"ok": False, "error": f"internal error: {err}"}, []
        self.send_reply(envelope, reply, extra)

    def send_reply(
        self, token: list[bytes], reply: dict[str, Any], extra: list[bytes] | None = None
    ) -> None:
        """Answer a request; ``token`` is the envelope saved from ``current``."""
        reply.setdefault("ok", True)
        try:
            self.sock.send_multipart([*token, wire.pack(reply), *(extra or [])], zmq.NOBLOCK)
        except zmq.ZMQError:
            log.warning("control_reply_dropped", error="peer gone or queue full")
        self.served += 1

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
                f"unknown cmd {req['cmd']!r} (known: {', '.join(sorted(self.handlers))})"
            )
        return handler(req)

    def close(self) -> None:
        self.sock.close(linger=0)
        remove_ipc(self.endpoint)
