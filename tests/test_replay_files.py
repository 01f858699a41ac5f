"""SNIRF files made here with h5py: what replay refuses (with the reason) and the quirks
of real exports it handles (a stim group under two names, overlapping stims of one
label, a time vector that does not start at 0, lengths in mm)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nirsd.cli.testing import DaemonProcess, wait_for
from nirsd.core.errors import ConfigError
from nirsd.drivers.snirf_source import read_recording

h5py = pytest.importorskip("h5py")
mne = pytest.importorskip("mne")

RATE = 10.0


def make_snirf(
    path: Path,
    n: int = 300,
    t0: float = 5.0,
    stims: dict[str, list[list[float]]] | None = None,
    data_type: int = 1,
    blocks: int = 1,
    positions: bool = True,
    time: np.ndarray | None = None,
    seed: int = 0,
) -> Path:
    """A small CW recording: one source, two detectors 30 and 35 mm away, 760/850 nm."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE
    base = np.array([2.0e-3, 1.5e-3, 1.2e-3, 0.9e-3])  # (S1_D1, S1_D2) x (760, 850)
    slow = 1 + 0.02 * np.sin(2 * np.pi * 0.05 * t)[:, None] * np.array([1, 0.5, -0.8, 0.3])
    amp = base * slow * (1 + 1e-3 * rng.standard_normal((n, 4)))
    with h5py.File(path, "w") as f:
        f["formatVersion"] = "1.0"
        meta = f.create_group("nirs/metaDataTags")
        for key, value in {
            "SubjectID": "s01",
            "MeasurementDate": "2026-11-30",
            "MeasurementTime": "10:00:00",
            "LengthUnit": "mm",
            "TimeUnit": "s",
            "FrequencyUnit": "Hz",
        }.items():
            meta[key] = value
        probe = f.create_group("nirs/probe")
        probe["wavelengths"] = np.array([760.0, 850.0])
        if positions:
            probe["sourcePos3D"] = np.array([[0.0, 0.0, 0.0]])
            probe["detectorPos3D"] = np.array([[30.0, 0.0, 0.0], [0.0, 35.0, 0.0]])
        probe["sourceLabels"] = np.array([b"S1"])
        probe["detectorLabels"] = np.array([b"D1", b"D2"])
        for b in range(1, blocks + 1):
            data = f.create_group(f"nirs/data{b}")
            data["dataTimeSeries"] = amp
            data["time"] = t + t0 if time is None else time
            for i, (d, w) in enumerate([(1, 1), (2, 1), (1, 2), (2, 2)], start=1):
                ml = data.create_group(f"measurementList{i}")
                ml["sourceIndex"], ml["detectorIndex"], ml["wavelengthIndex"] = 1, d, w
                ml["dataType"], ml["dataTypeIndex"] = data_type, 1
        for i, (name, rows) in enumerate((stims or {}).items(), start=1):
            g = f.create_group(f"nirs/stim{i}")
            g["name"] = name
            g["data"] = np.array(rows, dtype=np.float64)
    return path


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"blocks": 2}, "2 data blocks"),
        ({"data_type": 99999}, "dataType 99999"),
        ({"positions": False}, "no sourcePos3D or sourcePos2D"),
        (
            {
                "time": 5.0
                + np.cumsum(np.r_[0, np.full(299, 0.1)] * (1 + 0.3 * (np.arange(300) % 2)))
            },
            "irregular time vector",
        ),
    ],
)
def test_bad_files_say_what_is_missing(tmp_path, kwargs, words):
    path = make_snirf(tmp_path / "bad.snirf", **kwargs)
    with pytest.raises(ConfigError, match=words):
        read_recording(path)


def test_minimum_example_and_non_snirf(tmp_path):
    sample = Path(__file__).parent / "data" / "snirf-samples" / "minimum_example.snirf"
    with pytest.raises(ConfigError, match="0 wavelengths"):
        read_recording(sample)
    (tmp_path / "x.snirf").write_text("not hdf5")
    with pytest.raises(ConfigError, match="not an HDF5"):
        read_recording(tmp_path / "x.snirf")


def test_cli_exit_78_naming_the_problem(tmp_path):
    path = make_snirf(tmp_path / "hbo.snirf", data_type=99999)
    proc = subprocess.run(
        [sys.executable, "-m", "nirsd.cli", "run", "--replay", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"NIRSD_RUNTIME_DIR": str(tmp_path / "run"), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 78, proc.stderr
    assert "dataType 99999" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_h5py_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py raises ImportError
    with pytest.raises(ConfigError, match=r"nirsd\[snirf\]"):
        read_recording(tmp_path / "any.snirf")


# onsets 10 s after the first sample (time starts at 5 s): 1 s of wall time at 10x, for
# subscribers to join first
QUIRKS = {
    "A": [[15.0, 6.0, 1.0], [18.0, 6.0, 1.0]],  # two stims of one label overlap
    "B": [[19.0, 3.0, 1.0]],  # overlaps both A
    "A_copy": [[15.0, 6.0, 1.0], [18.0, 6.0, 1.0]],  # A again under a second name
}
EXPECTED = [("A", 100, 160), ("A", 130, 190), ("B", 140, 170)]


def test_quirks_replayed_once_overlapping_in_file_time_base(tmp_path):
    path = make_snirf(tmp_path / "quirks.snirf", stims=QUIRKS)
    rec = read_recording(path)
    assert rec.duplicate_stims == ("A_copy",)
    # onsets in the time vector's base (it starts at 5.0 s)
    assert [(s.label, s.onset_k, s.end_k) for s in rec.stims] == EXPECTED
    assert [c["distance_mm"] for c in rec.channels] == [30.0, 35.0]  # LengthUnit mm
    config = "[baseline]\nseconds = 2.0\n[markers]\nbaseline_s = 2.0\n[status]\ninterval_s = 0.5\n"
    d = DaemonProcess(tmp_path, config, args=["--replay", str(path), "--speed", "10"])
    sub = d.subscriber(("marker", "epoch"))
    markers, epochs = [], []
    try:
        d.start(timeout=60)

        def done() -> bool:
            while (msg := sub.recv(0.05)) is not None:
                (markers if msg.topic == "marker" else epochs).append(msg.header)
            return len(epochs) >= 3 and d.control().status()["samples"] >= rec.n_samples

        wait_for(done, 60, what="replay and summaries")
        hb = d.control(timeout_s=10).history(since=0)["hb"].array
    finally:
        sub.close()
        d.stop()
    starts = [(m["label"], m["seq"]) for m in markers if m["action"] == "start"]
    assert starts == [("A", 100), ("A", 130), ("B", 140)]  # the copy is not played
    assert sorted((e["label"], e["onset_seq"], e["end_seq"]) for e in epochs) == EXPECTED
    # against MNE's conversion of the same file (summaries do not depend on I0)
    from mne.preprocessing.nirs import beer_lambert_law, optical_density

    raw = mne.io.read_raw_snirf(path, preload=True, verbose="error")
    mne_hb = beer_lambert_law(optical_density(raw, verbose="error"), ppf=6.0)
    want = mne_hb.get_data(picks=["S1_D1 hbo", "S1_D2 hbo"]).T * 1e6
    for e in epochs:
        on, end = e["onset_seq"], e["end_seq"]
        expect = want[on:end].mean(axis=0) - want[on - 20 : on].mean(axis=0)
        np.testing.assert_allclose(e["mean_hbo"], expect, rtol=0, atol=1e-3)
    assert np.isfinite(hb[20:]).all()


def test_simulate_replay_writes_the_config_of_a_separate_daemon(tmp_path):
    path = make_snirf(tmp_path / "quirks.snirf", stims=QUIRKS)
    link, cfg = tmp_path / "replay-pty", tmp_path / "replay.toml"
    sim = subprocess.Popen(
        [sys.executable, "-m", "nirsd.cli", "simulate", "--replay", str(path), "--speed", "10"]
        + ["--link", str(link), "--write-config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: cfg.exists() and link.exists(), 30, what="config and link")
        check = subprocess.run(
            [sys.executable, "-m", "nirsd.cli", "check-config", str(cfg)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        text = cfg.read_text() + "[status]\ninterval_s = 0.5\n"
        d = DaemonProcess(tmp_path / "d", text.replace("seconds = 10.0", "seconds = 2.0"))
        sub = d.subscriber(("marker", "epoch"))
        epochs = []
        try:
            d.start(timeout=60)

            def done() -> bool:
                while (msg := sub.recv(0.05)) is not None:
                    if msg.topic == "epoch":
                        epochs.append(msg.header)
                return len(epochs) >= 3

            wait_for(done, 60, what="epoch summaries")
            info = d.control().info()
        finally:
            sub.close()
            d.stop()
    finally:
        sim.terminate()
        sim.wait(10)
    assert [c["label"] for c in info["channels"]] == ["S1_D1", "S1_D2"]
    assert [c["distance_mm"] for c in info["channels"]] == [30.0, 35.0]
    assert info["device_id"] == "quirks" and info["rate_hz"] == 10.0
    assert sorted((e["label"], e["onset_seq"], e["end_seq"]) for e in epochs) == EXPECTED


def test_loop_plays_the_file_again_with_its_stims(tmp_path):
    path = make_snirf(tmp_path / "quirks.snirf", stims=QUIRKS)
    config = "[baseline]\nseconds = 2.0\n[status]\ninterval_s = 0.5\n"
    d = DaemonProcess(tmp_path, config, args=["--replay", str(path), "--speed", "20", "--loop"])
    sub = d.subscriber(("marker",))
    starts = []
    try:
        d.start(timeout=60)

        def second_lap() -> bool:
            while (msg := sub.recv(0.05)) is not None:
                if msg.header["action"] == "start":
                    starts.append((msg.header["label"], msg.header["seq"]))
            return len(starts) >= 6

        wait_for(second_lap, 60, what="the stims of the second lap")
        wait_for(lambda: d.control().status()["samples"] >= 500, 30, what="sample 500")
        history = d.control(timeout_s=10).history(since=0, until=500)
    finally:
        sub.close()
        d.stop()
    first = [("A", 100), ("A", 130), ("B", 140)]
    assert starts[:6] == first + [(label, k + 300) for label, k in first]
    raw = history["raw"].array
    np.testing.assert_array_equal(raw[300:400], raw[:100])  # the same samples again
    t_dev = np.array(history["raw"].header["t_dev"])
    np.testing.assert_allclose(np.diff(t_dev), 0.1, atol=2e-6)  # the clock runs on
