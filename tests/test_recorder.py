"""``nirsd record``: through the real pipeline into SNIRF, read back independently."""

from __future__ import annotations

import importlib.util
import json
import resource
import signal
import subprocess
import time

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")
if importlib.util.find_spec("snirf") is None:  # imported lazily: at import it
    pytest.skip("needs the snirf package", allow_module_level=True)  # writes pysnirf2.log
mne = pytest.importorskip("mne")

from nirsd.cli.testing import (  # noqa: E402
    Collector,
    DaemonProcess,
    finish,
    simulated_config,
    start_recorder,
    wait_for,
)
from nirsd.clients.snirf_writer import hb_copy  # noqa: E402


def _record(daemon: DaemonProcess, path, *args: str, preexec=None) -> subprocess.Popen:
    return start_recorder(daemon, path, *args, preexec=preexec)


def _journal_has(path, kind: str) -> bool:
    jpath = f"{path}.journal.jsonl"
    try:
        with open(jpath) as fh:
            return any(json.loads(line).get("kind") == kind for line in fh if line.endswith("\n"))
    except (OSError, ValueError):
        return False


def collector(daemon: DaemonProcess) -> Collector:
    """Every raw/hb sample by seq."""
    return Collector(daemon.subscriber(("raw", "hb")))


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    """The snirf validator writes pysnirf2.log into the working directory."""
    monkeypatch.chdir(tmp_path)


def _valid(path) -> None:
    import snirf

    result = snirf.validateSnirf(str(path))
    assert result.is_valid(), result.errors
    assert not result.errors


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _rows(path):
    with h5py.File(path, "r") as f:
        seq = f["nirs/aux1/dataTimeSeries"][:, 0].astype(int)
        return (
            seq,
            f["nirs/data1/time"][:],
            f["nirs/data1/dataTimeSeries"][:],
            f["nirs/data2/dataTimeSeries"][:],
            {
                f[f"nirs/{k}/name"][()].decode(): f[f"nirs/{k}/data"][:]
                for k in f["nirs"]
                if k.startswith("stim")
            },
            {k: _text(f[f"nirs/metaDataTags/{k}"][()]) for k in f["nirs/metaDataTags"]},
        )


def _mark(daemon: DaemonProcess, *args: str) -> dict:
    out = daemon.cli(
        "mark",
        *args,
        "--data",
        daemon.endpoints.data,
        "--control",
        daemon.endpoints.control,
        check=True,
    )
    return json.loads(out.stdout)


def test_record_pipeline_snirf_valid_mne_values_stims(daemon, tmp_path):
    path = tmp_path / "session.snirf"
    col = collector(daemon)
    rec = None
    try:
        col.until_seq(5)
        rest = _mark(daemon, "rest")  # before the recorder starts
        rec = _record(daemon, path, "--subject", "P012", "--group", "eperisone", "--visit", "week4")
        wait_for(lambda: _journal_has(path, "run"), 15, what="recorder writing")
        col.until_seq(rest["seq"] + 10)
        rest_end = _mark(daemon, "rest", "--end")
        col.until_seq(rest_end["seq"] + 3)
        ext = _mark(daemon, "extension")
        col.until_seq(ext["seq"] + 8)
        ext_end = _mark(daemon, "extension", "--end")
        flex = _mark(daemon, "flexion", "--instant")
        col.until_seq(flex["seq"] + 5)
        wait_for(lambda: _journal_has(path, "epoch") and _journal_has(path, "marker"), 10)
        last = col.pump()
        rec.send_signal(signal.SIGINT)
        out, err = rec.communicate(timeout=20)
    finally:
        col.sub.close()
        if rec is not None and rec.poll() is None:
            rec.kill()
            rec.wait()
    assert rec.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["reason"] == "SIGINT" and summary["lost_samples"] == 0

    _valid(path)
    seq, time_s, raw, hb, stims, tags = _rows(path)
    assert seq[0] == 0 and np.all(np.diff(seq) == 1) and seq[-1] >= last - 1
    assert tags["SubjectID"] == "P012" and tags["StudyGroup"] == "eperisone"
    assert tags["Visit"] == "week4" and tags["LengthUnit"] == "mm"
    common = [s for s in seq if s in col.hb and s in col.raw]
    assert len(common) > 30
    idx = np.searchsorted(seq, common)
    want_raw = np.stack([col.raw[s] for s in common]).reshape(len(common), -1)
    want_hb = np.stack([col.hb[s][:2].T for s in common]).reshape(len(common), -1)
    np.testing.assert_array_equal(raw[idx], want_raw)
    np.testing.assert_array_equal(hb[idx], want_hb)
    t0 = col.t[0] if 0 in col.t else None
    if t0 is not None:
        np.testing.assert_allclose(time_s[idx], [col.t[s] - t0 for s in common], atol=1e-9)

    def at(s: int) -> float:
        return float(time_s[np.searchsorted(seq, s)])

    np.testing.assert_allclose(
        stims["rest"][:, :3], [[at(rest["seq"]), at(rest_end["seq"]) - at(rest["seq"]), 1]]
    )
    np.testing.assert_allclose(
        stims["extension"][:, :3], [[at(ext["seq"]), at(ext_end["seq"]) - at(ext["seq"]), 1]]
    )
    np.testing.assert_allclose(stims["flexion"][:, :3], [[at(flex["seq"]), 0, 1]])

    # MNE reads only /nirs/data1: the raw intensities
    raw_mne = mne.io.read_raw_snirf(path, preload=True, verbose="error")
    assert set(raw_mne.get_channel_types()) == {"fnirs_cw_amplitude"}
    assert raw_mne.info["dig"] == []  # a synthetic layout: no fsaverage head fiducials
    assert len(raw_mne.ch_names) == 16
    np.testing.assert_allclose(raw_mne.get_data().T, raw)
    ann = {(a["description"], round(a["onset"], 3)) for a in raw_mne.annotations}
    assert ann == {
        ("rest", round(at(rest["seq"]), 3)),
        ("extension", round(at(ext["seq"]), 3)),
        ("flexion", round(at(flex["seq"]), 3)),
    }
    # the hemoglobin block, as data1 of a copy, reads as hbo/hbr in mol/L
    hb_path = tmp_path / "hb.snirf"
    hb_copy(path, hb_path)
    _valid(hb_path)
    hb_mne = mne.io.read_raw_snirf(hb_path, preload=True, verbose="error")
    assert hb_mne.get_channel_types()[:4] == ["hbo", "hbr", "hbo", "hbr"]
    np.testing.assert_allclose(hb_mne.get_data().T, hb * 1e-6, rtol=1e-12, atol=0)


def test_sigkill_then_recover(daemon, tmp_path):
    path = tmp_path / "killed.snirf"
    col = collector(daemon)
    rec = _record(daemon, path)
    try:
        wait_for(lambda: _journal_has(path, "run"), 15, what="recorder writing")
        start = col.pump()
        flex = _mark(daemon, "flexion")
        col.until_seq(max(start, flex["seq"]) + 30)  # 3 s at 10 Hz
        killed_at = col.pump()
        rec.kill()
        rec.wait(10)
    finally:
        col.sub.close()
        if rec.poll() is None:
            rec.kill()
            rec.wait()
    assert not (tmp_path / "killed_hb.snirf").exists()  # written at the end, or by --recover
    out = daemon.cli("record", "--recover", str(path), check=True)
    recovered = json.loads(out.stdout)
    assert recovered["rows"] > 0 and recovered["hb_file"] == str(tmp_path / "killed_hb.snirf")
    _valid(path)
    seq, time_s, raw, hb, stims, _ = _rows(path)
    rate = 10.0
    assert seq[0] == 0 and np.all(np.diff(seq) == 1)
    assert seq[-1] >= killed_at - rate * 1.0 - 1, (seq[-1], killed_at)
    common = [s for s in seq if s in col.raw]
    idx = np.searchsorted(seq, common)
    np.testing.assert_array_equal(
        raw[idx], np.stack([col.raw[s] for s in common]).reshape(len(common), -1)
    )
    onset = time_s[np.searchsorted(seq, flex["seq"])]
    assert stims["flexion"][0, 0] == pytest.approx(onset)  # open epoch: to the end
    assert stims["flexion"][0, 0] + stims["flexion"][0, 1] == pytest.approx(
        time_s[-1] + 0.1, abs=0.02
    )
    raw_mne = mne.io.read_raw_snirf(path, verbose="error")
    assert raw_mne.n_times == len(seq)
    hb_mne = mne.io.read_raw_snirf(recovered["hb_file"], preload=True, verbose="error")
    np.testing.assert_allclose(hb_mne.get_data().T, hb * 1e-6, rtol=1e-12, atol=0)


def test_disk_full_gives_clear_error_and_valid_file(tmp_path):
    limit = 500_000

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    path = tmp_path / "full.snirf"
    with DaemonProcess(tmp_path, simulated_config(channels=16, rate_hz=100.0)) as daemon:
        rec = _record(daemon, path, "--backfill", "0", "--duration", "40", preexec=small_files)
        out, err = finish(rec, 45)
    assert rec.returncode == 74, err
    assert "disk full" in err and "Traceback" not in err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["reason"] == "disk full"
    _valid(path)
    seq, time_s, raw, hb, _, _ = _rows(path)
    assert len(seq) == summary["samples"] > 50
    assert np.all(np.diff(seq) == 1) and np.isfinite(raw).all()
    assert path.stat().st_size <= limit


@pytest.mark.timing
def test_daemon_gone_recorder_still_stops_on_sigint(daemon, tmp_path):
    """History first; with the daemon killed (no messages at all) SIGINT still ends it."""
    path = tmp_path / "gone.snirf"
    col = collector(daemon)
    rec = None
    try:
        col.until_seq(15)  # history for the recorder to fetch
        rec = _record(daemon, path)
        wait_for(lambda: _journal_has(path, "run"), 15, what="recorder writing")
        daemon.stop(signal.SIGKILL)
        last = col.pump()
        rec.send_signal(signal.SIGINT)
        t_sig = time.monotonic()
        out, err = rec.communicate(timeout=20)
        took = time.monotonic() - t_sig
    finally:
        col.sub.close()
        if rec is not None and rec.poll() is None:
            rec.kill()
            rec.wait()
    assert rec.returncode == 0, err
    assert took < 5.0, took
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["reason"] == "SIGINT" and summary["gaps"] == 0
    assert summary["backfilled"] >= 15
    _valid(path)
    seq, _, raw, _, _, _ = _rows(path)
    assert seq[0] == 0 and np.all(np.diff(seq) == 1) and seq[-1] >= last - 1
    assert len(seq) == summary["samples"]
    common = [s for s in seq if s in col.raw]
    assert len(common) >= 15
    np.testing.assert_array_equal(
        raw[np.searchsorted(seq, common)],
        np.stack([col.raw[s] for s in common]).reshape(len(common), -1),
    )
