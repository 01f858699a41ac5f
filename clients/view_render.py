"""What ``nirsd view`` draws: one rich renderable from a :class:`ViewState`.

Sparklines of every channel share one scale (shown above the table), so noise and a
real 10 µM change do not look alike; drops are said in words; the last epoch summary is
labelled and kept within 80 columns; the key legend names the marker keys.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from . import readable

BLOCKS = "▁▂▃▄▅▆▇█"
LOW_LIGHT, SATURATED, BASELINE_PENDING, POOR_SIGNAL = 2, 1, 4, 8
#: terminal width from which the table also shows the last epoch per channel
WIDE = 110


def _block_means(v: np.ndarray, width: int) -> np.ndarray:
    """``v`` reduced to ``width`` cells by means over equal slices (NaN where all NaN)."""
    edges = np.linspace(0, v.size, width + 1).astype(int)
    with np.errstate(invalid="ignore"):
        sums = np.add.reduceat(np.nan_to_num(v), edges[:-1])
        counts = np.add.reduceat(np.isfinite(v).astype(np.int64), edges[:-1])
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def sparkline(
    values: np.ndarray, width: int, lo: float | None = None, hi: float | None = None
) -> str:
    """Unicode block sparkline of ``values`` (NaN shown as a space), ``width`` cells.

    ``lo``/``hi``: the scale (µM) the lowest and highest block stand for; by default the
    values' own range.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0 or width <= 0:
        return ""
    if v.size > width:  # newest at the right
        v = _block_means(v, width)
    finite = np.isfinite(v)
    if not finite.any():
        return " " * v.size
    lo = float(v[finite].min()) if lo is None else lo
    hi = float(v[finite].max()) if hi is None else hi
    span = hi - lo if hi > lo else 1.0
    idx = np.clip(((np.nan_to_num(v, nan=lo) - lo) / span * 7.999).astype(int), 0, 7)
    return "".join(BLOCKS[i] if ok else " " for i, ok in zip(idx, finite))


def common_scale(*arrays: np.ndarray) -> tuple[float, float] | None:
    """(lo, hi) over every finite value of ``arrays`` (µM), or None when there is none."""
    finite = [a[np.isfinite(a)] for a in arrays if a.size]
    values = np.concatenate(finite) if finite else np.zeros(0)
    if not values.size:
        return None
    return float(values.min()), float(values.max())


def _fmt(x: float) -> str:
    return "   nan" if not np.isfinite(x) else f"{x:+.3f}"


def _quality_cell(state: Any, i: int) -> Text:
    q = state.qual[-state.filled :, i] if state.filled else state.qual[:0, i]
    summary = state.status.get("quality")
    parts: list[tuple[str, str]] = []
    if q.size and q[-1] & BASELINE_PENDING:
        parts.append(("baseline", "yellow"))
    for bit, name in ((LOW_LIGHT, "low light"), (SATURATED, "saturated")):
        frac = float(np.mean((q & bit) > 0)) if q.size else 0.0
        if frac > 0:
            parts.append((f"{name} {frac:.0%}", "red"))
    if isinstance(summary, dict):
        poor, pi = summary.get("poor"), summary.get("pulsatility")
        if isinstance(pi, list) and i < len(pi) and pi[i] is not None:
            parts.append((f"PI {pi[i]:.2f}", "cyan"))
        if isinstance(poor, list) and i < len(poor):
            parts.append(("poor", "red") if poor[i] else ("good", "green"))
    elif q.size and q[-1] & POOR_SIGNAL:
        parts.append(("poor", "red"))
    if not parts:
        parts.append(("ok", "green"))
    text = Text()
    for j, (s, style) in enumerate(parts):
        text.append((" " if j else "") + s, style=style)
    return text


def _epoch_text(state: Any, now: float) -> str:
    """The open epoch: the label on the newest sample, its age from ``status`` if known."""
    st_epoch = state.status.get("epoch")
    if state.epoch is None:
        return "-"
    if (
        isinstance(st_epoch, dict)
        and st_epoch.get("label") == state.epoch
        and isinstance(st_epoch.get("onset_t"), (int, float))
    ):
        return f"{state.epoch} {max(0.0, now - st_epoch['onset_t']):.0f} s"
    return str(state.epoch)


def _describe(obj: Any) -> str:
    """A short text for a status ``protocol`` value of unknown shape."""
    if obj is None:
        return "-"
    if isinstance(obj, str):
        return obj
    if isinstance(obj, dict):
        return readable.protocol_words(obj)
    return str(obj)


def _head(state: Any) -> list[Text]:
    st = state.status
    counters = st.get("counters") or {}
    head = Text()
    head.append("nirsd ", style="bold")
    if not state.connected:
        head.append("waiting for the daemon… ", style="bold red")
    head.append(f"stream {state.stream or '-'}  state {st.get('state', '-')}  ")
    head.append(f"rate {float(st.get('rate_hz') or 0):.1f} Hz (recv {state.measured_rate():.1f})")
    extra = {
        "messages missed by this view": state.msg_lost,
        "samples missing in seq": state.seq_lost,
    }
    words = readable.drops_words(counters, extra)
    drops = Text(f"drops: {words}", style="" if words == "no samples lost" else "red")
    if state.restarts:
        drops.append(f"   restarts {state.restarts}", style="yellow")
    return [head, drops]


def _marker_lines(state: Any, now: float) -> list[Text]:
    st = state.status
    line = Text(f"epoch {_epoch_text(state, now)}   protocol {_describe(st.get('protocol'))}")
    out = [line]
    if state.last_marker:
        m = state.last_marker
        out.append(Text(f"last marker {m.get('label')}/{m.get('action')} at seq {m.get('seq')}"))
    return out


def _table(state: Any, width: int) -> tuple[Table, tuple[float, float] | None]:
    n = state.filled
    hbo = state.hbo[-n:] if n else state.hbo[:0]
    hbr = state.hbr[-n:] if n else state.hbr[:0]
    scale = common_scale(hbo, hbr)
    lo, hi = scale if scale else (None, None)
    wide = width >= WIDE and state.last_epoch is not None
    spark_w = max(6, (width - 48 - (16 if wide else 0)) // 2)
    table = Table(expand=False, box=None, pad_edge=False, header_style="bold")
    table.add_column("channel", no_wrap=True)
    table.add_column("HbO µM", justify="right", style="red", no_wrap=True)
    table.add_column(f"HbO {state.window_s:.0f} s", style="red", no_wrap=True)
    table.add_column("HbR µM", justify="right", style="blue", no_wrap=True)
    table.add_column(f"HbR {state.window_s:.0f} s", style="blue", no_wrap=True)
    table.add_column("quality", no_wrap=True)
    if wide:
        table.add_column("last epoch ΔHbO/ΔHbR", justify="right", no_wrap=True)
    e = state.last_epoch or {}
    for i, label in enumerate(state.labels):
        row = [
            label,
            _fmt(hbo[-1, i]) if n else "-",
            sparkline(hbo[:, i], spark_w, lo, hi),
            _fmt(hbr[-1, i]) if n else "-",
            sparkline(hbr[:, i], spark_w, lo, hi),
            _quality_cell(state, i),
        ]
        if wide:
            vals = [(e.get(k) or [None] * (i + 1))[i] for k in ("mean_hbo", "mean_hbr")]
            row.append("/".join("nan" if v is None else f"{v:+.2f}" for v in vals))
        table.add_row(*row)
    return table, scale


def _epoch_summary(e: dict[str, Any]) -> list[Text]:
    """The last epoch in two labelled lines of at most 80 columns: mean ± SD over channels."""
    names = e.get("channels") or []
    first = Text(
        f"last epoch: {e.get('label')}, {float(e.get('duration_s') or 0):.1f} s; µM change "
        f"from baseline, mean ± SD of {readable.plural(len(names), 'channel')}:",
        style="dim",
    )
    cells = []
    for key, name in (("mean_hbo", "ΔHbO"), ("mean_hbr", "ΔHbR"), ("mean_hbt", "ΔHbT")):
        vals = np.array([np.nan if v is None else v for v in e.get(key) or []], float)
        ok = vals[np.isfinite(vals)]
        if ok.size:
            sd = float(ok.std(ddof=1)) if ok.size > 1 else 0.0
            cells.append(f"{name} {float(ok.mean()):+.3f} ± {sd:.3f}")
        else:
            cells.append(f"{name} -")
    return [first, Text("  " + "   ".join(cells), style="dim")]


def key_legend(labels: list[str]) -> str:
    """The key hint: marker keys for the configured labels, then ``q quits`` (last)."""
    keys = [f"{i + 1} {label}" for i, label in enumerate(labels[:9])]
    if not keys:
        return "q quits"
    return f"keys: {' · '.join(keys)} start; again or e: end · q quits"


def render(state: Any, now: float, width: int = 100) -> RenderableType:
    """The whole screen for the current state."""
    parts: list[RenderableType] = [*_head(state), *_marker_lines(state, now)]
    table, scale = _table(state, width)
    if scale is not None:
        lo, hi = scale
        parts.append(
            Text(
                f"sparklines: last {state.window_s:.0f} s, one scale for all: "
                f"▁ {lo:+.2f} … █ {hi:+.2f} µM",
                style="dim",
            )
        )
    parts.append(table)
    if state.last_epoch:
        parts += _epoch_summary(state.last_epoch)
    if state.note:
        parts.append(Text(state.note, style="yellow"))
    parts.append(Text(key_legend(state.vocabulary), style="dim"))
    return Group(*parts)
