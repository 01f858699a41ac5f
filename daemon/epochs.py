"""Epoch summaries: the study's outcome measure, computed when an epoch ends.

Per channel, the mean ΔHbO, ΔHbR and ΔHbT during the epoch minus their mean over the
pre-epoch baseline window, plus the change of largest magnitude and its latency, and
the share of the baseline and epoch samples flagged as motion.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .motion import detect_live
from .ringbuffer import RingBuffer
from .wire import HB_FIELDS

FIELDS = HB_FIELDS


@dataclass
class Epoch:
    label: str
    start_id: int
    onset_seq: int
    onset_t: float
    end_id: int | None = None
    end_seq: int | None = None


def _nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN channels give NaN
        return np.nanmean(x, axis=axis)


def window_pending(epoch: Epoch, ring: RingBuffer, baseline_n: int, bit: int) -> bool:
    """True when a held sample of the epoch or its pre-epoch window has quality ``bit``
    (the converter's BASELINE_PENDING: its ΔHb used a provisional I0)."""
    assert epoch.end_seq is not None
    (quality,) = ring.columns(max(0, epoch.onset_seq - baseline_n), epoch.end_seq, ("quality",))
    return bool((quality & bit).any())


def summarize(
    epoch: Epoch,
    ring: RingBuffer,
    baseline_n: int,
    rate_hz: float,
    channel_labels: list[str],
    recompute: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, Any]:
    """The ``epoch`` message body for a closed epoch whose samples are in ``ring``.

    ``recompute``: raw intensities (n, n_ch, n_wl) -> hb (n, 3, n_ch), used instead of
    the held hb (which was converted with a provisional I0).
    """
    assert epoch.end_seq is not None
    base_from = max(0, epoch.onset_seq - baseline_n)
    block, _ = ring.read(base_from, epoch.end_seq)
    split = max(0, epoch.onset_seq - block.seq)
    hb = block.hb if recompute is None else recompute(block.raw)  # (n, 3, n_ch) µM
    base = _nanmean(hb[:split], 0) if split else np.full(hb.shape[1:], np.nan)
    during = hb[split:]
    body: dict[str, Any] = {
        "label": epoch.label,
        "start_id": epoch.start_id,
        "end_id": epoch.end_id,
        "onset_seq": epoch.onset_seq,
        "end_seq": epoch.end_seq,
        "onset_t": epoch.onset_t,
        "duration_s": (epoch.end_seq - epoch.onset_seq) / rate_hz,
        "baseline_s": split / rate_hz,
        "baseline_seq": [block.seq, block.seq + split],
        "n_samples": int(during.shape[0]),
        "n_baseline": int(split),
        "channels": list(channel_labels),
    }
    if during.shape[0] == 0:
        nan = np.full(hb.shape[1:], np.nan)
        mean, peak, latency = nan, nan, nan
    else:
        change = during - base  # (m, 3, n_ch)
        mean = _nanmean(change, 0)
        mag = np.where(np.isnan(change), -np.inf, np.abs(change))
        idx = np.argmax(mag, axis=0)  # (3, n_ch)
        peak = np.take_along_axis(change, idx[None], 0)[0]
        t_during = block.t[split:]
        latency = t_during[idx] - t_during[0]
        latency = np.where(np.isnan(peak), np.nan, latency)
    # share of the pre-epoch window and the epoch flagged as motion (nirsd.daemon.motion)
    moving = detect_live(block.raw, rate_hz)
    body["motion_fraction"] = np.round(moving.mean(axis=0), 4).tolist() if len(moving) else []
    for i, name in enumerate(FIELDS):
        body[f"mean_{name}"] = mean[i].tolist()
        body[f"peak_{name}"] = peak[i].tolist()
    body["peak_latency_s"] = {name: latency[i].tolist() for i, name in enumerate(FIELDS)}
    return body


def summarize_values(
    epoch: Epoch, base: np.ndarray, during: np.ndarray, rate_hz: float, layout: Any
) -> dict[str, Any]:
    """The ``epoch`` body (``"kind": "derived"``) for a device's computed values.

    ``base``/``during``: (n, n_values) values of the pre-epoch window and of the epoch;
    per column the mean during minus the mean before (NaN where either has no value),
    grouped by value name as ``mean_<name>`` lists (one entry per column of that name).
    """
    assert epoch.end_seq is not None
    n_values = len(layout.names)
    mean_base = _nanmean(base, 0) if base.shape[0] else np.full(n_values, np.nan)
    mean_during = _nanmean(during, 0) if during.shape[0] else np.full(n_values, np.nan)
    change = mean_during - mean_base
    body: dict[str, Any] = {
        "kind": "derived",
        "label": epoch.label,
        "start_id": epoch.start_id,
        "end_id": epoch.end_id,
        "onset_seq": epoch.onset_seq,
        "end_seq": epoch.end_seq,
        "onset_t": epoch.onset_t,
        "duration_s": (epoch.end_seq - epoch.onset_seq) / rate_hz,
        "baseline_s": base.shape[0] / rate_hz,
        "n_samples": int(during.shape[0]),
        "n_baseline": int(base.shape[0]),
        **layout.describe(),
        "mean_change": change.tolist(),
    }
    for name in dict.fromkeys(layout.names):
        cols = [i for i, n in enumerate(layout.names) if n == name]
        body[f"mean_{name}"] = change[cols].tolist()
    return body
