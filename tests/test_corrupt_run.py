"""60 s of simulated data at a 1 % byte error rate, fed to the parsers in random pieces.

Each byte is hit with probability 0.01 by one flipped bit (as ``Faults.corrupt_rate``
does).  A frame is *intact* when its bytes, its delimiter and the delimiter before it were
not hit.  NIRSB (CRC-16): every intact frame is delivered and no other.  HEG (no
checksum, only the ratio cross-check): every intact line is delivered, and a hit line
only gets through when the hit leaves it a well-formed, self-consistent line: a hit in
a low-order digit of red or infrared (relative error below 0.5 %) or anywhere in
``t_us``.  The fraction of such undetected corruptions is bounded and reported.
"""

from __future__ import annotations

import numpy as np

from nirsd.drivers import nirsb
from nirsd.drivers.base import Sample
from nirsd.drivers.heg import HegParser, format_line
from nirsd.drivers.sim.physiology import Physiology

BER = 0.01
SECONDS = 60.0


def corrupt(frames: list[bytes], rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    """Concatenate and flip bits; returns the bytes and, per frame, whether it is intact."""
    data = bytearray(b"".join(frames))
    hits = np.flatnonzero(rng.random(len(data)) < BER)
    for pos, bit in zip(hits, rng.integers(0, 8, hits.size)):
        data[pos] ^= 1 << int(bit)
    ends = np.cumsum([len(f) for f in frames])
    hit_frame = np.zeros(len(frames), bool)
    hit_frame[np.searchsorted(ends, hits, side="right")] = True
    # the delimiter before a frame is the last byte of the previous frame
    hit_delim = np.isin(ends - 1, hits)
    prev_delim = np.concatenate(([False], hit_delim[:-1]))
    return bytes(data), ~hit_frame & ~prev_delim


def feed_in_pieces(parser, data: bytes, rng: np.random.Generator) -> list:
    out, i = [], 0
    while i < len(data):
        n = int(rng.integers(1, 4096))
        out += parser.feed(data[i : i + n])
        i += n
    return out


def test_nirsb_every_intact_frame_and_no_corrupt_one():
    rate, n_ch = 250.0, 8
    n = int(SECONDS * rate)
    phys = Physiology(n_ch, (760.0, 850.0), rate, seed=3)
    counts = phys.counts(np.arange(n))
    frames = [nirsb.encode_data(k % 65536, round(k * 1e6 / rate), counts[k]) for k in range(n)]
    rng = np.random.default_rng(20240601)
    data, intact = corrupt(frames, rng)
    p = nirsb.NirsbParser()
    got = [f for f in feed_in_pieces(p, data, rng) if isinstance(f, Sample)]
    delivered = sorted(f.seq for f in got)
    expected = np.flatnonzero(intact) % 65536
    assert 0.3 < intact.mean() < 0.6  # the run really is hostile
    assert delivered == sorted(expected.tolist())
    for f in got:  # and every delivered value is what was sent
        k = int(round(f.t_dev * rate))
        assert k % 65536 == f.seq and np.array_equal(f.intensity, counts[k])
    c = p.counters
    assert c.frames_ok == len(got)
    assert c.crc_errors + c.length_errors + c.decode_errors > 0
    print(f"\nNIRSB: {n} frames, {len(got)} intact and delivered, counters {c.as_dict()}")


def test_heg_every_intact_line_and_few_undetected():
    rate = 100.0
    n = int(SECONDS * rate)
    phys = Physiology(1, (660.0, 880.0), rate, seed=4)
    counts = phys.counts(np.arange(n))
    t_us = [round(k * 1e6 / rate) for k in range(n)]
    lines = [
        format_line(t_us[k], int(counts[k, 0, 0]), int(counts[k, 0, 1]), 312, 64, 97)
        for k in range(n)
    ]
    rng = np.random.default_rng(20240602)
    data, intact = corrupt(lines, rng)
    p = HegParser(synced=True)
    got = feed_in_pieces(p, data, rng)
    by_value = {tuple(counts[k, 0].tolist()): k for k in range(n)}
    delivered_k, t_wrong, value_errors, prev = set(), 0, [], -1
    for smp in got:
        k = by_value.get(tuple(smp.intensity[0].tolist()))
        if k is None:  # the intensities were hit and still passed the ratio check
            k = prev + 1
            value_errors.append(float(np.max(np.abs(smp.intensity[0] / counts[k, 0] - 1))))
        elif smp.t_dev != t_us[k] / 1e6:
            t_wrong += 1  # a digit of t_us was hit: text has no checksum for it
        else:
            delivered_k.add(k)
        prev = k
    assert set(np.flatnonzero(intact).tolist()) <= delivered_k
    hit = n - int(intact.sum())
    print(
        f"\nHEG: {n} lines, {hit} hit; undetected: {len(value_errors)} with wrong "
        f"intensities (max relative error {max(value_errors, default=0):.2e}), "
        f"{t_wrong} with a wrong t_us; counters {p.counters.as_dict()}"
    )
    assert len(value_errors) < 0.05 * hit
    assert max(value_errors, default=0.0) < 5e-3  # only low-order digits slip through
    assert t_wrong < 0.1 * hit
