"""The console's web server: pages, static files, API and stream on one aiohttp app.

``Console`` wires the parts: the daemon bridge thread posts into the hub on the event
loop, the API and the stream read the hub, the access policy wraps everything.  Static
files ship inside the package (``static/``): the bedside box has no internet.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path
from typing import Any

import zmq
from aiohttp import web

from nirsd.daemon.endpoints import Endpoints

from .access import Access, is_loopback
from .api import Api
from .bridge import DaemonBridge
from .stream import Hub

STATIC = Path(__file__).with_name("static")
MAX_BODY = 64 * 1024


async def _page(name: str) -> web.FileResponse:
    return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})


async def operator_page(request: web.Request) -> web.FileResponse:
    return await _page("operator.html")


async def patient_page(request: web.Request) -> web.FileResponse:
    return await _page("patient.html")


class Console:
    """One console: ``host``/``port`` to listen on, the daemon's endpoints to follow."""

    def __init__(
        self,
        endpoints: Endpoints,
        host: str = "127.0.0.1",
        port: int = 8765,
        token: str = "",
        curve: Any = None,
        display_hz: float = 10.0,
    ) -> None:
        self.endpoints = endpoints
        self.host, self.port = host, port
        self.loopback = is_loopback(host)
        self.token = token
        self.curve = curve
        self.ctx = zmq.Context()
        self.hub = Hub(display_hz)
        self.bridge: DaemonBridge | None = None
        self.display_hz = display_hz
        self.failed: str | None = None

    def app(self) -> web.Application:
        access = Access(self.loopback, self.token)
        app = web.Application(middlewares=[access.middleware], client_max_size=MAX_BODY)
        app.add_routes(
            [
                web.get("/", operator_page),
                web.get("/patient", patient_page),
                *Api(self.hub, self.endpoints, self.curve, self.ctx).routes(),
                web.static("/static", STATIC, append_version=False),
            ]
        )
        return app

    def urls(self, port: int) -> dict[str, str]:
        host = self.host
        if host in ("0.0.0.0", "::", ""):  # every address: name this machine instead
            host = socket.gethostname() or "localhost"
        host = f"[{host}]" if ":" in host else host
        base = f"http://{host}:{port}"
        query = "" if self.loopback else f"?token={self.token}"
        return {"operator": f"{base}/{query}", "patient": f"{base}/patient{query}"}

    async def serve(self, ready: Any = None) -> None:
        """Run until cancelled or SIGINT/SIGTERM; ``ready(urls)`` once listening."""
        loop = asyncio.get_running_loop()

        def post(kind: str, payload: Any) -> None:  # from the bridge thread
            loop.call_soon_threadsafe(self.hub.sink, kind, payload)

        self.bridge = DaemonBridge(
            self.endpoints,
            post,
            curve=self.curve,
            display_hz=self.display_hz,
            ctx=self.ctx,
        )
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, shutdown_timeout=1.0)
        await site.start()
        port = runner.addresses[0][1] if runner.addresses else self.port
        self.bridge.start()
        tick = asyncio.create_task(self.hub.tick())
        stop = asyncio.Event()

        def fatal(message: str) -> None:  # the daemon bridge died: nothing left to show
            self.failed = message
            stop.set()

        self.hub.on_fatal = fatal
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if ready is not None:
            ready(self.urls(port))
        try:
            await stop.wait()
        finally:
            tick.cancel()
            self.bridge.stop()
            self.hub.close_pages()
            await runner.cleanup()
            self.bridge.join(timeout=2.0)
            self.ctx.destroy(linger=0)
