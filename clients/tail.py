"""``nirsd tail``: print what the daemon publishes, one sample (or event) per line.

With ``--json`` each line is a JSON object: for ``hb`` at least ``seq``, ``t``,
``epoch``, ``hbo``, ``hbr``, ``hbt`` (lists in µM, one value per channel; null where the
light was bad); for ``raw`` ``seq``, ``t``, ``epoch`` and ``intensity`` (per channel, one
value per wavelength).  Event topics print their header as one object.  With a
multi-distance probe, ``hb`` lines also carry ``tsi`` (% per group).  A ``derived`` line
(computed values of an oximeter) holds ``seq``, ``t``, ``epoch`` and one list per value
name, for example ``rso2``.

Until the first message of the topic arrives, one line on stderr after a few seconds
says nothing came yet (the daemon may start later, or its device may come back);
``timeout_s`` turns a silence of the topic into an error.  ``status`` messages, which
tail also receives, never count as data: they only explain the silence.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

import numpy as np

from nirsd.core.errors import NirsdError
from nirsd.daemon import wire
from nirsd.daemon.wire import Message

from .subscriber import Subscriber
from .tail_text import HumanText


def sample_lines(msg: Message) -> Iterator[dict[str, Any]]:
    """One JSON-ready dict per sample of a ``raw``, ``hb`` or ``od`` message."""
    h, arr = msg.header, msg.array
    if arr is None:
        raise ValueError(f"a {msg.topic!r} message without a sample array has no sample lines")
    t, t_dev, epoch = h["t"], h.get("t_dev") or [None] * msg.n, h.get("epoch") or [None] * msg.n
    n_ch = arr.shape[-1] if msg.topic in ("hb", "derived") else arr.shape[1]
    quality = h.get("quality")
    qual = np.frombuffer(quality, np.uint8).reshape(msg.n, n_ch).tolist() if quality else None
    flags = list(h["flags"]) if h.get("flags") else None
    tsi = h.get("tsi") if msg.topic == "hb" else None
    for i in range(msg.n):
        line: dict[str, Any] = {
            "seq": h["seq"] + i,
            "t": t[i],
            "t_dev": t_dev[i],
            "epoch": epoch[i],
        }
        if msg.topic == "hb":
            line["hbo"] = wire.plain(arr[i, 0])
            line["hbr"] = wire.plain(arr[i, 1])
            line["hbt"] = wire.plain(arr[i, 2])
            if qual is not None:
                line["quality"] = qual[i]
            if tsi is not None:
                line["tsi"] = wire.plain(tsi[i])
        elif msg.topic == "derived":
            line.update(derived_values(h, arr[i]))
        elif msg.topic == "raw":
            line["intensity"] = wire.plain(arr[i])
            if flags is not None:
                line["flags"] = flags[i]
        else:
            line["od"] = wire.plain(arr[i])
        yield line


def derived_values(header: dict[str, Any], row: np.ndarray) -> dict[str, list]:
    """A ``derived`` row as one list per value name (``rso2``: one value per column of
    that name, in order; None where the device had no value)."""
    names = header.get("names") or [f"v{j}" for j in range(row.shape[0])]
    out: dict[str, list] = {}
    for name, value in zip(names, wire.plain(row)):
        out.setdefault(name, []).append(value)
    return out


def event_line(msg: Message) -> dict[str, Any]:
    return wire.plain({k: v for k, v in msg.header.items() if k != "v"})


def format_human(topic: str, line: dict[str, Any]) -> str:
    if topic == "hb":

        def fmt(vals: list) -> str:
            return " ".join("   nan" if v is None else f"{v:+6.2f}" for v in vals)

        return (
            f"{line['seq']:>8} {line['t']:.3f} {line['epoch'] or '-':<10} "
            f"HbO {fmt(line['hbo'])} | HbR {fmt(line['hbr'])}"
        )
    if topic == "raw":
        vals = " ".join(
            "/".join("nan" if v is None else f"{v:.0f}" for v in ch) for ch in line["intensity"]
        )
        return f"{line['seq']:>8} {line['t']:.3f} {line['epoch'] or '-':<10} {vals}"
    return json.dumps(line, separators=(",", ":"))


#: seconds without a message of the topic before tail says so on stderr
WARN_AFTER_S = 5.0
#: longest wait for a message before checking the timeout (s)
IDLE_S = 0.1


class Watch:
    """When the last message of the asked-for topic came, and what ``status`` says.

    Only messages of ``topic`` count as data: ``status`` (which tail also subscribes
    to) proves the daemon is up, and feeds the explanation, but never resets the clock.
    """

    def __init__(
        self, sub: Subscriber, topic: str, timeout_s: float | None, warn_after_s: float, err: TextIO
    ) -> None:
        self.endpoint, self.topic = sub.endpoints.data, topic
        self.timeout_s, self.warn_after_s, self.err = timeout_s, warn_after_s, err
        self.last = time.monotonic()
        self.seen_topic = False
        self.status: dict[str, Any] | None = None
        self.warned = False

    def saw(self, msg: Message | None) -> None:
        """Note ``msg`` (None: nothing came); NirsdError once ``timeout_s`` ran out."""
        now = time.monotonic()
        if msg is not None and msg.topic == self.topic:
            self.last, self.seen_topic = now, True
            return
        if msg is not None and msg.topic == "status":
            self.status = msg.header
        quiet = now - self.last
        if self.timeout_s is not None and quiet >= self.timeout_s:
            raise NirsdError(f"{self._nothing()} within {self.timeout_s:g} s{self._why()}")
        if not self.warned and not self.seen_topic and quiet >= self.warn_after_s:
            self.warned = True
            print(
                f"nirsd: {self._nothing()} yet{self._why()}; still waiting",
                file=self.err,
                flush=True,
            )

    def _nothing(self) -> str:
        if self.status is None:
            return f"no data from {self.endpoint}"
        return f"no {self.topic} messages from {self.endpoint}"

    def _why(self) -> str:
        if self.status is None:
            return " (is `nirsd run` running?)"
        state, error = self.status.get("state"), self.status.get("last_error")
        return (
            f" (the daemon is up, device {state or 'state unknown'}"
            f"{': ' + str(error) if error else ''})"
        )


def run(
    sub: Subscriber,
    topic: str,
    as_json: bool,
    count: int | None,
    out: TextIO = sys.stdout,
    backfill_s: float | None = None,
    timeout_s: float | None = None,
    err: TextIO = sys.stderr,
    warn_after_s: float = WARN_AFTER_S,
) -> int:
    """Print lines until ``count`` lines are out (or forever); returns lines printed.

    ``timeout_s``: give up (NirsdError) when that many seconds pass without a message
    of ``topic`` (at the start or between two messages); other topics ``sub`` receives
    (e.g. ``status``) only prove the daemon is up and do not count.  After
    ``warn_after_s`` seconds without one, before the first, one note goes to ``err``.
    """
    printed = 0
    text = None if as_json else HumanText(topic)
    watch = Watch(sub, topic, timeout_s, warn_after_s, err)
    stream = (
        _backfilled(sub, topic, backfill_s)
        if backfill_s is not None and topic in ("raw", "hb")
        else _live(sub)
    )
    for msg in stream:
        watch.saw(msg)
        if msg is None or msg.topic != topic:
            continue
        lines = sample_lines(msg) if msg.array is not None else [event_line(msg)]
        if text is not None and not text.header_done and msg.array is not None:
            _describe(sub, text)
        for line in lines:
            if text is None:
                out.write(json.dumps(line, separators=(",", ":")) + "\n")
            else:
                out.write("\n".join(text.lines(line)) + "\n")
            printed += 1
            if count is not None and printed >= count:
                out.flush()
                return printed
        out.flush()
    return printed


def _describe(sub: Subscriber, text: HumanText) -> None:
    """Channel labels and wavelengths for the header, from ``info`` (once data flows)."""
    timeout, sub.control.timeout_s = sub.control.timeout_s, 2.0
    try:
        info = sub.control.info()
    except NirsdError:
        return  # the header then names channels ch0, ch1, …
    finally:
        sub.control.timeout_s = timeout
    text.labels = [str(c.get("label", f"ch{i}")) for i, c in enumerate(info.get("channels") or [])]
    text.wavelengths = list(info.get("wavelengths_nm") or [])


def _live(sub: Subscriber) -> Iterator[Message | None]:
    """Live messages, and None after every ``IDLE_S`` seconds without one."""
    while True:
        yield sub.recv(IDLE_S)


def _backfilled(sub: Subscriber, topic: str, seconds: float) -> Iterator[Message | None]:
    """Once ``topic`` flows, its last ``seconds`` from history, then live data.

    Until then ``status`` and idle ticks pass through (so the wait is explained and
    timed); the first message of ``topic`` is left to the history fetched next.
    """
    for msg in _live(sub):
        if msg is not None and msg.topic == topic:
            break
        yield msg
    yield from sub.backfilled(seconds=seconds, timeout_s=None, idle_s=IDLE_S)
