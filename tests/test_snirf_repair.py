"""Crash repair of string tags: a SNIRF file whose global heap lost a string (what a
writer killed during a flush can leave) is made readable again by ``record --recover``'s
recovery, and the first sample's date and time come back from the numeric ``nirsdT0`` attribute."""

from __future__ import annotations

import json
import struct

import h5py
import numpy as np
import pytest

snirf = pytest.importorskip("snirf")

from nirsd.clients import recorder_journal, snirf_writer  # noqa: E402

T0 = 1_764_590_400.25  # 2025-12-01 12:00:00.25 UTC


def recording(path) -> None:
    info = {
        "n_channels": 2,
        "wavelengths_nm": [760.0, 850.0],
        "channels": [
            {"index": c, "label": f"S{c + 1}_D{c + 1}", "distance_mm": 30.0} for c in range(2)
        ],
    }
    w = snirf_writer.SnirfWriter(path, snirf_writer.layout_from_info(info), snirf_writer.Meta())
    n = 20
    w.append(
        np.arange(n), T0 + np.arange(n) / 10.0, np.full((n, 2, 2), 1000.0), np.zeros((n, 3, 2))
    )
    w.set_stims({"extension": np.array([[0.5, 1.0, 1.0]])})
    w.close()


def break_heap_object(path, text: bytes) -> None:
    """Give the global-heap object holding ``text`` another index, so that the dataset
    pointing at it reads "bad heap pointer" (a heap collection older than the dataset)."""
    data = bytearray(path.read_bytes())
    at = data.find(text)
    assert at > 16 and data.count(text) == 1
    head = at - 16  # heap object: index u16, references u16, reserved u32, size u64, data
    index, _refs, _res, size = struct.unpack_from("<HHIQ", data, head)
    assert size == len(text), (index, size)
    struct.pack_into("<H", data, head, 0x7FFF)
    path.write_bytes(bytes(data))


def test_an_unreadable_measurement_date_is_written_again_from_nirsd_t0(tmp_path):
    path = tmp_path / "killed.snirf"
    recording(path)
    with h5py.File(path, "r") as f:
        assert f["nirs/metaDataTags"].attrs["nirsdT0"] == T0
        date = f["nirs/metaDataTags/MeasurementDate"][()]
    break_heap_object(path, date)
    with h5py.File(path, "r") as f, pytest.raises(OSError, match="heap"):
        f["nirs/metaDataTags/MeasurementDate"][()]
    with pytest.raises(OSError, match="bad heap"):  # as a killed recorder's file did
        snirf.validateSnirf(str(path))

    out = recorder_journal.recover_file(path)
    assert out["tags_repaired"] == ["MeasurementDate"] and out["tags_removed"] == []
    assert out["rows"] == 20
    with h5py.File(path, "r") as f:
        assert f["nirs/metaDataTags/MeasurementDate"][()] == b"2025-12-01"
        assert f["nirs/metaDataTags/MeasurementTime"][()] == b"12:00:00.250000Z"
    assert snirf.validateSnirf(str(path)).is_valid()
    # a file with nothing unreadable says nothing about tags
    assert "tags_repaired" not in recorder_journal.recover_file(path)


def test_an_unreadable_stim_is_removed_and_named(tmp_path):
    path = tmp_path / "killed.snirf"
    recording(path)
    break_heap_object(path, b"extension")
    out = recorder_journal.recover_file(path)  # no journal to write the stims anew from
    assert out["tags_removed"] == ["stim1"] and out["tags_repaired"] == []
    with h5py.File(path, "r") as f:
        assert not [k for k in f["nirs"] if k.startswith("stim")]
        assert f["nirs/metaDataTags/MeasurementDate"][()] == b"2025-12-01"


def test_without_the_attribute_the_journal_gives_the_time_and_a_missing_date_comes_back(
    tmp_path,
):
    path = tmp_path / "killed.snirf"
    recording(path)
    with h5py.File(path, "r+") as f:
        tags = f["nirs/metaDataTags"]
        clock = tags["MeasurementTime"][()]
        del tags.attrs["nirsdT0"]
        del tags["MeasurementDate"]  # never reached the disk
    break_heap_object(path, clock)
    journal = recorder_journal.journal_path(path)
    journal.write_text(json.dumps({"kind": "first_sample", "seq": 0, "t": T0}) + "\n")
    out = recorder_journal.recover_file(path)
    assert sorted(out["tags_repaired"]) == ["MeasurementDate", "MeasurementTime"]
    with h5py.File(path, "r") as f:
        assert f["nirs/metaDataTags/MeasurementDate"][()] == b"2025-12-01"
        assert f["nirs/metaDataTags/MeasurementTime"][()] == b"12:00:00.250000Z"
    assert snirf.validateSnirf(str(path)).is_valid()
