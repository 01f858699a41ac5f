"""``report.html``: one self-contained page (figures as base64 PNG, tables inline)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import pandas as pd

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; font-size: 12px; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #f0f0f0; } td.t { text-align: left; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
.note { color: #555; font-size: 13px; }
"""


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.4g}"
    return html.escape(str(value))


def table(df: pd.DataFrame, limit: int | None = None) -> str:
    """An HTML table of ``df`` (first ``limit`` rows), n/a for NaN."""
    shown = df if limit is None else df.head(limit)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    body = []
    for row in shown.itertuples(index=False):
        cells = "".join(
            f'<td class="t">{_cell(v)}</td>' if isinstance(v, str) else f"<td>{_cell(v)}</td>"
            for v in row
        )
        body.append(f"<tr>{cells}</tr>")
    more = ""
    if limit is not None and len(df) > limit:
        more = f'<p class="note">first {limit} of {len(df)} rows; all are in the TSV.</p>'
    return f"<table><tr>{head}</tr>{''.join(body)}</table>{more}"


def image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


def write_html(
    path: Path,
    summary: dict[str, Any],
    runs: pd.DataFrame,
    groups: pd.DataFrame,
    tests: pd.DataFrame,
    subjects: pd.DataFrame,
    figures: list[Path],
) -> None:
    """Write the page: summary, figures, group and test tables, subject means, runs."""
    facts = "".join(
        f"<tr><td class='t'>{html.escape(k)}</td><td class='t'>{_cell(v)}</td></tr>"
        for k, v in summary.items()
    )
    subj_all = subjects[subjects["channel"] == "all"]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>nirsd study report: {html.escape(str(summary.get('dataset', '')))}</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>Study report</h1>",
        f"<table>{facts}</table>",
        "<p class='note'>Changes are µM relative to the mean over the pre-epoch window; "
        "they do not depend on the reference intensity I0. Methods and columns: "
        "docs/report.md.</p>",
        "<h2>Figures</h2>",
        *[image(p) for p in figures],
        "<h2>Groups (channel all, mean_change)</h2>",
        table(groups),
        "<h2>Between-group tests</h2>",
        table(tests),
        "<h2>Subject means (channel all)</h2>",
        table(subj_all, limit=2000),
        "<h2>Runs</h2>",
        table(runs),
        "</body></html>",
    ]
    path.write_text("\n".join(parts), encoding="utf-8")
