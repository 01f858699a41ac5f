"""Crash repair of a SNIRF file's string tags.

HDF5 keeps variable-length strings in a global heap shared by the whole file.  A writer
killed while a flush rewrites that heap (stims and conversion tags are rewritten as a
recording goes on) can leave a tag whose string no longer reads ("bad heap index"),
although every sample is intact.  :func:`repair_tags` finds such tags under
``/nirs/metaDataTags``: the first sample's date and time are written anew from the
group's numeric attribute ``nirsdT0`` (kept in the group's header, not in the heap) or
from the recorder's journal (its ``first_sample`` event); any other
unreadable tag or stim group is removed so that readers open the file, and named in what
it returns.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import h5py

MEASUREMENT_TAGS = ("MeasurementDate", "MeasurementTime")
T0_ATTR = "nirsdT0"  # attribute of /nirs/metaDataTags: the first sample's Unix time


def measurement_tags(t0: float) -> dict[str, str]:
    """``MeasurementDate`` and ``MeasurementTime`` (UTC) of Unix time ``t0``."""
    when = dt.datetime.fromtimestamp(t0, dt.UTC)
    return {
        "MeasurementDate": when.strftime("%Y-%m-%d"),
        "MeasurementTime": when.strftime("%H:%M:%S.%f") + "Z",
    }


def write_measurement_time(tags: h5py.Group, t0: float) -> None:
    """The first sample's date and time into ``tags`` (metaDataTags), and ``t0`` as the
    group's numeric attribute ``nirsdT0`` (kept in the group's header, not in the heap,
    and not a tag: readers take every tag for text)."""
    for name, text in measurement_tags(t0).items():
        if name in tags:
            del tags[name]
        tags.create_dataset(name, data=text.encode("utf-8"))
    tags.attrs[T0_ATTR] = float(t0)


def unreadable(group: h5py.Group) -> list[str]:
    """Names of the datasets in ``group`` whose value cannot be read."""
    bad = []
    for name, obj in group.items():
        if isinstance(obj, h5py.Dataset):
            try:
                obj[()]
            except OSError:
                bad.append(name)
    return bad


def repair_tags(f: h5py.File, t0: float | None = None) -> dict[str, list[str]]:
    """Rewrite or remove the unreadable tags; ``{"repaired": [...], "removed": [...]}``.
    The date and time come from the ``nirsdT0`` attribute, else from ``t0`` (the
    recorder's journal has it)."""
    out: dict[str, list[str]] = {"repaired": [], "removed": []}
    nirs = f.get("nirs")
    for key in [k for k in (nirs or {}) if k.startswith("stim")]:
        if unreadable(nirs[key]):  # (the journal, where there is one, writes them anew)
            del nirs[key]
            out["removed"].append(key)
    tags = f.get("nirs/metaDataTags")
    if tags is None:
        return out
    lost = unreadable(tags)
    for name in lost:
        del tags[name]
        if name not in MEASUREMENT_TAGS:
            out["removed"].append(name)
    # the date and time: written again where unreadable, or missing (a kill before the
    # first flush that held them)
    t0 = _number(tags.attrs, T0_ATTR) or t0
    for name in MEASUREMENT_TAGS:
        if name in tags:
            continue
        if t0 is None:
            if name in lost:
                out["removed"].append(name)
        else:
            tags.create_dataset(name, data=measurement_tags(t0)[name].encode("utf-8"))
            out["repaired"].append(name)
    return out


def _number(attrs: Any, name: str) -> float | None:
    try:
        return float(attrs[name])
    except (KeyError, OSError, TypeError, ValueError):
        return None
