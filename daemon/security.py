"""Who may connect: ZeroMQ CURVE on network endpoints, file permissions on IPC ones.

Rules (see docs/security.md):

- ``ipc://`` endpoints are Unix socket files, mode 0660, group of the daemon
  (``nirsd`` under systemd); the kernel decides who connects.  CURVE is not used there.
- Network endpoints (``tcp://`` and the rest) need ``[security] curve = true``, or an
  explicit ``allow_plain_tcp = true``.  With CURVE the daemon is a CURVE server with the
  key pair from ``server_secret_key_file``; a ZAP handler (pyzmq's ThreadAuthenticator,
  one thread owning its own socket) accepts only the public keys listed in
  ``allowed_clients`` (data) and ``control_clients`` (control; default: the same list).
  An unknown key fails the handshake, so it receives nothing and can send nothing; the
  daemon logs ``curve_client_rejected`` (first time per key, then every 100th attempt,
  and at most ``REJECT_LOG_BURST`` lines per 10 s whatever the keys: a flood of fresh
  keys costs a counter and one ``curve_client_rejected_suppressed`` line per window).
  Per-key counts are kept for the ``MAX_REJECTED_KEYS`` most recent keys only.

Key files use ZeroMQ's zcert text format (what czmq's ``zcert_save`` and pyzmq's
``zmq.auth.create_certificates`` write): ``NAME.key`` holds ``public-key = "…"``,
``NAME.key_secret`` holds both keys and is mode 0600.  Keys are Z85 text, 40 characters.
An allow-list entry is a Z85 public key, a ``.key`` file, or a directory of ``.key`` files.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog
import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from nirsd.core.errors import ConfigError, NirsdError

from .bounded import LruCounter, RateLimitedLog

log = structlog.get_logger("nirsd.security")

LOCAL_TRANSPORTS = ("ipc://", "inproc://")
DOMAINS: dict[int, str] = {
    zmq.PUB: "data",
    zmq.XPUB: "data",
    zmq.ROUTER: "control",
    zmq.REP: "control",
}
MAX_REJECTED_KEYS = 1024  # per-key rejection counts kept (least recently seen dropped)
REJECT_LOG_BURST = 10  # rejection log lines per 10 s at most


def is_network(endpoint: str) -> bool:
    """True for endpoints reachable from other hosts (tcp, ws, pgm, …)."""
    return not endpoint.startswith(LOCAL_TRANSPORTS)


def is_z85_key(text: str) -> bool:
    """True when ``text`` is a 40-character Z85 CURVE key."""
    if len(text) != 40:
        return False
    try:
        return len(z85.decode(text.encode("ascii"))) == 32
    except (ValueError, KeyError, UnicodeEncodeError):
        return False


# -- key files ------------------------------------------------------------------------


def _write(path: Path, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(text)
    os.chmod(path, mode)  # whatever the umask


def _zcert(public: bytes, secret: bytes | None) -> str:
    kind = "Secret" if secret else "Public"
    lines = [
        f"#   ****  Generated on {datetime.now(UTC):%Y-%m-%d %H:%M:%S} by nirsd keys  ****",
        f"#   ZeroMQ CURVE **{kind}** Certificate",
        "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions."
        if secret
        else "#   Give this file to the peer that must trust this key.",
        "",
        "metadata",
        "curve",
        f'    public-key = "{public.decode()}"',
    ]
    if secret:
        lines.append(f'    secret-key = "{secret.decode()}"')
    return "\n".join(lines) + "\n"


def generate_keypair(directory: str | Path, name: str, force: bool = False) -> tuple[Path, Path]:
    """Write ``NAME.key`` (0644) and ``NAME.key_secret`` (0600) in ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o750)
    public_path, secret_path = directory / f"{name}.key", directory / f"{name}.key_secret"
    for path in (public_path, secret_path):
        if path.exists():
            if not force:
                raise NirsdError(f"{path} exists (use --force to replace it)")
            path.unlink()
    public, secret = zmq.curve_keypair()
    _write(secret_path, _zcert(public, secret), 0o600)
    _write(public_path, _zcert(public, None), 0o644)
    return public_path, secret_path


def load_key_file(path: str | Path, key: str, secret: bool = False) -> tuple[bytes, bytes | None]:
    """(public, secret) Z85 keys from a zcert file; ConfigError naming ``key`` if unusable."""
    try:
        public, sec = zmq.auth.load_certificate(os.fspath(path))
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read CURVE key file {path}: {err}", key) from None
    if not is_z85_key(public.decode("ascii", "replace")):
        raise ConfigError(f"{path}: public-key is not a 40-character Z85 key", key)
    if secret and (sec is None or not is_z85_key(sec.decode("ascii", "replace"))):
        raise ConfigError(f"{path} holds no secret key (use the NAME.key_secret file)", key)
    return public, sec


def resolve_allow_list(entries: Iterable[str], key: str) -> frozenset[bytes]:
    """Z85 public keys from keys, ``.key`` files and directories of them."""
    out: set[bytes] = set()
    for entry in entries:
        if is_z85_key(entry):
            out.add(entry.encode("ascii"))
            continue
        path = Path(entry)
        if path.is_dir():
            files = sorted(path.glob("*.key"))
            if not files:
                raise ConfigError(f"directory {path} holds no .key files", key)
            out.update(load_key_file(f, key)[0] for f in files)
        else:
            out.add(load_key_file(path, key)[0])
    return frozenset(out)


def read_key(text: str, key: str, secret: bool = False) -> tuple[bytes, bytes | None]:
    """A Z85 public key given inline, or the keys in a zcert file."""
    if not secret and is_z85_key(text):
        return text.encode("ascii"), None
    return load_key_file(text, key, secret)


# -- server side ----------------------------------------------------------------------


@dataclass(frozen=True)
class ServerKeys:
    """The daemon's key pair and who may connect to each endpoint (Z85 bytes)."""

    public: bytes
    secret: bytes
    data_clients: frozenset[bytes]
    control_clients: frozenset[bytes]


def server_keys(sec: object) -> ServerKeys | None:
    """Load the keys named by a ``[security]`` config; None when CURVE is off."""
    if not getattr(sec, "curve", False):
        return None
    public, secret = load_key_file(
        sec.server_secret_key_file,  # type: ignore[attr-defined]
        "security.server_secret_key_file",
        secret=True,
    )
    data = resolve_allow_list(sec.allowed_clients, "security.allowed_clients")  # type: ignore
    control_entries = sec.control_clients  # type: ignore[attr-defined]
    control = (
        data
        if control_entries is None
        else resolve_allow_list(control_entries, "security.control_clients")
    )
    assert secret is not None
    return ServerKeys(public, secret, data, control)


class _AllowList:
    """The ZAP credentials callback: allowed keys per domain; rejections are logged."""

    def __init__(self, keys: ServerKeys) -> None:
        self.allowed = {"data": keys.data_clients, "control": keys.control_clients}
        self.rejected = LruCounter(MAX_REJECTED_KEYS)  # (domain, key) -> attempts
        self._log = RateLimitedLog(log, "curve_client_rejected", burst=REJECT_LOG_BURST)

    def callback(self, domain: str, key: bytes) -> bool:
        if key in self.allowed.get(domain, frozenset()):
            return True
        n = self.rejected.add((domain, key))
        if n == 1 or n % 100 == 0:
            self._log(endpoint=domain, client_key=key.decode("ascii", "replace")[:40], attempts=n)
        return False


class ServerSecurity:
    """CURVE for one zmq.Context: the ZAP thread plus what bind_socket applies."""

    def __init__(self, ctx: zmq.Context, keys: ServerKeys) -> None:
        self.keys = keys
        self.allow = _AllowList(keys)
        self.auth = ThreadAuthenticator(ctx)
        self.auth.start()
        for domain in ("data", "control"):
            self.auth.configure_curve_callback(domain, credentials_provider=self.allow)
        _ACTIVE[ctx] = self
        log.info(
            "curve_enabled",
            server_key=keys.public.decode(),
            data_clients=len(keys.data_clients),
            control_clients=len(keys.control_clients),
        )

    @property
    def rejected(self) -> int:
        """Handshakes refused so far."""
        return self.allow.rejected.total

    def apply(self, sock: zmq.Socket, endpoint: str) -> None:
        """Make ``sock`` a CURVE server before it binds a network endpoint."""
        if not is_network(endpoint):
            return
        sock.curve_server = True
        sock.curve_publickey = self.keys.public
        sock.curve_secretkey = self.keys.secret
        sock.zap_domain = DOMAINS.get(sock.socket_type, "data").encode()

    def stop(self) -> None:
        for ctx, active in list(_ACTIVE.items()):
            if active is self:
                del _ACTIVE[ctx]
        self.auth.stop()


_ACTIVE: weakref.WeakKeyDictionary[zmq.Context, ServerSecurity] = weakref.WeakKeyDictionary()


def rejected_handshakes(ctx: zmq.Context) -> int | None:
    """CURVE handshakes refused on this context, or None without CURVE."""
    active = _ACTIVE.get(ctx)
    return None if active is None else active.rejected


def secure_server_socket(sock: zmq.Socket, endpoint: str) -> None:
    """Apply the context's CURVE server settings (if any) to a socket about to bind."""
    active = _ACTIVE.get(sock.context)
    if active is not None:
        active.apply(sock, endpoint)


# -- client side ----------------------------------------------------------------------


@dataclass(frozen=True)
class ClientKeys:
    """What a client needs for CURVE: the server's public key and its own pair (Z85)."""

    server_public: bytes
    public: bytes
    secret: bytes

    @classmethod
    def load(cls, server_key: str, client_key: str) -> ClientKeys:
        """From a server public key (Z85 or ``.key`` file) and a client ``.key_secret``."""
        server_public, _ = read_key(server_key, "--server-key")
        public, secret = load_key_file(client_key, "--client-key", secret=True)
        assert secret is not None
        return cls(server_public, public, secret)

    @classmethod
    def from_env(cls) -> ClientKeys | None:
        """From ``$NIRSD_SERVER_KEY`` and ``$NIRSD_CLIENT_KEY`` when both are set."""
        server, client = os.environ.get("NIRSD_SERVER_KEY"), os.environ.get("NIRSD_CLIENT_KEY")
        return cls.load(server, client) if server and client else None

    def apply(self, sock: zmq.Socket, endpoint: str) -> None:
        """Make ``sock`` a CURVE client before it connects to a network endpoint."""
        if not is_network(endpoint):
            return
        sock.curve_serverkey = self.server_public
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret
