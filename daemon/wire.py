"""Wire protocol v1: ZeroMQ multipart ``[topic, header, payload]``.

The header is a msgpack map; the payload is a raw little-endian array described by the
header's ``dtype`` and ``shape`` (empty for event topics).  Nothing is ever pickled.
``docs/protocol.md`` is the specification; this module is its implementation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from nirsd.core.errors import ProtocolError

VERSION = 1
SAMPLE_TOPICS = ("raw", "hb", "od")
EVENT_TOPICS = ("marker", "epoch", "status", "session")
DERIVED_TOPICS = ("derived",)  # values a device computed itself (rSO2, TOI): [n, n_values]
TOPICS = SAMPLE_TOPICS + EVENT_TOPICS + DERIVED_TOPICS
HB_FIELDS = ("hbo", "hbr", "hbt")  # index 1 of an hb array: ΔHbO, ΔHbR, ΔHbT in µM

# JSON/msgpack have no NaN-free float convention; msgpack carries NaN fine, so it stays.
_packer = msgpack.Packer(use_bin_type=True)


def pack(obj: Any) -> bytes:
    return _packer.pack(obj)


#: :func:`pack` without the Python frame around it (the lean per-frame path)
PACK = _packer.pack


def unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as err:  # msgpack raises several unrelated types
        raise ProtocolError(f"header is not valid msgpack: {err}") from err


def plain(obj: Any, drop_bytes: bool = False) -> Any:
    """``obj`` (msgpack values, numpy arrays/scalars) as JSON-ready plain Python.

    NaN/inf become None (JSON has no NaN); tuples and arrays become lists.  Bytes
    become a list of ints, or with ``drop_bytes`` are left out (map values) or None.
    """
    if isinstance(obj, np.ndarray):
        out = obj.tolist()
        finite = obj.dtype.kind not in "fc" or bool(np.isfinite(obj).all())
        return out if finite else plain(out, drop_bytes)
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, bytes):
        return None if drop_bytes else list(obj)
    if isinstance(obj, dict):
        return {
            k: plain(v, drop_bytes)
            for k, v in obj.items()
            if not (drop_bytes and isinstance(v, bytes))
        }
    if isinstance(obj, (list, tuple)):
        return [plain(v, drop_bytes) for v in obj]
    return obj


@dataclass
class Message:
    """A decoded message: the topic, its header map and (sample topics) its array."""

    topic: str
    header: dict[str, Any]
    array: np.ndarray | None = None

    @property
    def seq(self) -> int:
        return int(self.header["seq"])

    @property
    def n(self) -> int:
        return int(self.header.get("n", 1))


_DTYPE_STR: dict[np.dtype, str] = {}  # dtype -> its "<f8"-style name, built once each
_DTYPES: dict[str, np.dtype] = {}  # and back, for decoding


def encode_array(topic: str, header: dict[str, Any], array: np.ndarray) -> list[bytes | memoryview]:
    """Frames for a sample message; adds dtype and shape to ``header`` (a fresh dict)."""
    arr = np.ascontiguousarray(array)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    name = _DTYPE_STR.get(arr.dtype)
    if name is None:
        name = _DTYPE_STR[arr.dtype] = arr.dtype.str
    header["dtype"] = name
    header["shape"] = list(arr.shape)
    # cast refuses empty shapes
    payload: bytes | memoryview = memoryview(arr).cast("B") if arr.size else b""  # type: ignore[arg-type]
    return [topic.encode(), pack(header), payload]


def encode_event(topic: str, header: dict[str, Any]) -> list[bytes]:
    return [topic.encode(), pack(header), b""]


def array_from(header: dict[str, Any], payload: bytes | memoryview) -> np.ndarray:
    """Rebuild an array from ``dtype``/``shape`` in a header and the payload bytes."""
    try:
        name = header["dtype"]
        dtype = _DTYPES.get(name)
        if dtype is None:
            dtype = np.dtype(name)
            if dtype.hasobject:
                raise ProtocolError("object arrays are not allowed")
            if len(_DTYPES) < 64:  # a bounded cache: names come from the network
                _DTYPES[name] = dtype
        shape = tuple(int(x) for x in header["shape"])
    except (KeyError, TypeError, ValueError) as err:
        raise ProtocolError(f"header lacks a usable dtype/shape: {err}") from err
    if any(x < 0 for x in shape):
        raise ProtocolError(f"negative dimension in shape {list(shape)}")
    expected = dtype.itemsize * math.prod(shape)
    if len(payload) != expected:
        raise ProtocolError(f"payload is {len(payload)} bytes, header says {expected}")
    return np.frombuffer(payload, dtype=dtype).reshape(shape)


def decode(frames: list[bytes]) -> Message:
    """Decode a received multipart message; raise ProtocolError if malformed."""
    if len(frames) != 3:
        raise ProtocolError(f"expected 3 frames, got {len(frames)}")
    topic = bytes(frames[0]).decode("ascii", "replace")
    header = unpack(frames[1])
    if not isinstance(header, dict):
        raise ProtocolError("header is not a map")
    if header.get("v") != VERSION:
        raise ProtocolError(f"unsupported protocol version {header.get('v')!r}")
    array = array_from(header, frames[2]) if len(frames[2]) or "shape" in header else None
    return Message(topic, header, array)
