"""Epoch summaries: the study's outcome measure, computed when an epoch ends.

Per channel, the mean ΔHbO, ΔHbR and ΔHbT during the epoch minus their mean over the
pre-epoch baseline window, plus the change of largest magnitude and its latency, and
the share of the baseline and epoch samples flagged as motion.
"""

from __future__ import annotations

import warnings
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


def summarize(
    epoch: Epoch, ring: RingBuffer, baseline_n: int, rate_hz: float, channel_labels: list[str]
) -> dict[str, Any]:
    """The ``epoch`` message body for a closed epoch whose samples are in ``ring``."""
    assert epoch.end_seq is not None
    base_from = max(0, epoch.onset_seq - baseline_n)
    block, _ = ring.read(base_from, epoch.end_seq)
    split = max(0, epoch.onset_seq - block.seq)
    hb = block.hb  # (n, 3, n_ch) µM
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
