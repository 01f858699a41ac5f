"""The sidecars of one fNIRS-BIDS run: nirs.json, channels, optodes, coordinates, events.

All are built from the daemon's ``info`` reply (through the SNIRF writer's
:class:`~nirsd.clients.snirf_writer.Layout`, so the names and indices agree with the
SNIRF file) and written when the run starts, so a crash leaves a complete dataset.
Events come from the recorder's journal by the same rule as the SNIRF stims
(:func:`nirsd.clients.recorder.intervals`), so events.tsv and the file agree.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .bids_dataset import EVENT_COLUMNS, BidsRun, write_json, write_tsv
from .recorder import intervals
from .snirf_writer import Layout

COORDSYSTEM_DESCRIPTION = (
    "A body-surface coordinate system on the lower back, not a head one: optode "
    "positions in mm as configured for the probe ([[channel]] source_pos_mm and "
    "detector_pos_mm in the nirsd config, x across the back, y along the spine, z out "
    "of the skin); without a configured geometry a nominal layout in which each "
    "channel is its own source-detector pair, sources 40 mm apart along x and each "
    "detector distance_mm away along y."
)
CHANNELS_JSON = {
    "att_mm": {
        "Description": "Adipose tissue thickness under the channel (skin and fat over the "
        "muscle), which scales the muscle's contribution to the signal; a covariate",
        "Units": "mm",
    },
    "label": {"Description": "The channel label in the nirsd config (e.g. the vertebral level)"},
    "units": {"Description": "n/a: raw device counts (arbitrary units, as the device sent them)"},
}
EVENTS_JSON: dict[str, dict[str, Any]] = {
    "trial_type": {
        "LongName": "Epoch label",
        "Description": "The marker label: an exercise epoch (onset and duration) or an "
        "instant marker (duration 0)",
    },
    "sample": {"Description": "Row of the onset in the run's SNIRF file (0 = first sample)"},
    "nirsd_seq": {"Description": "The daemon's absolute sample index of the onset"},
    "nirsd_end_seq": {"Description": "The daemon's sample index of the first sample after"},
    "marker_id": {"Description": "Id of the marker that started the epoch (per daemon stream)"},
    "end_marker_id": {"Description": "Id of the marker that ended it"},
    "source": {
        "Description": "Where the marker came from",
        "Levels": {
            "control": "an operator or a script (nirsd mark)",
            "protocol": "a timed protocol step",
            "device": "a trigger or button on the probe",
            "auto": "the implicit end of an epoch replaced by a new one",
        },
    },
}


def channel_name(layout: Layout, ch: int, wl: float) -> str:
    """MNE's fNIRS name, which ``mne.io.read_raw_snirf`` gives the same channel."""
    return f"S{layout.source_index[ch]}_D{layout.detector_index[ch]} {int(wl)}"


def placement(layout: Layout, given: str | None) -> str:
    if given:
        return given
    return "paraspinal muscles of the lower back; channels: " + ", ".join(layout.labels)


def nirs_json(
    layout: Layout, info: dict[str, Any], task: str, place: str, version: str
) -> dict[str, Any]:
    return {
        "TaskName": task,
        "TaskDescription": "Standardised lumbar exercises (rest, extension, flexion) as "
        "marked by nirsd; see events.tsv",
        "SamplingFrequency": float(info.get("rate_hz") or 0.0) or "n/a",
        "NIRSChannelCount": layout.n_channels * len(layout.wavelengths_nm),
        "NIRSSourceOptodeCount": int(len(layout.source_pos_mm)),
        "NIRSDetectorOptodeCount": int(len(layout.detector_pos_mm)),
        "Manufacturer": str(info.get("device_id") or info.get("driver") or "n/a"),
        "ManufacturersModelName": str(info.get("driver") or "n/a"),
        "SoftwareVersions": f"nirsd {version}",
        "CapManufacturer": "none",
        "CapManufacturersModelName": "none: optodes taped over the paraspinal muscles",
        "NIRSPlacementScheme": place,
        "SourceType": "LED",
        "RecordingType": "continuous",
        "PowerLineFrequency": "n/a",
    }


def set_duration(run: BidsRun, time_s: np.ndarray) -> None:
    """RecordingDuration in nirs.json (s), once the run's length is known."""
    import json

    path = run.path("nirs.json")
    sidecar = json.loads(path.read_text(encoding="utf-8"))
    step = float(np.median(np.diff(time_s))) if len(time_s) > 1 else 0.0
    sidecar["RecordingDuration"] = (
        round(float(time_s[-1] - time_s[0]) + step, 6) if len(time_s) else 0.0
    )
    write_json(path, sidecar)


def att_per_channel(info: dict[str, Any], session_att: list[float] | None) -> list[Any]:
    """ATT in mm per channel: the session's values, else the config's (None if unknown)."""
    n = int(info["n_channels"])
    if session_att:
        values = list(session_att) * (n if len(session_att) == 1 else 1)
        return [float(v) for v in values[:n]] + [None] * max(0, n - len(values))
    chans = info.get("channels") or []
    return [chans[i].get("att_mm") if i < len(chans) else None for i in range(n)]


def write_run_sidecars(
    run: BidsRun,
    layout: Layout,
    info: dict[str, Any],
    att_mm: list[Any],
    place: str,
    version: str,
) -> None:
    """nirs.json, channels.tsv/.json, optodes.tsv, coordsystem.json, empty events."""
    write_json(run.path("nirs.json"), nirs_json(layout, info, run.task, place, version))
    rows = []
    for ch in range(layout.n_channels):
        for wl in layout.wavelengths_nm:
            rows.append(
                {
                    "name": channel_name(layout, ch, wl),
                    "type": "NIRSCWAMPLITUDE",
                    "source": f"S{layout.source_index[ch]}",
                    "detector": f"D{layout.detector_index[ch]}",
                    "wavelength_nominal": float(wl),
                    "units": None,
                    "att_mm": att_mm[ch],
                    "label": layout.labels[ch],
                }
            )
    cols = ("name", "type", "source", "detector", "wavelength_nominal", "units", "att_mm", "label")
    write_tsv(run.path("channels.tsv"), cols, rows)
    write_json(run.path("channels.json"), CHANNELS_JSON)
    optodes = [
        {"name": f"{kind[0].upper()}{i + 1}", "type": kind, "x": p[0], "y": p[1], "z": p[2]}
        for kind, positions in (
            ("source", layout.source_pos_mm),
            ("detector", layout.detector_pos_mm),
        )
        for i, p in enumerate(np.asarray(positions, float).tolist())
    ]
    write_tsv(run.session_file("optodes.tsv"), ("name", "type", "x", "y", "z"), optodes)
    write_json(
        run.session_file("coordsystem.json"),
        {
            "NIRSCoordinateSystem": "Other",
            "NIRSCoordinateUnits": "mm",
            "NIRSCoordinateSystemDescription": COORDSYSTEM_DESCRIPTION,
        },
    )
    write_events(run, [])


def event_rows(
    events: list[dict[str, Any]], seq: np.ndarray, time_s: np.ndarray
) -> list[dict[str, Any]]:
    """One row per epoch and instant marker, on the run's time axis (s from its first
    sample), by the rule the SNIRF stims use; ids and sample indices from the journal."""
    if len(seq) == 0:
        return []
    step = float(np.median(np.diff(time_s))) if len(time_s) > 1 else 0.0
    end_time = float(time_s[-1]) + step
    markers = [e for e in events if e.get("kind") == "marker" and e.get("seq") is not None]
    out = []
    for label, on, end in intervals(events):
        if end is not None and end != on and end <= seq[0]:
            continue
        i = int(np.searchsorted(seq, on))
        if i == len(seq):
            continue
        if end == on:
            duration = 0.0
        else:
            j = len(seq) if end is None else int(np.searchsorted(seq, end))
            duration = (float(time_s[j]) if j < len(seq) else end_time) - float(time_s[i])
        start = _marker(markers, label, on, ("start", "instant"))
        stop = _marker(markers, label, end, ("end",)) if end != on else None
        out.append(
            {
                "onset": float(time_s[i]),
                "duration": max(duration, 0.0),
                "trial_type": label,
                "sample": i,
                "nirsd_seq": int(seq[i]),
                "nirsd_end_seq": end if end is not None else int(seq[-1]) + 1,
                "marker_id": start.get("id") if start else None,
                "end_marker_id": stop.get("id") if stop else None,
                "source": start.get("source") if start else None,
            }
        )
    return sorted(out, key=lambda r: (r["onset"], r["trial_type"]))


def _marker(markers: list[dict], label: str, seq: int | None, actions: tuple) -> dict | None:
    for m in markers:
        if m["label"] == label and m["seq"] == seq and m.get("action", "start") in actions:
            return m
    return None


def write_events(run: BidsRun, rows: list[dict[str, Any]]) -> None:
    write_tsv(run.path("events.tsv"), EVENT_COLUMNS, rows)
    levels = sorted({r["trial_type"] for r in rows})
    sidecar = {k: dict(v) for k, v in EVENTS_JSON.items()}
    if levels:
        sidecar["trial_type"]["Levels"] = {k: f"the {k} epoch or marker" for k in levels}
    write_json(run.path("events.json"), sidecar)


EPOCH_COLUMNS = (
    "trial_type",
    "onset",
    "duration",
    "nirsd_seq",
    "nirsd_end_seq",
    "channel",
    "mean_hbo",
    "mean_hbr",
    "mean_hbt",
    "peak_hbo",
    "peak_hbr",
    "peak_hbt",
    "n_samples",
    "n_baseline",
    "baseline_s",
)


def epoch_rows(events: list[dict[str, Any]], t0: float | None) -> list[dict[str, Any]]:
    """The daemon's epoch summaries, one row per epoch and channel (µM)."""
    rows = []
    for e in events:
        if e.get("kind") != "epoch":
            continue
        for c, name in enumerate(e.get("channels") or []):

            def value(key: str, c: int = c, e: dict = e) -> Any:
                v = (e.get(key) or [None] * (c + 1))[c]
                return None if v is None or not math.isfinite(v) else float(v)

            rows.append(
                {
                    "trial_type": e["label"],
                    "onset": None if t0 is None else float(e["onset_t"]) - t0,
                    "duration": e.get("duration_s"),
                    "nirsd_seq": e["onset_seq"],
                    "nirsd_end_seq": e["end_seq"],
                    "channel": name,
                    **{k: value(k) for k in EPOCH_COLUMNS[6:12]},
                    "n_samples": e.get("n_samples"),
                    "n_baseline": e.get("n_baseline"),
                    "baseline_s": e.get("baseline_s"),
                }
            )
    return rows


def write_epochs(run: BidsRun, events: list[dict[str, Any]], t0: float | None) -> None:
    path = run.derivative("epochs.tsv")
    write_tsv(path, EPOCH_COLUMNS, epoch_rows(events, t0))
    unit = {"Units": "uM"}
    write_json(
        path.with_suffix(".json"),
        {
            "onset": {"Description": "Epoch onset, s from the run's first sample"},
            "channel": {"Description": "Channel label"},
            **{
                k: {
                    "Description": f"{k.split('_')[0]} change of {k.split('_')[1]} "
                    "relative to the pre-epoch baseline",
                    **unit,
                }
                for k in EPOCH_COLUMNS[6:12]
            },
            "baseline_s": {"Description": "Pre-epoch baseline window", "Units": "s"},
        },
    )
