"""The console's HTTP API under ``/api/``: JSON in, JSON out, each call one control request.

Requests to the daemon are blocking ZeroMQ REQ/REP, so each runs in a worker thread with
its own short-lived control socket (one socket, one thread).  Replies are the daemon's,
as JSON, with ``ok``; a refusal by the daemon is 409 with its message, a daemon that
does not answer is 503, a malformed body 400.  docs/console.md lists every route.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import zmq
from aiohttp import web

from nirsd.core.errors import NirsdError
from nirsd.daemon.endpoints import Endpoints

from ..subscriber import ControlClient
from .stream import Hub, dumps

MAX_TEXT = 200  # characters in a session field or label
SESSION_TEXT = ("subject", "session", "group", "task", "protocol", "note")
# how ControlClient says it did not reach the daemon (as opposed to the daemon's refusal)
UNREACHABLE = ("no reply from", "no nirsd daemon at", "cannot connect to")


def _reply(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        text=dumps(body),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _error(status: int, message: str) -> web.Response:
    return _reply({"ok": False, "error": message}, status)


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = json.loads(await request.text() or "{}")
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text="the body is not JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return body


def _text(body: dict[str, Any], key: str, required: bool = False) -> str | None:
    v = body.get(key)
    if v is None or v == "":
        if required:
            raise web.HTTPBadRequest(text=f"{key} is required")
        return None
    if not isinstance(v, str) or len(v) > MAX_TEXT:
        raise web.HTTPBadRequest(text=f"{key} must be text of at most {MAX_TEXT} characters")
    return v.strip()


class Api:
    """Route handlers; ``hub`` for the console's state, ``endpoints``/``curve`` for the daemon."""

    def __init__(self, hub: Hub, endpoints: Endpoints, curve: Any, ctx: zmq.Context) -> None:
        self.hub = hub
        self.endpoints = endpoints
        self.curve = curve
        self.ctx = ctx

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/status", self.status),
            web.post("/api/mark", self.mark),
            web.post("/api/baseline", self.baseline),
            web.get("/api/session", self.session_status),
            web.post("/api/session/start", self.session_start),
            web.post("/api/session/stop", self.session_stop),
            web.get("/api/protocol", self.protocol_status),
            web.post("/api/protocol/start", self.protocol_start),
            web.post("/api/protocol/stop", self.protocol_stop),
            web.get("/api/stream", self.hub.serve),
        ]

    def _call(self, cmd: str, fields: dict[str, Any]) -> dict[str, Any]:
        client = ControlClient(self.endpoints.control, self.ctx, timeout_s=3.0, curve=self.curve)
        try:
            return client.request(cmd, **fields)[0]
        finally:
            client.close()

    async def _daemon(self, cmd: str, **fields: Any) -> web.Response:
        loop = asyncio.get_running_loop()
        try:
            reply = await loop.run_in_executor(None, self._call, cmd, fields)
        except NirsdError as err:
            text = str(err)
            # the daemon's own refusal is a 409; not reaching it at all is a 503
            absent = not self.hub.state.connected or text.startswith(UNREACHABLE)
            return _error(503 if absent else 409, text)
        return _reply(reply)

    # -- routes ----------------------------------------------------------------------
    async def status(self, request: web.Request) -> web.Response:
        return _reply({"ok": True, **self.hub.state.view(time.time())})

    async def mark(self, request: web.Request) -> web.Response:
        body = await _body(request)
        label = _text(body, "label", required=True)
        action = body.get("action", "start")
        if action not in ("start", "end", "instant"):
            return _error(400, "action must be start, end or instant")
        return await self._daemon("mark", label=label, action=action)

    async def baseline(self, request: web.Request) -> web.Response:
        await _body(request)
        return await self._daemon("baseline")

    async def session_status(self, request: web.Request) -> web.Response:
        return await self._daemon("session_status")

    async def session_start(self, request: web.Request) -> web.Response:
        body = await _body(request)
        fields: dict[str, Any] = {}
        for key in SESSION_TEXT:
            value = _text(body, key, required=key in ("subject", "session"))
            if value is not None:
                fields[key] = value
        run = body.get("run")
        if run not in (None, ""):
            try:
                fields["run"] = int(run)
            except (TypeError, ValueError):
                return _error(400, "run must be a whole number")
            if fields["run"] < 1:
                return _error(400, "run must be 1 or more")
        return await self._daemon("session_start", **fields)

    async def session_stop(self, request: web.Request) -> web.Response:
        await _body(request)
        return await self._daemon("session_stop")

    async def protocol_status(self, request: web.Request) -> web.Response:
        return await self._daemon("protocol", action="status")

    async def protocol_start(self, request: web.Request) -> web.Response:
        body = await _body(request)
        return await self._daemon("protocol", action="start", name=_text(body, "name", True))

    async def protocol_stop(self, request: web.Request) -> web.Response:
        await _body(request)
        return await self._daemon("protocol", action="stop")
