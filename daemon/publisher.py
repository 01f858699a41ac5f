"""The data endpoint: one ZeroMQ XPUB socket, owned by the acquisition loop.

XPUB is PUB that also tells which topics anyone subscribes to, so sample topics nobody
wants (raw, od) are not even encoded.  It never blocks: a subscriber that cannot keep
up loses messages at its high-water mark, by design.  Every message carries the stream id, a
per-topic message counter
(``msg``) and the absolute sample index (``seq``), so a subscriber can tell what it
missed and backfill it from ``history``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import zmq

from . import wire
from .endpoints import check_ipc_endpoint, remove_ipc, secure_socket_file
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
#: largest message a subscriber may send (subscription notices are a topic prefix; the
#: CURVE handshake needs a few hundred bytes):
#: ZeroMQ drops a peer that announces more, before allocating it (docs/security.md)
SUB_MAX_MSG_BYTES = 4096
#: distinct subscription prefixes tracked; only prefixes of a published topic can ever
#: match, so others are counted (``subscriptions_ignored``) and not kept
MAX_SUBSCRIPTIONS = 256
#: a network peer that has not finished the ZeroMQ (and CURVE) handshake within this
#: many ms is dropped: idle unauthenticated connections cannot pile up
HANDSHAKE_MS = 5_000
#: subscription notices taken per loop turn (the rest wait for the next turn)
NOTICES_PER_TURN = 256


def bind_socket(
    sock: zmq.Socket, endpoint: str, mode: int = 0o660, max_msg_bytes: int | None = None
) -> None:
    """Bind after checking the IPC path (ConfigError), restricting the socket file to
    owner+group; ``max_msg_bytes`` is the largest inbound message (ZMQ_MAXMSGSIZE)."""
    check_ipc_endpoint(endpoint)
    if max_msg_bytes is not None:
        sock.setsockopt(zmq.MAXMSGSIZE, max_msg_bytes)
    sock.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_MS)
    secure_server_socket(sock, endpoint)  # CURVE server on network endpoints, if enabled
    sock.bind(endpoint)
    secure_socket_file(endpoint, mode)


class Publisher:
    def __init__(self, ctx: zmq.Context, endpoint: str, publish_od: bool = True) -> None:
        self.endpoint = endpoint
        self.stream = uuid.uuid4().hex[:16]
        self.sock = ctx.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, SNDHWM)
        try:
            bind_socket(self.sock, endpoint, max_msg_bytes=SUB_MAX_MSG_BYTES)
        except BaseException:
            self.sock.close(linger=0)  # an open socket would block Context.term()
            raise
        self.subscriptions_ignored = 0  # notices for prefixes no topic can match
        self.publish_od = publish_od
        self.counts: dict[str, int] = {t: 0 for t in wire.TOPICS}
        self.labels: Sequence[str] = ()
        self.wavelengths_nm: list[float] = []
        self.subscriptions: dict[bytes, int] = {}  # prefix -> subscribe minus unsubscribe
        self._wanted: dict[str, bool] = {}
        #: changes whenever the subscriptions do (callers may cache ``wants`` by it)
        self.subscriptions_version = 0

    def set_labels(self, labels: Sequence[str]) -> None:
        """The epoch label table sample headers name their epochs from (index → label)."""
        self.labels = labels

    def set_wavelengths(self, wavelengths_nm: Sequence[float]) -> None:
        """The probe's wavelengths, which ``raw`` and ``od`` headers carry."""
        self.wavelengths_nm = list(wavelengths_nm)

    def read_subscriptions(self) -> None:
        """Take the (un)subscribe notices XPUB queued (at most NOTICES_PER_TURN, so a
        flood of them cannot hold the loop); call when its socket is readable."""
        for _ in range(NOTICES_PER_TURN):
            try:
                note = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            if not note or note[0] not in (0, 1):
                continue  # not a subscription notice
            prefix = bytes(note[1:])
            if not self._could_match(prefix) or (
                prefix not in self.subscriptions and len(self.subscriptions) >= MAX_SUBSCRIPTIONS
            ):
                self.subscriptions_ignored += 1
                continue
            count = self.subscriptions.get(prefix, 0) + (1 if note[0] == 1 else -1)
            if count > 0:
                self.subscriptions[prefix] = count
            else:
                self.subscriptions.pop(prefix, None)
            self._wanted.clear()
            self.subscriptions_version += 1

    @staticmethod
    def _could_match(prefix: bytes) -> bool:
        """Whether a subscription prefix matches any topic this daemon publishes."""
        return any(t.encode().startswith(prefix) for t in wire.TOPICS)

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
        # hb first: it is what most subscribers wait for
        if want_hb:
            self._send_hb(block, t, t_dev, epoch, tsi)
        if want_raw or want_od:
            self._send_raw_od(block, t, t_dev, epoch, od if want_od else None, want_raw)

    def _send_hb(
        self, block: Block, t: list, t_dev: list, epoch: Any, tsi: np.ndarray | None
    ) -> None:
        # one literal header: the same keys, in the same order, as the other sample
        # topics' headers
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

    def _send_raw_od(
        self,
        block: Block,
        t: list,
        t_dev: list,
        epoch: Any,
        od: np.ndarray | None,
        want_raw: bool,
    ) -> None:
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
        if od is not None:
            self.counts["od"] += 1
            head = {
                **common,
                "topic": "od",
                "msg": self.counts["od"],
                "units": "1",
                "wavelengths_nm": self.wavelengths_nm,
            }
            self._send(wire.encode_array("od", head, od))

    def publish_derived(
        self,
        seq: int,
        t: np.ndarray,
        t_dev: np.ndarray,
        epoch: list[str | None],
        values: np.ndarray,
        layout: Any,
    ) -> None:
        """Publish a device's computed values on ``derived``: float64 (n, n_values), NaN
        where the device had none; the header names each column (``names``, ``units``,
        ``channels``)."""
        if not self.wants("derived"):
            return
        self.counts["derived"] += 1
        head = {
            "v": wire.VERSION,
            "stream": self.stream,
            "topic": "derived",
            "msg": self.counts["derived"],
            "seq": seq,
            "n": int(values.shape[0]),
            "t": t.tolist(),
            "t_dev": t_dev.tolist(),
            "epoch": epoch,
            **layout.describe(),
        }
        self._send(wire.encode_array("derived", head, values.astype(np.float64, copy=False)))

    def publish_event(self, topic: str, body: dict[str, Any]) -> dict[str, Any]:
        """Publish an event (marker, epoch, status); returns the header sent."""
        header = self._header(topic) | {"time": time.time()} | body
        self.sock.send_multipart(wire.encode_event(topic, header))
        return header

    def close(self) -> None:
        """Close; what is queued gets up to FLUSH_MS to leave (ctx.term waits for it)."""
        self.sock.close(linger=FLUSH_MS)
        remove_ipc(self.endpoint)
