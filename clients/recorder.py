"""The SNIRF recorder: history first, then live data, into a crash-safe file.

The recorder asks the daemon for its probe (``info``), subscribes to ``raw``, ``hb``,
``marker``, ``epoch`` and ``status``, and reads them through
:meth:`Subscriber.backfilled <nirsd.clients.subscriber.Subscriber.backfilled>`:
everything the ring buffer still holds up to the first live sample (``history``), then
live data, with gaps filled from ``history`` where the ring still has them.  It stops
at a daemon restart (a new ``stream``): the file ends where the old stream ended, since
its sample index, baseline and probe belong to one stream.  Rows are written when
both ``raw`` and ``hb`` hold a sample index; every ``FLUSH_S`` seconds the pending rows
are appended and the file flushed, so a killed recorder loses at most that much.

Gaps (sample indices that neither PUB nor ``history`` could deliver) are counted,
logged and recorded in the journal; samples are never invented.  Markers, epoch
summaries, epoch-label runs and gaps go to a JSON-lines journal beside the file
(``FILE.snirf.journal.jsonl``, :mod:`~nirsd.clients.recorder_journal`), flushed before
the SNIRF file, from which the stims are computed (and recomputed by
:func:`~nirsd.clients.recorder_journal.recover_file`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from nirsd.core.errors import NirsdError
from nirsd.daemon.wire import Message

from . import snirf_conversion, snirf_hb, snirf_writer
from .recorder_journal import Journal, journal_path, read_journal, recover_file
from .snirf_stims import intervals, stim_rows
from .subscriber import Subscriber

# re-exported: callers read journals and recover files through nirsd.clients.recorder
__all__ = [
    "Recorder",
    "Stats",
    "intervals",
    "journal_path",
    "read_journal",
    "recover_file",
    "stim_rows",
]

log = structlog.get_logger("nirsd.record")

FLUSH_S = 0.5
IDLE_S = 0.1  # longest wait for a message before checking stop, duration, flush
ASK_EVERY_S = 1.0  # how often the daemon is asked for the I0 of a window begun earlier
ASK_TIMEOUT_S = 1.0  # and how long such a question may take
TOPICS = ("raw", "hb", "marker", "epoch", "status")


# -- recording ------------------------------------------------------------------------


class DiskFull(NirsdError):
    """The file system (or RLIMIT_FSIZE) has no room for the next flush."""


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    samples: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    gaps: int = 0
    lost_samples: int = 0
    device_lost: int = 0
    markers: int = 0
    epochs: int = 0
    size_bytes: int = 0
    backfilled: int = 0

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "started"}
        d["elapsed_s"] = round(time.monotonic() - self.started, 3)
        return d


class Recorder:
    """Record one daemon stream into ``path`` until stopped, the duration ends or the
    stream changes (daemon restart).  ``stop()`` may be called from a signal handler."""

    def __init__(
        self,
        path: str | Path,
        sub: Subscriber,
        meta: snirf_writer.Meta,
        duration_s: float | None = None,
        backfill_s: float | None = None,
        progress: Callable[[Stats], None] | None = None,
        timeout_s: float = 10.0,
        hb_file: bool = False,
    ) -> None:
        """``hb_file``: also write the hemoglobin SNIRF ``FILE_hb.snirf`` at the end
        (``nirsd record`` does; off by default so that callers writing a dataset of
        their own layout, such as BIDS, get no extra file)."""
        self.path = Path(path)
        self.sub = sub
        self.meta = meta
        self.duration_s = duration_s
        self.backfill_s = backfill_s
        self.progress = progress
        self.timeout_s = timeout_s
        self.hb_file = hb_file
        self.stats = Stats()
        self.events: list[dict[str, Any]] = []  # the journal's, in memory
        self.stop_reason: str | None = None
        self._stop = False
        self._pending: dict[str, list[Message]] = {"raw": [], "hb": []}
        self._expected: dict[str, int] = {}
        self._label: Any = ()  # label of the current run; () = none seen yet
        self._live = False  # a live (not history) sample message has arrived
        self._dirty = False
        self._window_at: int | None = None  # a baseline window not yet placed on a row
        self._asked_at = -math.inf  # when the daemon was last asked for a window's I0
        self.writer: snirf_writer.SnirfWriter | None = None
        self._journal: Journal | None = None

    def stop(self, reason: str = "stopped") -> None:
        self._stop = True
        self.stop_reason = self.stop_reason or reason

    @property
    def _snirf(self) -> snirf_writer.SnirfWriter:
        """The open SNIRF writer; only used after ``_open`` (None there is a bug)."""
        if self.writer is None:
            raise RuntimeError("the recorder's SNIRF file is not open")
        return self.writer

    @property
    def _journal_file(self) -> Journal:
        """The open journal; only used after ``_open`` (None there is a bug)."""
        if self._journal is None:
            raise RuntimeError("the recorder's journal is not open")
        return self._journal

    # -- journal ------------------------------------------------------------------
    def _event(self, kind: str, body: dict[str, Any]) -> None:
        self._journal_file.write(kind, body)
        self._dirty = True

    # -- message handling ---------------------------------------------------------
    def _on_message(self, msg: Message) -> None:
        h = msg.header
        if h.get("stream") not in (None, self.meta.stream):
            self.stop("daemon restarted (new stream)")
            return
        if msg.topic in ("raw", "hb"):
            if (
                msg.n
                and msg.array is not None
                and msg.seq + msg.n > self._expected.get(msg.topic, -1)
            ):
                self._pending[msg.topic].append(msg)
                self._expected[msg.topic] = msg.seq + msg.n
        elif msg.topic == "marker":
            self.stats.markers += 1
            self._event("marker", h)
        elif msg.topic == "epoch":
            self.stats.epochs += 1
            self._event("epoch", h)
        elif msg.topic == "status" and h.get("event") == "gap":
            self.stats.device_lost += int(h.get("lost_samples", 0))
            self._event("device_gap", h)
        elif msg.topic == "status" and h.get("event") == "baseline" and h.get("seq") is not None:
            self._snirf.add_baseline(int(h["seq"]))
            self._window_at = int(h["seq"])  # placed on its row once that row is written
            self._event("baseline", {"seq": int(h["seq"]), "seconds": h.get("seconds")})

    def _take(self, topic: str, limit: int) -> tuple[np.ndarray, list, np.ndarray, list]:
        msgs = self._pending[topic]
        keep: list[Message] = []
        seqs: list[np.ndarray] = []
        ts: list[Any] = []
        arrs: list[np.ndarray] = []
        labels: list[Any] = []
        quality: list[np.ndarray] = []
        for m in msgs:
            if m.seq + m.n > limit:
                keep.append(m)
                continue
            if m.array is None:  # _on_message queues only messages with an array
                raise RuntimeError(f"a queued {topic} message has no sample array")
            seqs.append(np.arange(m.seq, m.seq + m.n))
            ts.extend(m.header["t"])
            labels.extend(m.header.get("epoch") or [None] * m.n)
            arrs.append(m.array)
            if topic == "hb":
                quality.append(snirf_conversion.quality_rows(m.header.get("quality"), m.n, m.array))
        self._pending[topic] = keep
        if topic == "hb":  # kept for _commit beside the rows it belongs to
            self._quality = np.concatenate(quality) if quality else np.zeros((0, 0))
        if not seqs:
            return np.zeros(0, np.int64), [], np.zeros(0), []
        return np.concatenate(seqs), labels, np.concatenate(arrs), ts

    def _commit(self) -> None:
        """Append every sample index both ``raw`` and ``hb`` hold, then flush."""
        if not self._pending["raw"] or not self._pending["hb"]:
            return
        limit = min(self._expected["raw"], self._expected["hb"])
        r_seq, _, raw, t = self._take("raw", limit)
        h_seq, labels, hb, _ = self._take("hb", limit)
        quality = self._quality
        last = self.stats.last_seq
        common, ri, hi = np.intersect1d(r_seq, h_seq, assume_unique=True, return_indices=True)
        if last is not None:
            fresh = common > last
            common, ri, hi = common[fresh], ri[fresh], hi[fresh]
        if not len(common):
            return
        prev = np.concatenate([[last if last is not None else common[0] - 1], common])
        jumps = np.flatnonzero(np.diff(prev) > 1)
        for k in jumps:
            lost = int(prev[k + 1] - prev[k] - 1)
            self.stats.gaps += 1
            self.stats.lost_samples += lost
            log.warning("gap", after=int(prev[k]), next=int(prev[k + 1]), lost=lost)
            self._event("gap", {"after": int(prev[k]), "seq": int(prev[k + 1]), "lost": lost})
        lab = np.array(labels, dtype=object)[hi]
        change = np.flatnonzero(lab[1:] != lab[:-1]) + 1
        starts = ([0] if self._label != lab[0] else []) + change.tolist()
        for i in starts:
            self._event("run", {"label": lab[i], "seq": int(common[i])})
        self._label = lab[-1]
        self._snirf.append(common, np.asarray(t)[ri], raw[ri], hb[hi], quality[hi])
        if self.stats.first_seq is None:
            self.stats.first_seq = int(common[0])
            # the journal keeps the first sample's time too: recovery writes the file's
            # date and time from it when a crash left them unreadable (snirf_repair)
            self._journal_file.write("first_sample", {"seq": int(common[0]), "t": self._snirf.t0})
        self.stats.last_seq = int(common[-1])
        self.stats.samples += len(common)

    def _check_space(self) -> None:
        pending = sum(m.n for m in self._pending["hb"])
        writer = self._snirf
        left, need = writer.space_left(), writer.reserve_bytes(pending)
        if left < need:
            self.stop_reason = "disk full"
            raise DiskFull(
                f"disk full: {max(left, 0)} bytes left for {self.path} (a flush "
                f"needs up to {need}); recording stopped, the file keeps "
                f"{self.stats.samples} samples"
            )

    def _flush(self) -> None:
        self._check_space()
        self._commit()
        self._journal_file.flush()
        self._complete_windows()
        writer = self._snirf
        if self._dirty and writer.rows:
            seq, t, _ = snirf_writer.read_index(writer.f)
            writer.set_stims(stim_rows(self.events, seq, t))
            self._dirty = False
        last = self.stats.last_seq
        if self._window_at is not None and last is not None and last >= self._window_at:
            writer.write_baseline_windows()
            self._window_at = None
        writer.flush()
        self.stats.size_bytes = writer.size_bytes()

    def _complete_windows(self) -> None:
        """A baseline window that began before the file and was still open at the start
        has samples the file lacks: once it has closed, ask the daemon for its I0."""
        conv = self._snirf.conversion
        for w in snirf_conversion.windows_missing_i0(
            conv, self.stats.first_seq, self.stats.last_seq
        ):
            now = time.monotonic()
            if now < self._asked_at + ASK_EVERY_S:
                return
            self._asked_at = now
            control, wait = self.sub.control, self.sub.control.timeout_s
            control.timeout_s = min(wait, ASK_TIMEOUT_S)  # never hold the flush long
            try:
                reply = control.info().get("conversion") or {}
            except NirsdError:
                return  # the daemon is busy or gone: asked again later
            finally:
                control.timeout_s = wait
            if not snirf_conversion.take_i0(w, reply):
                return  # a channel still waits for valid light
            self._window_at = int(w["start_seq"])  # rewrite the windows tag

    # -- the run ------------------------------------------------------------------
    def _open(self, info: dict[str, Any]) -> None:
        layout = snirf_writer.layout_from_info(info)
        conversion = snirf_conversion.conversion_from_info(info)
        self.writer = snirf_writer.SnirfWriter(self.path, layout, self.meta, conversion)
        if self.hb_file:  # an older recording's: it must not pass for this one's
            snirf_hb.hb_path(self.path).unlink(missing_ok=True)
        if conversion is not None:
            self._window_at = conversion.windows[0]["start_seq"]
        self._journal = Journal(self.path, self.events)
        self._event(
            "header",
            {
                "stream": self.meta.stream,
                "info": info,
                "subject": self.meta.subject,
                "group": self.meta.group,
                "visit": self.meta.visit,
            },
        )

    def run(self) -> Stats:
        """Record until stopped; the file is valid when this returns or raises."""
        info = self.sub.control.info()
        if not info.get("n_channels"):
            raise NirsdError("the daemon has no probe description yet (no data streamed)")
        self.meta.stream = self.meta.stream or info.get("stream", "")
        self.meta.version = self.meta.version or str(info.get("version", ""))
        self.meta.device = self.meta.device or str(info.get("device_id") or "")
        self._open(info)
        try:
            self._record(info)
        finally:
            self._finish()
        return self.stats

    def _messages(self, info: dict[str, Any]) -> Generator[Message | None, None, None]:
        """History then live data (``Subscriber.backfilled``); None every ``IDLE_S``."""
        since = int(info.get("oldest") or 0) if self.backfill_s is None else None
        return self.sub.backfilled(
            seconds=self.backfill_s, since=since, timeout_s=self.timeout_s, idle_s=IDLE_S
        )

    def _record(self, info: dict[str, Any]) -> None:
        messages = self._messages(info)
        try:
            next_flush = time.monotonic() + FLUSH_S
            end: float | None = None
            for msg in messages:
                now = time.monotonic()
                if msg is not None:
                    live = msg.topic in ("raw", "hb") and not msg.header.get("history")
                    if live and not self._live:
                        self._live = True  # the duration counts from the first live sample
                        if self.duration_s is not None:
                            end = now + self.duration_s
                    elif msg.topic == "hb" and msg.header.get("history") and not self._live:
                        self.stats.backfilled += msg.n
                    self._on_message(msg)
                if self._stop:
                    break
                if end is not None and now >= end:
                    self.stop("duration reached")
                    break
                if now >= next_flush:
                    self._flush()
                    next_flush = now + FLUSH_S
                    if self.progress:
                        self.progress(self.stats)
            self._flush()
        except OSError as err:
            self.stop_reason = "write failed"
            raise NirsdError(
                f"cannot write {self.path}: {err.strerror or err} "
                f"(the file keeps everything flushed before)"
            ) from err
        finally:
            messages.close()

    def _finish(self) -> None:
        if self._journal is not None:
            self._journal.close()
        if self.writer is None:
            return
        try:
            self.writer.close()
        except Exception as err:  # h5py on a full disk raises several types
            log.warning("close_failed", error=str(err))
        try:
            result = recover_file(self.path)
        except Exception as err:
            log.error("recover_failed", error=str(err))
            return
        self.stats.size_bytes = self.writer.size_bytes()
        log.info("recorded", file=str(self.path), rows=result["rows"], reason=self.stop_reason)
        if self.hb_file:
            try:
                snirf_hb.write_hb_file(self.path)
            except Exception as err:  # the recording itself is complete and valid
                log.error("hb_file_failed", error=str(err))
