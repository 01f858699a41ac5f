"""Test helpers for subscribers: know that a SUB socket has joined before acting.

A ZeroMQ SUB socket joins asynchronously: a message published before its subscription
has reached the daemon's PUB socket is never delivered to it.  A fixed sleep before
acting is a race on a loaded machine; instead, subscribe to ``status`` as the last
topic and wait for a status message (the daemon publishes one every ``interval_s``).
Subscriptions travel in order on one connection, so once ``status`` arrives every
earlier topic is subscribed too.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from nirsd.cli.testing import wait_for


def joined(sub: Any, timeout: float = 20.0) -> None:
    """Wait until ``sub`` (subscribed to ``status`` last) receives a status message."""
    if not sub.topics or sub.topics[-1] != "status":
        raise ValueError(f"subscribe to 'status' as the last topic, not {sub.topics!r}")

    def status_seen() -> bool:
        msg = sub.recv(0.2)
        return msg is not None and msg.topic == "status"

    wait_for(status_seen, timeout, interval=0, what="the subscription to reach the daemon")


def recv_topic(sub: Any, topic: str, timeout: float = 5.0) -> Any:
    """The next message on ``topic`` (others skipped), or None after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        msg = sub.recv(left)
        if msg is not None and msg.topic == topic:
            return msg
    return None


def loop_config(tmp_path: Any, **sections: Any) -> Any:
    """The config of an in-process ``Acquisition``: a NIRSB port that is never opened and
    IPC endpoints in ``tmp_path`` (``sections`` added, e.g. ``protocol=…``)."""
    from nirsd.daemon import config

    return config.parse(
        {
            "device": {"driver": "nirsb", "port": str(tmp_path / "tty")},
            "endpoints": {"data": f"ipc://{tmp_path}/data", "control": f"ipc://{tmp_path}/control"},
            **sections,
        }
    )


@contextmanager
def in_process(cfg: Any) -> Iterator[tuple[Any, Any]]:
    """``(acquisition, context)`` of an in-process loop, closed however the test ends.

    The context is destroyed with every socket still open on it closed at once: a
    context left to the garbage collector with open sockets (a test that failed half-way)
    blocks in ``Context.term()`` forever, which would stall the whole run later on.
    """
    import zmq

    from nirsd.daemon.acquisition import Acquisition

    ctx = zmq.Context()
    acq = None
    try:
        acq = Acquisition(cfg, ctx)
        yield acq, ctx
    finally:
        if acq is not None:
            acq.close()
        ctx.destroy(linger=0)
