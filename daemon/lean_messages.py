"""The lean path's sample messages (daemon/fastpath.py): ``Publisher.publish_block``
for one clean sample, the same frames, keys in the same order, the same values and
types, each header packed once; the ``hb`` message from the compiled kernel where it
sends (kernel.hb_sender), else from here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from . import wire
from .publisher import _SEND, _SNDMORE

if TYPE_CHECKING:
    from .fastpath import Prepared

_I4 = np.dtype("<i4")
_F8 = np.dtype("<f8")
_ONE_BYTE = [bytes((i,)) for i in range(256)]  # a one-sample block's flags on the wire
_HB_FIELDS = list(wire.HB_FIELDS)


def hb_head(
    pub: Any, prep: Prepared, seq: int, t: float, t_dev: float, label: str | None, msg: int
) -> dict[str, Any]:
    """The header of one clean sample's ``hb`` message: ``Publisher.publish_block``'s
    keys in its order, the same values and types (the kernel's sender packs the same
    layout, kernel.hb_segments)."""
    return {
        "v": wire.VERSION,
        "stream": pub.stream,
        "seq": seq,
        "n": 1,
        "t": [t],
        "t_dev": [t_dev],
        "epoch": [label],
        "topic": "hb",
        "msg": msg,
        "fields": _HB_FIELDS,
        "units": "uM",
        "quality": prep.quality,
        "dtype": "<f8",
        "shape": prep.hb_shape,
    }


def publish(
    want: tuple[bool, bool, bool],
    pub: Any,
    prep: Prepared,
    seq: int,
    t: float,
    t_dev: float,
    label: str | None,
    flags: int,
    raw: bytes,
    hb: Any,
    od: np.ndarray,
) -> None:
    """``Publisher.publish_block`` for one clean sample (``raw``: the decoded frame;
    ``hb``: its ΔHb, C-ordered, as an array or bytes): the same headers (keys in the
    same order, the same values and types), packed once each."""
    want_hb, want_raw, want_od = want
    send: Any = _SEND
    sock, more, pack, counts = pub.sock, _SNDMORE, wire.PACK, pub.counts
    if want_hb:
        counts["hb"] += 1
        if prep.sends_hb:
            prep.kernel.send_hb(seq, t, t_dev, label, counts["hb"], prep.quality, hb)  # type: ignore[union-attr]
        else:
            send(sock, b"hb", more)
            send(sock, pack(hb_head(pub, prep, seq, t, t_dev, label, counts["hb"])), more)
            send(sock, hb, 0, prep.hb_copy)
    if want_raw or want_od:
        publish_raw_od(want, pub, prep, seq, t, t_dev, label, flags, raw, od)


def publish_raw_od(
    want: tuple[bool, bool, bool],
    pub: Any,
    prep: Prepared,
    seq: int,
    t: float,
    t_dev: float,
    label: str | None,
    flags: int,
    raw: bytes,
    od: np.ndarray,
) -> None:
    """The ``raw`` and ``od`` messages of :func:`publish` (apart: most frames have
    only hb subscribers)."""
    _, want_raw, want_od = want
    send: Any = _SEND
    sock, more, pack, counts = pub.sock, _SNDMORE, wire.PACK, pub.counts
    if want_raw:
        counts["raw"] += 1
        head = {
            "v": wire.VERSION,
            "stream": pub.stream,
            "seq": seq,
            "n": 1,
            "t": [t],
            "t_dev": [t_dev],
            "epoch": [label],
            "topic": "raw",
            "msg": counts["raw"],
            "units": "counts",
            "wavelengths_nm": pub.wavelengths_nm,
            "flags": _ONE_BYTE[flags],
            "dtype": "<f8",
            "shape": prep.raw_shape,
        }
        send(sock, b"raw", more)
        send(sock, pack(head), more)
        send(sock, np.ndarray(prep.shape, _I4, raw, 12).astype(_F8), 0, prep.raw_copy)
    if want_od:
        counts["od"] += 1
        head = {
            "v": wire.VERSION,
            "stream": pub.stream,
            "seq": seq,
            "n": 1,
            "t": [t],
            "t_dev": [t_dev],
            "epoch": [label],
            "topic": "od",
            "msg": counts["od"],
            "units": "1",
            "wavelengths_nm": pub.wavelengths_nm,
            "dtype": "<f8",
            "shape": prep.raw_shape,
        }
        send(sock, b"od", more)
        send(sock, pack(head), more)
        send(sock, od, 0, True)  # copied: the compiled kernel reuses its ΔOD array
