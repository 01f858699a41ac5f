"""What ``nirsd report`` reads besides plain CW amplitudes: a DPF stated in the file, a
nirsd hemoglobin derivative, and motion that excludes epochs (counted in the report)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest

pytest.importorskip("mne_bids")
pytest.importorskip("mne_nirs")
pytest.importorskip("statsmodels")

from test_report import FS, S, truth_rows  # noqa: E402

from nirsd.cli.main import main  # noqa: E402


def report(root, out, *extra, capsys):
    """``nirsd report`` in this process (the end-to-end subprocess is in test_report):
    returns the printed summary."""
    capsys.readouterr()
    assert main(["report", str(root), "--out", str(out), *extra]) == 0
    return json.loads(capsys.readouterr().out)


from nirsd.clients import report_data, report_testing, snirf_writer  # noqa: E402
from nirsd.clients.report_snirf import read_snirf  # noqa: E402


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """One participant, two sessions: sub-101 in group physio."""
    root = tmp_path_factory.mktemp("bids_small")
    truths = report_testing.write_study(root, per_group=1, groups=("physio",), minutes=3.0, seed=11)
    return root, truths


def copy_of(small, tmp_path):
    import shutil

    root, truths = small
    dst = tmp_path / "bids"
    shutil.copytree(root, dst)
    return dst, truths


def read(out, name="epochs"):
    df = pd.read_csv(out / f"{name}.tsv", sep="\t", na_values=["n/a"], keep_default_na=False)
    if "session" in df:
        df["session"] = df["session"].astype(str)
    return df


def set_tag(path, key, value):
    with h5py.File(path, "r+") as f:
        f["nirs/metaDataTags"].create_dataset(key, data=value.encode())


def test_the_dpf_the_file_states_is_used(small, tmp_path, capsys):
    root, truths = copy_of(small, tmp_path)
    runs = report_data.find_runs(root)
    set_tag(runs[0].path, "nirsdDPF", "5")  # one DPF for every channel and wavelength
    per_channel = [[5.0, 5.0]] + [[6.0, 6.0]] * 7
    set_tag(runs[1].path, "nirsdChannelDPF", json.dumps(per_channel))
    report(root, tmp_path / "out", "--baseline-s", str(S), capsys=capsys)
    ep, truth = read(tmp_path / "out"), truth_rows(truths)
    keys = ["participant_id", "session", "trial_type", "onset", "channel", "chromophore"]
    both = ep.merge(truth, on=keys)
    chan = both[both["channel"] != "all"]
    # ΔHb ∝ 1/DPF: the truth was made with DPF 6
    scale = np.where((chan["session"] == "1") | (chan["channel"] == "S1_D1"), 6.0 / 5.0, 1.0)
    np.testing.assert_allclose(chan["mean_change"], chan["true_mean"] * scale, rtol=1e-6)
    runs_tsv = read(tmp_path / "out", "runs")
    assert list(runs_tsv["dpf_source"]) == ["file tag nirsdDPF", "file tag nirsdChannelDPF"]


def test_dpf_tags_in_every_form_and_a_fallback(small):
    snirf = read_snirf(report_data.find_runs(small[0])[0].path)
    forms = {
        "4.5": np.full((8, 2), 4.5),
        "[5.0, 5.5]": np.tile([5.0, 5.5], (8, 1)),
        '{"760": 5.0, "850": 5.5}': np.tile([5.0, 5.5], (8, 1)),
        json.dumps([[4.0 + c, 4.5 + c] for c in range(8)]): np.array(
            [[4.0 + c, 4.5 + c] for c in range(8)]
        ),
        json.dumps([5.0 + c for c in range(8)]): np.repeat(np.arange(5.0, 13.0)[:, None], 2, 1),
    }
    for text, expected in forms.items():
        snirf.tags = {"DPF": text}
        dpf, source = report_data.file_dpf(snirf, 6.0)
        np.testing.assert_array_equal(dpf, expected)
        assert source == "file tag DPF"
    snirf.tags = {"DPF": "not a number"}
    dpf, source = report_data.file_dpf(snirf, 7.0)
    assert (dpf == 7.0).all() and source == "--dpf 7"


def write_derivative(root, truth, factor):
    """A nirsd hemoglobin derivative of the session-1 run: nirsd's SNIRF writer, then
    its HbO/HbR-only copy, under derivatives/nirsd/ with the run's entities."""
    n_ch = truth.dc.shape[2]
    info = {
        "n_channels": n_ch,
        "wavelengths_nm": list(report_testing.WAVELENGTHS_NM),
        "channels": [
            {"index": c, "label": f"S{c + 1}_D{c + 1}", "distance_mm": 10 * truth.distances_cm[c]}
            for c in range(n_ch)
        ],
    }
    src = root / "recorded.snirf"
    w = snirf_writer.SnirfWriter(src, snirf_writer.layout_from_info(info), snirf_writer.Meta())
    n = len(truth.time)
    hb = np.concatenate([truth.dc, truth.dc[:, :1] + truth.dc[:, 1:2]], axis=1) * factor
    w.append(np.arange(n), 1.7e9 + truth.time, np.ones((n, n_ch, 2)), hb)
    w.set_stims({"extension": np.zeros((0, 3))})
    w.close()
    sub = truth.participant
    folder = root / "derivatives" / "nirsd" / sub / "ses-1" / "nirs"
    folder.mkdir(parents=True)
    snirf_writer.hb_copy(src, folder / f"{sub}_ses-1_task-exercise_run-1_desc-hb_nirs.snirf")
    src.unlink()


def test_a_nirsd_hemoglobin_derivative_is_used_as_it_is(small, tmp_path, capsys):
    root, truths = copy_of(small, tmp_path)
    write_derivative(root, truths[0], factor=2.0)  # twice the truth: visibly not the raw
    report(root, tmp_path / "out", "--baseline-s", str(S), capsys=capsys)
    ep, truth = read(tmp_path / "out"), truth_rows(truths)
    keys = ["participant_id", "session", "trial_type", "onset", "channel", "chromophore"]
    both = ep.merge(truth, on=keys)
    factor = np.where(both["session"] == "1", 2.0, 1.0)
    np.testing.assert_allclose(both["mean_change"], both["true_mean"] * factor, rtol=1e-6)
    runs_tsv = read(tmp_path / "out", "runs")
    assert runs_tsv["source"].str.startswith("derivative").tolist() == [True, False]


def test_epochs_with_motion_are_excluded_and_counted(small, tmp_path, capsys):
    root, truths = copy_of(small, tmp_path)
    run = report_data.find_runs(root)[0]
    with h5py.File(run.path, "r+") as f:  # a probe that keeps slipping during epoch 1
        data = f["nirs/data1/dataTimeSeries"]
        x = data[()]
        for t in np.arange(22.0, 50.0, 2.0):
            i = int(t * FS)
            x[i : i + 3] *= np.exp(-0.3)
        data[...] = x
    out = tmp_path / "out"
    summary = report(root, out, "--baseline-s", str(S), "--max-motion", "0.2", capsys=capsys)
    ep = read(out)
    first = ep[(ep["session"] == "1") & (ep["onset"] == 30.0)]
    assert (first["excluded"] == "motion").all() and (first["motion_fraction"] > 0.2).all()
    others = ep[~ep.index.isin(first.index)]
    assert (others["excluded"] == "no").all()
    assert summary["epochs excluded for motion (> --max-motion of samples)"] == 1
    assert summary["epoch × channel rows excluded for motion"] == 8
    sub = read(out, "subjects")
    ext = sub[(sub["session"] == "1") & (sub["trial_type"] == "extension")]
    assert (ext["n_epochs"] == 1).all()  # the other extension epoch of that run
    page = (out / "report.html").read_text()
    assert "epochs excluded for motion (&gt; --max-motion of samples)</td><td class='t'>1<" in page
    # a looser limit keeps the epoch
    summary = report(root, tmp_path / "out2", "--max-motion", "1", capsys=capsys)
    assert summary["epochs excluded for motion (> --max-motion of samples)"] == 0
