"""What wakes the acquisition loop: one poll(2) over the port and the ZeroMQ sockets.

``zmq.Poller`` asks every ZeroMQ socket for its events before and after it sleeps, and
each ask is a poll(2) and a getpid(2) of its own: thirteen system calls a turn with the
control and data sockets, where a frame needs one poll and one read.  Here the loop
sleeps in a single ``select.poll`` over the port's descriptor and each socket's
``ZMQ_FD``, and asks a socket for its events (``ZMQ_EVENTS``) only when its descriptor
woke the loop, when it still had input after it was served, or every ``CHECK_S``.

Why the timer: ``ZMQ_FD`` signals that the socket has commands to process, not that a
message waits, and any operation on the socket may process them.  A frame's ``send``
on the data socket can so take the notice that a subscription arrived, and nothing
would wake the loop for it; at worst it is seen ``CHECK_S`` later.  Input left behind
by a served socket's budget is never waited for (:meth:`Wakeups.served`).
"""

from __future__ import annotations

import select
import time
from collections.abc import Sequence
from typing import Any

import zmq

CHECK_S = 0.05  # a socket's events are asked for at least this often
_IN = select.POLLIN
_ZMQ_IN = zmq.POLLIN


class Wakeups:
    """The loop's poll over ``sockets`` (ZeroMQ) and the port (:meth:`watch_port`)."""

    def __init__(self, sockets: Sequence[Any]) -> None:
        self.sockets = tuple(sockets)
        self._poll = select.poll()
        for sock in self.sockets:
            self._poll.register(sock.getsockopt(zmq.FD), _IN)
        self.port: int | None = None
        self._pending: set[Any] = set()  # sockets with input left after they were served
        self._check_at = 0.0  # monotonic s of the next events check of every socket

    def watch_port(self, fd: int | None) -> None:
        """Poll ``fd`` for the port from now on (None: no port descriptor)."""
        if fd == self.port:
            return
        if self.port is not None:
            self._poll.unregister(self.port)
        if fd is not None:
            self._poll.register(fd, _IN)
        self.port = fd

    def wait(self, timeout_ms: float | None) -> tuple[bool, Sequence[Any], float]:
        """Sleep until something arrives or ``timeout_ms`` passes: (whether the port
        woke the loop (data, hang-up or error), the sockets with input to read, the
        monotonic s it woke)."""
        if self._pending:
            timeout_ms = 0
        got = self._poll.poll(timeout_ms)
        port, sockets = False, False
        for fd, _ in got:
            if fd == self.port:
                port = True
            else:
                sockets = True
        now = time.monotonic()
        if not (sockets or self._pending or now >= self._check_at):
            return port, (), now
        self._check_at = now + CHECK_S
        self._pending.clear()
        return port, [s for s in self.sockets if s.getsockopt(zmq.EVENTS) & _ZMQ_IN], now

    def served(self, sock: Any) -> None:
        """``sock`` was read (and maybe written): if input is left (a budget ended the
        reading, or the replies took the notice of new requests), the next wait does
        not sleep."""
        if sock.getsockopt(zmq.EVENTS) & _ZMQ_IN:
            self._pending.add(sock)
