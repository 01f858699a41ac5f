"""``nirsd run --replay``: real SNIRF recordings through the pty, the NIRSB driver and the
daemon, checked against MNE-Python's conversion of the same files.

MNE reads the file; its ``optical_density`` (I0 = mean of the whole recording) is
re-referenced to nirsd's baseline window (I0 = mean of the first ``baseline.seconds``)
and converted by ``beer_lambert_law`` with ppf = nirsd's DPF.  The two then agree to MNE's
rounded ln 10 (1.8e-4 relative).  Epoch summaries do not depend on the reference, so they
are compared with MNE's own hb.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from nirsd.cli.testing import DaemonProcess, wait_for
from nirsd.drivers.snirf_source import read_recording

mne = pytest.importorskip("mne")
h5py = pytest.importorskip("h5py")

DATA = Path(__file__).parent / "data" / "snirf-samples"
DPF = 6.0


def mne_hb(path: Path, i0_window: int | None = None) -> tuple[np.ndarray, list[str]]:
    """MNE's [HbO, HbR] in µM as (n, 2, n_ch) in nirsd's channel order, and its labels.

    ``i0_window``: re-reference MNE's optical density to the mean intensity of the first
    that many samples (nirsd's baseline window); None keeps MNE's whole-recording mean.
    """
    from mne.preprocessing.nirs import beer_lambert_law, optical_density

    raw = mne.io.read_raw_snirf(path, preload=True, verbose="error")
    od = optical_density(raw, verbose="error")
    if i0_window is not None:
        amp = raw.get_data()
        i0 = amp[:, :i0_window].mean(axis=1)
        od._data += np.log(i0 / amp.mean(axis=1))[:, None]
    hb = beer_lambert_law(od, ppf=DPF)
    rec = read_recording(path)
    labels = [ch["label"] for ch in rec.channels]
    data = hb.get_data() * 1e6
    names = hb.ch_names
    out = np.stack(
        [
            np.stack([data[names.index(f"{lab} {kind}")] for lab in labels], axis=1)
            for kind in ("hbo", "hbr")
        ],
        axis=1,
    )
    return out, labels


def run_replay(tmp: Path, name: str, speed: float, baseline_s: float, until: int | None = None):
    """Replay ``name`` to its end (or sample ``until``); returns (history hb/raw messages,
    markers, epoch summaries)."""
    path = tmp / name
    shutil.copy(DATA / name, path)
    rec = read_recording(path)
    n = rec.n_samples if until is None else until
    config = (
        f"[baseline]\nseconds = {baseline_s}\n[markers]\nbaseline_s = 10.0\n"
        f"[status]\ninterval_s = 0.5\n[optics]\ndpf = {DPF}\n"
    )
    d = DaemonProcess(tmp, config, args=["--replay", str(path), "--speed", str(speed)])
    sub = d.subscriber(("marker", "epoch"))
    markers, epochs = [], []
    try:
        d.start(timeout=60)

        def done() -> bool:
            while (msg := sub.recv(0.05)) is not None:
                (markers if msg.topic == "marker" else epochs).append(msg.header)
            return d.control().status()["samples"] >= n

        wait_for(done, n / rec.rate_hz / speed + 60, interval=0.05, what="replay finished")
        want = len(rec.stims) if until is None else 0
        wait_for(lambda: done() and len(epochs) >= want, 10, what="epoch summaries")
        history = d.control(timeout_s=10).history(since=0, until=n)
        status = d.control().status()
    finally:
        sub.close()
        d.stop()
    assert status["counters"]["crc_errors"] == 0 and status["counters"]["lost_samples"] == 0
    return rec, history, markers, epochs


@pytest.fixture(scope="module")
def simple(tmp_path_factory):
    """Simple_Probe at 10x with a 30 s baseline: its first stims (23.7 s, 30.7 s) begin
    while I0 is still being taken."""
    return run_replay(tmp_path_factory.mktemp("simple"), "Simple_Probe.snirf", 10.0, 30.0)


def check_values(path: Path, rec, history, baseline_n: int) -> float:
    """nirsd's published hb (after the baseline window) against MNE, re-referenced."""
    hb = history["hb"].array  # (n, 3, n_ch) µM
    raw = history["raw"].array
    np.testing.assert_array_equal(raw, rec.counts().astype(np.float64))
    expected, _ = mne_hb(path, i0_window=baseline_n)
    got = hb[baseline_n:, :2, :]
    want = expected[baseline_n:]
    scale = np.abs(want).max(axis=0)  # per field and channel
    err = np.abs(got - want) / scale
    assert err.max() < 2e-4, err.max()
    np.testing.assert_allclose(hb[:, 2], hb[:, 0] + hb[:, 1], rtol=1e-12, atol=1e-12)
    return float(err.max())


def check_markers(path: Path, rec, markers) -> None:
    """A start marker at every stim's onset sample and an end marker at onset + duration,
    from MNE's reading of the stims.  MNE counts annotation onsets from the first sample;
    SNIRF onsets are in the time vector's base, so the first time value is subtracted."""
    raw = mne.io.read_raw_snirf(path, verbose="error")
    sfreq = raw.info["sfreq"]
    with h5py.File(path) as f:
        t0 = float(f["nirs/data1/time"][0])
    want = []
    for a in raw.annotations:
        want.append((a["description"], "start", round((a["onset"] - t0) * sfreq)))
        end = round((a["onset"] + a["duration"] - t0) * sfreq)
        want.append((a["description"], "end", min(end, raw.n_times - 1)))
    got = sorted((m["label"], m["action"], m["seq"]) for m in markers if m["source"] == "device")
    assert got == sorted(want)
    assert len(got) == 2 * len(rec.stims)


def expected_summary(mne_um: np.ndarray, on: int, end: int, base_n: int) -> np.ndarray:
    """(2, n_ch): mean over [on, end) minus mean over the base_n samples before on."""
    return mne_um[on:end].mean(axis=0) - mne_um[max(0, on - base_n) : on].mean(axis=0)


def check_summaries(path: Path, rec, epochs, base_n: int) -> int:
    """Every stim's final summary equals MNE's to 1e-3 µM; returns the number checked."""
    mne_um, _ = mne_hb(path)
    finals = {(e["label"], e["onset_seq"]): e for e in epochs if not e["provisional"]}
    for stim in rec.stims:
        e = finals[(stim.label, stim.onset_k)]
        assert e["end_seq"] == stim.end_k and e["n_samples"] == stim.end_k - stim.onset_k
        want = expected_summary(mne_um, stim.onset_k, stim.end_k, base_n)
        np.testing.assert_allclose(e["mean_hbo"], want[0], rtol=0, atol=1e-3)
        np.testing.assert_allclose(e["mean_hbr"], want[1], rtol=0, atol=1e-3)
    return len(rec.stims)


def test_simple_probe_matches_mne(simple, tmp_path):
    rec, history, markers, epochs = simple
    path = DATA / "Simple_Probe.snirf"
    assert rec.time[0] == pytest.approx(0.1)  # a time vector that does not start at 0
    check_values(path, rec, history, baseline_n=300)
    check_markers(path, rec, markers)
    assert check_summaries(path, rec, epochs, 100) == 4


def test_summaries_during_the_baseline_window_are_corrected(simple):
    """Stim "3" (23.7-28.7 s) ends before I0 is fixed at 30 s: a provisional summary at
    its end, then a corrected one (revision 2) once I0 is fixed.  Stim "1" (30.7 s) has
    its pre-epoch window inside the baseline: recomputed from raw at its end."""
    rec, history, markers, epochs = simple
    first = [e for e in epochs if e["label"] == "3"]
    assert [e["revision"] for e in first] == [1, 2]
    assert first[0]["provisional"] is True and first[1]["provisional"] is False
    assert first[1]["replaces_msg"] == first[0]["msg"]
    assert first[1]["baseline_recomputed"] is True
    # the correction goes out once the baseline window (300 samples) is complete:
    # after the marker at sample 286, before the one at sample 306 (wall-clock times)
    sent = {(m["label"], m["action"]): m["time"] for m in markers}
    assert first[0]["time"] < first[1]["time"]
    assert sent[("3", "end")] < first[1]["time"] <= sent[("1", "start")]
    mne_um, _ = mne_hb(DATA / "Simple_Probe.snirf")
    stim = next(s for s in rec.stims if s.label == "3")
    want = expected_summary(mne_um, stim.onset_k, stim.end_k, 100)
    assert np.abs(np.array(first[0]["mean_hbo"]) - want[0]).max() > 1e-3  # it was off
    second = [e for e in epochs if e["label"] == "1"]
    assert second[0]["revision"] == 1 and second[0]["baseline_recomputed"] is True
    assert all(e["baseline_recomputed"] is False for e in epochs if e["label"] == "2")


#: samples compared at 1x: 6 s of wall time, every one inside the 30 s baseline window
#: (converted with the running mean, the part that depends on arrival order)
SPEED_SAMPLES = 60


def test_speed_keeps_values(simple, tmp_path):
    """The first samples at 1x equal those at 10x."""
    rec, history10, _, _ = simple
    n = SPEED_SAMPLES
    _, history1, _, _ = run_replay(tmp_path, "Simple_Probe.snirf", 1.0, 30.0, until=n)
    assert history1["raw"].n == n
    np.testing.assert_array_equal(history1["raw"].array, history10["raw"].array[:n])
    np.testing.assert_allclose(
        history1["hb"].array, history10["hb"].array[:n], rtol=1e-12, atol=1e-12
    )
    assert history1["hb"].header["t_dev"] == history10["hb"].header["t_dev"][:n]


def test_neuro_run01_matches_mne(tmp_path):
    # 400 s of recording at 50x (1000 samples/s through the pty): values, markers and
    # summaries are by sample, not by wall time, so the speed only shortens the wait
    rec, history, markers, epochs = run_replay(tmp_path, "neuro_run01.snirf", 50.0, 10.0)
    path = DATA / "neuro_run01.snirf"
    assert rec.n_channels == 9 and rec.rate_hz == pytest.approx(20.033, abs=1e-3)
    check_values(path, rec, history, baseline_n=int(round(10.0 * 20.033)))
    check_markers(path, rec, markers)
    assert check_summaries(path, rec, epochs, int(round(10.0 * 20.033))) == 6
    assert all(e["revision"] == 1 and not e["provisional"] for e in epochs)
