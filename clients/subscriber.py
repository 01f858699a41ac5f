"""Python client API: subscribe to the data endpoint, talk to the control endpoint.

``Subscriber`` yields decoded :class:`~nirsd.daemon.wire.Message` objects (numpy
arrays for sample topics).  ``Subscriber.backfilled`` joins history from the ring
buffer to live data without gap or duplicate, the zguide Clone way: subscribe first,
see where live data stands, fetch the snapshot up to there, then apply only newer
messages.  ``ControlClient`` sends control requests.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from nirsd.core.errors import NirsdError, ProtocolError
from nirsd.daemon import wire
from nirsd.daemon.endpoints import Endpoints, ipc_access_problem, ipc_path, resolve
from nirsd.daemon.security import ClientKeys
from nirsd.daemon.wire import Message


class ControlClient:
    """Request/reply to the daemon's control endpoint, with a timeout per request."""

    def __init__(
        self,
        endpoint: str,
        ctx: zmq.Context | None = None,
        timeout_s: float = 5.0,
        curve: ClientKeys | None = None,
    ) -> None:
        """``curve``: keys for a network endpoint with CURVE (default: from
        ``$NIRSD_SERVER_KEY`` / ``$NIRSD_CLIENT_KEY`` when set)."""
        self.endpoint = endpoint
        self.ctx = ctx or zmq.Context.instance()
        self.timeout_s = timeout_s
        self.curve = curve if curve is not None else ClientKeys.from_env()
        self._sock: zmq.Socket | None = None

    def _socket(self) -> zmq.Socket:
        if self._sock is None:
            self._sock = self.ctx.socket(zmq.REQ)
            self._sock.setsockopt(zmq.LINGER, 0)
            if self.curve is not None:
                self.curve.apply(self._sock, self.endpoint)
            self._sock.connect(self.endpoint)
        return self._sock

    def request(self, cmd: str, **fields: Any) -> tuple[dict[str, Any], list[bytes]]:
        """Send a request; return (reply map, extra frames).  NirsdError on failure.

        An ``ipc://`` endpoint whose socket file does not exist fails at once: no daemon
        is bound there, so waiting the timeout would only delay the same answer.
        """
        problem = ipc_access_problem(self.endpoint)  # ZeroMQ retries EACCES silently
        if problem is not None:
            raise NirsdError(f"cannot connect to {self.endpoint}: {problem}")
        check_ipc(self.endpoint)
        sock = self._socket()
        sock.send(wire.pack({"cmd": cmd, **fields}))
        if not sock.poll(int(self.timeout_s * 1000)):
            # a REQ socket that lost its reply is stuck: start a new one next time
            self.close()
            raise NirsdError(
                f"no reply from the nirsd control endpoint {self.endpoint} "
                f"within {self.timeout_s:g} s (is `nirsd run` running?)"
            )
        frames = sock.recv_multipart()
        reply = wire.unpack(frames[0])
        if not isinstance(reply, dict):
            raise ProtocolError("reply is not a map")
        if not reply.get("ok", False):
            raise NirsdError(reply.get("error", "request failed"))
        return reply, frames[1:]

    def info(self) -> dict[str, Any]:
        return self.request("info")[0]

    def status(self) -> dict[str, Any]:
        return self.request("status")[0]

    def baseline(self) -> dict[str, Any]:
        return self.request("baseline")[0]

    def mark(
        self, label: str | None, action: str = "start", t: float | None = None
    ) -> dict[str, Any]:
        """Send a marker; ``label`` None with ``action="end"`` ends the open epoch."""
        fields: dict[str, Any] = {"action": action}
        if label is not None:
            fields["label"] = label
        if t is not None:
            fields["t"] = t
        return self.request("mark", **fields)[0]

    def history(
        self, since: int | None = None, seconds: float | None = None, until: int | None = None
    ) -> dict[str, Message]:
        """Samples from the ring buffer as ``{"raw": Message, "hb": Message}``.

        Pages through as many requests as needed; ``header["missed"]`` counts samples
        asked for that were already overwritten.
        """
        fields: dict[str, Any] = {"since": since} if since is not None else {"seconds": seconds}
        if until is not None:
            fields["until"] = until
        parts: list[tuple[dict, list[bytes]]] = []
        while True:
            reply, frames = self.request("history", **fields)
            parts.append((reply, frames))
            if not reply.get("more") or reply["n"] == 0:
                break
            fields = {"since": reply["next"]}
            if until is not None:
                fields["until"] = until
        return history_messages(parts)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None


def check_ipc(endpoint: str) -> None:
    """NirsdError when ``endpoint`` is ``ipc://`` and its socket file does not exist."""
    path = ipc_path(endpoint)
    if path is not None and not path.exists():
        raise NirsdError(
            f"no nirsd daemon at {endpoint}: {path} does not exist "
            f"(is `nirsd run` running, with the same NIRSD_RUNTIME_DIR or --control?)"
        )


def history_messages(parts: list[tuple[dict, list[bytes]]]) -> dict[str, Message]:
    """Join paged history replies into one ``raw`` and one ``hb`` message."""
    first = parts[0][0]
    out = {}
    for i, topic in enumerate(("raw", "hb")):
        arrays = [wire.array_from(rep[topic], fr[i]) for rep, fr in parts if topic in rep]
        header = {
            "v": wire.VERSION,
            "stream": first["stream"],
            "topic": topic,
            "seq": first["seq"],
            "n": sum(rep["n"] for rep, _ in parts),
            "missed": first["missed"],
            "history": True,
            "t": [x for rep, _ in parts for x in rep.get("t", [])],
            "t_dev": [x for rep, _ in parts for x in rep.get("t_dev", [])],
            "epoch": [x for rep, _ in parts for x in rep.get("epoch", [])],
            "wavelengths_nm": first.get("wavelengths_nm"),
        }
        key = "flags" if topic == "raw" else "quality"
        header[key] = b"".join(rep.get(key, b"") for rep, _ in parts)
        if topic == "hb":
            header["fields"] = list(wire.HB_FIELDS)
        out[topic] = Message(topic, header, np.concatenate(arrays) if arrays else None)
    return out


class Subscriber:
    """A SUB socket on the data endpoint plus a control client, from flags or config."""

    def __init__(
        self,
        topics: Iterable[str] = ("hb",),
        data: str | None = None,
        control: str | None = None,
        endpoints: Endpoints | None = None,
        ctx: zmq.Context | None = None,
        rcvhwm: int = 100_000,
        curve: ClientKeys | None = None,
    ) -> None:
        ep = resolve(data, control, endpoints)
        curve = curve if curve is not None else ClientKeys.from_env()
        self.endpoints = ep
        self.ctx = ctx or zmq.Context.instance()
        self.topics = tuple(topics)
        for topic in self.topics:
            if topic not in wire.TOPICS:
                raise NirsdError(f"unknown topic {topic!r} (known: {', '.join(wire.TOPICS)})")
        problem = ipc_access_problem(ep.data)
        if problem is not None:
            raise NirsdError(f"cannot connect to {ep.data}: {problem}")
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, rcvhwm)
        for topic in self.topics:
            self.sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
        if curve is not None:
            curve.apply(self.sock, ep.data)
        self.sock.connect(ep.data)
        self.control = ControlClient(ep.control, self.ctx, curve=curve)
        self.malformed = 0

    def recv(self, timeout_s: float | None = None) -> Message | None:
        """The next message of a subscribed topic, or None after ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            wait = None if deadline is None else max(0, deadline - time.monotonic())
            if not self.sock.poll(None if wait is None else int(wait * 1000)):
                return None
            frames = self.sock.recv_multipart()
            try:
                msg = wire.decode(frames)
            except ProtocolError:
                self.malformed += 1
                continue
            if msg.topic in self.topics:
                return msg

    def __iter__(self) -> Iterator[Message]:
        while True:
            msg = self.recv()
            if msg is not None:
                yield msg

    def backfilled(
        self,
        seconds: float | None = None,
        since: int | None = None,
        timeout_s: float | None = 10.0,
        idle_s: float | None = None,
    ) -> Generator[Message | None, None, None]:
        """History then live ``hb``/``raw`` messages, contiguous in ``seq``.

        Waits up to ``timeout_s`` seconds (None: forever) for the first live sample
        message.  A later gap (the subscriber fell behind PUB's high-water mark) is
        filled from history when the ring still holds it; what cannot be filled is
        reported by a ``header["missed"]`` count on the next message.  Messages of the
        other subscribed topics pass through as they arrive.

        With ``idle_s``, ``None`` is yielded after every ``idle_s`` seconds without a
        message (also while waiting for the first one), so that a caller can flush,
        check a deadline or a stop flag; without it the iterator blocks.

        When the daemon restarts (a new ``stream`` id), the new stream is delivered
        from its sample 0 (backfilled from the new daemon's history), and the first
        message of each topic from it carries ``header["restart"]``: ``stream`` (the
        old id), ``end_seq`` (the old stream's next sample index) and ``gap_s``
        (seconds between the old stream's last sample and the new one's first).
        """
        pending: list[Message] = []
        first = yield from self._first_live_sample(timeout_s, idle_s, pending)
        expected = yield from self._history_before(first, seconds, since)
        yield from pending
        yield from self._live_from(first, expected, idle_s)

    def _first_live_sample(
        self, timeout_s: float | None, idle_s: float | None, pending: list[Message]
    ) -> Generator[None, None, Message]:
        """Wait for the first live ``hb``/``raw`` message (yielding None every ``idle_s``);
        messages of other topics that come before it go to ``pending``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            wait = left if idle_s is None else idle_s if left is None else min(idle_s, left)
            msg = self.recv(wait)
            if msg is None:
                if deadline is not None and time.monotonic() >= deadline:
                    raise NirsdError(
                        "no live data from the daemon within "
                        f"{timeout_s:g} s at {self.endpoints.data}"
                    )
                yield None
            elif msg.topic in wire.SAMPLE_TOPICS:
                return msg
            else:
                pending.append(msg)

    def _history_before(
        self, first: Message, seconds: float | None, since: int | None
    ) -> Generator[Message, None, dict[str, int]]:
        """The ring buffer's samples up to ``first``; returns the next ``seq`` per topic."""
        hist = self.control.history(
            since=since, seconds=None if since is not None else (seconds or 0.0), until=first.seq
        )
        expected: dict[str, int] = {}
        for topic in ("raw", "hb"):
            if topic in self.topics and hist[topic].n:
                yield hist[topic]
            expected[topic] = first.seq
        return expected

    def _live_from(
        self, first: Message, expected: dict[str, int], idle_s: float | None
    ) -> Generator[Message | None, None, None]:
        """Live messages from ``first`` on, gaps filled from history, restarts noted."""
        joint = _Continuity(first.header.get("stream"), expected, self.topics)
        msg: Message | None = first
        while True:
            if msg is not None:
                yield from self._in_sequence(msg, joint)
            msg = self.recv(idle_s)
            if msg is None:
                yield None

    def _in_sequence(self, msg: Message, joint: _Continuity) -> list[Message]:
        """What ``msg`` adds to the contiguous stream: nothing when history already
        delivered it, the missing samples from history before it after a gap."""
        if msg.topic not in wire.SAMPLE_TOPICS:
            return [msg]
        joint.follow_restart(msg)
        want = joint.expected.get(msg.topic, msg.seq)
        if msg.seq + msg.n <= want:
            return []  # already delivered from history
        out = [msg]
        if msg.seq > want and msg.topic in ("raw", "hb"):
            out = [*self._fill(msg.topic, want, msg.seq), msg]
        joint.expected[msg.topic] = msg.seq + msg.n
        joint.note_restart(msg.topic, out[0])
        if msg.header.get("t"):
            joint.last_t[msg.topic] = msg.header["t"][-1]
        return out

    def _fill(self, topic: str, since: int, until: int) -> Iterator[Message]:
        hist = self.control.history(since=since, until=until)[topic]
        if hist.n:
            yield hist

    def close(self) -> None:
        self.sock.close(linger=0)
        self.control.close()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class _Continuity:
    """Where ``Subscriber.backfilled`` stands: the daemon's stream id, the next ``seq``
    expected per topic, each topic's newest sample time, and the restart notes that the
    first message of each topic from a new stream carries."""

    stream: Any
    expected: dict[str, int]
    topics: tuple[str, ...]
    last_t: dict[str, float] = field(default_factory=dict)
    restarted: dict[str, dict] = field(default_factory=dict)

    def follow_restart(self, msg: Message) -> None:
        """A new stream id: the daemon restarted and numbers its samples from 0 again."""
        if msg.header.get("stream", self.stream) == self.stream:
            return
        self.restarted = {
            topic: {"stream": self.stream, "end_seq": end} for topic, end in self.expected.items()
        }
        self.stream = msg.header.get("stream")
        self.expected = {topic: 0 for topic in ("raw", "hb") if topic in self.topics}

    def note_restart(self, topic: str, first: Message) -> None:
        """Put the pending restart note of ``topic`` on ``first``, with the time gap."""
        note = self.restarted.pop(topic, None)
        if note is None:
            return
        t_old = self.last_t.get(topic)
        note["gap_s"] = None if t_old is None else first.header["t"][0] - t_old
        first.header["restart"] = note
