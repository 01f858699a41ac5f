"""The data endpoint: one ZeroMQ PUB socket, owned by the acquisition loop.

PUB never blocks: a subscriber that cannot keep up loses messages at its high-water
mark, by design.  Every message carries the stream id, a per-topic message counter
(``msg``) and the absolute sample index (``seq``), so a subscriber can tell what it
missed and backfill it from ``history``.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any, Sequence

import numpy as np
import zmq

from . import wire
from .endpoints import ipc_path, remove_ipc
from .ringbuffer import Block, epoch_labels
from .security import secure_server_socket

SNDHWM = 1_000    # messages queued per subscriber before PUB drops for it; bounds the
                  # memory a stalled subscriber costs (a reading client queues more itself)
FLUSH_MS = 500    # on close, time given to queued messages to reach subscribers


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
        self.sock = ctx.socket(zmq.PUB)
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

    def _header(self, topic: str) -> dict[str, Any]:
        self.counts[topic] += 1
        return {"v": wire.VERSION, "stream": self.stream, "topic": topic,
                "msg": self.counts[topic]}

    def publish_block(self, block: Block, od: np.ndarray | None = None,
                      tsi: np.ndarray | None = None) -> None:
        """Publish one block of samples on ``raw``, ``hb`` and (if given) ``od``.

        ``tsi``: tissue saturation index in % (n, n_groups) for multi-distance probes.
        """
        common = {"seq": block.seq, "n": block.n, "t": block.t.tolist(),
                  "t_dev": block.t_dev.tolist(), "epoch": epoch_labels(block.epoch, self.labels)}
        raw = self._header("raw") | common
        raw["flags"] = block.flags.tobytes()
        raw["units"] = "counts"
        raw["wavelengths_nm"] = self.wavelengths_nm
        self.sock.send_multipart(wire.encode_array("raw", raw, block.raw), copy=False)
        hb = self._header("hb") | common
        hb["fields"] = ["hbo", "hbr", "hbt"]
        hb["units"] = "uM"
        hb["quality"] = block.quality.tobytes()
        if tsi is not None:
            hb["tsi"] = tsi.tolist()
        self.sock.send_multipart(wire.encode_array("hb", hb, block.hb), copy=False)
        if od is not None and self.publish_od:
            head = self._header("od") | common
            head["units"] = "1"
            head["wavelengths_nm"] = self.wavelengths_nm
            self.sock.send_multipart(wire.encode_array("od", head, od), copy=False)

    def publish_event(self, topic: str, body: dict[str, Any]) -> dict[str, Any]:
        """Publish an event (marker, epoch, status); returns the header sent."""
        header = self._header(topic) | {"time": time.time()} | body
        self.sock.send_multipart(wire.encode_event(topic, header))
        return header

    def close(self) -> None:
        """Close; what is queued gets up to FLUSH_MS to leave (ctx.term waits for it)."""
        self.sock.close(linger=FLUSH_MS)
        remove_ipc(self.endpoint)
