"""The wire end of an emulated device: a pty pair, the link to it, the output queue.

The host opens the slave path (or the ``link`` symlink) like any serial port; the
device writes to the non-blocking master.  :meth:`PtyLink.plug` opens a new pair and
points the link at it atomically; :meth:`PtyLink.unplug` closes both ends (the host sees
a hang-up) and removes the link if it still points at this pair.

Full pty buffer: bytes that cannot be written yet wait in an output queue bounded by
``queue_limit`` bytes; a frame that would not fit is discarded whole (as a probe with a
full transmit FIFO loses samples) and counted in ``overflow_frames`` /
``overflow_bytes``.
"""

from __future__ import annotations

import os
import time
import tty
from collections.abc import Callable

import numpy as np

from .faults import corrupt

#: ``on_write(frame index, monotonic ns)``: a frame was handed to the pty
WriteHook = Callable[[int, int], None]


class PtyLink:
    """One pty pair at a time behind an optional symlink, with a bounded output queue."""

    def __init__(self, link: str | None, queue_limit: int, rng: np.random.Generator) -> None:
        self.link = link
        self.queue_limit = queue_limit
        self.corrupt_rate = 0.0
        #: called with (frame index, time.monotonic_ns()) as each sample frame is queued;
        #: it is written in the same loop pass unless the pty is full or stalled, so a
        #: reader's back-pressure counts from this time
        self.on_write: WriteHook | None = None
        self.overflow_frames = 0
        self.overflow_bytes = 0
        self.bytes_written = 0
        self.master = self._slave = -1
        self.port: str | None = None
        self._rng = rng
        self._made_link = False
        self._out = bytearray()

    def plug(self) -> str:
        """Open a new pty pair, point the link at it; returns the slave path."""
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline: bytes pass unchanged
        os.set_blocking(master, False)
        self.master, self._slave = master, slave
        port = self.port = os.ttyname(slave)  # the slave fd stays open so the pty persists
        self._out.clear()
        if self.link:
            tmp = f"{self.link}.{os.getpid()}.tmp"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(port, tmp)
            os.replace(tmp, self.link)  # atomic, also over an existing symlink
            self._made_link = True
        return port

    def unplug(self) -> None:
        """Close the pair and remove the link this emulator made (if still ours)."""
        if self._made_link and self.link and os.path.islink(self.link):
            try:
                if os.readlink(self.link) == self.port:
                    os.unlink(self.link)
            except OSError:
                pass
        self._made_link = False
        for fd in (self.master, self._slave):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.master = self._slave = -1
        self.port = None

    @property
    def pending(self) -> bool:
        """Bytes are waiting to be written."""
        return bool(self._out)

    def queue(self, wire: bytes, frame: int | None = None) -> bool:
        """Append bytes (corrupted if asked); False if the queue would overflow.

        ``frame``: the sample index when ``wire`` is a sample frame (for ``on_write``).
        """
        if len(self._out) + len(wire) > self.queue_limit:
            self.overflow_frames += 1
            self.overflow_bytes += len(wire)
            return False
        if frame is not None and self.on_write is not None:
            self.on_write(frame, time.monotonic_ns())
        self._out += corrupt(wire, self.corrupt_rate, self._rng)
        return True

    def flush(self) -> None:
        """Write as much of the queue as the pty takes now."""
        try:
            n = os.write(self.master, self._out)
        except OSError:  # full (BlockingIOError), interrupted, or no reader side
            return
        self.bytes_written += n
        del self._out[:n]

    def read(self) -> bytes:
        """Host command bytes waiting on the master (b"" if none or no reader)."""
        try:
            return os.read(self.master, 4096)
        except OSError:  # nothing yet (BlockingIOError) or EIO: no reader side
            return b""
