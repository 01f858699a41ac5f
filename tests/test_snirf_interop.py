"""A recording read by the tools of the field with no nirsd code: MNE, snirf, h5py.

One recording of the simulated probe described by config/paraspinal-8ch.toml (lumbar
placement, landmarks, ``dpf = "muscle-forearm"``) with an extension epoch and a
re-taken baseline; every test reads it back as a researcher would.
"""

from __future__ import annotations

import importlib.util
import json
import re
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")
if importlib.util.find_spec("snirf") is None:  # imported lazily: at import it
    pytest.skip("needs the snirf package", allow_module_level=True)  # writes pysnirf2.log
mne = pytest.importorskip("mne")

from nirsd.cli.testing import DaemonProcess, simulated_config, wait_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PARASPINAL = ROOT / "config" / "paraspinal-8ch.toml"
RATE_HZ = 20.0


def lumbar_config() -> str:
    """The shipped paraspinal probe sections on the simulated device."""
    text = PARASPINAL.read_text()
    probe = text[text.index("[probe]") :]
    optics = '[optics]\ndistance_mm = 35.0\ndpf = "muscle-forearm"\n'
    return simulated_config(channels=8, rate_hz=RATE_HZ, baseline_s=1.0, extra=optics + probe)


def _cli(d: DaemonProcess, *args: str) -> dict:
    ep = ("--data", d.endpoints.data, "--control", d.endpoints.control)
    out = d.cli(*args, *ep, check=True).stdout.strip()
    return json.loads(out.splitlines()[-1]) if out else {}


class Published:
    """What the daemon published: hb by seq, and the epoch summaries."""

    def __init__(self, d: DaemonProcess) -> None:
        self.sub = d.subscriber(("hb", "epoch"))
        self.hb: dict[int, np.ndarray] = {}
        self.epochs: list[dict] = []

    def pump(self) -> int:
        msg = self.sub.recv(0.05)
        while msg is not None:
            if msg.topic == "hb":
                for i in range(msg.n):
                    self.hb[msg.seq + i] = msg.array[i]
            else:
                self.epochs.append(msg.header)
            msg = self.sub.recv(0)
        return max(self.hb, default=-1)

    def until(self, seq: int) -> None:
        wait_for(lambda: self.pump() >= seq, 20, what=f"sample {seq}")


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """(raw path, hb path, what was published, marker acks) of one recorded session."""
    tmp = tmp_path_factory.mktemp("interop")
    d = DaemonProcess(tmp, lumbar_config())
    d.start()
    pub = Published(d)
    path = tmp / "session.snirf"
    rec = None
    try:
        pub.until(3)
        cmd = [sys.executable, "-m", "nirsd.cli", "record", str(path)]
        cmd += ["--data", d.endpoints.data, "--control", d.endpoints.control]
        rec = subprocess.Popen(
            cmd, env=d.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        wait_for(lambda: Path(f"{path}.journal.jsonl").exists(), 20, what="recorder")
        start = _cli(d, "mark", "extension")
        pub.until(start["seq"] + 15)
        end = _cli(d, "mark", "extension", "--end")
        pub.until(end["seq"] + 5)
        base = _cli(d, "baseline")
        pub.until(base["seq"] + 40)  # the new window (20 samples) and some after it
        wait_for(lambda: pub.pump() >= 0 and pub.epochs, 20, what="epoch summary")
        rec.send_signal(signal.SIGINT)
        out, err = rec.communicate(timeout=30)
        assert rec.returncode == 0, err
        last = json.loads(out.strip().splitlines()[-1])["last_seq"]
        pub.until(last)  # the recorder's last rows, as the test subscriber saw them
    finally:
        pub.sub.close()
        if rec is not None and rec.poll() is None:
            rec.kill()
            rec.wait()
        d.stop()
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["lost_samples"] == 0
    return path, tmp / "session_hb.snirf", pub, {"start": start, "end": end, "base": base}


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    """The snirf validator writes pysnirf2.log into the working directory."""
    monkeypatch.chdir(tmp_path)


def _valid(path: Path) -> None:
    import snirf

    result = snirf.validateSnirf(str(path))
    assert result.is_valid(), result.errors


def _published_hb(path: Path, pub: Published) -> tuple[np.ndarray, np.ndarray]:
    """(ΔHbO/ΔHbR as the file's columns (n, 2·ch) µM, the rows' seq) from the PUB stream."""
    with h5py.File(path, "r") as f:
        seq = f["nirs/aux1/dataTimeSeries"][:, 0].astype(int)
    first = min(pub.hb)  # the test subscribed a little after the daemon started
    have = [s for s in seq if s >= first]
    assert len(have) > 60 and all(s in pub.hb for s in have)
    cols = np.stack([pub.hb[s][:2].T.reshape(-1) for s in have])
    return cols, np.searchsorted(seq, have)


def test_hemoglobin_file_opens_in_mne_as_hbo_hbr(recording):
    path, hb_path, pub, acks = recording
    assert hb_path.exists()
    _valid(hb_path)
    raw = mne.io.read_raw_snirf(hb_path, preload=True, verbose="error")
    assert raw.get_channel_types() == ["hbo", "hbr"] * 8
    assert raw.ch_names[:2] == ["S1_D1 hbo", "S1_D1 hbr"]
    want, rows = _published_hb(hb_path, pub)
    got = raw.get_data().T[rows]  # M
    np.testing.assert_allclose(got, want * 1e-6, rtol=1e-9, atol=1e-18)
    # the same stims as the raw file
    raw_i = mne.io.read_raw_snirf(path, verbose="error")
    assert [a["description"] for a in raw.annotations] == ["extension"]
    np.testing.assert_allclose(raw.annotations.onset, raw_i.annotations.onset)
    np.testing.assert_allclose(raw.annotations.duration, raw_i.annotations.duration)
    assert raw.annotations.duration[0] == pytest.approx(
        (acks["end"]["seq"] - acks["start"]["seq"]) / RATE_HZ, abs=0.06
    )


def doc_script() -> str:
    """The reproduction script of docs/recording.md, exactly as printed there."""
    text = (ROOT / "docs" / "recording.md").read_text()
    part = text[text.index("### Reproducing nirsd's ΔHb with MNE") :]
    match = re.search(r"```python\n(.*?)```", part, re.S)
    assert match, "no python block in the reproduction section"
    return match.group(1)


def test_docs_script_reproduces_hb_from_the_raw_file(recording, tmp_path):
    path, _, pub, _ = recording
    (tmp_path / "session.snirf").write_bytes(path.read_bytes())
    scope: dict = {}
    exec(compile(doc_script(), "docs/recording.md", "exec"), scope)
    hb = scope["hb"]  # (2·channels, n) µM: the script's result
    with h5py.File(path, "r") as f:
        published = f["nirs/data2/dataTimeSeries"][:].T
        windows = json.loads(f["nirs/metaDataTags/nirsdBaselineWindows"][()])
        quality = f["nirs/aux2/dataTimeSeries"][:].astype(int)
    assert len(windows) == 2  # the stream's and the re-taken baseline
    assert hb.shape == published.shape
    # docs/recording.md: where a window began before the file, its samples flagged 4
    # (converted with a running mean of samples the file does not hold) are not
    # reproduced; whether the recorder starts inside the first window depends on timing
    keep = np.ones(hb.shape[1], bool)
    if windows[0].get("i0") is not None:
        end = windows[1]["start_row"]
        keep[:end] = ~((quality[:end] & 4) > 0).any(axis=1)
        assert (~keep).sum() <= 20, "only the first window's pending samples (1 s)"
    hb, published = hb[:, keep], published[:, keep]
    assert hb.shape[1] > 40
    big = np.abs(published) > 1e-3  # relative error means nothing at exact zeros
    rel = np.abs(hb - published)[big] / np.abs(published)[big]
    assert rel.max() < 2e-4, rel.max()
    assert np.abs(hb - published).max() < 2e-4 * np.abs(published).max()
    # the DPF in the file matters: MNE's default ppf (6) would be 31 % off for 4.16
    assert json.loads(scope["tags"]["nirsdDPF"])[0] == [4.16, 4.16]


def test_quality_bits_and_conversion_tags(recording):
    path, _, _, acks = recording
    with h5py.File(path, "r") as f:
        tags = f["nirs/metaDataTags"]
        assert f["nirs/aux2/name"][()] == b"nirsd_quality"
        q = f["nirs/aux2/dataTimeSeries"][:].astype(int)
        seq = f["nirs/aux1/dataTimeSeries"][:, 0].astype(int)
        windows = json.loads(tags["nirsdBaselineWindows"][()])
        assert tags["nirsdExtinction"][()] == b"prahl"
        eps = json.loads(tags["nirsdExtinction_per_M_cm"][()])
        assert json.loads(tags["nirsdDistance_mm"][()]) == [35.0] * 8
        assert tags["nirsdBaselineSamples"][()] == b"20"
        assert all(isinstance(tags[k][()], bytes) for k in tags)  # every tag is text
    np.testing.assert_allclose(eps, [[586.0, 1548.52], [1058.0, 691.32]])  # Prahl 760/850
    pending = (q & 4) > 0
    base = acks["base"]["seq"]
    assert [w["start_seq"] for w in windows] == [0, base]
    assert [w["end_seq"] for w in windows] == [20, base + 20]
    # exactly the samples of each window carry "baseline pending"
    in_window = (seq < 20) | ((seq >= base) & (seq < base + 20))
    np.testing.assert_array_equal(pending, np.repeat(in_window[:, None], 8, axis=1))
    assert windows[1]["start_s"] == pytest.approx(windows[1]["start_row"] / RATE_HZ, abs=0.1)


def test_probe_placement_in_standard_fields(recording):
    path, _, _, _ = recording
    cfg = tomllib.loads(PARASPINAL.read_text())
    with h5py.File(path, "r") as f:
        probe, tags = f["nirs/probe"], f["nirs/metaDataTags"]
        assert [x.decode() for x in probe["sourceLabels"][:]] == cfg["probe"]["source_labels"]
        assert [x.decode() for x in probe["detectorLabels"][:]] == cfg["probe"]["detector_labels"]
        assert probe["coordinateSystem"][()] == b"Other"
        assert b"L5 spinous process" in probe["coordinateSystemDescription"][()]
        labels = [x.decode() for x in probe["landmarkLabels"][:]]
        assert labels == [f"L{k} spinous process" for k in (2, 3, 4, 5)]
        np.testing.assert_allclose(probe["landmarkPos3D"][:, 1], [105, 70, 35, 0])
        np.testing.assert_allclose(probe["sourcePos2D"][:], probe["sourcePos3D"][:, :2])
        chans = cfg["channel"]
        np.testing.assert_allclose(probe["detectorPos3D"][:], [c["detector_pos_mm"] for c in chans])
        assert tags["ManufacturerName"][()] and tags["Model"][()]
    raw = mne.io.read_raw_snirf(path, verbose="error")
    # not on a head: no head frame, no fsaverage fiducials, the spinous processes as points
    assert {ch["coord_frame"] for ch in raw.info["chs"]} == {
        mne.io.constants.FIFF.FIFFV_COORD_UNKNOWN
    }
    kinds = [d["kind"] for d in raw.info["dig"]]
    assert mne.io.constants.FIFF.FIFFV_POINT_CARDINAL not in kinds
    assert len(kinds) == 4
    dists = mne.preprocessing.nirs.source_detector_distances(raw.info)
    np.testing.assert_allclose(dists, 0.035, rtol=1e-12)  # positions agree with distance_mm


def test_epoch_summaries_in_the_stim_group(recording):
    path, _, pub, acks = recording
    (summary,) = [e for e in pub.epochs if e["label"] == "extension"]
    with h5py.File(path, "r") as f:
        (key,) = [k for k in f["nirs"] if k.startswith("stim")]
        labels = [x.decode() for x in f[f"nirs/{key}/dataLabels"][:]]
        (row,) = f[f"nirs/{key}/data"][:]
    col = dict(zip(labels, row))
    assert labels[:3] == ["Onset", "Duration", "Amplitude"]
    assert col["nirsd_onset_seq"] == acks["start"]["seq"] == summary["onset_seq"]
    assert col["nirsd_end_seq"] == acks["end"]["seq"]
    for field in ("hbo", "hbr", "hbt"):
        got = [col[f"mean_{field} {lab}"] for lab in summary["channels"]]
        np.testing.assert_allclose(got, summary[f"mean_{field}"], rtol=1e-12)


def test_docs_script_on_a_file_that_starts_after_the_baseline(tmp_path):
    """The window began before the file: the file carries the daemon's I0 for it."""
    d = DaemonProcess(tmp_path / "d", lumbar_config())
    d.start()
    try:
        wait_for(lambda: d.control().status().get("baseline_ready"), 20, what="baseline")
        wait_for(lambda: d.control().info()["seq"] > 40, 20, what="samples past the window")
        path = tmp_path / "session.snirf"
        ep = ("--data", d.endpoints.data, "--control", d.endpoints.control)
        d.cli("record", str(path), "--backfill", "0.5", "--duration", "1.5", *ep, check=True)
    finally:
        d.stop()
    with h5py.File(path, "r") as f:
        (window,) = json.loads(f["nirs/metaDataTags/nirsdBaselineWindows"][()])
        published = f["nirs/data2/dataTimeSeries"][:].T
        first = int(f["nirs/aux1/dataTimeSeries"][0, 0])
    assert first >= 20 and window["start_row"] is None and len(window["i0"]) == 8
    assert window["start_s"] == pytest.approx(-first / RATE_HZ, abs=0.1)
    scope: dict = {}
    exec(compile(doc_script(), "docs/recording.md", "exec"), scope)
    big = np.abs(published) > 1e-3
    rel = np.abs(scope["hb"] - published)[big] / np.abs(published)[big]
    assert rel.max() < 2e-4, rel.max()


def test_docs_script_when_the_recording_starts_inside_the_baseline(tmp_path):
    """The window began before the file and closed during it: the recorder asks the
    daemon for that window's I0 and the file carries it."""
    # [baseline] 10 s: the recorder's start-up (1-6 s with other tests running) stays
    # well inside the window
    text = lumbar_config().replace("seconds = 1.0", "seconds = 10.0")
    d = DaemonProcess(tmp_path / "d", text)
    d.start()
    try:
        wait_for(lambda: d.control().info().get("seq", 0) > 5, 20, what="samples")
        assert not d.control().status().get("baseline_ready")
        path = tmp_path / "session.snirf"
        ep = ("--data", d.endpoints.data, "--control", d.endpoints.control)
        # 11 s from a first sample past 5: the file ends after the window (sample 200)
        d.cli("record", str(path), "--backfill", "0", "--duration", "11", *ep, check=True)
    finally:
        d.stop()
    with h5py.File(path, "r") as f:
        (window,) = json.loads(f["nirs/metaDataTags/nirsdBaselineWindows"][()])
        published = f["nirs/data2/dataTimeSeries"][:].T
        first = int(f["nirs/aux1/dataTimeSeries"][0, 0])
        pending = (f["nirs/aux2/dataTimeSeries"][:, 0].astype(int) & 4) > 0
    assert 0 < first < 200 and pending[0] and not pending[-1]  # began before, ended inside
    assert window["start_row"] is None and len(window["i0"]) == 8
    scope: dict = {}
    exec(compile(doc_script(), "docs/recording.md", "exec"), scope)
    done = ~pending  # pending samples used the running mean, partly of samples not here
    big = (np.abs(published) > 1e-3) & done[None, :]
    rel = np.abs(scope["hb"] - published)[big] / np.abs(published)[big]
    assert rel.max() < 2e-4, rel.max()
