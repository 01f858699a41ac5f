"""Helper roles of the nirsd benchmarks, each run as a subprocess by
:class:`common.Consumer` (``python bench/roles.py ROLE ...``); a role prints ``ready``
and, on SIGTERM, saves what it received (frame index, receive time in ns).

- ``hb-sub``: a ZeroMQ SUB on nirsd's ``hb`` that decodes each message as
  docs/protocol.md says (msgpack header, ``numpy.frombuffer`` payload) and nothing
  more; the frame index is ``round(t_dev · rate)``, worked out after the run.
- ``lsl-inlet``: a pylsl StreamInlet; the frame index is in the first value.
- ``serial-lsl``: a plain pyserial reader → COBS decoder → pylsl outlet, as a user
  would write it between a NIRSB device and LSL.
- ``floor-relay``: the transport floor: ``poll()`` on the pty → ``os.read`` → split on
  0x00 → one ZeroMQ PUB message per frame (still COBS-encoded), nothing else.
- ``floor-sub``: a bare ZeroMQ SUB on that relay: ``recv``, stamp, keep the bytes; the
  frame index (``t_us`` of each DATA frame) is decoded after the run.
- ``frames-relay``, ``frames-sub``: the floor with each frame sent as the last of an
  ``hb`` message's three frames (topic, a header packed once, the frame) and received
  with ``recv_multipart``: what the message's shape alone costs.
- ``wire-relay``: the floor relay plus nirsd's ``hb`` wire format and nothing else (COBS
  decode, seq and t_us, msgpack header, three frames with the counts as payload); read
  by ``hb-sub``.
- ``hb-relay``: the floor relay plus the least work that turns a frame into an ``hb``
  message (decode, CRC, ΔOD, one einsum, msgpack header); read by ``hb-sub``.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MARK  # noqa: E402  (also keeps LSL on this machine)


class _Stop:
    flag = False


def _subscriber(endpoint: str, topic: bytes) -> tuple[Any, Any]:
    """(context, SUB) as both stamping subscribers use them: a queue deep enough for a
    whole run, a receive timeout so SIGTERM is seen."""
    import zmq

    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, 100_000)
    sub.setsockopt(zmq.RCVTIMEO, 100)  # to see SIGTERM
    sub.setsockopt(zmq.SUBSCRIBE, topic)
    sub.connect(endpoint)
    return ctx, sub


def _on_term(*_: object) -> None:
    _Stop.flag = True


def _save(out: str, idx: list, ns: list) -> None:
    i = np.concatenate(idx) if idx else np.empty(0, np.int64)
    t = np.concatenate(ns) if ns else np.empty(0, np.int64)
    with open(out, "wb") as f:
        np.savez(f, idx=i.astype(np.int64), ns=t.astype(np.int64))


def role_hb_sub(a: argparse.Namespace) -> None:
    """A SUB on nirsd's ``hb``: receive, decode as docs/protocol.md says (msgpack header,
    ``numpy.frombuffer`` payload), stamp; the frame index comes from ``t_dev`` after."""
    import msgpack
    import zmq

    ctx, sub = _subscriber(a.data, b"hb")
    t_dev: list = []
    ns: list[int] = []
    recv, unpackb, frombuffer, stamp = (
        sub.recv_multipart,
        msgpack.unpackb,
        np.frombuffer,
        time.monotonic_ns,
    )
    while not _Stop.flag:
        try:
            _, head, payload = recv()
        except zmq.Again:
            continue
        header = unpackb(head)
        _hb = frombuffer(payload, header["dtype"]).reshape(header["shape"])
        ns.append(stamp())
        t_dev.append(header["t_dev"])
        if len(ns) == 1:
            print("ready", flush=True)
    sub.close()
    ctx.term()
    idx = [
        np.rint(np.atleast_1d(np.asarray(t, np.float64)) * a.rate).astype(np.int64) for t in t_dev
    ]
    _save(a.out, idx, [np.full(k.size, t, np.int64) for k, t in zip(idx, ns)])


def role_lsl_inlet(a: argparse.Namespace) -> None:
    import pylsl

    found = pylsl.resolve_byprop("name", a.name, 1, 30.0)
    if not found:
        raise SystemExit(f"no LSL stream named {a.name}")
    inlet = pylsl.StreamInlet(found[0], max_buflen=60)
    inlet.open_stream(10.0)
    print("ready", flush=True)
    idx: list[int] = []
    ns: list[int] = []
    while not _Stop.flag:
        sample, _ = inlet.pull_sample(timeout=0.1)
        if sample is not None:
            ns.append(time.monotonic_ns())
            idx.append(int(round(sample[0])) - MARK)
    inlet.close_stream()
    _save(a.out, [np.array(idx)], [np.array(ns)])


def role_serial_lsl(a: argparse.Namespace) -> None:
    """What a user writes: read the port, split on 0x00, COBS-decode, push to LSL."""
    import pylsl
    import serial
    from cobs import cobs

    n = a.channels * a.wavelengths
    info = pylsl.StreamInfo(a.name, "NIRS", n, a.rate, pylsl.cf_float32, a.name)
    outlet = pylsl.StreamOutlet(info)
    ser = serial.Serial(a.port, 115200, timeout=0.1)
    ser.write(b"?b")
    buf = b""
    while not _Stop.flag:
        buf += ser.read(ser.in_waiting or 1)
        while b"\x00" in buf:
            chunk, buf = buf.split(b"\x00", 1)
            try:
                raw = cobs.decode(chunk)
            except cobs.DecodeError:
                continue
            if len(raw) < 14 or raw[0] != 1:
                continue  # not a DATA frame
            values = np.frombuffer(raw[12:-2], "<i4")
            if values.size == n:
                outlet.push_sample(values.astype(np.float32))
    ser.close()
    _save(a.out, [], [])


def _relay_ends(port: str, endpoint: str) -> tuple[Any, Any, int, Any]:
    """(context, bound PUB, the pty opened non-blocking, a ``select.poll`` on it) of a
    relay; the device has been asked to stream (``?b``, answered with INFO)."""
    import zmq

    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(endpoint)
    fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    os.write(fd, b"?b")  # as every reader does
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return ctx, pub, fd, poller


def floor_relay(
    port: str, endpoint: str, running=lambda: not _Stop.flag, three_frames: bool = False
) -> None:
    """The least a pty → ZeroMQ relay does: ``poll()`` the port, ``os.read``, split on
    0x00, send each frame (still COBS-encoded) as one message on a PUB ipc socket.

    Nothing else: no pyserial, no decoding, no header.  The subscriber identifies the
    frames after the run (:func:`frame_index`).  ``three_frames``: each frame goes as the
    last of the three frames of an ``hb`` message (topic, a header packed once, the
    frame), so the message's shape alone is measured.
    """
    ctx, pub, fd, poller = _relay_ends(port, endpoint)
    send, pending = pub.send, b""
    if three_frames:
        import msgpack
        import zmq

        more = zmq.SNDMORE
        head = msgpack.packb(
            {"seq": 0, "n": 1, "t": [0.0], "t_dev": [0.0], "dtype": "<f8", "shape": [1, 3, 8]}
        )

        def send(chunk: bytes, _send=pub.send) -> None:
            _send(b"hb", more)
            _send(head, more)
            _send(chunk)

    while running():
        if not poller.poll(100):
            continue
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            continue
        except OSError:
            break  # the device side closed
        chunks = (pending + data if pending else data).split(b"\x00")
        pending = chunks.pop()
        for chunk in chunks:
            send(chunk)
    os.close(fd)
    pub.close()
    ctx.term()


def hb_relay(
    port: str, endpoint: str, n_ch: int, n_wl: int, running=lambda: not _Stop.flag
) -> None:
    """The least a pty → ``hb`` relay does: :func:`floor_relay`, plus per frame COBS
    decode, CRC check, header unpack, ΔOD against the first frame, one einsum, a msgpack
    header (seq, n, t, t_dev, dtype, shape) and the three-frame ``hb`` message ``hb-sub``
    reads as it reads nirsd's.  No range checks, ring, status, control or markers."""
    import binascii

    import msgpack
    import zmq
    from numpy._core._multiarray_umath import c_einsum

    from nirsd.drivers import nirsb

    ctx, pub, fd, poller = _relay_ends(port, endpoint)
    p3 = _fixed_coefficients(n_ch, n_wl)
    shape, length = (1, n_ch, n_wl), nirsb.DATA_OVERHEAD + 4 * n_ch * n_wl
    send, more, log_i0, data_type = pub.send, zmq.SNDMORE, None, nirsb.DATA
    crc, packb, unpack = binascii.crc_hqx, msgpack.packb, nirsb.HEADER.unpack_from
    for raw in _decoded(fd, poller, running):
        if len(raw) != length or crc(raw[:-2], 0xFFFF) != raw[-2] | (raw[-1] << 8):
            continue  # INFO, EVENT, or damaged
        ftype, _flags, seq, t_us = unpack(raw)
        if ftype != data_type:
            continue
        counts = np.ndarray(shape, "<i4", raw, 12)
        if log_i0 is None:
            log_i0 = np.log(counts, dtype="<f8")
        hb = c_einsum("cjw,ncw->njc", p3, log_i0 - np.log(counts, dtype="<f8"), order="C")
        head = {"seq": seq, "n": 1, "t": [time.time()], "t_dev": [t_us / 1e6]}
        head.update(dtype="<f8", shape=hb.shape)
        send(b"hb", more)
        send(packb(head), more)
        send(hb, 0)
    os.close(fd)
    pub.close()
    ctx.term()


def _decoded(fd: int, poller: Any, running) -> Any:
    """COBS-decoded frames from the port as they arrive (:func:`floor_relay`'s reading
    and splitting, then the decode; undecodable chunks skipped), until ``running()`` is
    false or the device side closes."""
    from cobs import cobs

    decode, pending = cobs.decode, b""
    while running():
        if not poller.poll(100):
            continue
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            continue
        except OSError:
            return  # the device side closed
        chunks = (pending + data if pending else data).split(b"\x00")
        pending = chunks.pop()
        for chunk in chunks:
            try:
                raw = decode(chunk)
            except cobs.DecodeError:
                continue
            yield raw


def wire_relay(
    port: str, endpoint: str, n_ch: int, n_wl: int, running=lambda: not _Stop.flag
) -> None:
    """The least relay that speaks nirsd's ``hb`` wire format: :func:`floor_relay`, plus
    per frame COBS decode, the header's seq and t_us, a msgpack header and the
    three-frame message, whose payload is the frame's counts as sent (no CRC, no
    conversion: what the wire contract costs with no work behind it)."""
    import msgpack
    import zmq

    from nirsd.drivers import nirsb

    ctx, pub, fd, poller = _relay_ends(port, endpoint)
    length, shape = nirsb.DATA_OVERHEAD + 4 * n_ch * n_wl, [1, n_ch, n_wl]
    send, more, packb, unpack = pub.send, zmq.SNDMORE, msgpack.packb, nirsb.HEADER.unpack_from
    for raw in _decoded(fd, poller, running):
        if len(raw) != length:
            continue  # INFO, EVENT
        _, _, seq, t_us = unpack(raw)
        head = {"seq": seq, "n": 1, "t": [time.time()], "t_dev": [t_us / 1e6]}
        head.update(dtype="<i4", shape=shape)
        send(b"hb", more)
        send(packb(head), more)
        send(raw[12:-2], 0)
    os.close(fd)
    pub.close()
    ctx.term()


def role_wire_relay(a: argparse.Namespace) -> None:
    wire_relay(a.port, a.data, a.channels, a.wavelengths)
    _save(a.out, [], [])


def _fixed_coefficients(n_ch: int, n_wl: int) -> np.ndarray:
    """(n_ch, 2, n_wl) ΔOD → ΔHbO/ΔHbR coefficients of made-up numbers (the cost of the
    einsum does not depend on them)."""
    ext = np.array([[1.5, 3.8], [1.1, 0.7]]) if n_wl == 2 else np.ones((2, n_wl))
    return np.broadcast_to(np.linalg.pinv(ext.T) / 30.0, (n_ch, 2, n_wl)).copy()


def role_hb_relay(a: argparse.Namespace) -> None:
    hb_relay(a.port, a.data, a.channels, a.wavelengths)
    _save(a.out, [], [])


def frame_index(chunks: list[bytes], rate_hz: float) -> np.ndarray:
    """Frame numbers (``round(t_us · rate / 1e6)``) of the DATA frames among COBS-encoded
    ``chunks``; -1 for anything else (INFO, EVENT, empty, undecodable)."""
    from nirsd.drivers import nirsb

    out = np.full(len(chunks), -1, np.int64)
    for i, chunk in enumerate(chunks):
        try:
            raw = nirsb.cobs.decode(chunk)
        except nirsb.cobs.DecodeError:
            continue
        if len(raw) >= nirsb.DATA_OVERHEAD and raw[0] == nirsb.DATA:
            t_us = nirsb.HEADER.unpack_from(raw)[3]
            out[i] = int(round(t_us * rate_hz / 1e6))
    return out


def role_floor_relay(a: argparse.Namespace) -> None:
    floor_relay(a.port, a.data)
    _save(a.out, [], [])


def role_frames_relay(a: argparse.Namespace) -> None:
    floor_relay(a.port, a.data, three_frames=True)
    _save(a.out, [], [])


def role_floor_sub(a: argparse.Namespace) -> None:
    """A bare SUB on the floor relay: ``recv``, stamp, keep the bytes (decoded after);
    on ``frames-relay``'s three-frame messages ``recv_multipart``, keeping the last."""
    import zmq

    ctx, sub = _subscriber(a.data, b"")
    chunks: list[bytes] = []
    ns: list[int] = []
    keep, keep_ns, stamp = chunks.append, ns.append, time.monotonic_ns
    if a.role == "frames-sub":

        def recv(_recv=sub.recv_multipart) -> bytes:
            return _recv()[-1]

    else:
        recv = sub.recv
    while not _Stop.flag:
        try:
            msg = recv()
        except zmq.Again:
            continue
        keep_ns(stamp())
        keep(msg)
        if len(ns) == 1:
            print("ready", flush=True)
    sub.close()
    ctx.term()
    idx = frame_index(chunks, a.rate)
    data = idx >= 0
    _save(a.out, [idx[data]], [np.array(ns, np.int64)[data]])


ROLES = {
    "hb-sub": role_hb_sub,
    "lsl-inlet": role_lsl_inlet,
    "serial-lsl": role_serial_lsl,
    "floor-relay": role_floor_relay,
    "floor-sub": role_floor_sub,
    "frames-relay": role_frames_relay,
    "frames-sub": role_floor_sub,
    "hb-relay": role_hb_relay,
    "wire-relay": role_wire_relay,
}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="benchmark helper roles")
    p.add_argument("role", choices=list(ROLES))
    p.add_argument("--out", required=True)
    p.add_argument("--data")
    p.add_argument("--control")
    p.add_argument("--rate", type=float, default=10.0)
    p.add_argument("--name")
    p.add_argument("--port")
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--wavelengths", type=int, default=2)
    a = p.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_term)
    ROLES[a.role](a)


if __name__ == "__main__":
    main()
