"""The lean per-frame path: one NIRSB DATA frame from ``os.read`` to its last ``send``.

A 10-100 Hz probe leaves the loop asleep between frames, so each frame runs on cold
caches and every Python call it makes shows in the latency.  The general path
(``DeviceLink.read`` → parser → ``Acquisition.handle_frames`` → ``Pipeline.ingest`` →
``Publisher.publish_block`` → ring, markers, sessions) is about a hundred calls; this
one does the same work for the common case in about twenty (about ten with the compiled
kernel of daemon/kernel.py, which decodes, checks and converts a frame in one call,
sends its ``hb`` message in another and stores its ring row in a third), with everything
that does not change between frames prepared once per pipeline: the converter's matrices
and ln I0, the quality bytes, the header constants, the ring's columns.

The common case is: the port has a descriptor, the device streams and is described, I0
is fixed, the read brought exactly one whole DATA frame that continues the device
counter (or the middle of one, which is kept for it as the parser would), every
intensity is good light, the device did not flag saturation, no marker is pending and no
protocol, epoch summary or session needs the sample, and the probe has no multi-distance
(TSI) groups. Anything else goes to the general path, unchanged; the messages, the ring
and every counter come out the same either way
(``tests/test_fastpath.py`` compares them byte for byte).
"""

from __future__ import annotations

import gc
import os
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from nirsd.drivers.base import FLAG_SATURATED, Sample
from nirsd.drivers.nirsb import MAX_PENDING, NirsbParser
from nirsd.drivers.transport import READ_CHUNK

from . import kernel
from .converter import _c_einsum
from .device import NOTHING, PORT_LOST, STREAMING, LinkEvent
from .lean_messages import hb_head, publish
from .publisher import COPY_LIMIT
from .ringbuffer import NO_EPOCH

if TYPE_CHECKING:
    from .acquisition import Acquisition
    from .pipeline import Pipeline

_DELIMITER = b"\x00"  # NIRSB frames end with it (COBS)
_I4 = np.dtype("<i4")
_F8 = np.dtype("<f8")
#: what a turn did when it handled frames (besides the link's NOTHING and PORT_LOST)
HANDLED = LinkEvent("handled")


class Prepared:
    """What one pipeline's lean frames share, computed once (rebuilt with the pipeline)."""

    def __init__(self, p: Pipeline, pub: Any) -> None:
        n_ch, n_wl = p.shape
        self.pipeline = p
        self.length, self.head = NirsbParser.data_head(n_ch, n_wl)
        self.shape = (1, n_ch, n_wl)
        self.conv = p.converter
        self.ring = p.ring
        self.hb_shape = [1, 3, n_ch]
        self.raw_shape = [1, n_ch, n_wl]
        self.saturation = p.converter.saturation_level is not None  # else no int reaches _hi
        self.hb_copy = 3 * n_ch * 8 < COPY_LIMIT
        self.raw_copy = n_ch * n_wl * 8 < COPY_LIMIT
        self.poor: np.ndarray | None = None  # the pipeline's POOR/MOTION bits, as last seen
        self.quality = bytes(n_ch)
        self.quality_row = np.zeros(n_ch, np.uint8)
        self.log_i0 = p.converter._log_i0  # the I0 these were made for (a new one: again)
        self.od = np.empty(self.shape)  # the compiled kernel's ΔOD of the last frame
        self.kernel = (
            kernel.frame_kernel(self.length, self.head, p.converter, self.od, p.ring)
            if kernel.enabled
            else None
        )
        # the kernel sends the hb message itself (no Python between its frames)
        self.sends_hb = self.kernel is not None and kernel.hb_sender(
            self.kernel, pub.sock, hb_head(pub, self, 0, 0.0, 0.0, None, 0)
        )

    def set_poor(self, poor: np.ndarray, any_poor: bool) -> None:
        """Take a new quality assessment: a clean sample's quality is its bits."""
        self.poor = poor
        n_ch = self.shape[1]
        row = poor.astype(np.uint8) if any_poor else np.zeros(n_ch, np.uint8)
        self.quality_row, self.quality = row, row.tobytes()


class LeanPath:
    """The frame dispatch of the acquisition loop: the lean path when it applies, else
    the general one."""

    def __init__(self, acq: Acquisition) -> None:
        self.acq = acq
        # NIRSD_LEAN=0 leaves every frame to the general path (to compare the two)
        self.enabled = _c_einsum is not None and os.environ.get("NIRSD_LEAN") != "0"
        self.now = time.time  # the arrival stamp (one per read); tests fix it
        self.frames = 0  # frames that took the lean path (for tests and benchmarks)
        self.partial_reads = 0  # reads of a frame's middle kept by the lean path
        self._prep: Prepared | None = None
        self._subs = -1  # publisher.subscriptions_version the wants below are for
        self._want = (False, False, False)

    # -- the general path --------------------------------------------------------------
    def general(self, data: bytes | None = None) -> Any:
        """Read (or take ``data``), parse and handle frames as the loop always did:
        ``HANDLED``, ``NOTHING`` or ``PORT_LOST`` (the loop then says disconnected)."""
        acq = self.acq
        got = acq.guard.run("read", acq.device.read, data)
        if got is PORT_LOST:
            return PORT_LOST
        if got is NOTHING or got is None:
            return NOTHING
        acq.guard.run("frames", acq.handle_frames, got, self.now())
        return HANDLED

    def _can(self) -> bool:
        """Whether the state allows a lean frame (checked before reading)."""
        acq = self.acq
        dev, st, p, m = acq.device, acq.stream, acq.pipeline, acq.markers
        return (
            self.enabled
            and p is not None
            and type(dev.parser) is NirsbParser
            and dev.state == STREAMING
            and acq.ready_sent
            and st.disconnected_at is None
            and st._rate_t0 is not None
            and not dev._clock_reset
            and not dev._flagged
            and not acq._computes
            and p.converter._all_done
            and not p.srs
            and p.tagger == m.tag
            and not m.pending  # the marker channel has nothing to apply or publish
            and not m.outbox
            and m.runner.protocol is None
            and not m.epochs.closed
            and not m.summaries.provisional
            and acq.sessions.current is None
            and acq.extensions == [m, acq.sessions]
        )

    # -- one turn ------------------------------------------------------------------------
    def turn(self, woke: float) -> Any:
        """Handle what the port has; ``woke``: monotonic s the loop woke.  ``HANDLED``
        when frames were (periodic status then waits for them to leave), else
        ``NOTHING``, or ``PORT_LOST``."""
        acq = self.acq
        try:
            p, fd = acq.pipeline, acq.device.transport._fd
            if p is None or fd is None or not self._can():
                return self.general()
            try:
                data = os.read(fd, READ_CHUNK)
            except OSError:  # nothing was read: the general path reads and reports it
                return self.general()
            if data and _DELIMITER not in data:  # the middle of a frame (a large probe's)
                return self._partial(data)
            old = self._prep
            fresh = old is None or old.pipeline is not p or old.log_i0 is not p.converter._log_i0
            prep = self._prep = Prepared(p, acq.publisher) if fresh or old is None else old
            if prep.kernel is not None:
                return self._frame_compiled(p, prep, data, woke, fresh)
            return self._frame(p, prep, data, woke, fresh)
        except Exception as err:  # as the general path's guard: counted, never fatal
            acq.guard.note("frames", err)
            return NOTHING

    def _partial(self, data: bytes) -> Any:
        """Bytes without a frame's end: kept for the frame as ``NirsbParser.feed`` keeps
        them, counted as ``DeviceLink.read`` counts a read without frames (a 4096 x 2
        frame comes in about eight reads; each took the general path's hundred calls,
        and the writer waited for them)."""
        dev = self.acq.device
        parser: Any = dev.parser  # a NirsbParser (_can)
        if parser._skipping or len(parser._pending) + len(data) > MAX_PENDING:
            return self.general(data)
        parser._pending += data
        self.partial_reads += 1
        dev._empty_reads = 0
        dev._check_protocol(len(data), False)
        return NOTHING

    def _frame(self, p: Pipeline, prep: Prepared, data: bytes, woke: float, fresh: bool) -> Any:
        """The lean frame with numpy (where the compiled kernel was not built)."""
        acq, dev = self.acq, self.acq.device
        parser: Any = dev.parser  # a NirsbParser (_can)
        got = parser.feed_one(data, prep.length, prep.head)
        if got is None:
            return self.general(data)
        arrival = self.now()
        # what DeviceLink.read does after a read that brought a frame
        dev._empty_reads = dev._bytes_no_frame = 0
        dev._no_frame_since = woke
        seq, flags, t_us, raw = got
        # the counts as sent (int32, exact in float64): their float copy for the ring and
        # the raw topic is made after the hb send
        values = np.ndarray(prep.shape, _I4, raw, 12)
        conv = prep.conv
        if (
            flags & FLAG_SATURATED
            or not conv._lo < _MIN(values, None)
            or (prep.saturation and not _MAX(values, None) < conv._hi)
        ):  # the general path checks each value (and the clock sees the sample there)
            sample = Sample(seq, t_us / 1e6, flags, values[0].astype(_F8))
            acq.guard.run("frames", acq.handle_frames, [sample], arrival)
            return HANDLED
        t_dev, t = p.clock.host_one(t_us / 1e6, arrival)
        od = conv._log_i0 - np.log(values, dtype=_F8)
        hb = _c_einsum("cjw,ncw->njc", conv._P3, od, order="C")  # C order: the wire's
        conv._last_od = od
        return self._emit(p, prep, t, t_dev, flags, raw, hb, od, values, fresh)

    def _frame_compiled(
        self, p: Pipeline, prep: Prepared, data: bytes, woke: float, fresh: bool
    ) -> Any:
        """The lean frame with the compiled kernel: ``NirsbParser.feed_one``, the range
        checks, ΔOD and ΔHb in one call, the ring row in another."""
        acq, dev = self.acq, self.acq.device
        parser: Any = dev.parser  # a NirsbParser (_can): feed_one's preconditions
        last = parser._last_seq
        if parser._skipping or parser._before_back is not None or last is None:
            return self.general(data)
        got = prep.kernel.frame(parser._pending, data, last)  # type: ignore[union-attr]
        if got is None:
            return self.general(data)
        arrival = self.now()
        seq, flags, t_us, raw, hb = got
        parser._last_seq = seq  # what feed_one counts: nothing lost, nothing pending
        parser._pending = b""
        parser.counters.frames_ok += 1
        dev._empty_reads = dev._bytes_no_frame = 0  # as DeviceLink.read after a frame
        dev._no_frame_since = woke
        if hb is None:  # the device's saturation flag or bad light: per-value checks
            values = np.ndarray(prep.shape, _I4, raw, 12)
            sample = Sample(seq, t_us / 1e6, flags, values[0].astype(_F8))
            acq.guard.run("frames", acq.handle_frames, [sample], arrival)
            return HANDLED
        t_dev, t = p.clock.host_one(t_us / 1e6, arrival)
        return self._emit(p, prep, t, t_dev, flags, raw, hb, prep.od, None, fresh)

    def _emit(
        self,
        p: Pipeline,
        prep: Prepared,
        t: float,
        t_dev: float,
        flags: int,
        raw: bytes,
        hb: Any,
        od: np.ndarray,
        values: np.ndarray | None,
        fresh: bool,
    ) -> Any:
        """A converted lean sample: its epoch, its messages, its ring row (the compiled
        kernel's when ``values`` is None), the stream's accounting."""
        acq = self.acq
        if p._poor is not prep.poor:  # a new quality assessment: its bits, once
            prep.set_poor(p._poor, p._any_poor)
        ep = acq.markers.epochs  # EpochTracker.current(), inline
        epoch = ep.index[ep.open[-1].label] if ep.open else NO_EPOCH
        pub = acq.publisher
        label = pub.labels[epoch] if epoch != NO_EPOCH else None
        ring = prep.ring
        head = ring.head
        if pub.subscriptions_version != self._subs:
            self._subs = pub.subscriptions_version
            self._want = (pub.wants("hb"), pub.wants("raw"), pub.publish_od and pub.wants("od"))
        publish(self._want, pub, prep, head, t, t_dev, label, flags, raw, hb, od)
        if values is None:
            prep.kernel.store(head, t, t_dev, flags, epoch, prep.quality, hb)  # type: ignore[union-attr]
        else:
            self._store(ring, head, t, t_dev, values, hb, prep.quality_row, flags, epoch)
        ring.head = head + 1
        if ring.head - p._quality_seq >= p._quality_every:
            p._feed_quality(whole_buckets=True)
        st = self.acq.stream  # StreamAccounting.note_block without an outage
        st._rate_n += 1
        st._last_t = t
        st.next_seq = head + 1
        self.frames += 1
        if fresh:  # set up for good: what exists now leaves the collector's view (once
            # per pipeline, after its first frame left), so collections stay short
            gc.collect()
            gc.freeze()
        return HANDLED

    @staticmethod
    def _store(
        ring: Any,
        head: int,
        t: float,
        t_dev: float,
        values: np.ndarray,
        hb: np.ndarray,
        quality: np.ndarray,
        flags: int,
        epoch: int,
    ) -> None:
        """``Pipeline.store`` of one sample: ``RingBuffer.append`` by index."""
        i = head % ring.capacity
        ring._t[i] = t
        ring._t_dev[i] = t_dev
        ring._raw[i] = values[0]  # int32 counts, exact as float64
        ring._hb[i] = hb[0]
        ring._quality[i] = quality
        ring._flags[i] = flags
        ring._epoch[i] = epoch


_MIN, _MAX = np.minimum.reduce, np.maximum.reduce
