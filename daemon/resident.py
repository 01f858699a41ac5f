"""Memory made resident before the data path needs it.

A ring of hundreds of megabytes is allocated lazily by the kernel: each page is found
and zeroed on the first write into it, in the middle of a frame.  numpy asks for
transparent huge pages on large arrays, so such a first write zeroes 2 MB (and may wait
for compaction): measured on a 2-CPU VM at 256 x 2 @ 1 kHz, five loop turns per 1024 frames took
2-3.5 ms each, one for every 2 MB boundary the ring's raw and hb columns crossed, and
they were most of the p99.

:func:`make_resident` faults the pages in from a background thread with
``madvise(MADV_POPULATE_WRITE)`` (Linux >= 5.14): the kernel maps and zeroes missing
pages and leaves pages already written alone, so the loop can write into the same
arrays meanwhile.  ctypes drops the GIL for the call, and chunks of
:data:`CHUNK_BYTES` keep each call short.  Where the call is not available the pages
stay lazy, as before.  The memory a ring will hold once full is then held from the
start, so a box that cannot afford it finds out at start-up, not an hour into a session.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog

log = structlog.get_logger("nirsd.memory")

MADV_POPULATE_WRITE = 23  # linux/mman.h (5.14)
CHUNK_BYTES = 4 << 20  # one call's share: the loop's own page faults never wait long
PAGE = mmap.PAGESIZE


@dataclass
class Residency:
    """What :func:`make_resident` did: ``done`` is set when it has finished (or given up);
    ``error`` says why the pages stayed lazy, if they did."""

    total_bytes: int
    committed_bytes: int = 0
    seconds: float = 0.0
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)


def _madvise() -> Any:
    libc = ctypes.CDLL(None, use_errno=True)
    fn = libc.madvise
    fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    fn.restype = ctypes.c_int
    return fn


def _page_span(arr: np.ndarray) -> tuple[int, int]:
    """(first whole page, end of the last whole page) of ``arr``'s buffer: madvise wants
    page-aligned addresses; the partial pages at the ends fault in as usual."""
    start = arr.ctypes.data
    lo = -(-start // PAGE) * PAGE
    hi = (start + arr.nbytes) // PAGE * PAGE
    return lo, max(lo, hi)


def make_resident(arrays: Sequence[np.ndarray], what: str = "ring") -> Residency:
    """Fault ``arrays``' pages in from a background thread (see the module's doc).

    The thread holds the arrays weakly: memory dropped meanwhile (a pipeline rebuilt) is
    freed at once and the thread stops at its next chunk.
    """
    spans = [(weakref.ref(a), *_page_span(a)) for a in arrays if a.flags.c_contiguous]
    res = Residency(sum(hi - lo for _, lo, hi in spans))
    if res.total_bytes == 0:
        res.done.set()
        return res
    if not sys.platform.startswith("linux"):
        res.error = "not Linux"
        res.done.set()
        return res
    thread = threading.Thread(
        target=_populate, args=(spans, res, what), name=f"nirsd-resident-{what}", daemon=True
    )
    thread.start()
    return res


def _populate(spans: list, res: Residency, what: str) -> None:
    t0 = time.perf_counter()
    try:
        madvise = _madvise()
        for ref, lo, hi in spans:
            for at in range(lo, hi, CHUNK_BYTES):
                arr = ref()
                if arr is None:  # dropped: nothing more to do for it
                    break
                n = min(CHUNK_BYTES, hi - at)
                if madvise(at, n, MADV_POPULATE_WRITE) != 0:
                    e = ctypes.get_errno()
                    res.error = (
                        "kernel without MADV_POPULATE_WRITE"
                        if e in (errno.EINVAL, errno.ENOSYS)
                        else f"madvise: {errno.errorcode.get(e, e)}"
                    )
                    return
                res.committed_bytes += n
                del arr
    except (OSError, AttributeError) as exc:  # no libc madvise
        res.error = str(exc)
    finally:
        res.seconds = time.perf_counter() - t0
        mb = round(res.committed_bytes / 1e6, 1)
        if res.error is None:
            log.info("memory resident", what=what, mb=mb, seconds=round(res.seconds, 3))
        elif res.error.startswith("madvise"):  # e.g. ENOMEM: the box is short of memory
            log.warning("memory left lazy", what=what, mb=mb, reason=res.error)
        else:
            log.info("memory left lazy", what=what, mb=mb, reason=res.error)
        res.done.set()
