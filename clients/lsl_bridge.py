"""``nirsd lsl``: the daemon's data as Lab Streaming Layer outlets.

Outlets (``PREFIX`` defaults to ``nirsd``; ``source_id`` is ``nirsd-<stream>-<kind>``,
so a daemon restart gives new outlets):

- ``PREFIX_hb``: type ``NIRS``, double64, 2 × n_channels channels, channel-major:
  ΔHbO and ΔHbR of every probe channel in M (mol/L; the daemon's µM × 1e-6), named as
  MNE names them (``S1_D1 hbo``, ``S1_D1 hbr``).  No HbT (MNE has no such channel type;
  ΔHbT = ΔHbO + ΔHbR).
- ``PREFIX_raw``: type ``NIRS``, double64, n_channels × n_wavelengths channels
  (``S1_D1 760``, …), device counts.
- ``PREFIX_markers``: type ``Markers``, 6 string channels per marker: ``marker``
  (``label/action``, e.g. ``extension/start``), ``label``, ``action``, ``id``, ``seq``
  (the sample the daemon aligned it to) and ``duration_s`` (for an end whose start the
  bridge saw: the epoch's length, (end seq − start seq) / rate; else empty).
- ``PREFIX_epochs``: type ``Markers``, 1 string channel: each epoch summary as JSON
  (``label``, ``onset_seq``, ``end_seq``, ``duration_s``, ``baseline_s``, ``channels``
  (MNE names), ``labels`` (configured), ``mean_hbo``/``mean_hbr``/``mean_hbt`` in µM).

Channel metadata: :mod:`nirsd.clients.lsl_meta` (XDF NIRS meta-data convention, plus
the fields mne-lsl reads: kind, coil type, frame, location).

Timestamps: each sample's host time ``t`` (Unix seconds) is mapped to the LSL clock as
``t + offset`` with ``offset = local_clock() − time.time()``, measured between two
``local_clock`` reads and refreshed every second (so a stepped wall clock is followed).
A marker is stamped with the time of the sample it was aligned to (``seq``), mapped the
same way: a marker for a sample that has not arrived yet waits for it (at most
``MARKER_WAIT_S``, then its time is extrapolated at the nominal rate).  An epoch
summary is stamped with the time of its ``end_seq`` sample.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from typing import Any, overload

import numpy as np
import pylsl

from nirsd.core.errors import NirsdError
from nirsd.daemon.endpoints import Endpoints
from nirsd.daemon.wire import Message

from . import lsl_meta
from .snirf_probe import layout_from_info
from .subscriber import ControlClient, Subscriber

TOPICS = ("hb", "raw", "marker", "epoch")
HB_FIELDS = ("HbO", "HbR")  # what the hb outlet carries, per channel
MARKER_FIELDS = ("marker", "label", "action", "id", "seq", "duration_s")
MARKER_WAIT_S = 2.0  # longest a marker waits for the sample it was aligned to
TIMES_KEPT = 8192  # sample times remembered for stamping markers (a power of two)


class ClockMap:
    """Host (Unix) time → LSL ``local_clock`` time, offset refreshed every ``refresh_s``."""

    def __init__(self, refresh_s: float = 1.0) -> None:
        self.refresh_s = refresh_s
        self._next = 0.0
        self.offset = 0.0

    def _measure(self) -> float:
        sandwiches: list[tuple[float, float]] = []  # (width, offset)
        for _ in range(3):
            a = pylsl.local_clock()
            w = time.time()
            b = pylsl.local_clock()
            sandwiches.append((b - a, (a + b) / 2.0 - w))
        return min(sandwiches, key=lambda s: s[0])[1]  # the tightest (the first on a tie)

    @overload
    def lsl(self, t: np.ndarray) -> np.ndarray: ...
    @overload
    def lsl(self, t: float) -> np.float64: ...
    def lsl(self, t: np.ndarray | float) -> np.ndarray | np.float64:
        """LSL timestamps (s) for host times ``t`` (Unix seconds)."""
        now = time.monotonic()
        if now >= self._next:
            self.offset = self._measure()
            self._next = now + self.refresh_s
        return np.asarray(t, dtype=np.float64) + self.offset


class SampleTimes:
    """Host times of the last ``TIMES_KEPT`` samples by index, written a block at a time."""

    def __init__(self, rate_hz: float) -> None:
        self.rate_hz = rate_hz
        self.seq = np.full(TIMES_KEPT, -1, np.int64)
        self.t = np.zeros(TIMES_KEPT)
        self.last = -1  # highest sample index seen

    def add(self, seq0: int, t: np.ndarray) -> None:
        idx = np.arange(seq0, seq0 + len(t))
        self.seq[idx % TIMES_KEPT] = idx
        self.t[idx % TIMES_KEPT] = t
        self.last = max(self.last, seq0 + len(t) - 1)

    def time_of(self, seq: int) -> float | None:
        """Host time of sample ``seq``; extrapolated (nominal rate) from the newest sample
        where it is not kept; None before any sample."""
        if self.last < 0:
            return None
        k = seq % TIMES_KEPT
        if self.seq[k] == seq:
            return float(self.t[k])
        newest = self.last % TIMES_KEPT
        step = 1.0 / self.rate_hz if self.rate_hz > 0 else 0.0
        return float(self.t[newest]) + (seq - self.last) * step


def _marker_info(name: str, source_id: str, daemon: dict[str, Any]) -> pylsl.StreamInfo:
    info = _stream_info(
        name,
        "Markers",
        len(MARKER_FIELDS),
        pylsl.IRREGULAR_RATE,
        pylsl.cf_string,
        source_id,
        daemon,
    )
    root = info.desc().append_child("channels")
    for field in MARKER_FIELDS:
        ch = root.append_child("channel")
        ch.append_child_value("label", field)
        ch.append_child_value("type", "Markers")
    return info


def _stream_info(
    name: str, kind: str, n: int, rate: float, fmt: int, source_id: str, daemon: dict[str, Any]
) -> pylsl.StreamInfo:
    info = pylsl.StreamInfo(name, kind, n, rate, fmt, source_id)
    desc = info.desc()
    # the probe's maker, as SNIRF's ManufacturerName says it (snirf_probe.layout_from_info)
    desc.append_child_value("manufacturer", str(daemon.get("manufacturer_name") or "nirsd"))
    desc.append_child_value("software", f"nirsd {daemon.get('version', '')}".strip())
    desc.append_child_value("nirsd_stream", str(daemon.get("stream", "")))
    if daemon.get("device_id"):
        desc.append_child_value("device_id", str(daemon["device_id"]))
    return info


class LslBridge:
    """Outlets for one daemon stream, fed with decoded messages by :meth:`handle`."""

    def __init__(self, info: dict[str, Any], prefix: str = "nirsd", raw: bool = True) -> None:
        """``info``: the daemon's ``info`` reply (probe description and stream id)."""
        self.stream = str(info.get("stream", "unknown"))
        self.layout = layout_from_info(_padded(info))
        info = {**info, "manufacturer_name": self.layout.manufacturer}
        self.n_ch, self.n_wl = self.layout.n_channels, len(self.layout.wavelengths_nm)
        self.rate_hz = float(info.get("rate_hz") or 0.0)
        rate = self.rate_hz or pylsl.IRREGULAR_RATE
        sid = f"nirsd-{self.stream}"
        self.clock = ClockMap()
        self.times = SampleTimes(self.rate_hz)
        self.pushed = {"hb": 0, "raw": 0, "marker": 0, "epoch": 0}
        self.dropped = 0  # messages whose shape did not match the probe
        self._waiting: list[tuple[float, dict[str, Any]]] = []  # (deadline, marker header)
        self._started: dict[str, int] = {}  # label -> seq of the open epoch's start
        self._names = self.layout.mne_names()

        hb_chans = lsl_meta.hb_channels(self.layout)
        si = _stream_info(
            f"{prefix}_hb", "NIRS", len(hb_chans), rate, pylsl.cf_double64, f"{sid}-hb", info
        )
        lsl_meta.describe(si, self.layout, hb_chans)
        self.hb = pylsl.StreamOutlet(si, chunk_size=0, max_buffered=360)
        self.raw = None
        if raw and self.n_wl:
            raw_chans = lsl_meta.raw_channels(self.layout)
            si = _stream_info(
                f"{prefix}_raw", "NIRS", len(raw_chans), rate, pylsl.cf_double64, f"{sid}-raw", info
            )
            lsl_meta.describe(si, self.layout, raw_chans)
            self.raw = pylsl.StreamOutlet(si, chunk_size=0, max_buffered=360)
        self.markers = pylsl.StreamOutlet(_marker_info(f"{prefix}_markers", f"{sid}-markers", info))
        si = _stream_info(
            f"{prefix}_epochs",
            "Markers",
            1,
            pylsl.IRREGULAR_RATE,
            pylsl.cf_string,
            f"{sid}-epochs",
            info,
        )
        si.desc().append_child("channels").append_child("channel").append_child_value(
            "label", "summary"
        )
        self.epochs = pylsl.StreamOutlet(si)

    # -- markers and epochs -----------------------------------------------------------
    def _stamp(self, seq: Any, fallback: Any) -> float:
        """LSL time of sample ``seq`` (or of host time ``fallback`` without samples)."""
        t = self.times.time_of(int(seq)) if isinstance(seq, int) else None
        if t is None:
            t = float(fallback) if isinstance(fallback, (int, float)) else time.time()
        return float(self.clock.lsl(t))

    def _push_marker(self, h: dict[str, Any]) -> None:
        label, action, seq = str(h.get("label")), str(h.get("action", "instant")), h.get("seq")
        duration = ""
        if isinstance(seq, int) and action == "start":
            self._started[label] = seq
        elif isinstance(seq, int) and action == "end" and label in self._started:
            start = self._started.pop(label)
            if self.rate_hz > 0:
                duration = f"{(seq - start) / self.rate_hz:.6g}"
        sample = [
            f"{label}/{action}",
            label,
            action,
            str(h.get("id", "")),
            "" if seq is None else str(seq),
            duration,
        ]
        self.markers.push_sample(sample, self._stamp(seq, h.get("t")))
        self.pushed["marker"] += 1

    def _on_marker(self, h: dict[str, Any]) -> None:
        seq = h.get("seq")
        if isinstance(seq, int) and self.times.last >= 0 and seq > self.times.last:
            self._waiting.append((time.monotonic() + MARKER_WAIT_S, h))  # its sample is due
        else:
            self._push_marker(h)

    def tick(self) -> None:
        """Push waiting markers whose sample has arrived or whose wait is over."""
        now = time.monotonic()
        while self._waiting:
            deadline, h = self._waiting[0]
            if h["seq"] > self.times.last and now < deadline:
                return  # markers wait in order: later ones are not pushed before it
            self._waiting.pop(0)
            self._push_marker(h)

    def _on_epoch(self, h: dict[str, Any]) -> None:
        keys = ("label", "onset_seq", "end_seq", "duration_s", "baseline_s", "start_id", "end_id")
        body = {k: h.get(k) for k in keys}
        body["channels"] = self._names
        body["labels"] = list(h.get("channels") or [])
        for f in ("hbo", "hbr", "hbt"):
            body[f"mean_{f}"] = h.get(f"mean_{f}")
        text = json.dumps(body, separators=(",", ":"))
        self.epochs.push_sample([text], self._stamp(h.get("end_seq"), h.get("time")))
        self.pushed["epoch"] += 1

    def handle(self, msg: Message) -> None:
        """Push one decoded ``hb``, ``raw``, ``marker`` or ``epoch`` message."""
        if msg.topic == "marker":
            self._on_marker(msg.header)
            return
        if msg.topic == "epoch":
            self._on_epoch(msg.header)
            return
        arr, t = msg.array, msg.header.get("t")
        if arr is None or not isinstance(t, list) or len(t) != msg.n:
            self.dropped += 1
            return
        if msg.topic == "hb" and arr.shape[1:] == (3, self.n_ch):
            # (n, [HbO HbR], ch) µM -> channel-major (n, ch·2) in M, as MNE wants it
            chunk = arr[:, :2, :].transpose(0, 2, 1).reshape(msg.n, 2 * self.n_ch) * 1e-6
            outlet = self.hb
        elif (
            msg.topic == "raw" and self.raw is not None and arr.shape[1:] == (self.n_ch, self.n_wl)
        ):
            chunk = arr.reshape(msg.n, self.n_ch * self.n_wl)
            outlet = self.raw
        else:
            if msg.topic in ("hb", "raw"):
                self.dropped += 1
            return
        host_t = np.asarray(t, dtype=np.float64)
        if msg.seq + msg.n - 1 > self.times.last:
            self.times.add(msg.seq, host_t)
        stamps = self.clock.lsl(host_t)
        outlet.push_chunk(np.ascontiguousarray(chunk, dtype=np.float64), stamps.tolist())
        self.pushed[msg.topic] += msg.n
        if self._waiting:
            self.tick()

    def close(self) -> None:
        """Withdraw the outlets (their consumers see the stream end)."""
        for _, h in self._waiting:  # stamped as well as can be: the stream ends
            self._push_marker(h)
        self._waiting = []
        for name in ("hb", "raw", "markers", "epochs"):
            setattr(self, name, None)


def run_bridge(
    endpoints: Endpoints,
    prefix: str = "nirsd",
    raw: bool = True,
    silence_s: float = 3.0,
    stop: threading.Event | None = None,
    curve: Any = None,
) -> int:
    """Bridge until SIGINT/SIGTERM (or ``stop``); follows daemon restarts.  Returns 0."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    bridge: LslBridge | None = None
    sub: Subscriber | None = None
    last = 0.0
    try:
        while not stop.is_set():
            if sub is None:
                sub = Subscriber(TOPICS, endpoints=endpoints, curve=curve)
                last = time.monotonic()
            msg = sub.recv(0.2)
            if bridge is not None:
                bridge.tick()
            if msg is None:
                if time.monotonic() - last > silence_s:  # daemon gone: rebuild the socket
                    sub.close()
                    sub = None
                continue
            last = time.monotonic()
            if bridge is None or msg.header.get("stream") != bridge.stream:
                info = _info(endpoints, curve)
                if info is None or info.get("stream") != msg.header.get("stream"):
                    continue
                if bridge is not None:
                    bridge.close()
                bridge = LslBridge(info, prefix=prefix, raw=raw)
                print(
                    f"nirsd lsl: stream {bridge.stream}: outlets {prefix}_hb "
                    f"({2 * bridge.n_ch} ch), {prefix}_raw, {prefix}_markers, {prefix}_epochs",
                    flush=True,
                )
            bridge.handle(msg)
    finally:
        if sub is not None:
            sub.close()
        if bridge is not None:
            bridge.close()
    return 0


def _info(endpoints: Endpoints, curve: Any = None) -> dict[str, Any] | None:
    client = ControlClient(endpoints.control, timeout_s=2.0, curve=curve)
    try:
        return client.info()
    except NirsdError:
        return None
    finally:
        client.close()


def _padded(info: dict[str, Any]) -> dict[str, Any]:
    """``info`` with a description for every channel (``ch<i>`` where it gives none)."""
    chans = list(info.get("channels") or [])
    n = int(info.get("n_channels") or len(chans))
    chans += [{"index": i, "label": f"ch{i}"} for i in range(len(chans), n)]
    return {**info, "n_channels": n, "channels": chans}
