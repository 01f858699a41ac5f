"""``nirsd lsl``: the daemon's data as Lab Streaming Layer outlets.

Outlets (``PREFIX`` defaults to ``nirsd``; ``source_id`` is ``nirsd-<stream>-<kind>``,
so a daemon restart gives new outlets):

- ``PREFIX_hb``: type ``NIRS``, double64, 3 × n_channels channels, channel-major
  (``<label> HbO``, ``<label> HbR``, ``<label> HbT`` for each probe channel), in µM;
  ``desc/channels/channel`` has ``label``, ``type`` (HbO/HbR/HbT), ``unit`` (``uM``)
  and ``index`` (probe channel), plus source/detector/positions where configured;
  nominal rate from ``info``.
- ``PREFIX_raw``: type ``NIRS``, double64, n_channels × n_wavelengths channels
  (``<label> <nm>``; ``type`` ``Intensity``, ``unit`` ``counts``, ``wavelength`` nm).
- ``PREFIX_markers``: type ``Markers``, one string channel, irregular rate; each marker
  is ``"<label>/<action>"`` (for example ``extension/start``) at the marker's time.

Timestamps: each sample's host time ``t`` (Unix seconds) is mapped to the LSL clock as
``t + offset`` with ``offset = local_clock() − time.time()``, measured between two
``local_clock`` reads and refreshed every second (so a stepped wall clock is followed).
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import numpy as np
import pylsl

from nirsd.core.errors import NirsdError
from nirsd.daemon.endpoints import Endpoints
from nirsd.daemon.wire import Message

from .subscriber import ControlClient, Subscriber

TOPICS = ("hb", "raw", "marker")
HB_FIELDS = ("HbO", "HbR", "HbT")


class ClockMap:
    """Host (Unix) time → LSL ``local_clock`` time, offset refreshed every ``refresh_s``."""

    def __init__(self, refresh_s: float = 1.0) -> None:
        self.refresh_s = refresh_s
        self._next = 0.0
        self.offset = 0.0

    def _measure(self) -> float:
        best = None
        for _ in range(3):  # the tightest of three sandwiches
            a = pylsl.local_clock()
            w = time.time()
            b = pylsl.local_clock()
            if best is None or b - a < best[0]:
                best = (b - a, (a + b) / 2.0 - w)
        return best[1]

    def lsl(self, t: np.ndarray | float) -> np.ndarray | float:
        """LSL timestamps (s) for host times ``t`` (Unix seconds)."""
        now = time.monotonic()
        if now >= self._next:
            self.offset = self._measure()
            self._next = now + self.refresh_s
        return np.asarray(t, dtype=np.float64) + self.offset


def _channel_desc(info: pylsl.StreamInfo, chans: list[dict[str, str]]) -> None:
    root = info.desc().append_child("channels")
    for ch in chans:
        node = root.append_child("channel")
        for key, value in ch.items():
            node.append_child_value(key, str(value))


def _probe(info: dict[str, Any]) -> tuple[list[dict[str, Any]], list[float]]:
    chans = info.get("channels") or []
    n = int(info.get("n_channels") or len(chans))
    chans = list(chans) + [{"index": i, "label": f"ch{i}"} for i in range(len(chans), n)]
    return chans, [float(w) for w in info.get("wavelengths_nm") or []]


def _extra(ch: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key in ("source", "detector", "distance_mm"):
        if ch.get(key) is not None:
            out[key] = ch[key]
    for key, tag in (
        ("source_pos_mm", "source_location"),
        ("detector_pos_mm", "detector_location"),
    ):
        pos = ch.get(key)
        if isinstance(pos, (list, tuple)):
            out[tag] = " ".join(f"{float(x):g}" for x in pos)
    return out


def _stream_info(
    name: str, kind: str, n: int, rate: float, fmt: int, source_id: str, daemon: dict[str, Any]
) -> pylsl.StreamInfo:
    info = pylsl.StreamInfo(name, kind, n, rate, fmt, source_id)
    desc = info.desc()
    desc.append_child_value("manufacturer", "nirsd")
    desc.append_child_value("nirsd_stream", str(daemon.get("stream", "")))
    if daemon.get("device_id"):
        desc.append_child_value("device_id", str(daemon["device_id"]))
    return info


class LslBridge:
    """Outlets for one daemon stream, fed with decoded messages by :meth:`handle`."""

    def __init__(self, info: dict[str, Any], prefix: str = "nirsd", raw: bool = True) -> None:
        """``info``: the daemon's ``info`` reply (probe description and stream id)."""
        self.stream = str(info.get("stream", "unknown"))
        chans, wls = _probe(info)
        self.n_ch, self.n_wl = len(chans), len(wls)
        rate = float(info.get("rate_hz") or pylsl.IRREGULAR_RATE)
        sid = f"nirsd-{self.stream}"
        self.clock = ClockMap()
        self.pushed = {"hb": 0, "raw": 0, "marker": 0}
        self.dropped = 0  # messages whose shape did not match the probe

        hb_chans = [
            {
                "label": f"{ch.get('label', f'ch{i}')} {f}",
                "type": f,
                "unit": "uM",
                "index": ch.get("index", i),
                **_extra(ch),
            }
            for i, ch in enumerate(chans)
            for f in HB_FIELDS
        ]
        si = _stream_info(
            f"{prefix}_hb", "NIRS", len(hb_chans), rate, pylsl.cf_double64, f"{sid}-hb", info
        )
        _channel_desc(si, hb_chans)
        self.hb = pylsl.StreamOutlet(si, chunk_size=0, max_buffered=360)
        self.raw = None
        if raw and self.n_wl:
            raw_chans = [
                {
                    "label": f"{ch.get('label', f'ch{i}')} {w:g}",
                    "type": "Intensity",
                    "unit": "counts",
                    "wavelength": f"{w:g}",
                    "index": ch.get("index", i),
                    **_extra(ch),
                }
                for i, ch in enumerate(chans)
                for w in wls
            ]
            si = _stream_info(
                f"{prefix}_raw", "NIRS", len(raw_chans), rate, pylsl.cf_double64, f"{sid}-raw", info
            )
            _channel_desc(si, raw_chans)
            self.raw = pylsl.StreamOutlet(si, chunk_size=0, max_buffered=360)
        si = _stream_info(
            f"{prefix}_markers",
            "Markers",
            1,
            pylsl.IRREGULAR_RATE,
            pylsl.cf_string,
            f"{sid}-markers",
            info,
        )
        self.markers = pylsl.StreamOutlet(si)

    def handle(self, msg: Message) -> None:
        """Push one decoded ``hb``, ``raw`` or ``marker`` message to its outlet."""
        if msg.topic == "marker":
            h = msg.header
            text = f"{h.get('label')}/{h.get('action', 'instant')}"
            t = h.get("t")
            stamp = float(self.clock.lsl(float(t))) if isinstance(t, (int, float)) else 0.0
            self.markers.push_sample([text], stamp)
            self.pushed["marker"] += 1
            return
        arr, t = msg.array, msg.header.get("t")
        if arr is None or not isinstance(t, list) or len(t) != msg.n:
            self.dropped += 1
            return
        if msg.topic == "hb" and arr.shape[1:] == (3, self.n_ch):
            chunk = arr.transpose(0, 2, 1).reshape(msg.n, 3 * self.n_ch)
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
        stamps = self.clock.lsl(np.asarray(t, dtype=np.float64))
        outlet.push_chunk(np.ascontiguousarray(chunk, dtype=np.float64), stamps.tolist())
        self.pushed[msg.topic] += msg.n

    def close(self) -> None:
        """Withdraw the outlets (their consumers see the stream end)."""
        for name in ("hb", "raw", "markers"):
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
                    f"({3 * bridge.n_ch} ch), {prefix}_raw, {prefix}_markers",
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
