"""The compiled per-frame kernel (daemon/_lean.c), where the install could build it.

``pip install`` compiles it when a C compiler and the Python headers are there; without
them the install goes on and nirsd does the same work with numpy (a few hundred µs more
per frame on a small machine, the same science).  ``NIRSD_KERNEL=0`` turns it off.

While :data:`enabled`, the lean path's clean frames and the converter's small clean
blocks both go through the kernel's one conversion routine, so a sample's ΔHb has the
same bits whichever path took it.  The kernel takes logarithms from the C library and
numpy from its own SIMD code: the two differ in the last bit or so, far below any
physical meaning, and the same build always gives the same numbers.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import numpy as np


def _load() -> Any:
    try:
        return importlib.import_module("nirsd.daemon._lean")
    except ImportError:  # not built (no compiler at install time): the numpy path
        return None


_lean: Any = _load()

#: whether the compiled kernel is in use (tests and benchmarks may switch it)
enabled: bool = _lean is not None and os.environ.get("NIRSD_KERNEL") != "0"


def built() -> bool:
    """Whether the install built the kernel."""
    return _lean is not None


def mbll(
    log_i0: np.ndarray, p3: np.ndarray, intensity: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(ΔOD (n, n_ch, n_wl), [ΔHbO, ΔHbR, ΔHbT] (n, 3, n_ch)) of clean intensities
    (n, n_ch, n_wl) against ln I0 (n_ch, n_wl), with coefficients (n_ch, 3, n_wl)."""
    n, n_ch, n_wl = intensity.shape
    od = np.empty((n, n_ch, n_wl))
    hb = np.empty((n, 3, n_ch))
    _lean.convert(log_i0, p3, np.ascontiguousarray(intensity), od, hb, n, n_ch, n_wl)
    return od, hb


def frame_kernel(length: int, head: bytes, conv: Any, od: np.ndarray, ring: Any) -> Any:
    """A ``_lean.Kernel`` for one pipeline: frames of ``length`` decoded bytes with DATA
    header ``head``, the converter's I0 and coefficients, ΔOD into ``od``, rows into the
    ring's columns."""
    n_ch, n_wl = conv.n_channels, conv.n_wavelengths
    hi = conv._hi if conv.saturation_level is not None else 0.0
    return _lean.Kernel(
        length,
        head,
        float(conv._lo),
        float(hi),
        conv.saturation_level is not None,
        conv._log_i0,
        conv._P3,
        od,
        ring.capacity,
        n_ch,
        n_wl,
        ring._t,
        ring._t_dev,
        ring._raw,
        ring._hb,
        ring._quality,
        ring._flags,
        ring._epoch,
    )


#: the per-frame fields of an hb header, in the order the kernel writes them
HB_PER_FRAME = ("seq", "t", "t_dev", "epoch", "msg", "quality")
_ONE_ITEM = ("t", "t_dev", "epoch")  # sent as one-element lists


def hb_segments(head: dict[str, Any]) -> tuple[bytes, ...]:
    """The fixed parts of ``head`` (an hb header as the lean path builds it, keys in its
    order) between its per-frame fields, packed as :func:`nirsd.daemon.wire.pack` packs
    them; the kernel writes the per-frame fields between them."""
    import msgpack

    if tuple(k for k in head if k in HB_PER_FRAME) != HB_PER_FRAME:
        raise ValueError(f"an hb header with its per-frame fields in another order: {head}")
    pk = msgpack.Packer(use_bin_type=True)
    segments, part = [], pk.pack_map_header(len(head))
    for key, value in head.items():
        part += pk.pack(key)
        if key in HB_PER_FRAME:
            if key in _ONE_ITEM:
                part += pk.pack_array_header(1)
            segments.append(part)
            part = b""
        else:
            part += pk.pack(value)
    segments.append(part)
    return tuple(segments)


def _libzmq_send() -> int | None:
    """The address of ``zmq_send`` in the libzmq pyzmq loaded (the same library its
    sockets live in), or None where it cannot be found."""
    import ctypes

    import zmq  # noqa: F401  (importing pyzmq's backend loads libzmq)

    try:
        with open("/proc/self/maps") as maps:
            paths = {ln.split()[-1] for ln in maps if "libzmq" in ln and "/" in ln}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            fn = ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL).zmq_send
        except (OSError, AttributeError):
            continue
        return ctypes.cast(fn, ctypes.c_void_p).value
    return None


_ZMQ_SEND: int | None | bool = False  # looked up on first use


def hb_sender(kern: Any, sock: Any, head: dict[str, Any]) -> bool:
    """Have ``kern`` send hb messages on ``sock`` (a pyzmq socket) with headers laid out
    as ``head``: one call per sample, no Python between its three frames.  False (and
    the lean path sends from Python) where libzmq's ``zmq_send`` cannot be reached or
    ``NIRSD_KERNEL_SEND=0``.  The kernel keeps the socket's address: the socket must
    outlive it (the publisher's closes only after the loop, and its frames, ended)."""
    global _ZMQ_SEND
    if os.environ.get("NIRSD_KERNEL_SEND") == "0":
        return False
    if _ZMQ_SEND is False:
        _ZMQ_SEND = _libzmq_send()
    if not _ZMQ_SEND:
        return False
    kern.sender(_ZMQ_SEND, sock.underlying, hb_segments(head))
    return True
