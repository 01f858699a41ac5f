"""What the pages show, in words: built from the daemon's description, status and events.

``ConsoleState`` is updated by the daemon bridge (from the messages it receives) and read
by the web server; ``view`` returns one JSON-ready map that both pages render as it is,
so that every decision about wording (signal quality, gaps, the open epoch, the
protocol's next step) is made here once and tested without a browser.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from nirsd.daemon import converter

SATURATED = converter.SATURATED
LOW_LIGHT = converter.LOW_LIGHT
BASELINE_PENDING = converter.BASELINE_PENDING
POOR_SIGNAL = converter.POOR_SIGNAL
try:  # the motion-artefact bit of the hb quality flags, where the daemon has a detector
    from nirsd.daemon.motion import MOTION
except ImportError:
    MOTION = 16  # the bit that detector uses (beside 1, 2, 4, 8 above)
MAX_BAD_FRACTION = 0.05  # as the daemon's quality monitor: above this share a channel is bad

# (word, CSS class) per quality, most serious first
QUALITY_WORDS = {
    "saturated": "saturated",
    "bad light": "bad-light",
    "motion": "motion",
    "poor": "poor",
    "baseline": "baseline",
    "good": "good",
    "no data": "nodata",
}


def channel_quality(recent_bits: int, summary: dict[str, Any] | None, i: int) -> str:
    """One word for channel ``i``: its recent sample flags, then the daemon's 10 s summary."""

    def frac(key: str) -> float:
        v = (summary or {}).get(key)
        return float(v[i] or 0) if isinstance(v, list) and i < len(v) else 0.0

    def flag(key: str) -> bool:
        v = (summary or {}).get(key)
        return bool(v[i]) if isinstance(v, list) and i < len(v) else False

    if recent_bits & SATURATED or frac("saturated_fraction") > MAX_BAD_FRACTION:
        return "saturated"
    if recent_bits & LOW_LIGHT or frac("low_light_fraction") > MAX_BAD_FRACTION:
        return "bad light"
    if recent_bits & MOTION or flag("motion") or frac("motion_fraction") > MAX_BAD_FRACTION:
        return "motion"
    if recent_bits & POOR_SIGNAL or flag("poor"):
        return "poor"
    if recent_bits & BASELINE_PENDING:
        return "baseline"
    return "good"


def _clock(t: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) if t else "?"


def rate_sentence(
    nominal_hz: float, measured_hz: float | None, gaps: list[dict[str, Any]], missed: int
) -> str:
    """The sample rate and the last gap, as a plain sentence."""
    if measured_hz:
        text = f"Sampling at {measured_hz:.1f} Hz (device set to {nominal_hz:g} Hz)."
    else:
        text = f"Device set to {nominal_hz:g} Hz; no samples measured yet."
    if gaps:
        g = gaps[-1]
        span = float(g.get("span_s") or 0.0)
        lost = int(g.get("lost_samples") or 0)
        when = _clock(g.get("t_after") or g.get("seen_t"))
        cause = " after the probe was unplugged" if g.get("cause") == "disconnect" else ""
        many = f"{len(gaps)} gaps so far; the last" if len(gaps) > 1 else "One gap"
        text += f" {many}: {lost} samples ({span:.1f} s) lost at {when}{cause}."
    else:
        text += " No gaps."
    if missed:
        text += f" This console missed {missed} samples (display only; the daemon has them)."
    return text


class ConsoleState:
    """The daemon as the console sees it; written by the bridge thread, read by the server."""

    def __init__(self) -> None:
        self.info: dict[str, Any] = {}
        self.status: dict[str, Any] = {}
        self.protocols: dict[str, list[list[Any]]] = {}
        self.session: dict[str, Any] | None = None
        self.last_session: dict[str, Any] | None = None
        self.sessions_supported: bool | None = None
        self.last_marker: dict[str, Any] | None = None
        self.last_epoch: dict[str, Any] | None = None
        self.gaps: list[dict[str, Any]] = []
        self.connected = False
        self.last_message_t: float | None = None
        self.outage_since: float | None = time.time()
        self.restarts = 0
        self.last_outage: tuple[float, float] | None = None  # (from, to), host time
        self.missed = 0
        self.recent_bits = np.zeros(0, np.uint8)

    # -- updates from the bridge -----------------------------------------------------
    def described(self, info: dict[str, Any], protocols: dict[str, Any]) -> None:
        if self.info.get("stream") not in (None, info.get("stream")):
            self.restarts += 1
            self.gaps = []
        if self.outage_since is not None and self.info:
            self.last_outage = (self.outage_since, time.time())
        self.info = info
        self.protocols = protocols
        self.connected = True
        self.outage_since = None

    def lost(self, now: float) -> None:
        if self.connected:
            self.outage_since = now
        self.connected = False

    def on_event(self, topic: str, header: dict[str, Any], now: float) -> None:
        self.last_message_t = now
        if topic == "status":
            if header.get("event") == "gap":
                self.gaps = [*self.gaps[-9:], {**header, "seen_t": header.get("time", now)}]
            elif header.get("event") == "protocol":
                self.status = {**self.status, "protocol": header.get("protocol") or None}
            elif header.get("event") in (None, "periodic"):
                self.status = header
                if not self.gaps and header.get("gaps"):
                    self.gaps = list(header["gaps"])
                if "session" in header:
                    self.session = header.get("session")
            else:
                self.status = {
                    **self.status,
                    "state": header.get("state", self.status.get("state")),
                }
        elif topic == "marker":
            self.last_marker = header
            self._epoch_from_marker(header)
        elif topic == "epoch":
            self.last_epoch = header
        elif topic == "session":
            # the session topic carries the session itself, with event "start" or "end"
            ended = header.get("event") == "end" or header.get("state") == "ended"
            body = {k: v for k, v in header.items() if k not in ("v", "stream", "topic", "msg")}
            self.session = None if ended else body
            if ended:
                self.last_session = body

    def _epoch_from_marker(self, m: dict[str, Any]) -> None:
        """The open epoch at once from a marker (the periodic status confirms it later)."""
        current = self.status.get("epoch")
        if m.get("action") == "start":
            epoch = {"label": m.get("label"), "onset_seq": m.get("seq"), "onset_t": m.get("t")}
            self.status = {**self.status, "epoch": epoch}
        elif m.get("action") == "end" and isinstance(current, dict):
            if current.get("label") == m.get("label"):
                self.status = {**self.status, "epoch": None}

    # -- the view --------------------------------------------------------------------
    def view(self, now: float) -> dict[str, Any]:
        """Everything the pages show, JSON-ready; times are host (Unix) seconds."""
        info, st = self.info, self.status
        labels = [str(c.get("label", f"ch{i}")) for i, c in enumerate(info.get("channels") or [])]
        summary = st.get("quality") if isinstance(st.get("quality"), dict) else None
        fresh = self.connected and len(self.recent_bits) == len(labels)
        bits = self.recent_bits if fresh else None
        quality = [
            channel_quality(int(bits[i]) if bits is not None else 0, summary, i)
            if bits is not None
            else "no data"
            for i in range(len(labels))
        ]
        return {
            "now": now,
            "connected": self.connected,
            "outage_since": self.outage_since,
            "daemon_state": st.get("state") if self.connected else "unreachable",
            "stream": info.get("stream"),
            "restarts": self.restarts,
            "channels": labels,
            "labels": list(info.get("labels") or []),
            "quality": quality,
            "rate": self._rate(now),
            "baseline_ready": st.get("baseline_ready"),
            "epoch": st.get("epoch"),
            "protocol": self._protocol(now),
            "protocols": sorted(self.protocols),
            "session": self.session,
            "last_session": self.last_session,
            "sessions_supported": self.sessions_supported,
            "last_marker": self.last_marker,
            "last_epoch": self.last_epoch,
        }

    def _rate(self, now: float) -> str:
        if not self.connected:  # the last measured rate would be stale
            return f"No data from the daemon since {_clock(self.outage_since or now)}."
        nominal = float(self.info.get("rate_hz") or 0)
        text = rate_sentence(nominal, self.status.get("rate_hz"), self.gaps, self.missed)
        return text + self._outage_sentence()

    def _outage_sentence(self) -> str:
        if self.last_outage is None:
            return ""
        start, end = self.last_outage
        again = "restarted" if self.restarts else "answered again"
        return f" The daemon {again} at {_clock(end)} after {end - start:.0f} s without data."

    def _protocol(self, now: float) -> dict[str, Any] | None:
        """The running protocol with its next step (from the configured list)."""
        p = self.status.get("protocol")
        if not isinstance(p, dict) or p.get("finished") or "step" not in p:
            return None
        steps = self.protocols.get(str(p.get("name")), [])
        step = int(p["step"])
        nxt = steps[step + 1] if step + 1 < len(steps) else None
        end_t = p.get("step_end_t")
        left = max(0.0, end_t - now) if isinstance(end_t, (int, float)) else p.get("time_left_s")
        return {
            **p,
            "time_left_s": left,
            "next": {"label": nxt[0], "seconds": nxt[1]} if nxt else None,
        }
