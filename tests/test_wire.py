"""Wire protocol: arrays round-trip bit-exactly; malformed messages are refused."""

from __future__ import annotations

import numpy as np
import pytest

from nirsd.core.errors import ProtocolError
from nirsd.daemon import wire


def test_array_message_round_trip():
    arr = np.random.default_rng(1).normal(size=(3, 3, 8))
    frames = wire.encode_array("hb", {"v": 1, "seq": 7, "n": 3}, arr)
    msg = wire.decode([bytes(f) for f in frames])
    assert msg.topic == "hb" and msg.seq == 7 and msg.n == 3
    assert msg.header["dtype"] == "<f8" and msg.header["shape"] == [3, 3, 8]
    np.testing.assert_array_equal(msg.array, arr)


def test_event_message_has_empty_payload():
    frames = wire.encode_event("marker", {"v": 1, "label": "extension", "seq": 3})
    msg = wire.decode(frames)
    assert msg.array is None and msg.header["label"] == "extension"


@pytest.mark.parametrize(
    "frames,words",
    [
        ([b"hb", b"\xc1", b""], "msgpack"),
        ([b"hb", wire.pack([1, 2]), b""], "not a map"),
        ([b"hb", wire.pack({"v": 99}), b""], "version"),
        ([b"hb", wire.pack({"v": 1, "dtype": "<f8", "shape": [2]}), b"\0" * 15], "payload"),
        ([b"hb", wire.pack({"v": 1, "dtype": "|O", "shape": [1]}), b"\0" * 8], "object"),
        ([b"hb"], "3 frames"),
    ],
)
def test_malformed_messages_raise_protocol_error(frames, words):
    with pytest.raises(ProtocolError, match=words):
        wire.decode(frames)
