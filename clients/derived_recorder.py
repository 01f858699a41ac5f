"""``nirsd record`` for devices of computed values (tissue oximeters): ``derived`` to SNIRF.

The file is SNIRF 1.1 like the intensity recordings (docs/recording.md), with one data
block of processed values instead of raw intensities and hemoglobin:

- ``/nirs/data1``: the ``derived`` columns as published, dataType 99999 (processed),
  one measurementList per column with ``dataTypeLabel`` = the value name (``rso2``),
  ``dataUnit`` = its unit (``%``), source/detector = the column's channel (1-based);
  NaN where the device printed no value
- ``/nirs/probe``: wavelengths ``[0]`` (the device does not say which it uses) and a
  synthetic position per channel (sources 40 mm apart, each detector 30 mm away)
- ``/nirs/metaDataTags``: as for intensities, plus ``DerivedNames``, ``DerivedUnits``,
  ``DerivedChannels`` (JSON lists, one entry per column)
- ``/nirs/stim{k}`` from markers and epoch summaries; ``/nirs/aux1`` ``nirsd_seq``

Rows are flushed every second, so a killed recorder loses at most the last second.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from nirsd.core.errors import NirsdError

from . import snirf_repair, snirf_writer
from .recorder import FLUSH_S, IDLE_S, Stats, stim_rows
from .subscriber import Subscriber

TOPICS = ("derived", "marker", "epoch", "status")


class DerivedSnirfWriter(snirf_writer.SnirfWriter):
    """A SNIRF file of computed values: ``layout`` is the ``derived`` description."""

    def __init__(self, path: str | Path, derived: dict[str, Any], meta: snirf_writer.Meta) -> None:
        self.derived = derived
        names = [str(c) for c in dict.fromkeys(derived["channels"])]
        self.channel_names = names
        n = len(names)
        x = np.arange(n) * 40.0
        layout = snirf_writer.Layout(
            [0.0],
            names,
            list(range(1, n + 1)),
            list(range(1, n + 1)),
            np.column_stack([x, np.zeros(n), np.zeros(n)]),
            np.column_stack([x, np.full(n, 30.0), np.zeros(n)]),
        )
        super().__init__(path, layout, meta)

    def _build(self) -> None:
        f, d, m = self.f, self.derived, self.meta
        f.create_dataset("formatVersion", data=snirf_writer._s("1.1"))
        nirs = f.create_group("nirs")
        tags = nirs.create_group("metaDataTags")
        for key, value in {
            **snirf_writer.meta_tags(m),
            "DerivedNames": json.dumps(d["names"]),
            "DerivedUnits": json.dumps(d["units"]),
            "DerivedChannels": json.dumps(d["channels"]),
        }.items():
            snirf_writer._scalar(tags, key, value)
        d1 = nirs.create_group("data1")
        snirf_writer._series(d1, len(d["names"]))
        for j, (name, unit, ch) in enumerate(zip(d["names"], d["units"], d["channels"]), 1):
            ml = d1.create_group(f"measurementList{j}")
            idx = self.channel_names.index(str(ch)) + 1
            for key, val in (
                ("sourceIndex", idx),
                ("detectorIndex", idx),
                ("wavelengthIndex", 1),
                ("dataType", 99999),
                ("dataTypeLabel", name),
                ("dataTypeIndex", 1),
                ("dataUnit", unit),
            ):
                snirf_writer._scalar(ml, key, val)
        lay = self.layout
        probe = nirs.create_group("probe")
        probe.create_dataset("wavelengths", data=np.asarray(lay.wavelengths_nm, "f8"))
        probe.create_dataset("sourcePos3D", data=np.asarray(lay.source_pos_mm, "f8"))
        probe.create_dataset("detectorPos3D", data=np.asarray(lay.detector_pos_mm, "f8"))
        aux = nirs.create_group("aux1")
        snirf_writer._scalar(aux, "name", "nirsd_seq")
        snirf_writer._series(aux, 1)

    def append_values(self, seq: np.ndarray, t: np.ndarray, values: np.ndarray) -> None:
        """Append n rows: ``seq`` (n,), ``t`` (n,) Unix s, ``values`` (n, n_values)."""
        n = len(seq)
        if n == 0:
            return
        if self.t0 is None:
            self.t0 = float(t[0])
            snirf_repair.write_measurement_time(self.f["nirs/metaDataTags"], self.t0)
        rel = np.asarray(t, "f8") - self.t0
        end = self.rows + n
        for name, block in (("data1", values), ("aux1", np.asarray(seq, "f8").reshape(n, 1))):
            g = self.f["nirs"][name]
            g["time"].resize((end,))
            g["time"][self.rows : end] = rel
            g["dataTimeSeries"].resize((end, block.shape[1]))
            g["dataTimeSeries"][self.rows : end] = block
        self.rows = end


class DerivedRecorder:
    """Record ``derived`` (and stims) until stopped or ``duration_s`` after the first row."""

    def __init__(
        self,
        path: str | Path,
        sub: Subscriber,
        meta: snirf_writer.Meta,
        duration_s: float | None = None,
        progress: Callable[[Stats], None] | None = None,
        timeout_s: float = 10.0,
        **_: Any,
    ) -> None:
        self.path, self.sub, self.meta = Path(path), sub, meta
        self.duration_s, self.progress, self.timeout_s = duration_s, progress, timeout_s
        self.stats = Stats()
        self.events: list[dict[str, Any]] = []
        self.stop_reason: str | None = None
        self.writer: DerivedSnirfWriter | None = None
        self._stop = False

    def stop(self, reason: str = "stopped") -> None:
        self._stop = True
        self.stop_reason = self.stop_reason or reason

    def run(self) -> Stats:
        info = self.sub.control.info()
        if "derived" not in info:
            raise NirsdError("the daemon has no computed values yet (no data streamed)")
        self.meta.stream = self.meta.stream or info.get("stream", "")
        self.meta.version = self.meta.version or str(info.get("version", ""))
        self.meta.device = self.meta.device or str(info.get("driver") or "")
        self.writer = DerivedSnirfWriter(self.path, info["derived"], self.meta)
        try:
            self._loop()
        finally:
            self._flush()
            self.writer.close()
        return self.stats

    def _loop(self) -> None:
        end = None
        next_flush = time.monotonic() + FLUSH_S
        last_msg = time.monotonic()
        while not self._stop:
            msg = self.sub.recv(IDLE_S)
            now = time.monotonic()
            if msg is not None:
                last_msg = now
                self._on_message(msg)
                if end is None and self.duration_s is not None and self.stats.samples:
                    end = now + self.duration_s
            elif now - last_msg > self.timeout_s and not self.stats.samples:
                raise NirsdError(f"no derived values from the daemon within {self.timeout_s:g} s")
            if end is not None and now >= end:
                self.stop("duration reached")
            if now >= next_flush:
                self._flush()
                next_flush = now + FLUSH_S
                if self.progress:
                    self.progress(self.stats)

    def _on_message(self, msg: Any) -> None:
        h = msg.header
        if h.get("stream") not in (None, self.meta.stream):
            self.stop("daemon restarted (new stream)")
        elif msg.topic == "derived" and msg.array is not None and msg.n:
            assert self.writer is not None  # run() opened it
            seq = np.arange(msg.seq, msg.seq + msg.n)
            if self.stats.last_seq is not None:
                keep = seq > self.stats.last_seq
                if self.stats.last_seq + 1 < seq[0]:
                    self.stats.gaps += 1
                    self.stats.lost_samples += int(seq[0] - self.stats.last_seq - 1)
            else:
                keep = np.ones(msg.n, bool)
                self.stats.first_seq = int(seq[0])
            if keep.any():
                self.writer.append_values(seq[keep], np.asarray(h["t"])[keep], msg.array[keep])
                self.stats.samples += int(keep.sum())
                self.stats.last_seq = int(seq[keep][-1])
        elif msg.topic in ("marker", "epoch"):
            setattr(self.stats, msg.topic + "s", getattr(self.stats, msg.topic + "s") + 1)
            self.events.append({"kind": msg.topic, **h})

    def _flush(self) -> None:
        if self.writer is None or not self.writer.rows:
            return
        seq, t, _ = snirf_writer.read_index(self.writer.f)
        self.writer.set_stims(stim_rows(self.events, seq, t))
        self.writer.flush()
        self.stats.size_bytes = self.writer.size_bytes()
