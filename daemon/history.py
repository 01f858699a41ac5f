"""The ``history`` control request: samples from the ring buffer, for backfill.

Request: ``{"cmd": "history", "seconds": S}`` (the last S seconds) or
``{"since": k}`` (from absolute sample index k), optionally ``"until"`` and
``"max_samples"``.  The reply header describes the block as a ``hb`` message does and is
followed by two frames: raw intensities and hemoglobin.  ``more`` says a further request
(from ``next``) is needed.
"""

from __future__ import annotations

import math
from typing import Any

from nirsd.core.errors import ProtocolError

from . import wire
from .ringbuffer import epoch_labels

MAX_REPLY_BYTES = 16 * 1024 * 1024  # per reply; clients page on with `next`
#: sample indices are clamped to this (any larger value means "the future")
MAX_INDEX = 2**62


def _int_field(req: dict, key: str, default: int | None) -> int | None:
    if key in req and req[key] is None:
        raise ProtocolError(f"{key!r} must be an integer, got nil")
    value = req.get(key, default)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ProtocolError(f"{key!r} must be an integer")
    return value if value is None else max(-MAX_INDEX, min(MAX_INDEX, value))


def history_reply(pipeline, publisher, req: dict[str, Any]) -> tuple[dict, list]:
    if pipeline is None:
        return {
            "stream": publisher.stream,
            "seq": 0,
            "n": 0,
            "head": 0,
            "missed": 0,
            "more": False,
            "next": 0,
        }, []
    ring = pipeline.ring
    since = _start_index(pipeline, req)
    until = _int_field(req, "until", None)
    limit = _page_limit(ring, req)
    wanted_until = ring.head if until is None else min(until, ring.head)
    until = min(wanted_until, max(since, ring.oldest) + limit)
    block, missed = ring.read(since, until)
    reply = {
        "stream": publisher.stream,
        "seq": block.seq,
        "n": block.n,
        "head": ring.head,
        "oldest": ring.oldest,
        "missed": missed,
        "next": block.end,
        "more": block.end < wanted_until,
        **_block_header(block, pipeline, publisher),
    }
    return reply, _array_frames(block, reply)


def _start_index(pipeline, req: dict[str, Any]) -> int:
    """The first sample index asked for: ``since``, or ``seconds`` back from the head
    (more than the ring holds is "everything held")."""
    ring = pipeline.ring
    if ("since" in req) == ("seconds" in req):
        raise ProtocolError("history needs exactly one of 'since' (sample index) or 'seconds'")
    if "since" in req:
        return _int_field(req, "since", 0)  # type: ignore[return-value]  # default 0
    seconds = req["seconds"]
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not math.isfinite(seconds)
        or seconds < 0
    ):
        raise ProtocolError("'seconds' must be a finite number ≥ 0")
    span = ring.capacity / pipeline.info.rate_hz
    return ring.head - int(round(min(seconds, span + 1.0) * pipeline.info.rate_hz))


def _page_limit(ring, req: dict[str, Any]) -> int:
    """Samples in one reply: ``max_samples`` if given, at most MAX_REPLY_BYTES' worth."""
    max_samples = _int_field(req, "max_samples", None)
    if max_samples is not None and max_samples < 1:
        raise ProtocolError("'max_samples' must be at least 1")
    per_sample = ring.bytes_per_sample(ring.n_channels, ring.n_wavelengths)
    cap = max(1, MAX_REPLY_BYTES // per_sample)
    return min(max_samples or cap, cap)


def _block_header(block, pipeline, publisher) -> dict[str, Any]:
    """The per-sample fields of the reply, as an ``hb`` message's header has them."""
    return {
        "t": block.t.tolist(),
        "t_dev": block.t_dev.tolist(),
        "epoch": epoch_labels(block.epoch, publisher.labels),
        "flags": block.flags.tobytes(),
        "quality": block.quality.tobytes(),
        "fields": list(wire.HB_FIELDS),
        "units": {"raw": "counts", "hb": "uM"},
        "wavelengths_nm": list(pipeline.info.wavelengths_nm),
    }


def _array_frames(block, reply: dict[str, Any]) -> list:
    """The raw and hb arrays as frames; their descriptions go into ``reply``."""
    frames = []
    for name, arr in (("raw", block.raw), ("hb", block.hb)):
        head: dict[str, Any] = {}
        _, _, payload = wire.encode_array(name, head, arr)
        reply[name] = head
        frames.append(payload)
    return frames
