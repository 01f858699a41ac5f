"""The latency benchmark's tables: per pipeline, the floor + processing split, the goals
of the performance issue (nirsd against the floor and the pyserial → pylsl script), the
JSON/npz results and the README block (``python bench/latency.py --readme``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from common import machine

__all__ = ["fmt", "goals", "goals_table", "save", "split", "split_table", "table", "write_readme"]


def fmt(v: Any, spec: str = ".0f") -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return format(v, spec)


def table(rows: list[dict[str, Any]]) -> str:
    head = "| load | pipeline | samples | lost | p50 µs | p99 µs | max µs | CPU % of a core |"
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['load']} | {r['pipeline']} | error: {r['error']} |||||")
            continue
        lines.append(
            f"| {r['load']} | {r['pipeline']} | {r['n']} | {r['lost']} | "
            f"{fmt(r['p50_us'])} | {fmt(r['p99_us'])} | {fmt(r['max_us'])} | "
            f"{fmt(r['cpu_pct'], '.2f')} |"
        )
    return "\n".join(lines)


def split(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per load: nirsd's p50/p99 as transport floor + processing (nirsd − floor), µs."""
    by = {(r["load"], r["pipeline"]): r for r in rows if "error" not in r and r.get("n")}
    out = []
    for lab in dict.fromkeys(r["load"] for r in rows):
        d, f = by.get((lab, "nirsd")), by.get((lab, "floor"))
        if d is None or f is None:
            continue
        row: dict[str, Any] = {"load": lab}
        for q in ("p50", "p99"):
            row[f"nirsd_{q}_us"] = d[f"{q}_us"]
            row[f"floor_{q}_us"] = f[f"{q}_us"]
            row[f"processing_{q}_us"] = d[f"{q}_us"] - f[f"{q}_us"]
        row["floor_share_p50"] = f["p50_us"] / d["p50_us"] if d["p50_us"] > 0 else None
        out.append(row)
    return out


def split_table(rows: list[dict[str, Any]]) -> str:
    """nirsd's latency split into the transport floor and its own processing."""
    lines = [
        "| load | nirsd p50 µs | floor p50 µs | processing p50 µs | floor share of p50 "
        "| nirsd p99 µs | floor p99 µs | processing p99 µs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in split(rows):
        share = None if r["floor_share_p50"] is None else 100 * r["floor_share_p50"]
        lines.append(
            f"| {r['load']} | {fmt(r['nirsd_p50_us'])} | {fmt(r['floor_p50_us'])} | "
            f"{fmt(r['processing_p50_us'])} | {fmt(share)} % | "
            f"{fmt(r['nirsd_p99_us'])} | {fmt(r['floor_p99_us'])} | "
            f"{fmt(r['processing_p99_us'])} |"
        )
    return "\n".join(lines) if len(lines) > 2 else ""


#: the goals nirsd is held to against the transport floor (bench/README.md)
GOAL_P50, GOAL_P99, GOAL_CPU = 1.25, 1.5, 2.0


def goals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per load: nirsd / floor at p50 and p99, nirsd against serial-lsl, CPU ratio."""
    by = {(r["load"], r["pipeline"]): r for r in rows if "error" not in r and r.get("n")}
    out = []
    for lab in dict.fromkeys(r["load"] for r in rows):
        d, f, s, h, w, m = (
            by.get((lab, name))
            for name in ("nirsd", "floor", "serial-lsl", "hb-floor", "wire-floor", "frames-floor")
        )
        if d is None or f is None:
            continue
        row: dict[str, Any] = {"load": lab, "lost": d["lost"] + d.get("daemon_lost", 0)}
        for q in ("p50", "p99"):
            row[f"{q}_ratio"] = _ratio(d, f, q)
            row[f"{q}_vs_serial_lsl"] = None if s is None else d[f"{q}_us"] - s[f"{q}_us"]
            row[f"{q}_vs_hb_floor"] = _ratio(d, h, q)
            row[f"{q}_vs_wire_floor"] = _ratio(d, w, q)
            row[f"{q}_wire_over_floor"] = _ratio(w, f, q)  # what the wire contract costs
            row[f"{q}_frames_over_floor"] = _ratio(m, f, q)  # of it, the message's shape
        cpu_d, cpu_f = d.get("cpu_pct"), f.get("cpu_pct")
        row["cpu_nirsd_pct"], row["cpu_floor_pct"] = cpu_d, cpu_f
        row["cpu_ratio"] = cpu_d / cpu_f if cpu_d is not None and cpu_f else None
        out.append(row)
    return out


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, q: str) -> float | None:
    """a's percentile ``q`` over b's (None where either is missing)."""
    if a is None or b is None or not b[f"{q}_us"] > 0:
        return None
    return float(a[f"{q}_us"] / b[f"{q}_us"])


def _mark(value: float | None, limit: float, spec: str = ".2f") -> str:
    return "-" if value is None else f"{value:{spec}} {'ok' if value <= limit else 'over'}"


def goals_table(rows: list[dict[str, Any]]) -> str:
    """nirsd against the floor and serial-lsl, with each goal met ("ok") or not."""
    lines = [
        f"| load | nirsd/floor p50 (≤ {GOAL_P50}) | nirsd/floor p99 (≤ {GOAL_P99}) "
        "| nirsd − serial-lsl p50 µs (< 0) | nirsd − serial-lsl p99 µs (< 0) "
        f"| CPU nirsd % | CPU floor % | CPU ratio (≤ {GOAL_CPU}) | nirsd lost (0) "
        "| frames-floor/floor p50 | wire-floor/floor p50 | nirsd/wire-floor p50 "
        "| nirsd/hb-floor p50 | nirsd/hb-floor p99 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in goals(rows):
        lines.append(
            f"| {r['load']} | {_mark(r['p50_ratio'], GOAL_P50)} "
            f"| {_mark(r['p99_ratio'], GOAL_P99)} "
            f"| {_mark(r['p50_vs_serial_lsl'], -1e-9, '.0f')} "
            f"| {_mark(r['p99_vs_serial_lsl'], -1e-9, '.0f')} "
            f"| {fmt(r['cpu_nirsd_pct'], '.2f')} | {fmt(r['cpu_floor_pct'], '.2f')} "
            f"| {_mark(r['cpu_ratio'], GOAL_CPU)} | {_mark(r['lost'], 0, 'd')} "
            f"| {fmt(r['p50_frames_over_floor'], '.2f')} "
            f"| {fmt(r['p50_wire_over_floor'], '.2f')} | {fmt(r['p50_vs_wire_floor'], '.2f')} "
            f"| {fmt(r['p50_vs_hb_floor'], '.2f')} | {fmt(r['p99_vs_hb_floor'], '.2f')} |"
        )
    return "\n".join(lines) if len(lines) > 2 else ""


def save(rows: list[dict[str, Any]], path: Path) -> None:
    """JSON without the latency arrays; those go to a .npz beside it (for the CDF)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = [{k: v for k, v in r.items() if k != "_lat"} for r in rows]
    path.write_text(
        json.dumps(
            {"machine": machine(), "rows": clean, "split": split(rows), "goals": goals(rows)},
            indent=1,
        )
    )
    arrays = {f"{r['load']}|{r['pipeline']}": r["_lat"] for r in rows if "_lat" in r}
    np.savez(path.with_suffix(".npz"), **arrays)


def write_readme(rows: list[dict[str, Any]], info: dict[str, Any] | None = None) -> None:
    """The latency and goals tables into README.md's ``bench:latency`` block; ``info``:
    the machine as it was when the run started (else as it is now)."""
    import readme

    parts = [readme.provenance(info or machine()), table(rows)]
    if goals_table(rows):
        parts += ["Against the performance goals (same run; `ok` where met):", goals_table(rows)]
    readme.replace_block("latency", "\n\n".join(parts))
    print(f"updated {readme.README}")
