"""The probe in SNIRF's standard fields: optodes, labels, positions, placement.

``/nirs/probe`` gets ``wavelengths`` (nm), ``sourcePos3D``/``detectorPos3D`` and
``sourcePos2D``/``detectorPos2D`` (mm; 2-D is x, y of the 3-D positions: the probe lies
flat on the skin), ``sourceLabels``/``detectorLabels``, ``coordinateSystem`` with
``coordinateSystemDescription``, and ``landmarkPos3D``/``landmarkLabels`` from the
config's ``[probe] landmarks`` (empty without them).  MNE reads landmarks that are not
head fiducials as extra points in an unknown frame, and an empty landmark list as none,
so a probe on the back is not placed in the head frame with fsaverage fiducials.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # h5py only where a file is written: the LSL bridge uses the layout
    import h5py

#: the coordinate system of the synthetic layout (no positions configured)
SYNTHETIC_DESCRIPTION = (
    "nirsd synthetic layout, not anatomical: channel i is its own source-detector pair, "
    "sources 40 mm apart along x, each detector distance_mm away along y, z = 0; mm"
)


#: ManufacturerName when the config's ``[probe] manufacturer`` does not say, by driver
DRIVER_MAKERS = {"simulated": "nirsd (simulated probe)", "heg": "HEGduino"}


def _s(text: str) -> bytes:
    return str(text).encode("utf-8")


@dataclass
class Layout:
    """The probe as SNIRF wants it: wavelengths (nm), optodes and positions (mm)."""

    wavelengths_nm: list[float]
    labels: list[str]
    source_index: list[int]  # 1-based, per channel
    detector_index: list[int]  # 1-based, per channel
    source_pos_mm: np.ndarray  # (n_sources, 3)
    detector_pos_mm: np.ndarray  # (n_detectors, 3)
    source_labels: list[str] = field(default_factory=list)  # per source; empty: S1, S2, …
    detector_labels: list[str] = field(default_factory=list)  # per detector; empty: D1, …
    coordinate_system: str = "Other"
    coordinate_system_description: str = SYNTHETIC_DESCRIPTION
    landmark_labels: list[str] = field(default_factory=list)
    landmark_pos_mm: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    manufacturer: str = ""
    model: str = ""

    @property
    def n_channels(self) -> int:
        return len(self.labels)

    def optode_labels(self) -> tuple[list[str], list[str]]:
        """(source labels, detector labels), defaults filled in."""
        n_s, n_d = len(self.source_pos_mm), len(self.detector_pos_mm)
        src = self.source_labels if len(self.source_labels) == n_s else []
        det = self.detector_labels if len(self.detector_labels) == n_d else []
        return (
            src or [f"S{i}" for i in range(1, n_s + 1)],
            det or [f"D{i}" for i in range(1, n_d + 1)],
        )

    def mne_names(self) -> list[str]:
        """Per channel the name MNE gives it (``S1_D1``)."""
        return [f"S{s}_D{d}" for s, d in zip(self.source_index, self.detector_index)]


def _pos3(value: Sequence[float]) -> list[float]:
    v = [float(x) for x in value][:3]
    return v + [0.0] * (3 - len(v))


def _placement(layout: Layout, info: dict[str, Any], configured: bool) -> Layout:
    """Fill the placement fields from the ``placement`` part of an ``info`` reply."""
    place = info.get("placement") or {}
    if configured:
        layout.coordinate_system = str(place.get("coordinate_system") or "Other")
        layout.coordinate_system_description = str(
            place.get("coordinate_system_description")
            or "positions from the nirsd config ([[channel]] source_pos_mm/detector_pos_mm), mm"
        )
        layout.source_labels = list(place.get("source_labels") or [])
        layout.detector_labels = list(place.get("detector_labels") or [])
        marks = place.get("landmarks") or {}
        layout.landmark_labels = [str(k) for k in marks]
        layout.landmark_pos_mm = np.array([_pos3(v) for v in marks.values()]).reshape(-1, 3)
    driver = str(info.get("driver") or "")
    maker = DRIVER_MAKERS.get(
        "simulated" if str(info.get("device_id") or "").startswith("nirsd-sim") else driver,
        f"unknown ({driver} protocol)",
    )
    layout.manufacturer = str(place.get("manufacturer") or maker)
    device = f" {info['device_id']}" if info.get("device_id") else ""
    layout.model = str(place.get("model") or f"{driver}{device}".strip())
    return layout


def layout_from_info(info: dict[str, Any]) -> Layout:
    """Geometry from a daemon ``info`` reply.

    Uses the configured ``source``/``detector``/``*_pos_mm`` when every channel has
    them and the pairs are distinct, with the ``[probe]`` placement (coordinate system,
    landmarks, optode labels); otherwise a synthetic layout: channel i is its own
    source-detector pair, sources 40 mm apart along x, each detector ``distance_mm``
    away along y, in a coordinate system that says so.
    """
    channels = info.get("channels") or [{"index": i} for i in range(info["n_channels"])]
    wl = [float(w) for w in info["wavelengths_nm"]]
    labels = [str(ch.get("label", f"ch{i}")) for i, ch in enumerate(channels)]
    keys = ("source", "detector", "source_pos_mm", "detector_pos_mm")
    configured = all(all(ch.get(k) is not None for k in keys) for ch in channels)
    if configured and len({(ch["source"], ch["detector"]) for ch in channels}) == len(channels):
        srcs = sorted({ch["source"] for ch in channels})
        dets = sorted({ch["detector"] for ch in channels})
        s_idx = [srcs.index(ch["source"]) + 1 for ch in channels]
        d_idx = [dets.index(ch["detector"]) + 1 for ch in channels]
        s_pos = np.zeros((len(srcs), 3))
        d_pos = np.zeros((len(dets), 3))
        for ch, si, di in zip(channels, s_idx, d_idx):
            s_pos[si - 1] = _pos3(ch["source_pos_mm"])
            d_pos[di - 1] = _pos3(ch["detector_pos_mm"])
        return _placement(Layout(wl, labels, s_idx, d_idx, s_pos, d_pos), info, True)
    n = len(channels)
    dist = np.array([float(ch.get("distance_mm") or 30.0) for ch in channels])
    x = np.arange(n) * 40.0
    s_pos = np.column_stack([x, np.zeros(n), np.zeros(n)])
    d_pos = np.column_stack([x, dist, np.zeros(n)])
    idx = list(range(1, n + 1))
    layout = Layout(wl, labels, idx, list(idx), s_pos, d_pos)
    layout.source_labels = [f"{lab} source" for lab in labels]
    layout.detector_labels = [f"{lab} detector" for lab in labels]
    return _placement(layout, info, False)


def write_probe(nirs: h5py.Group, lay: Layout) -> None:
    """Create ``/nirs/probe`` from ``lay``."""
    probe = nirs.create_group("probe")
    probe.create_dataset("wavelengths", data=np.asarray(lay.wavelengths_nm, "f8"))
    src = np.asarray(lay.source_pos_mm, "f8").reshape(-1, 3)
    det = np.asarray(lay.detector_pos_mm, "f8").reshape(-1, 3)
    probe.create_dataset("sourcePos3D", data=src)
    probe.create_dataset("detectorPos3D", data=det)
    probe.create_dataset("sourcePos2D", data=src[:, :2])
    probe.create_dataset("detectorPos2D", data=det[:, :2])
    src_labels, det_labels = lay.optode_labels()
    probe.create_dataset("sourceLabels", data=[_s(x) for x in src_labels])
    probe.create_dataset("detectorLabels", data=[_s(x) for x in det_labels])
    probe.create_dataset("coordinateSystem", data=_s(lay.coordinate_system))
    probe.create_dataset("coordinateSystemDescription", data=_s(lay.coordinate_system_description))
    marks = np.asarray(lay.landmark_pos_mm, "f8").reshape(-1, 3)
    labels = [_s(x) for x in lay.landmark_labels]
    if len(marks) != len(labels):
        marks, labels = np.zeros((0, 3)), []
    # Written even when empty: without landmarkPos3D MNE adds fsaverage head fiducials
    probe.create_dataset("landmarkPos3D", data=marks)
    probe.create_dataset(
        "landmarkLabels", data=np.array(labels or [], dtype="S" if labels else "S1")
    )
    if len(marks):
        probe.create_dataset("landmarkPos2D", data=marks[:, :2])


def probe_tags(lay: Layout) -> dict[str, str]:
    """The metaDataTags that describe the device (SNIRF's recommended names)."""
    tags = {}
    if lay.manufacturer:
        tags["ManufacturerName"] = lay.manufacturer
    if lay.model:
        tags["Model"] = lay.model
    return tags
