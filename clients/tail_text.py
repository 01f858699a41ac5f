"""``nirsd tail`` without ``--json``: aligned columns for people.

Sample topics get a two-line header (local time zone, units, channel labels) before the
first line, then one aligned line per sample: local clock time, sample index, epoch,
and per channel ΔHbO and ΔHbR in µM (``hb``), the intensities per wavelength (``raw``)
or the optical densities (``od``).  Event topics get one sentence per event (an epoch
summary: a heading and a line per channel).  ``--json`` keeps the JSON contract.
"""

from __future__ import annotations

import time
from typing import Any

from . import readable

TIME_W, SEQ_W, EPOCH_W = 12, 8, 10
SEP = " │ "


class HumanText:
    """Turns tail's line dicts into text lines; ``labels`` name the channels."""

    def __init__(
        self, topic: str, labels: list[str] | None = None, wavelengths_nm: list[float] | None = None
    ) -> None:
        self.topic = topic
        self.labels = list(labels or [])
        self.wavelengths = list(wavelengths_nm or [])
        self.header_done = False

    # -- sample topics -------------------------------------------------------------
    def _widths(self, n_ch: int, cell: int) -> list[int]:
        if len(self.labels) != n_ch:
            self.labels = [f"ch{i}" for i in range(n_ch)]
        return [max(cell, len(label)) for label in self.labels]

    def _lead(self, line: dict[str, Any]) -> str:
        epoch = line.get("epoch") or "-"
        return (
            f"{readable.clock(line.get('t')):<{TIME_W}} {line['seq']:>{SEQ_W}} {epoch:<{EPOCH_W}}"
        )

    def _header(self, groups: list[tuple[str, list[int]]]) -> list[str]:
        lead = f"{'time (' + time.strftime('%Z') + ')':<{TIME_W}} {'sample':>{SEQ_W}} "
        lead += f"{'epoch':<{EPOCH_W}}"
        top, names = lead, " " * len(lead)
        for title, widths in groups:
            block = " ".join(f"{label:>{w}}" for label, w in zip(self.labels, widths))
            top += SEP + f"{title:<{len(block)}}"
            names += SEP + block
        return [top.rstrip(), names.rstrip()]

    def _hb(self, line: dict[str, Any]) -> list[str]:
        widths = self._widths(len(line["hbo"]), 7)
        out = []
        if not self.header_done:
            out += self._header([("ΔHbO (µM)", widths), ("ΔHbR (µM)", widths)])
        row = self._lead(line)
        for key in ("hbo", "hbr"):
            row += SEP + " ".join(
                f"{'nan':>{w}}" if v is None else f"{v:>+{w}.3f}" for v, w in zip(line[key], widths)
            )
        return [*out, row]

    def _per_wavelength(self, line: dict[str, Any], key: str, fmt: str, title: str) -> list[str]:
        chans = line[key]
        n_wl = len(chans[0]) if chans else 0
        cell = 8 * n_wl - 1  # 7 per value, '/' between
        widths = self._widths(len(chans), cell)
        out = []
        if not self.header_done:
            wl = "/".join(f"{w:g}" for w in self.wavelengths[:n_wl]) or "per wavelength"
            out += self._header([(f"{title} at {wl} nm, per channel", widths)])
        cells = [
            "/".join("nan" if v is None else f"{v:{fmt}}" for v in ch).rjust(w)
            for ch, w in zip(chans, widths)
        ]
        return [*out, self._lead(line) + SEP + " ".join(cells)]

    # -- all topics ----------------------------------------------------------------
    def lines(self, line: dict[str, Any]) -> list[str]:
        """The text for one tail line (several for a header or an epoch summary)."""
        if self.topic == "hb":
            out = self._hb(line)
        elif self.topic == "raw":
            out = self._per_wavelength(line, "intensity", ".0f", "intensity")
        elif self.topic == "od":
            out = self._per_wavelength(line, "od", ".4f", "optical density")
        else:
            return self._event(line)
        self.header_done = True
        return out

    def _event(self, h: dict[str, Any]) -> list[str]:
        when = readable.clock(h.get("time", h.get("t")))
        if self.topic == "marker":
            return [f"{when}  marker  {readable.marker_line(h)}"]
        if self.topic == "epoch":
            head, *rows = readable.epoch_lines(h)
            return [f"{when}  epoch   {head}", *(" " * len(when) + row for row in rows)]
        if self.topic == "status":
            return [f"{when}  status  {readable.status_event_line(h)}"]
        from .tail import format_human

        return [format_human(self.topic, h)]
