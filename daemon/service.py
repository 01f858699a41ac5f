"""Service glue: signals, reload, CURVE, the refusal to start twice, the daemon's lifetime.

- SIGTERM / SIGINT: the loop stops at its next turn (it wakes at least every 50 ms),
  the device is stopped, queued messages get up to ``publisher.FLUSH_MS`` to leave, the
  socket files are removed, STOPPING=1 is sent and the exit status is 0.
- SIGHUP (``systemctl reload nirsd``): the config file is read again and checked first;
  if it is invalid the daemon logs ``reload_failed`` and keeps running as it was.  If it
  is valid, the acquisition is rebuilt in place from it: same process, same endpoints
  (endpoint changes need a restart), the device reopened, a new stream id, the history
  ring started afresh; systemd sees RELOADING=1 then READY=1.
- Before anything binds, both IPC endpoint paths are checked (``endpoints.check_ipc_endpoint``:
  a directory another user could write to, a symlink or a file that is not our socket is a
  config error, exit 78), and the soft open-file limit is raised to ``NOFILE_WANTED`` (or
  the hard limit): idle network peers must not exhaust descriptors before ZeroMQ's
  handshake timeout drops them.
- ``NIRSD_TEST_HOOKS=1`` adds the control request ``test_stall`` (``seconds``), which
  blocks the loop, so tests can see the watchdog pings stop, and ``test_fault``
  (``where``: ``samples`` or ``control``), which makes the next block of samples, or this
  request, raise, so tests can see the loop guard count it and go on.  Never set it in
  production.
"""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
from dataclasses import replace
from types import FrameType
from typing import Any

import structlog
import zmq

from nirsd.core.errors import NirsdError

from . import config as config_mod
from . import wire
from .acquisition import Acquisition
from .config import Config
from .endpoints import check_ipc_endpoint, ipc_path
from .notify import Notifier
from .security import ServerKeys, ServerSecurity, server_keys

log = structlog.get_logger("nirsd.service")

MAX_STALL_S = 60.0
NOFILE_WANTED = 65_536  # as the unit's LimitNOFILE


def raise_file_limit(wanted: int = NOFILE_WANTED) -> int:
    """Raise the soft RLIMIT_NOFILE towards ``wanted`` (never above the hard limit)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
        except (ValueError, OSError):
            pass
    return soft


def _already_running(ctx: zmq.Context, control: str) -> bool:
    """True when a live daemon answers on ``control`` (ZeroMQ would silently rebind)."""
    path = ipc_path(control)
    if path is not None and not path.exists():
        return False
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(control)
        sock.send(wire.pack({"cmd": "info"}))
        return bool(sock.poll(500))
    except zmq.ZMQError:
        return False
    finally:
        sock.close()


def prepare(cfg: Config) -> ServerKeys | None:
    """Check a config for serving: transport rules, then the CURVE key files (ConfigError)."""
    config_mod.check_transport(cfg)
    return server_keys(cfg.security)


def reload_config(running: Config) -> tuple[Config, ServerKeys | None]:
    """The config file read again, keeping the running endpoints; ConfigError if invalid."""
    if running.source.startswith("<"):
        new = config_mod.default()
    else:
        new = config_mod.load(running.source)
    if new.endpoints != running.endpoints:
        log.warning(
            "reload_keeps_endpoints",
            running=running.endpoints.__dict__,
            configured=new.endpoints.__dict__,
        )
    new = replace(new, endpoints=running.endpoints)
    return new, prepare(new)


def _stall(req: dict[str, Any]) -> tuple[dict[str, Any], list]:
    seconds = min(float(req.get("seconds", 1.0)), MAX_STALL_S)
    log.warning("test_stall", seconds=seconds)
    time.sleep(seconds)
    return {"stalled_s": seconds}, []


def _fault(acq: Acquisition) -> Any:
    def handler(req: dict[str, Any]) -> tuple[dict[str, Any], list]:
        if req.get("where") == "samples":
            original, lean = acq._on_samples, acq.lean.enabled
            acq.lean.enabled = False  # the next frame takes the general path, through here

            def boom(*_args: Any) -> None:
                del acq._on_samples  # the class's method again
                acq.lean.enabled = lean
                raise RuntimeError("test fault in a block of samples")

            # Deliberate fault injection: shadow the bound method on this instance only.
            acq._on_samples = boom  # type: ignore[method-assign, assignment]
            return {"armed": "samples", "was": original.__name__}, []
        raise RuntimeError("test fault in a control request")

    return handler


class _Lifetime:
    """What the signal handlers change: stop, or a validated config to switch to."""

    def __init__(self, cfg: Config, notifier: Notifier) -> None:
        self.cfg = cfg
        self.notifier = notifier
        self.acq: Acquisition | None = None
        self.stop = False
        self.pending: tuple[Config, ServerKeys | None] | None = None

    def on_stop(self, signum: int, _frame: FrameType | None) -> None:
        self.stop = True
        if self.acq is not None:
            self.acq.request_stop()
        log.info("stop_requested", signal=signal.Signals(signum).name)

    def on_reload(self, _signum: int, _frame: FrameType | None) -> None:
        try:
            self.pending = reload_config(self.cfg)
        except NirsdError as err:
            log.error("reload_failed", config=self.cfg.source, error=str(err))
            self.notifier.status(f"reload failed, running the previous config: {err}")
            return
        log.info("reload_requested", config=self.cfg.source)
        if self.acq is not None:
            self.acq.request_stop()


def _start(cfg: Config, ctx: zmq.Context, notifier: Notifier) -> Acquisition:
    try:
        acq = Acquisition(cfg, ctx, notifier)
    except zmq.ZMQError as err:
        raise NirsdError(
            f"cannot bind {cfg.endpoints.data} / {cfg.endpoints.control}: {err}"
        ) from err
    if os.environ.get("NIRSD_TEST_HOOKS") == "1":
        acq.control.register("test_stall", _stall)
        acq.control.register("test_fault", _fault(acq))
        log.warning("test_hooks_enabled")
    return acq


def run_daemon(cfg: Config, notifier: Notifier | None = None) -> int:
    """Run until SIGINT or SIGTERM (reloading on SIGHUP); returns 0 on a clean stop."""
    keys = prepare(cfg)
    for name in ("data", "control"):  # before anything connects or binds there
        check_ipc_endpoint(getattr(cfg.endpoints, name), f"endpoints.{name}")
    raise_file_limit()
    notifier = notifier or Notifier()
    ctx = zmq.Context()
    try:
        if _already_running(ctx, cfg.endpoints.control):
            raise NirsdError(f"another nirsd already serves {cfg.endpoints.control}")
        life = _Lifetime(cfg, notifier)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, life.on_stop)
            signal.signal(signal.SIGTERM, life.on_stop)
            signal.signal(signal.SIGHUP, life.on_reload)
        while True:
            sec = ServerSecurity(ctx, keys) if keys is not None else None
            try:
                acq = life.acq = _start(life.cfg, ctx, notifier)
            except BaseException:
                if sec is not None:
                    sec.stop()
                raise
            log.info(
                "started",
                config=life.cfg.source,
                data=life.cfg.endpoints.data,
                control=life.cfg.endpoints.control,
                driver=life.cfg.device.driver,
                port=acq.device.port,
                pid=os.getpid(),
            )
            if life.stop or life.pending is not None:  # a signal came during start-up
                acq.request_stop()
            # start-up objects (modules, config, sockets) leave the collector's view:
            # full collections then walk only what the loop creates and stay short
            gc.freeze()
            try:
                acq.run()
            finally:
                if life.pending is not None and not life.stop:
                    notifier.reloading()
                acq.close()
                life.acq = None
                if sec is not None:
                    sec.stop()
            if life.stop or life.pending is None:
                return 0
            (life.cfg, keys), life.pending = life.pending, None
            log.info("reloaded", config=life.cfg.source)
    finally:
        notifier.close()
        ctx.term()
