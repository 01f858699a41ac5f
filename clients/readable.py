"""Text for people: the daemon's status, probe, replies and events as short lines.

``--json`` (and any output that is not a terminal, where scripts read it) keeps the
daemon's JSON; these functions give the same facts in words: local clock times, channel
labels, units, and drops said as what was lost.
"""

from __future__ import annotations

import time
from typing import Any

#: counters that mean bytes or frames the daemon rejected (each named in words)
REJECTED = (
    ("crc_errors", "failed CRC"),
    ("length_errors", "bad length"),
    ("decode_errors", "undecodable"),
    ("shape_errors", "wrong shape"),
)


def clock(t: float | None, ms: bool = True) -> str:
    """``HH:MM:SS.mmm`` in local time for Unix seconds ``t`` ('-' without one)."""
    if not isinstance(t, (int, float)):
        return "-"
    text = time.strftime("%H:%M:%S", time.localtime(t))
    return f"{text}.{int((t % 1) * 1000):03d}" if ms else text


def zone() -> str:
    """The local time zone's name and today's date, for a header saying what times mean."""
    return time.strftime("%Y-%m-%d %Z")


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def drops_words(counters: dict[str, Any], extra: dict[str, int] | None = None) -> str:
    """What was lost, in words: "no samples lost", or each loss with its count.

    ``extra``: losses seen by the client itself, e.g. ``{"messages missed here": 3}``.
    """
    parts = []
    lost = int(counters.get("lost_samples") or 0)
    if lost:
        parts.append(f"{plural(lost, 'sample')} lost by the device")
    for what, n in (extra or {}).items():
        if n:
            parts.append(f"{n} {what}")
    rejected = [(int(counters.get(k) or 0), words) for k, words in REJECTED]
    frames = sum(n for n, _ in rejected)
    if frames:
        why = ", ".join(f"{n} {words}" for n, words in rejected if n)
        parts.append(f"{plural(frames, 'frame')} rejected ({why})")
    if not parts:
        return "no samples lost"
    return "; ".join(parts)


def epoch_words(epoch: Any, now: float | None = None) -> str:
    """The open epoch of a status reply: label, since when, for how long."""
    if not isinstance(epoch, dict) or not epoch.get("label"):
        return "none open"
    onset = epoch.get("onset_t")
    if not isinstance(onset, (int, float)):
        return str(epoch["label"])
    now = time.time() if now is None else now
    return f"{epoch['label']} since {clock(onset, ms=False)} ({max(0.0, now - onset):.0f} s)"


def protocol_words(p: Any) -> str:
    """A running protocol: name, step n/N with its label, time left."""
    if not isinstance(p, dict):
        return "none running"
    if p.get("finished"):
        return f"{p.get('name', 'protocol')} finished"
    step = f"step {int(p.get('step', 0)) + 1}/{p.get('steps', '?')}"
    left = p.get("time_left_s")
    left_text = f", {left:.0f} s left" if isinstance(left, (int, float)) else ""
    return f"{p.get('name', '?')} {step} {p.get('label', '')}{left_text}".replace("  ", " ")


def status_lines(st: dict[str, Any], now: float | None = None) -> list[str]:
    """``nirsd status`` for people: state, rate, drops, baseline, epoch, protocol, quality."""
    counters = st.get("counters") or {}
    lines = [
        f"state     {st.get('state', '?')} on {st.get('port') or '-'} ({st.get('driver', '?')}),"
        f" up {float(st.get('uptime_s') or 0):.0f} s",
        f"rate      {float(st.get('rate_hz') or 0):.1f} Hz, {st.get('samples', 0)} samples",
        f"drops     {drops_words(counters)}",
        f"baseline  {'ready' if st.get('baseline_ready') else 'being taken (values provisional)'}",
        f"epoch     {epoch_words(st.get('epoch'), now)}",
        f"protocol  {protocol_words(st.get('protocol'))}",
    ]
    markers = st.get("markers")
    if isinstance(markers, dict):
        lines.append(
            f"markers   {markers.get('accepted', 0)} accepted, {markers.get('rejected', 0)} "
            f"rejected, {markers.get('pending', 0)} pending"
        )
    quality = st.get("quality")
    if isinstance(quality, dict) and isinstance(quality.get("poor"), list):
        names = quality.get("channels") or [f"ch{i}" for i in range(len(quality["poor"]))]
        poor = [str(n) for n, bad in zip(names, quality["poor"]) if bad]
        lines.append(
            f"quality   {'poor: ' + ', '.join(poor) if poor else 'all'} "
            f"{'' if poor else plural(len(names), 'channel') + ' good'}".rstrip()
        )
    gaps = st.get("gaps") or []
    if gaps:
        lines.append(f"gaps      {len(gaps)} recent (see --json for each)")
    if st.get("last_error"):
        lines.append(f"error     {st['last_error']}")
    return lines


def info_lines(info: dict[str, Any]) -> list[str]:
    """``nirsd info`` for people: the stream, the probe and one line per channel."""
    wl = "/".join(f"{w:g}" for w in info.get("wavelengths_nm") or [])
    lines = [
        f"stream    {info.get('stream', '-')} (nirsd {info.get('version', '?')}), "
        f"{info.get('driver', '?')} on {info.get('port') or '-'}, {info.get('state', '?')}",
        f"probe     {info.get('device_id') or '-'}: "
        f"{plural(int(info.get('n_channels') or 0), 'channel')}, {wl or '?'} nm, "
        f"{float(info.get('rate_hz') or 0):g} Hz",
        f"labels    {', '.join(info.get('labels') or []) or '-'}",
        f"history   samples {info.get('oldest', '-')} to {info.get('seq', '-')}",
    ]
    chans = info.get("channels") or []
    if chans:
        width = max(len(str(c.get("label", ""))) for c in chans)
        lines.append(f"{'':4}{'#':>3}  {'channel':<{width}}  distance  DPF")
        for c in chans:
            dpf = c.get("dpf")
            dpf_text = "/".join(f"{x:g}" for x in dpf) if isinstance(dpf, list) else str(dpf)
            lines.append(
                f"{'':4}{c.get('index', '?'):>3}  {str(c.get('label', '')):<{width}}  "
                f"{float(c.get('distance_mm') or 0):5.1f} mm  {dpf_text}"
            )
    return lines


def ended_words(ended: Any) -> str:
    """The epoch a marker ended: "extension (marker 16, 12.3 s)"."""
    if not isinstance(ended, dict):
        return ""
    dur = ended.get("duration_s")
    dur_text = f", {dur:.1f} s" if isinstance(dur, (int, float)) else ""
    return f"{ended.get('label')} (started by marker {ended.get('start_id')}{dur_text})"


def marker_line(m: dict[str, Any]) -> str:
    """A ``marker`` message or ``mark`` acknowledgement in words."""
    where = f"sample {m['seq']}" if m.get("seq") is not None else "pending (no samples yet)"
    text = f"{m.get('label')} {m.get('action')} at {where}, id {m.get('id')}"
    if m.get("source") and m.get("source") != "control":
        text += f" ({m['source']}"
        text += f", ended by marker {m['ended_by']})" if m.get("ended_by") else ")"
    if m.get("ended") and m.get("action") == "start":
        text += f"; ended {ended_words(m['ended'])}"
    return text


def epoch_lines(e: dict[str, Any]) -> list[str]:
    """An ``epoch`` summary: a heading, then per channel the mean change from baseline."""
    head = (
        f"{e.get('label')} {float(e.get('duration_s') or 0):.1f} s from sample "
        f"{e.get('onset_seq')}: mean change from the {float(e.get('baseline_s') or 0):.1f} s "
        f"before (µM)"
    )
    names = e.get("channels") or []
    width = max([len(str(n)) for n in names] + [7])
    rows = [f"  {'channel':<{width}}  {'ΔHbO':>7}  {'ΔHbR':>7}  {'ΔHbT':>7}"]
    for i, name in enumerate(names):
        vals = [(e.get(f"mean_{k}") or [None] * len(names))[i] for k in ("hbo", "hbr", "hbt")]
        cells = "  ".join("    nan" if v is None else f"{v:+7.3f}" for v in vals)
        rows.append(f"  {str(name):<{width}}  {cells}")
    return [head, *rows]


def status_event_line(h: dict[str, Any]) -> str:
    """A ``status`` message: periodic ones as a one-line summary, events by their kind."""
    event = h.get("event")
    if event == "baseline":
        return f"baseline re-take from sample {h.get('seq')} ({h.get('seconds', '?')} s window)"
    if event == "gap":
        lost = h.get("lost_samples", h.get("lost", "?"))
        span = h.get("span_s", h.get("gap_s"))
        span_text = f" over {span:.2f} s" if isinstance(span, (int, float)) else ""
        return f"gap: {lost} samples lost{span_text} at sample {h.get('seq')}"
    if event == "protocol":
        return f"protocol {h.get('what')}: {protocol_words(h.get('protocol'))}"
    if "state" in h:
        epoch = epoch_words(h.get("epoch"))
        proto = protocol_words(h.get("protocol"))
        return (
            f"{event or 'status'}: {h.get('state')}, {float(h.get('rate_hz') or 0):.1f} Hz, "
            f"{drops_words(h.get('counters') or {})}, "
            f"{'no epoch open' if epoch == 'none open' else 'epoch ' + epoch}, "
            f"{'no protocol running' if proto == 'none running' else 'protocol ' + proto}"
        )
    rest = {k: v for k, v in h.items() if k not in ("stream", "topic", "msg", "time", "event")}
    return f"{event or 'status'}: {rest}"


def protocol_reply_lines(reply: dict[str, Any]) -> list[str]:
    """A ``protocol`` reply: the list of protocols, or the running one."""
    if "protocols" in reply:
        protocols = reply["protocols"] or {}
        if not protocols:
            return ["no protocols configured"]
        return [
            f"{name}: " + ", ".join(f"{label} {secs:g} s" for label, secs in steps)
            for name, steps in protocols.items()
        ]
    return [f"protocol  {protocol_words(reply.get('protocol'))}"]
