"""Ring buffer: absolute indices, wrap-around, readers that fall behind."""

from __future__ import annotations

import numpy as np
import pytest

from nirsd.daemon.ringbuffer import NO_EPOCH, Block, RingBuffer


def _block(seq: int, n: int, n_ch: int = 3, n_wl: int = 2) -> Block:
    k = np.arange(seq, seq + n, dtype=float)
    return Block(
        seq,
        k * 0.1,
        k,
        np.broadcast_to(k[:, None, None], (n, n_ch, n_wl)).copy(),
        np.broadcast_to(-k[:, None, None], (n, 3, n_ch)).copy(),
        np.zeros((n, n_ch), np.uint8),
        np.zeros(n, np.uint8),
        np.full(n, NO_EPOCH, np.int16),
    )


def test_read_since_across_the_wrap():
    ring = RingBuffer(10, 3, 2)
    for seq in range(0, 25, 5):
        ring.append(_block(seq, 5))
    assert ring.head == 25 and ring.oldest == 15
    block, missed = ring.read(17)
    assert missed == 0
    assert block.seq == 17 and block.n == 8
    np.testing.assert_array_equal(block.raw[:, 0, 0], np.arange(17, 25))
    np.testing.assert_array_equal(block.hb[:, 0, 0], -np.arange(17, 25))


def test_reader_that_fell_behind_learns_how_much():
    ring = RingBuffer(10, 3, 2)
    ring.append(_block(0, 30))  # bigger than the ring: only the newest 10 kept
    block, missed = ring.read(12)
    assert (block.seq, block.n, missed) == (20, 10, 8)
    np.testing.assert_array_equal(block.t_dev, np.arange(20, 30))


def test_append_must_continue_the_sequence():
    ring = RingBuffer(4, 1, 2)
    ring.append(_block(0, 2, 1))
    with pytest.raises(ValueError):
        ring.append(_block(5, 1, 1))


def test_reads_are_copies_and_retag_works():
    ring = RingBuffer(8, 1, 2)
    ring.append(_block(0, 6, 1))
    block, _ = ring.read(0)
    block.raw[:] = -1
    ring.set_epoch(2, 5, 1)
    again, _ = ring.read(0)
    assert again.raw[0, 0, 0] == 0
    assert again.epoch.tolist() == [NO_EPOCH, NO_EPOCH, 1, 1, 1, NO_EPOCH]
    empty, missed = ring.read(6)
    assert empty.n == 0 and missed == 0


def test_a_ring_started_mid_stream_holds_nothing_before_its_start():
    ring = RingBuffer(16, 3, 2, first_seq=100)
    assert ring.oldest == 100
    ring.append(_block(100, 5))
    block, missed = ring.read(90)
    assert (block.seq, block.n, missed) == (100, 5, 10)
    np.testing.assert_array_equal(block.t_dev, np.arange(100, 105))
