"""The data endpoint: one ZeroMQ XPUB socket, owned by the acquisition loop.

XPUB is PUB that also tells which topics anyone subscribes to, so sample topics nobody
wants (raw, od) are not even encoded.  It never blocks: a subscriber that cannot keep
up loses messages at its high-water mark, by design.  Every message carries the stream id, a
per-topic message counter
(``msg``) and the absolute sample index (``seq``), so a subscriber can tell what it
missed and backfill it from ``history``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import zmq

from . import wire
from .endpoints import ipc_path, remove_ipc
from .ringbuffer import Block, epoch_labels
from .security import secure_server_socket

_HB_FIELDS = list(wire.HB_FIELDS)
# The C-level send, without pyzmq's Python wrapper (which only adds DRAFT routing_id /
# group handling, unused here): a third of the per-frame send cost.
_SEND = getattr(getattr(zmq, "backend", None), "Socket", zmq.Socket).send
_SNDMORE = int(zmq.SNDMORE)
COPY_LIMIT = 64 * 1024  # below this zero-copy sends cost more than copying
SNDHWM = 1_000  # messages queued per subscriber before PUB drops for it; bounds the
# memory a stalled subscriber costs (a reading client queues more itself)
FLUSH_MS = 500  # on close, time given to queued messages to reach subscribers


def bind_socket(sock: zmq.Socket, endpoint: str, mode: int = 0o660) -> None:
    """Bind, creating the IPC directory and restricting the socket file to owner+group."""
    path = ipc_path(endpoint)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    secure_server_socket(sock, endpoint)  # CURVE server on network endpoints, if enabled
    sock.bind(endpoint)
    if path is not None:
        os.chmod(path, mode)


class Publisher:
    def __init__(self, ctx: zmq.Context, endpoint: str, publish_od: bool = True) -> None:
        self.endpoint = endpoint
        self.stream = uuid.uuid4().hex[:16]
        self.sock = ctx.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, SNDHWM)
        try:
            bind_socket(self.sock, endpoint)
        except BaseException:
            self.sock.close(linger=0)  # an open socket would block Context.term()
            raise
        self.publish_od = publish_od
        self.counts: dict[str, int] = {t: 0 for t in wire.TOPICS}
        self.labels: Sequence[str] = ()
        self.wavelengths_nm: list[float] = []
        self.subscriptions: dict[bytes, int] = {}  # prefix -> subscribe minus unsubscribe
        self._wanted: dict[str, bool] = {}

    def read_subscriptions(self) -> None:
        """Take the (un)subscribe notices XPUB queued; call when its socket is readable."""
        while True:
            try:
                note = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            if not note or note[0] not in (0, 1):
                continue  # not a subscription notice
            prefix = bytes(note[1:])
            count = self.subscriptions.get(prefix, 0) + (1 if note[0] == 1 else -1)
            if count > 0:
                self.subscriptions[prefix] = count
            else:
                self.subscriptions.pop(prefix, None)
            self._wanted.clear()

    def wants(self, topic: str) -> bool:
        """Whether any subscriber's prefix matches ``topic``."""
        wanted = self._wanted.get(topic)
        if wanted is None:
            key = topic.encode()
            wanted = any(key.startswith(p) for p in self.subscriptions)
            self._wanted[topic] = wanted
        return wanted

    def _send(self, frames: list) -> None:
        # three sends rather than send_multipart: the same message, less per-call work
        sock, send = self.sock, _SEND
        send(sock, frames[0], _SNDMORE)
        send(sock, frames[1], _SNDMORE)
        send(sock, frames[2], 0, len(frames[2]) < COPY_LIMIT)

    def _header(self, topic: str) -> dict[str, Any]:
        self.counts[topic] += 1
        return {"v": wire.VERSION, "stream": self.stream, "topic": topic, "msg": self.counts[topic]}

    def publish_block(
        self, block: Block, od: np.ndarray | None = None, tsi: np.ndarray | None = None
    ) -> None:
        """Publish one block of samples on ``raw``, ``hb`` and (if given) ``od``.

        ``tsi``: tissue saturation index in % (n, n_groups) for multi-distance probes.
        """
        want_hb, want_raw = self.wants("hb"), self.wants("raw")
        want_od = od is not None and self.publish_od and self.wants("od")
        if not (want_hb or want_raw or want_od):
            return
        t = block.t.tolist()
        t_dev = block.t_dev.tolist()
        epoch = epoch_labels(block.epoch, self.labels)
        # hb first: it is what most subscribers wait for; its header is one literal
        # (the same keys, in the same order, as the other sample topics' headers)
        if want_hb:
            self.counts["hb"] += 1
            hb = {
                "v": wire.VERSION,
                "stream": self.stream,
                "seq": block.seq,
                "n": len(t),
                "t": t,
                "t_dev": t_dev,
                "epoch": epoch,
                "topic": "hb",
                "msg": self.counts["hb"],
                "fields": _HB_FIELDS,
                "units": "uM",
                "quality": block.quality.tobytes(),
            }
            if tsi is not None:
                hb["tsi"] = tsi.tolist()
            self._send(wire.encode_array("hb", hb, block.hb))
        if not (want_raw or want_od):
            return
        common = {
            "v": wire.VERSION,
            "stream": self.stream,
            "seq": block.seq,
            "n": len(t),
            "t": t,
            "t_dev": t_dev,
            "epoch": epoch,
        }
        if want_raw:
            self.counts["raw"] += 1
            raw = {
                **common,
                "topic": "raw",
                "msg": self.counts["raw"],
                "units": "counts",
                "wavelengths_nm": self.wavelengths_nm,
                "flags": block.flags.tobytes(),
            }
            self._send(wire.encode_array("raw", raw, block.raw))
        if want_od:
            self.counts["od"] += 1
            head = {
                **common,
                "topic": "od",
                "msg": self.counts["od"],
                "units": "1",
                "wavelengths_nm": self.wavelengths_nm,
            }
            self._send(wire.encode_array("od", head, od))

    def publish_event(self, topic: str, body: dict[str, Any]) -> dict[str, Any]:
        """Publish an event (marker, epoch, status); returns the header sent."""
        header = self._header(topic) | {"time": time.time()} | body
        self.sock.send_multipart(wire.encode_event(topic, header))
        return header

    def close(self) -> None:
        """Close; what is queued gets up to FLUSH_MS to leave (ctx.term waits for it)."""
        self.sock.close(linger=FLUSH_MS)
        remove_ipc(self.endpoint)
