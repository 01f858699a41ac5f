"""``nirsd record --bids ROOT``: one fNIRS-BIDS run per study session.

The recorder follows the daemon's ``session`` topic.  For each session it writes one run
holding exactly the session's samples ``[seq, end_seq)`` through the ordinary SNIRF
:class:`~nirsd.clients.recorder.Recorder` (history from the session's first sample,
then live; nothing from before), with every sidecar written first so that a crash
leaves a valid dataset.  When the run ends, events.tsv, the hemoglobin copy and the
epoch summaries (``derivatives/nirsd``) are written and the journal moves there too; a
journal still beside a SNIRF file therefore marks a run that did not finish, which
``--recover`` finishes.
"""

from __future__ import annotations

import shutil
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from nirsd.core.errors import NirsdError
from nirsd.daemon.wire import Message

from . import bids_dataset as ds
from . import bids_sidecars as sc
from . import recorder, snirf_writer
from .subscriber import Subscriber

log = structlog.get_logger("nirsd.bids")

TOPICS = (*recorder.TOPICS, "session")
IDLE_S = 0.1
RECENT_EVENTS = 64  # markers and epochs kept while waiting for a session to start


def _clip(msg: Message, lo: int, hi: int | None) -> Message | None:
    """The part of a sample message inside ``[lo, hi)``, or None when nothing is."""
    a = max(lo - msg.seq, 0)
    b = msg.n if hi is None else min(hi - msg.seq, msg.n)
    if b <= a:
        return None
    if a == 0 and b == msg.n:
        return msg
    h = dict(msg.header)
    for key in ("t", "t_dev", "epoch", "tsi"):
        if h.get(key) is not None:
            h[key] = list(h[key])[a:b]
    for key in ("flags", "quality"):  # bytes, sample-major
        if isinstance(h.get(key), bytes):
            w = len(h[key]) // msg.n
            h[key] = h[key][a * w : b * w]
    h["seq"], h["n"] = msg.seq + a, b - a
    return Message(msg.topic, h, None if msg.array is None else msg.array[a:b])


class SessionRun(recorder.Recorder):
    """One session into one SNIRF file: samples ``[seq, end_seq)``, no backfill."""

    def __init__(
        self, path: Path, sub: Subscriber, meta: snirf_writer.Meta, session: dict, **kwargs: Any
    ) -> None:
        super().__init__(path, sub, meta, **kwargs)
        self.session = session
        self.first = int(session["seq"])
        self.end_seq: int | None = session.get("end_seq")
        self.next_sessions: list[dict[str, Any]] = []  # started while this one ran
        self.early: list[Message] = []  # markers that came before the session's start event
        self.recent: deque[Message] = deque(maxlen=RECENT_EVENTS)  # for the next session

    def _open(self, info: dict[str, Any]) -> None:
        super()._open(info)
        # the first step's marker is published with the session's first sample, before
        # the session's start message: the follower kept it
        for msg in self.early:
            self._on_message(msg)

    def _messages(self, info: dict[str, Any]) -> Any:
        return self.sub.backfilled(since=self.first, timeout_s=self.timeout_s, idle_s=IDLE_S)

    def _on_message(self, msg: Message) -> None:
        h = msg.header
        if msg.topic == "session":
            if h.get("session_id") == self.session["session_id"]:
                if h.get("event") == "end":
                    self.end_seq = int(h["end_seq"])
            elif h.get("event") == "start":
                self.next_sessions.append(dict(h))
        elif msg.topic in ("raw", "hb"):
            clipped = _clip(msg, self.first, self.end_seq)
            if clipped is not None:
                super()._on_message(clipped)
        elif msg.topic == "marker":
            self.recent.append(msg)
            seq = h.get("seq")
            if (
                seq is not None
                and self.first <= seq
                and (self.end_seq is None or seq <= self.end_seq)
            ):
                super()._on_message(msg)
        elif msg.topic == "epoch":
            self.recent.append(msg)
            if h.get("onset_seq", -1) >= self.first:
                super()._on_message(msg)
        else:
            super()._on_message(msg)
        if self.end_seq is not None and all(
            self._expected.get(t, self.first) >= self.end_seq for t in ("raw", "hb")
        ):
            self.stop("session ended")

    def _finish(self) -> None:
        # the session's end is published after the block holding its end sample: rows
        # from end_seq on may already be written, and are cut here
        if self.writer is not None and self.end_seq is not None and self.writer.f.id.valid:
            try:
                seq = self.writer.f["nirs/aux1/dataTimeSeries"][:, 0]
                keep = int(np.searchsorted(seq, self.end_seq))
                if keep < len(seq):
                    for b in snirf_writer.SAMPLE_BLOCKS:
                        g = self.writer.f[f"nirs/{b}"]
                        g["time"].resize((keep,))
                        g["dataTimeSeries"].resize((keep, g["dataTimeSeries"].shape[1]))
                    self.writer.rows = keep
                    self.stats.last_seq = int(seq[keep - 1]) if keep else None
                    self.stats.samples -= len(seq) - keep
            except (OSError, KeyError) as err:
                log.warning("trim_failed", error=str(err))
        super()._finish()


@dataclass
class RunResult:
    run: ds.BidsRun
    session: dict[str, Any]
    stats: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "file": str(self.run.snirf),
            "subject": self.run.subject,
            "session": self.run.session,
            "task": self.run.task,
            "run": self.run.run,
            "session_id": self.session.get("session_id"),
            "seq": self.session.get("seq"),
            "end_seq": self.session.get("end_seq"),
            "reason": self.reason,
            **self.stats,
        }


def start_run(
    root: Path, session: dict[str, Any], info: dict[str, Any], placement: str | None
) -> tuple[ds.BidsRun, snirf_writer.Meta]:
    """Choose the run number and write every table and sidecar for it."""
    version = str(info.get("version", ""))
    run = ds.next_run(
        root, session["subject"], session["session"], session["task"], session.get("run")
    )
    ds.init_dataset(root, root.name or "nirsd dataset", version)
    acq = ds.iso_time(float(session.get("t") or session.get("start_t") or time.time()))
    ds.add_participant(
        root, run.subject, session.get("group", ""), session.get("age"), session.get("sex")
    )
    ds.add_session(run, acq, session.get("group", ""), session.get("note", ""))
    ds.add_scan(run, acq, session["session_id"])
    layout = snirf_writer.layout_from_info(info)
    att = sc.att_per_channel(info, session.get("att_mm"))
    sc.write_run_sidecars(run, layout, info, att, sc.placement(layout, placement), version)
    meta = snirf_writer.Meta(
        subject=run.subject,
        group=session.get("group", ""),
        visit=run.session,
        extra={
            "nirsdSession": session["session_id"],
            "nirsdTask": run.task,
            "nirsdRun": str(run.run),
            "AdiposeTissueThickness_mm": _json(att),
        },
    )
    return run, meta


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def finish_run(run: ds.BidsRun, end: str) -> int:
    """events.tsv, derivatives, how it ended (scans.tsv) and the journal's move, from
    what the SNIRF file holds; returns its rows."""
    import h5py

    jpath = recorder.journal_path(run.snirf)
    events = recorder.read_journal(jpath) if jpath.exists() else []
    with h5py.File(run.snirf, "r") as f:
        seq, t, t0 = snirf_writer.read_index(f)
    sc.write_events(run, sc.event_rows(events, seq, t))
    sc.set_duration(run, t)
    sc.write_epochs(run, events, t0)
    hb = run.derivative("desc-hb_nirs.snirf")
    hb.parent.mkdir(parents=True, exist_ok=True)
    snirf_writer.hb_copy(run.snirf, hb)
    ds.end_scan(run, end)
    if jpath.exists():
        shutil.move(jpath, run.derivative("journal.jsonl"))
    return int(len(seq))


class DatasetLock:
    """One recorder per dataset: an exclusive ``flock`` on ``ROOT/.nirsd.lock`` (released
    by the kernel when the holder dies, so a killed recorder never blocks the next)."""

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / ds.LOCK_NAME
        self._fh: Any = None

    def __enter__(self) -> DatasetLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a")
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            self._fh.close()
            raise NirsdError(f"another nirsd recorder is writing {self.path.parent}") from err
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()


def recover_dataset(root: Path) -> list[dict[str, Any]]:
    """Finish every run a killed recorder left (its journal is still beside the file)."""
    out = []
    for jpath in sorted(root.glob("sub-*/ses-*/nirs/*_nirs.snirf.journal.jsonl")):
        snirf = Path(str(jpath)[: -len(".journal.jsonl")])
        parts = dict(p.split("-", 1) for p in snirf.name.split("_")[:-1])
        run = ds.BidsRun(root, parts["sub"], parts["ses"], parts["task"], int(parts["run"]))
        result = recorder.recover_file(snirf)
        rows = finish_run(run, "recovered")
        out.append({"file": str(snirf), "rows": rows, "recovered_rows": result["rows"]})
    return out


class BidsRecorder:
    """Follow sessions; one run each; stop after ``max_sessions`` or on ``stop()``."""

    def __init__(
        self,
        root: Path,
        sub: Subscriber,
        max_sessions: int | None = None,
        placement: str | None = None,
        timeout_s: float = 10.0,
        on_run: Callable[[RunResult], None] | None = None,
    ) -> None:
        self.root = Path(root)
        self.sub = sub
        self.max_sessions = max_sessions
        self.placement = placement
        self.timeout_s = timeout_s
        self.on_run = on_run
        self.runs: list[RunResult] = []
        self.current: SessionRun | None = None
        self.stop_reason: str | None = None
        self._stop = False
        self._seen: set[str] = set()
        self._queue: list[dict[str, Any]] = []
        self._recent: deque[Message] = deque(maxlen=RECENT_EVENTS)

    def stop(self, reason: str = "stopped") -> None:
        self._stop = True
        self.stop_reason = self.stop_reason or reason
        if self.current is not None:
            self.current.stop(reason)

    def run(self, ready: Callable[[], None] | None = None) -> list[RunResult]:
        """Record sessions until stopped; ``ready`` is called once the recorder follows."""
        reply = self.sub.control.request("session_status")[0]
        if reply.get("session") and reply["session"].get("seq") is not None:
            self._queue.append(reply["session"])  # already running: record it whole
        if ready is not None:
            ready()
        while not self._stop:
            if self.max_sessions is not None and len(self.runs) >= self.max_sessions:
                n = len(self.runs)
                self.stop_reason = self.stop_reason or f"{n} session{'s' * (n != 1)} recorded"
                break
            session = self._next_session()
            if session is not None:
                self._record(session)
        return self.runs

    def _next_session(self) -> dict[str, Any] | None:
        while self._queue:
            s = self._queue.pop(0)
            if s["session_id"] not in self._seen:
                return s
        msg = self.sub.recv(IDLE_S)
        if msg is not None and msg.topic in ("marker", "epoch"):
            self._recent.append(msg)
        if msg is not None and msg.topic == "session" and msg.header.get("event") == "start":
            if msg.header["session_id"] not in self._seen:
                return dict(msg.header)
        return None

    def _record(self, session: dict[str, Any]) -> None:
        self._seen.add(session["session_id"])
        info = self.sub.control.info()
        if not info.get("n_channels"):
            raise NirsdError("the daemon has no probe description yet (no data streamed)")
        run, meta = start_run(self.root, session, info, self.placement)
        log.info("run_started", file=str(run.snirf), session_id=session["session_id"])
        rec = SessionRun(run.snirf, self.sub, meta, session, timeout_s=self.timeout_s)
        rec.early, self._recent = list(self._recent), deque(maxlen=RECENT_EVENTS)
        self.current = rec
        result = RunResult(run, session)
        try:
            rec.run()
        finally:
            self.current = None
            self._queue.extend(rec.next_sessions)
            self._recent = rec.recent
            session = {**session, "end_seq": rec.end_seq}
            result.session, result.reason = session, rec.stop_reason
            result.stats = rec.stats.as_dict()
            if rec.writer is not None:
                try:
                    finish_run(run, rec.stop_reason or "stopped")
                except (OSError, NirsdError) as err:  # e.g. the disk is full: --recover
                    log.error("finish_failed", file=str(run.snirf), error=str(err))
            self.runs.append(result)
            if self.on_run is not None:
                self.on_run(result)


def first_rows(path: Path) -> np.ndarray:
    """The daemon sample index of every row of a run's SNIRF file (tests, reports)."""
    import h5py

    with h5py.File(path, "r") as f:
        return snirf_writer.read_index(f)[0]
