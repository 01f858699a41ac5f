"""Who may use the console: local users on loopback, token holders on any other address.

- Listening on a loopback address (127.0.0.0/8, ::1, ``localhost``), only users of this
  machine can connect; no token.  The ``Host`` header must still name a loopback host, so
  a web page elsewhere cannot reach the console through a DNS name that resolves to
  127.0.0.1 (DNS rebinding).
- On any other address, every request (pages, static files, API, stream) needs the
  token: ``Authorization: Bearer TOKEN``, or the ``nirsd_console`` cookie the console sets
  when a page is opened with ``?token=TOKEN`` (the URL it prints).  Missing: 401; wrong:
  403.  Tokens are compared in constant time.
- Everywhere, a state-changing request (POST) must come from the console's own pages:
  an ``Origin`` header, when present, must be this server's origin (403 otherwise), a
  POST without ``Origin`` must carry the token in ``Authorization`` on a non-loopback
  listen (a browser always sends ``Origin``, so only scripts take that path), and the body
  must be JSON (415 otherwise), which a cross-site form cannot send.
- Every response forbids framing (a marker button must not be clickable through
  another site's page) and inline scripts, and sends no referrer (the URL may hold the
  token).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from nirsd.core.errors import ConfigError

COOKIE = "nirsd_console"
MIN_TOKEN_CHARS = 16
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    """True for a loopback IP literal or ``localhost``; any other name counts as network."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8765`` for IPv6) → (host, port); ConfigError names --listen."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"expected HOST:PORT, got {text!r}", "--listen")
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"port must be a number, got {port!r}", "--listen") from None
    if not 0 <= number <= 65535:
        raise ConfigError(f"port must be 0..65535, got {number}", "--listen")
    return host.strip("[]"), number


def load_token(path: str | None) -> str:
    """The token from ``--token-file`` (first line), else a new random one."""
    if path is None:
        return secrets.token_urlsafe(24)
    p = Path(path)
    try:
        mode = p.stat().st_mode
        token = p.read_text().strip().splitlines()[0].strip() if p.stat().st_size else ""
    except (OSError, IndexError) as err:
        raise ConfigError(f"cannot read the token: {err}", "--token-file") from None
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"the token must be at least {MIN_TOKEN_CHARS} characters", path)
    if mode & (stat.S_IROTH | stat.S_IWOTH) and os.name == "posix":
        raise ConfigError("the token file is readable by other users (chmod 0600 it)", path)
    return token


class Access:
    """The policy above as an aiohttp middleware."""

    def __init__(self, loopback: bool, token: str) -> None:
        self.loopback = loopback
        self.token = token

    def _matches(self, candidate: str | None) -> bool:
        if not candidate or not self.token:
            return False
        return hmac.compare_digest(candidate.encode("utf-8", "replace"), self.token.encode())

    def _bearer(self, request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    def _check_token(self, request: web.Request) -> web.Response | None:
        given = self._bearer(request) or request.cookies.get(COOKIE) or request.query.get("token")
        if not given:
            return web.json_response({"ok": False, "error": "token required"}, status=401)
        if not self._matches(given):
            return web.json_response({"ok": False, "error": "wrong token"}, status=403)
        return None

    def _check_unsafe(self, request: web.Request) -> web.Response | None:
        origin = request.headers.get("Origin")
        if origin is not None:
            if origin != f"{request.scheme}://{request.host}":
                return web.json_response(
                    {"ok": False, "error": f"cross-origin request from {origin} refused"},
                    status=403,
                )
        elif not self.loopback and not self._matches(self._bearer(request)):
            return web.json_response(
                {"ok": False, "error": "a request without Origin needs Authorization: Bearer"},
                status=403,
            )
        if request.content_type != "application/json":
            return web.json_response(
                {"ok": False, "error": "the body must be application/json"}, status=415
            )
        return None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        refused = None
        if self.loopback:
            if not is_loopback(request.url.host or ""):
                refused = web.json_response(
                    {"ok": False, "error": "this console serves loopback names only"}, status=403
                )
        else:
            refused = self._check_token(request)
        if refused is None and request.method in UNSAFE_METHODS:
            refused = self._check_unsafe(request)
        if refused is not None:
            refused.headers.update(HEADERS)
            return refused
        if not self.loopback and self._matches(request.query.get("token")):
            if request.method == "GET" and not request.path.startswith("/api/"):
                # a page opened from the printed URL: keep the token in a cookie, drop it
                # from the address bar (and so from history and screenshots)
                rest = {k: v for k, v in request.query.items() if k != "token"}
                found = web.HTTPSeeOther(request.rel_url.with_query(rest))
                found.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict", path="/")
                found.headers.update(HEADERS)
                return found
        resp = await handler(request)
        resp.headers.update(HEADERS)
        return resp
