"""``nirsd tail``: print what the daemon publishes, one sample (or event) per line.

With ``--json`` each line is a JSON object: for ``hb`` at least ``seq``, ``t``,
``epoch``, ``hbo``, ``hbr``, ``hbt`` (lists in µM, one value per channel; null where the
light was bad); for ``raw`` ``seq``, ``t``, ``epoch`` and ``intensity`` (per channel, one
value per wavelength).  Event topics print their header as one object.  With a
multi-distance probe, ``hb`` lines also carry ``tsi`` (% per group).

Until the first message arrives, a line on stderr every so often says nothing came yet
(the daemon may start later); ``timeout_s`` turns the wait into an error.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any, Iterator, TextIO

import numpy as np

from nirsd.daemon.errors import NirsdError
from nirsd.daemon.wire import Message

from .subscriber import Subscriber


def _clean(values: np.ndarray) -> list:
    """Nested lists with NaN/inf as None (JSON has no NaN)."""
    out = values.tolist()

    def fix(x: Any) -> Any:
        if isinstance(x, list):
            return [fix(v) for v in x]
        return None if isinstance(x, float) and not math.isfinite(x) else x

    return fix(out) if not np.isfinite(values).all() else out


def _plain(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return list(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def sample_lines(msg: Message) -> Iterator[dict[str, Any]]:
    """One JSON-ready dict per sample of a ``raw``, ``hb`` or ``od`` message."""
    h, arr = msg.header, msg.array
    t, t_dev, epoch = h["t"], h.get("t_dev") or [None] * msg.n, h.get("epoch") or [None] * msg.n
    n_ch = arr.shape[-1] if msg.topic == "hb" else arr.shape[1]
    quality = h.get("quality")
    qual = (np.frombuffer(quality, np.uint8).reshape(msg.n, n_ch).tolist()
            if quality else None)
    flags = list(h["flags"]) if h.get("flags") else None
    tsi = h.get("tsi") if msg.topic == "hb" else None
    for i in range(msg.n):
        line: dict[str, Any] = {"seq": h["seq"] + i, "t": t[i], "t_dev": t_dev[i],
                                "epoch": epoch[i]}
        if msg.topic == "hb":
            line["hbo"] = _clean(arr[i, 0])
            line["hbr"] = _clean(arr[i, 1])
            line["hbt"] = _clean(arr[i, 2])
            if qual is not None:
                line["quality"] = qual[i]
            if tsi is not None:
                line["tsi"] = _plain(list(tsi[i]))
        elif msg.topic == "raw":
            line["intensity"] = _clean(arr[i])
            if flags is not None:
                line["flags"] = flags[i]
        else:
            line["od"] = _clean(arr[i])
        yield line


def event_line(msg: Message) -> dict[str, Any]:
    return _plain({k: v for k, v in msg.header.items() if k != "v"})


def format_human(topic: str, line: dict[str, Any]) -> str:
    if topic == "hb":
        def fmt(vals: list) -> str:
            return " ".join("   nan" if v is None else f"{v:+6.2f}" for v in vals)
        return (f"{line['seq']:>8} {line['t']:.3f} {line['epoch'] or '-':<10} "
                f"HbO {fmt(line['hbo'])} | HbR {fmt(line['hbr'])}")
    if topic == "raw":
        vals = " ".join("/".join("nan" if v is None else f"{v:.0f}" for v in ch)
                        for ch in line["intensity"])
        return f"{line['seq']:>8} {line['t']:.3f} {line['epoch'] or '-':<10} {vals}"
    return json.dumps(line, separators=(",", ":"))


#: seconds without any message before tail says so on stderr
WARN_AFTER_S = 5.0


def wait_for_data(sub: Subscriber, timeout_s: float | None = None,
                  warn_after_s: float = WARN_AFTER_S, err: TextIO = sys.stderr) -> None:
    """Block until a message is ready on ``sub`` (without taking it).

    After ``warn_after_s`` seconds of silence, print one line on ``err`` and keep
    waiting; after ``timeout_s`` seconds (None: never) raise NirsdError.
    """
    endpoint = sub.endpoints.data
    start = time.monotonic()
    warned = False
    while True:
        waited = time.monotonic() - start
        if timeout_s is not None and waited >= timeout_s:
            raise NirsdError(f"no data from {endpoint} within {timeout_s:g} s "
                             "(is `nirsd run` running?)")
        limits = [t - waited for t in (timeout_s, None if warned else warn_after_s)
                  if t is not None]
        wait_ms = max(1, int(min(limits) * 1000)) if limits else None
        if sub.sock.poll(wait_ms):
            return
        if not warned and time.monotonic() - start >= warn_after_s:
            warned = True
            print(f"nirsd: no data from {endpoint} yet (is `nirsd run` running?); "
                  "still waiting", file=err, flush=True)


def run(sub: Subscriber, topic: str, as_json: bool, count: int | None,
        out: TextIO = sys.stdout, backfill_s: float | None = None,
        timeout_s: float | None = None, err: TextIO = sys.stderr) -> int:
    """Print lines until ``count`` lines are out (or forever); returns lines printed.

    ``timeout_s``: give up (NirsdError) when no message at all came within that many
    seconds; other topics ``sub`` receives (e.g. ``status``) only prove the daemon is up.
    """
    printed = 0
    wait_for_data(sub, timeout_s, err=err)
    stream = (sub.backfilled(seconds=backfill_s) if backfill_s is not None
              and topic in ("raw", "hb") else iter(sub))
    for msg in stream:
        if msg.topic != topic:
            continue
        lines = sample_lines(msg) if msg.array is not None else [event_line(msg)]
        for line in lines:
            text = json.dumps(line, separators=(",", ":")) if as_json \
                else format_human(topic, line)
            out.write(text + "\n")
            printed += 1
            if count is not None and printed >= count:
                out.flush()
                return printed
        out.flush()
    return printed
