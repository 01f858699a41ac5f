"""``nirsd tail``: print what the daemon publishes, one sample (or event) per line.

With ``--json`` each line is a JSON object: for ``hb`` at least ``seq``, ``t``,
``epoch``, ``hbo``, ``hbr``, ``hbt`` (lists in µM, one value per channel; null where the
light was bad); for ``raw`` ``seq``, ``t``, ``epoch`` and ``intensity`` (per channel, one
value per wavelength).  Event topics print their header as one object.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Iterator, TextIO

import numpy as np

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
    for i in range(msg.n):
        line: dict[str, Any] = {"seq": h["seq"] + i, "t": t[i], "t_dev": t_dev[i],
                                "epoch": epoch[i]}
        if msg.topic == "hb":
            line["hbo"] = _clean(arr[i, 0])
            line["hbr"] = _clean(arr[i, 1])
            line["hbt"] = _clean(arr[i, 2])
            if qual is not None:
                line["quality"] = qual[i]
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


def run(sub: Subscriber, topic: str, as_json: bool, count: int | None,
        out: TextIO = sys.stdout, backfill_s: float | None = None) -> int:
    """Print lines until ``count`` lines are out (or forever); returns lines printed."""
    printed = 0
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
