"""NIRSB v1: a binary, multi-channel, COBS-framed NIRS protocol.

On the wire every frame is COBS-encoded and followed by one ``0x00`` byte.  A frame is
``type u8, flags u8, seq u16, t_us u32, payload, crc u16`` (little-endian), the CRC being
CRC-16/CCITT-FALSE over every byte before it.  See ``docs/`` and DEVICES.md section 1.

This module holds the encoders (used by the emulator and tests), the incremental
:class:`NirsbParser` (bytes in, frames out, no I/O, never raises on input) and the
:class:`NirsbDriver`.
"""

from __future__ import annotations

import binascii
import struct
from collections.abc import Sequence
from itertools import islice
from typing import ClassVar

import numpy as np
from cobs import cobs

from .base import (
    FLAG_SATURATED,  # noqa: F401  (DATA flag bit0, re-exported)
    Driver,
    Event,
    Frame,
    Info,
    Parser,
    Sample,
)

DATA = 1
INFO = 2
EVENT = 3

FLAG_AMBIENT = 2  # DATA flag bit1: ambient light subtracted by the probe

HEADER = struct.Struct("<BBHI")  # type, flags, seq, t_us
DATA_HEAD = struct.Struct("<HBB")  # n_ch, n_wl, reserved
INFO_HEAD = struct.Struct("<BBHI")  # version, n_wl, n_ch, rate in mHz
CRC = struct.Struct("<H")

HEADER_LEN = HEADER.size  # 8
MIN_FRAME = HEADER_LEN + CRC.size  # 10: header and CRC, empty payload
DATA_OVERHEAD = HEADER_LEN + DATA_HEAD.size + CRC.size  # 14

#: Longest undelimited run the parser keeps while waiting for a 0x00 (bytes).  The
#: largest frame a sane probe sends (256 ch x 8 wl) is about 11 kB COBS-encoded; anything
#: far longer without a delimiter is garbage and is dropped (counted) rather than kept.
MAX_PENDING = 1 << 20

_I4 = np.dtype("<i4")


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF); crc16(b"123456789") == 0x29B1."""
    return binascii.crc_hqx(data, 0xFFFF)


# --------------------------------------------------------------------------- encoders


def encode_frame(ftype: int, flags: int, seq: int, t_us: int, payload: bytes) -> bytes:
    """One frame (not yet COBS-encoded): header + payload + CRC.

    ``seq`` wraps at 65536 and ``t_us`` (device clock, µs) at 2**32, as on the device.
    """
    body = HEADER.pack(ftype & 0xFF, flags & 0xFF, seq % 65536, t_us % (1 << 32)) + payload
    return body + CRC.pack(crc16(body))


def to_wire(frame: bytes) -> bytes:
    """COBS-encode a frame and append the 0x00 delimiter."""
    return cobs.encode(frame) + b"\x00"


def data_payload(intensities: np.ndarray) -> bytes:
    """DATA payload for counts shaped (n_channels, n_wavelengths), channel-major i32."""
    arr = np.asarray(intensities)
    if arr.ndim != 2:
        raise ValueError(f"intensities must be (n_channels, n_wavelengths), got {arr.shape}")
    n_ch, n_wl = arr.shape
    return DATA_HEAD.pack(n_ch, n_wl, 0) + np.ascontiguousarray(arr, dtype=_I4).tobytes()


def encode_data(seq: int, t_us: int, intensities: np.ndarray, flags: int = 0) -> bytes:
    """Wire bytes of a DATA frame; ``intensities`` are integer counts (n_ch, n_wl)."""
    return to_wire(encode_frame(DATA, flags, seq, t_us, data_payload(intensities)))


def info_payload(
    n_channels: int,
    wavelengths_nm: Sequence[float],
    rate_mhz: int,
    device_id: str,
    version: int = 1,
) -> bytes:
    """INFO payload; wavelengths are rounded to whole nm, the rate is in mHz."""
    wl = [int(round(w)) for w in wavelengths_nm]
    ident = device_id.encode("utf-8")[:255]
    return (
        INFO_HEAD.pack(version, len(wl), n_channels, int(rate_mhz))
        + struct.pack(f"<{len(wl)}H", *wl)
        + bytes([len(ident)])
        + ident
    )


def encode_info(
    n_channels: int,
    wavelengths_nm: Sequence[float],
    rate_mhz: int,
    device_id: str,
    version: int = 1,
) -> bytes:
    """Wire bytes of an INFO frame (seq 0, t_us 0, as the device sends it)."""
    payload = info_payload(n_channels, wavelengths_nm, rate_mhz, device_id, version)
    return to_wire(encode_frame(INFO, 0, 0, 0, payload))


def encode_event(seq: int, t_us: int, code: int, label: str) -> bytes:
    """Wire bytes of an EVENT frame (code 1 trigger input, 2 button)."""
    lb = label.encode("utf-8")[:255]
    return to_wire(encode_frame(EVENT, 0, seq, t_us, bytes([code & 0xFF, len(lb)]) + lb))


# --------------------------------------------------------------------------- parser


class NirsbParser(Parser):
    """Incremental NIRSB v1 decoder.

    Bytes are split on 0x00; each chunk is COBS-decoded, checked (minimum length, CRC,
    exact length for its type) and either turned into a frame or dropped and counted:

    - ``decode_errors``: COBS decoding failed, or a frame with a good CRC has an unknown
      type;
    - ``crc_errors``: the CRC does not match;
    - ``length_errors``: shorter than header + CRC, or the length does not match what
      the payload declares (DATA: exactly 14 + 4·n_ch·n_wl, with n_ch, n_wl ≥ 1);
    - ``garbage_bytes``: every byte of a dropped chunk *including* its 0x00 delimiter.
      An empty chunk (two 0x00 in a row, or a 0x00 at the very start) counts as one
      garbage byte and nothing else.  An undelimited run longer than ``MAX_PENDING``
      is dropped as garbage, and the rest of it up to the next 0x00 too.
    - ``lost_frames``: DATA and EVENT share the device frame counter; for each one after
      the first, (seq − last − 1) mod 65536 is added when that is below 32768.  INFO
      (seq 0) takes no part.
    - ``seq_backsteps``: a counter that moved back (by 32768 or more, modulo 65536): a
      device that restarted or a frame delivered out of order, not 65 535 lost frames.
      The frame after it is counted from whichever counter it continues (a restart
      goes on from the new value, a reordering from the old one).
    - ``frames_ok``: frames delivered.
    """

    seq_modulus: ClassVar[int | None] = 65536
    clock_modulus_s: ClassVar[float | None] = 2**32 / 1e6

    def __init__(self) -> None:
        super().__init__()
        self._pending = b""
        self._skipping = False  # inside an over-long undelimited run
        self._last_seq: int | None = None
        self._before_back: int | None = None  # the counter before it stepped back

    def feed(self, data: bytes) -> list[Frame]:
        """Consume bytes (any split) and return the frames they complete, in order."""
        if not data:
            return []
        buf = self._pending + bytes(data) if self._pending else bytes(data)
        chunks = buf.split(b"\x00")
        self._pending = chunks.pop()
        out: list[Frame] = []
        c = self.counters
        first = 0
        if chunks and self._skipping:
            # The start of this run was already dropped as garbage.
            c.garbage_bytes += len(chunks[0]) + 1
            first = 1
            self._skipping = False
        for chunk in islice(chunks, first, None):
            frame = self._frame(chunk)
            if frame is None:
                c.garbage_bytes += len(chunk) + 1
            else:
                out.append(frame)
        if len(self._pending) > MAX_PENDING:
            c.garbage_bytes += len(self._pending)
            self._pending = b""
            self._skipping = True
        elif self._skipping and self._pending:
            c.garbage_bytes += len(self._pending)
            self._pending = b""
        c.frames_ok += len(out)
        return out

    def _frame(self, chunk: bytes) -> Frame | None:
        """Decode one delimited chunk, or count why not and return None."""
        c = self.counters
        if not chunk:
            return None  # two delimiters in a row: one garbage byte, nothing else
        try:
            raw = cobs.decode(chunk)
        except cobs.DecodeError:
            c.decode_errors += 1
            return None
        n = len(raw)
        if n < MIN_FRAME:
            c.length_errors += 1
            return None
        if binascii.crc_hqx(raw[:-2], 0xFFFF) != raw[-2] | (raw[-1] << 8):
            c.crc_errors += 1
            return None
        ftype, flags, seq, t_us = HEADER.unpack_from(raw)
        if ftype == DATA:
            if n < DATA_OVERHEAD:
                c.length_errors += 1
                return None
            n_ch, n_wl, _ = DATA_HEAD.unpack_from(raw, HEADER_LEN)
            if n_ch == 0 or n_wl == 0 or n != DATA_OVERHEAD + 4 * n_ch * n_wl:
                c.length_errors += 1
                return None
            # the counts viewed in place, already shaped: one numpy call before the copy
            values = np.ndarray((n_ch, n_wl), _I4, raw, HEADER_LEN + DATA_HEAD.size)
            self._count_seq(seq)
            return Sample(seq, t_us / 1e6, flags, values.astype(np.float64))
        if ftype == EVENT:
            if n < MIN_FRAME + 2 or n != MIN_FRAME + 2 + raw[HEADER_LEN + 1]:
                c.length_errors += 1
                return None
            label = raw[HEADER_LEN + 2 : n - 2].decode("utf-8", "replace")
            self._count_seq(seq)
            return Event(seq, t_us / 1e6, raw[HEADER_LEN], label)
        if ftype == INFO:
            return self._info(raw)
        c.decode_errors += 1
        return None

    def feed_one(self, data: bytes, length: int, head: bytes) -> tuple[int, int, int, bytes] | None:
        """:meth:`feed` for the streaming case, in a handful of C calls: ``data`` ends
        the one DATA frame pending (large frames come in several reads) with its
        delimiter, the CRC holds, the frame is ``length`` bytes decoded with the DATA
        header ``head`` (n_ch, n_wl) and it continues the frame counter.  Returns (seq,
        flags, t_us, decoded frame) after counting it as :meth:`feed` would; None, with
        nothing changed, for anything else (the caller then gives ``data`` to
        :meth:`feed`)."""
        last = self._last_seq
        if not data or data[-1] or self._skipping or self._before_back is not None or last is None:
            return None  # (a frame still incomplete: feed keeps it, without a copy here)
        try:
            chunk, rest = (self._pending + data if self._pending else data).split(b"\x00")
            raw = cobs.decode(chunk)
        except (ValueError, cobs.DecodeError):  # not exactly one delimiter, or bad COBS
            return None
        if rest or len(raw) != length or raw[8:11] != head:
            return None
        if binascii.crc_hqx(raw[:-2], 0xFFFF) != raw[-2] | (raw[-1] << 8):
            return None
        ftype, flags, seq, t_us = HEADER.unpack_from(raw)
        if ftype != DATA or seq != (last + 1) & 0xFFFF:
            return None
        self._last_seq = seq  # what _count_seq does for the next frame: nothing lost
        self._pending = b""
        self.counters.frames_ok += 1
        return seq, flags, t_us, raw

    @staticmethod
    def data_head(n_channels: int, n_wavelengths: int) -> tuple[int, bytes]:
        """(decoded length, header bytes) of a DATA frame of this shape, for
        :meth:`feed_one`."""
        return (
            DATA_OVERHEAD + 4 * n_channels * n_wavelengths,
            DATA_HEAD.pack(n_channels, n_wavelengths, 0)[:3],
        )

    def _info(self, raw: bytes) -> Info | None:
        n = len(raw)
        p = HEADER_LEN
        if n < MIN_FRAME + INFO_HEAD.size + 1:
            self.counters.length_errors += 1
            return None
        version, n_wl, n_ch, rate_mhz = INFO_HEAD.unpack_from(raw, p)
        p += INFO_HEAD.size
        id_at = p + 2 * n_wl
        if id_at + 1 + 2 > n or n != id_at + 1 + raw[id_at] + 2:
            self.counters.length_errors += 1
            return None
        wl = struct.unpack_from(f"<{n_wl}H", raw, p)
        ident = raw[id_at + 1 : n - 2].decode("utf-8", "replace")
        return Info(version, n_ch, tuple(float(w) for w in wl), rate_mhz / 1000.0, ident)

    def _count_seq(self, seq: int) -> None:
        last = self._last_seq
        if last is not None:
            skipped = (seq - last - 1) % 65536
            if self._before_back is not None:
                # after a step back: a frame that continues the old count means that one
                # frame came out of order (a restart continues from the new value)
                skipped = min(skipped, (seq - self._before_back - 1) % 65536)
                self._before_back = None
            if skipped < 32767:
                self.counters.lost_frames += skipped
            else:  # back (or more than half the counter ahead): restart or reorder
                self.counters.seq_backsteps += 1
                self._before_back = last
        self._last_seq = seq


class NirsbDriver(Driver):
    """NIRSB v1 probe: describes itself with INFO; ``?b`` asks for INFO and starts."""

    name: ClassVar[str] = "nirsb"
    self_describing: ClassVar[bool] = True

    def make_parser(self) -> NirsbParser:
        return NirsbParser()

    def start_commands(self) -> bytes:
        return b"?b"

    def stop_commands(self) -> bytes:
        return b"s"
