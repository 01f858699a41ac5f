"""The five fault kinds an emulated device can inject, and when the timed ones are due.

Byte faults (:func:`corrupt`, :func:`garbage`) change what is written; frame drops are
decided per sample by the emulator; stalls and unplugs are timed by :class:`FaultClock`
and acted on by the transport.  Every random choice comes from one generator seeded by
``Faults.seed``, so a run with faults is repeatable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Faults:
    """Fault injection.  Rates are probabilities, periods and durations in seconds.

    corrupt_rate: per byte written, probability of flipping one random bit.
    drop_rate: probability a DATA frame is not sent (its seq is consumed all the same).
    garbage_every_s: while streaming, every N s write a burst of 1..garbage_max random
        bytes ended by 0x00 (so only the garbage is lost, not the next frame); 0 = off.
    stall_every_s, stall_s: while streaming, every N s stop writing for stall_s; the
        samples keep being produced and come out in a burst afterwards.
    unplug_every_s, unplug_s: every N s close the pty (the host sees a hang-up), remove
        the link, and after unplug_s open a new pty and re-point the link: a power-cycled
        probe (streaming off unless autostart, frame counter and clock restarted).
    seed: seeds every random choice above.
    """

    corrupt_rate: float = 0.0
    drop_rate: float = 0.0
    garbage_every_s: float = 0.0
    garbage_max: int = 64
    stall_every_s: float = 0.0
    stall_s: float = 0.0
    unplug_every_s: float = 0.0
    unplug_s: float = 0.0
    seed: int = 0


def corrupt(wire: bytes, rate: float, rng: np.random.Generator) -> bytes:
    """``wire`` with each byte's one random bit flipped with probability ``rate``."""
    if rate <= 0:
        return wire
    flips = int(rng.binomial(len(wire), rate))
    if not flips:
        return wire
    buf = bytearray(wire)
    for pos, bit in zip(rng.integers(0, len(buf), flips), rng.integers(0, 8, flips)):
        buf[pos] ^= 1 << int(bit)
    return bytes(buf)


def garbage(rng: np.random.Generator, most: int, end: bytes) -> bytes:
    """1..``most`` random bytes followed by ``end`` (what makes the parser resync)."""
    n = int(rng.integers(1, max(2, most + 1)))
    return rng.bytes(n) + end


class FaultClock:
    """When the timed faults (garbage bursts, stalls, unplugs) are next due."""

    def __init__(self, faults: Faults, now: float) -> None:
        f = self.faults = faults
        self.next_garbage = now + f.garbage_every_s if f.garbage_every_s > 0 else None
        self.next_stall = now + f.stall_every_s if f.stall_every_s > 0 and f.stall_s > 0 else None
        self.next_unplug = now + f.unplug_every_s if f.unplug_every_s > 0 else None
        self.stall_until = 0.0

    def stalled(self, now: float) -> bool:
        return now < self.stall_until

    def unplug_due(self, now: float) -> bool:
        return self.next_unplug is not None and now >= self.next_unplug

    def replugged(self, now: float) -> None:
        """Periodic unplugs count from the moment the device is back."""
        if self.faults.unplug_every_s > 0:
            self.next_unplug = now + self.faults.unplug_every_s

    def streaming_tick(self, now: float) -> bool:
        """Start a stall if one is due; True when a garbage burst is due now."""
        if self.next_stall is not None and now >= self.next_stall:
            self.stall_until = now + self.faults.stall_s
            self.next_stall = now + self.faults.stall_every_s
        if self.next_garbage is not None and now >= self.next_garbage:
            self.next_garbage = now + self.faults.garbage_every_s
            return True
        return False
