"""The ring's memory is made resident in the background, contents untouched."""

from __future__ import annotations

import ctypes
import gc
import mmap
import sys

import numpy as np
import pytest

from nirsd.daemon.resident import CHUNK_BYTES, make_resident

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux madvise")


def _resident_pages(arr: np.ndarray) -> tuple[int, int]:
    """(pages of ``arr``'s whole-page span in memory, pages in it), from mincore(2)."""
    page = mmap.PAGESIZE
    lo = -(-arr.ctypes.data // page) * page
    hi = (arr.ctypes.data + arr.nbytes) // page * page
    n = (hi - lo) // page
    vec = (ctypes.c_ubyte * n)()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
    assert libc.mincore(lo, hi - lo, vec) == 0, ctypes.get_errno()
    return sum(v & 1 for v in vec), n


def test_pages_fault_in_and_values_stay():
    a = np.zeros(48 << 17)  # 48 MB: a fresh mapping, nothing touched yet
    before, n = _resident_pages(a)
    assert before < n // 10
    a[:1000] = 7.0
    res = make_resident([a, np.zeros(3)])
    a[1000:2000] = 3.0  # the loop keeps writing meanwhile
    assert res.wait(30)
    if res.error == "kernel without MADV_POPULATE_WRITE":
        pytest.skip(res.error)
    assert res.error is None
    assert res.committed_bytes == res.total_bytes >= a.nbytes - 2 * mmap.PAGESIZE
    after, n = _resident_pages(a)
    assert after == n
    assert (a[:1000] == 7.0).all() and (a[1000:2000] == 3.0).all() and not a[2000:].any()


def test_dropped_memory_stops_the_thread():
    a = np.zeros(16 * CHUNK_BYTES // 8)
    res = make_resident([a])
    del a
    gc.collect()
    assert res.wait(30)
    assert res.error is None or "POPULATE" in res.error
    assert res.committed_bytes <= res.total_bytes


def test_nothing_to_do_needs_no_thread():
    res = make_resident([np.zeros(4)])
    assert res.done.is_set() and res.total_bytes == 0 and res.error is None


def test_a_pipelines_ring_is_made_resident():
    from nirsd.daemon.config import Config
    from nirsd.daemon.pipeline import Pipeline
    from nirsd.drivers.base import Info
    from nirsd.drivers.nirsb import NirsbParser

    info = Info(1, 64, (760.0, 850.0), 100.0, "resident-test")
    p = Pipeline(Config(), info, NirsbParser)
    assert p.resident.wait(30)
    if p.resident.error == "kernel without MADV_POPULATE_WRITE":
        pytest.skip(p.resident.error)
    assert p.resident.error is None
    big = max(p.ring.arrays, key=lambda x: x.nbytes)
    assert big.nbytes > 50e6  # 600 s of 64 x 2 at 100 Hz
    after, n = _resident_pages(big)
    assert after == n
    assert p.resident.committed_bytes == p.resident.total_bytes
