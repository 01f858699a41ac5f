"""Service glue: signals, the refusal to start twice, and the daemon's lifetime."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import structlog
import zmq

from .acquisition import Acquisition
from .config import Config
from .endpoints import ipc_path
from .errors import NirsdError

log = structlog.get_logger("nirsd.service")


def _already_running(ctx: zmq.Context, control: str) -> bool:
    """True when a live daemon answers on ``control`` (ZeroMQ would silently rebind)."""
    path = ipc_path(control)
    if path is not None and not path.exists():
        return False
    from nirsd.clients.subscriber import ControlClient
    client = ControlClient(control, ctx, timeout_s=0.5)
    try:
        client.info()
        return True
    except NirsdError:
        return False
    finally:
        client.close()


def run_daemon(cfg: Config) -> int:
    """Run until SIGINT or SIGTERM; returns the exit status (0 on a clean stop)."""
    ctx = zmq.Context()
    try:
        if _already_running(ctx, cfg.endpoints.control):
            raise NirsdError(f"another nirsd already serves {cfg.endpoints.control}")
        try:
            acq = Acquisition(cfg, ctx)
        except zmq.ZMQError as err:
            raise NirsdError(f"cannot bind {cfg.endpoints.data} / {cfg.endpoints.control}: "
                             f"{err}") from err

        def stop(signum: int, _frame: FrameType | None) -> None:
            acq.stop_requested = True
            log.info("stop_requested", signal=signal.Signals(signum).name)

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, stop)
            signal.signal(signal.SIGTERM, stop)
        log.info("started", config=cfg.source, data=cfg.endpoints.data,
                 control=cfg.endpoints.control, driver=cfg.device.driver,
                 port=acq.device.port)
        try:
            acq.run()
        finally:
            acq.close()
        return 0
    finally:
        ctx.term()
