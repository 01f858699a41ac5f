"""``nirsd report`` on a synthetic study written by mne-bids (not nirsd), against the truth.

The dataset: 3 groups × 3 subjects × 2 sessions, 3-minute runs of 8 channels × 2
wavelengths at 10 Hz with known ΔHbO/ΔHbR (see nirsd.clients.report_testing).  The report
runs as a real subprocess; its TSVs are checked against the definitions computed here
from the truth, against scipy and statsmodels on the same subject means, and the
conversion against MNE.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("mne_bids")
pytest.importorskip("mne_nirs")
pytest.importorskip("statsmodels")

from nirsd.clients import report_data, report_testing  # noqa: E402
from nirsd.clients.report_measures import Limits, epoch_table  # noqa: E402

S = 10.0  # --baseline-s
FS = 10.0
RTOL = 1e-6


def run_report(root: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nirsd.cli.main", "report", str(root), "--out", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("bids")
    truths = report_testing.write_study(root, per_group=3, minutes=3.0, seed=7)
    out = tmp_path_factory.mktemp("report")
    proc = run_report(root, out, "--baseline-s", str(S))
    assert proc.returncode == 0, proc.stderr
    tables = {
        name: pd.read_csv(out / f"{name}.tsv", sep="\t", na_values=["n/a"], keep_default_na=False)
        for name in ("epochs", "subjects", "groups", "tests", "runs")
    }
    for df in tables.values():
        if "session" in df:
            df["session"] = df["session"].astype(str)
    return {"root": root, "out": out, "truths": truths, "proc": proc, **tables}


def truth_rows(truths) -> pd.DataFrame:
    """Every epoch × channel (and all) × chromophore's measures, from the truth."""
    rows = []
    for tr in truths:
        x = np.concatenate([tr.dc, tr.dc[:, :1] + tr.dc[:, 1:2]], axis=1)  # (n, 3, ch)
        x = np.concatenate([x, x.mean(axis=2, keepdims=True)], axis=2)  # + all
        names = [f"S{c + 1}_D{c + 1}" for c in range(tr.dc.shape[2])] + ["all"]
        for onset, dur, label in tr.events:
            k, m, b = round(onset * FS), round(dur * FS), round(S * FS)
            during = x[k : k + m] - x[k - b : k].mean(axis=0)
            t = np.arange(m) / FS
            for c, name in enumerate(names):
                for j, chrom in enumerate(("hbo", "hbr", "hbt")):
                    y = during[:, j, c]
                    peak = int(np.argmax(np.abs(y)))
                    rows.append(
                        {
                            "participant_id": tr.participant,
                            "session": tr.session,
                            "group": tr.group,
                            "trial_type": label,
                            "onset": onset,
                            "channel": name,
                            "chromophore": chrom,
                            "true_mean": y.mean(),
                            "true_peak": y[peak],
                            "true_ttp": t[peak],
                            "true_slope": np.polyfit(t, y, 1)[0],
                        }
                    )
    return pd.DataFrame(rows)


def test_every_mean_change_equals_the_definition_on_the_truth(study):
    ep = study["epochs"]
    truth = truth_rows(study["truths"])
    keys = ["participant_id", "session", "trial_type", "onset", "channel", "chromophore"]
    both = ep.merge(truth, on=keys, how="outer", indicator=True, suffixes=("", "_t"))
    assert (both["_merge"] == "both").all()  # one row per epoch × channel × chromophore
    assert len(ep) == 18 * 4 * 9 * 3
    assert (both["group"] == both["group_t"]).all()
    np.testing.assert_allclose(both["mean_change"], both["true_mean"], rtol=RTOL, atol=1e-9)
    np.testing.assert_allclose(both["peak_change"], both["true_peak"], rtol=RTOL, atol=1e-9)
    np.testing.assert_allclose(both["time_to_peak"], both["true_ttp"], atol=1e-9)
    np.testing.assert_allclose(both["slope"], both["true_slope"], rtol=RTOL, atol=1e-9)
    # the known responses come through: extension lowers HbO and raises HbR in every group
    all_ext = both[(both["channel"] == "all") & (both["trial_type"] == "extension")]
    assert (all_ext[all_ext["chromophore"] == "hbo"]["mean_change"] < 0).all()
    assert (all_ext[all_ext["chromophore"] == "hbr"]["mean_change"] > 0).all()
    assert (ep["excluded"] == "no").all() and (ep["motion_fraction"] == 0).all()
    assert ep["recovery_half_time"].notna().mean() > 0.9  # the response returns in the rest


def test_recovery_half_time_is_where_the_change_is_back_halfway(study):
    ep, tr = study["epochs"], study["truths"][0]
    row = ep[(ep["participant_id"] == tr.participant) & (ep["session"] == tr.session)]
    row = row[(row["channel"] == "S1_D1") & (row["chromophore"] == "hbo")].iloc[0]
    x = tr.dc[:, 0, 0]
    k, m, b, w = (round(v * FS) for v in (row["onset"], row["duration"], S, 1.0))
    change = x - x[k - b : k].mean()
    level = change[k + m - w : k + m].mean()
    moving = np.convolve(change[k + m :], np.ones(w) / w, mode="valid")  # mean over [i, i+w)
    first = int(np.flatnonzero((moving - level / 2) * np.sign(level) <= 0)[0])
    assert row["recovery_half_time"] == pytest.approx(first / FS, abs=1e-9)


def test_subjects_and_groups_are_the_means_of_the_rows_below(study):
    ep, sub, grp = study["epochs"], study["subjects"], study["groups"]
    keys = ["participant_id", "session", "trial_type", "channel", "chromophore"]
    mine = ep.groupby(keys)["mean_change"].agg(["mean", "size"]).reset_index()
    both = sub.merge(mine, on=keys)
    assert len(both) == len(sub) == 9 * 2 * 2 * 9 * 3
    np.testing.assert_allclose(both["mean_change"], both["mean"], rtol=1e-9)
    assert (both["n_epochs"] == both["size"]).all() and (both["n_epochs"] == 2).all()
    s_all = sub[sub["channel"] == "all"]
    for row in grp.itertuples():
        cell = s_all[
            (s_all["group"] == row.group)
            & (s_all["session"] == row.session)
            & (s_all["trial_type"] == row.trial_type)
            & (s_all["chromophore"] == row.chromophore)
        ]["mean_change"]
        assert row.n_subjects == len(cell) == 3
        assert row.mean == pytest.approx(cell.mean(), rel=1e-9)
        assert row.sd == pytest.approx(cell.std(ddof=1), rel=1e-9)
        assert row.sem == pytest.approx(cell.std(ddof=1) / np.sqrt(3), rel=1e-9)
    g2 = grp[grp["session"] == "2"].set_index(["group", "trial_type", "chromophore"])
    g1 = grp[grp["session"] == "1"].set_index(["group", "trial_type", "chromophore"])
    np.testing.assert_allclose(g2["change_from_first"], (g2["mean"] - g1["mean"]), rtol=1e-9)
    assert (g1["change_from_first"] == 0).all()
    # eperisone's extension HbO response shrinks most between the sessions (by design)
    ext = g2.xs(("extension", "hbo"), level=("trial_type", "chromophore"))
    assert ext["change_from_first"].idxmax() == "eperisone"


def test_tests_equal_scipy_and_statsmodels_on_the_subject_means(study):
    import statsmodels.formula.api as smf
    from scipy import stats

    sub, tests = study["subjects"], study["tests"]
    s_all = sub[sub["channel"] == "all"]
    for (session, tt, chrom), cell in s_all.groupby(["session", "trial_type", "chromophore"]):
        values = {g: c["mean_change"].to_numpy() for g, c in cell.groupby("group")}
        mine = tests[
            (tests["session"] == session)
            & (tests["trial_type"] == tt)
            & (tests["chromophore"] == chrom)
        ]
        anova = mine[mine["method"].str.startswith("one-way ANOVA")].iloc[0]
        ref = stats.f_oneway(*(values[g] for g in sorted(values)))
        assert anova["statistic"] == pytest.approx(ref.statistic, rel=1e-8)
        assert anova["p"] == pytest.approx(ref.pvalue, rel=1e-8)
        assert (anova["df"], anova["df_denom"]) == (2, 6)
        welch = mine[mine["method"].str.startswith("Welch")]
        assert len(welch) == 3
        for a, b in itertools.combinations(sorted(values), 2):
            row = welch[welch["comparison"] == f"{a} − {b}"].iloc[0]
            ref = stats.ttest_ind(values[a], values[b], equal_var=False)
            assert row["statistic"] == pytest.approx(ref.statistic, rel=1e-8)
            assert row["p"] == pytest.approx(ref.pvalue, rel=1e-8)
            assert row["df"] == pytest.approx(ref.df, rel=1e-8)
        assert (welch["p_holm"] >= welch["p"] - 1e-15).all()
    mixed = tests[tests["session"] == "all"]
    assert mixed["method"].str.contains("MixedLM").all()
    for (tt, chrom), cell in s_all.groupby(["trial_type", "chromophore"]):
        fit = smf.mixedlm(
            "mean_change ~ C(group) * C(session)", cell, groups=cell["participant_id"]
        ).fit(reml=True)
        mine = mixed[(mixed["trial_type"] == tt) & (mixed["chromophore"] == chrom)]
        terms = [t for t in fit.params.index if ":" in t]
        assert sorted(mine["comparison"]) == sorted(terms) and len(terms) == 2
        for row in mine.itertuples():
            assert row.estimate == pytest.approx(fit.params[row.comparison], rel=1e-5, abs=1e-9)
            assert row.p == pytest.approx(fit.pvalues[row.comparison], rel=1e-4, abs=1e-12)


def test_the_conversion_matches_mne(study):
    """MNE's optical_density + beer_lambert_law (ppf 6) on the same file: the epoch mean
    changes agree to MNE's rounding of ln 10 (1.8e-4 relative)."""
    import mne
    import mne_bids

    tr = study["truths"][0]
    bp = mne_bids.BIDSPath(
        subject=tr.participant[4:],
        session=tr.session,
        task="exercise",
        run=1,
        datatype="nirs",
        root=study["root"],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # participants.tsv's group column
        raw = mne_bids.read_raw_bids(bp, verbose=False)
    od = mne.preprocessing.nirs.optical_density(raw, verbose=False)
    hb = mne.preprocessing.nirs.beer_lambert_law(od, ppf=6.0).get_data() * 1e6  # M → µM
    ep = study["epochs"]
    ep = ep[(ep["participant_id"] == tr.participant) & (ep["session"] == tr.session)]
    for onset, dur, _ in tr.events:
        k, m, b = round(onset * FS), round(dur * FS), round(S * FS)
        ref = hb[:, k : k + m].mean(axis=1) - hb[:, k - b : k].mean(axis=1)
        for c in range(8):
            for j, chrom in enumerate(("hbo", "hbr")):
                row = ep[
                    (ep["onset"] == onset)
                    & (ep["channel"] == f"S{c + 1}_D{c + 1}")
                    & (ep["chromophore"] == chrom)
                ].iloc[0]
                assert row["mean_change"] == pytest.approx(ref[2 * c + j], rel=4e-4)


def test_measures_do_not_depend_on_i0(study):
    run = report_data.find_runs(study["root"])[0]
    data = report_data.load_run(run)
    snirf = report_data.read_snirf(run.path)
    dpf, _ = report_data.file_dpf(snirf, 6.0)
    rng = np.random.default_rng(1)
    for i0 in (snirf.values[0], snirf.values.max(axis=0) * rng.uniform(1, 50, (8, 2))):
        hb, _, _ = report_data.convert(snirf, dpf, i0)
        assert not np.allclose(hb, data.hb)  # a different I0 shifts every ΔHb …
        other = report_data.RunData(**(vars(data) | {"hb": hb}))
        a = pd.DataFrame(epoch_table(data, "g", Limits(S)).rows)
        b = pd.DataFrame(epoch_table(other, "g", Limits(S)).rows)
        for col in ("mean_change", "peak_change", "slope", "recovery_half_time"):
            np.testing.assert_allclose(a[col], b[col], rtol=1e-9, atol=1e-9)  # … no measure


def test_report_html_is_self_contained_and_figures_exist(study):
    out = study["out"]
    page = (out / "report.html").read_text()
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert pngs == [
        "distribution_extension.png",
        "distribution_flexion.png",
        "epochs_extension.png",
        "epochs_flexion.png",
    ]
    assert page.count('src="data:image/png;base64,') == 4
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "epochs excluded for motion" in page and "Welch" in page and "MixedLM" in page
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["GeneratedBy"][0]["Name"] == "nirsd report"
    summary = json.loads(study["proc"].stdout)
    assert summary["runs"] == 18 and summary["epochs"] == 72
    assert summary["epochs excluded for motion (> --max-motion of samples)"] == 0
    assert "18/18 runs" in study["proc"].stderr  # the progress bar
    runs = study["runs"]
    assert (runs["source"] == "raw").all() and (runs["dpf_source"] == "--dpf 6").all()
    assert (runs["motion_samples_fraction"] <= 0.01).all()  # clean data: ≤ 1 % flagged


def test_a_bad_root_is_one_clear_error(tmp_path):
    proc = run_report(tmp_path / "nowhere", tmp_path / "out")
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("nirsd:") and "not a directory" in proc.stderr
    (tmp_path / "empty").mkdir()
    proc = run_report(tmp_path / "empty", tmp_path / "out")
    assert proc.returncode == 1 and "fNIRS-BIDS" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_report_html_renders_in_chromium(study, tmp_path):
    """Headless Chromium loads the page from disk alone; its screenshot is not blank."""
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    page = tmp_path / "alone" / "report.html"
    page.parent.mkdir()
    shutil.copy(study["out"] / "report.html", page)  # without figures/ beside it
    shot = tmp_path / "page.png"
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
        + ["--window-size=1280,2400", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    import matplotlib.image as mpimg

    pixels = mpimg.imread(shot)[:, :, :3]
    assert pixels.shape[:2] == (2400, 1280)
    # the embedded figures draw red (ΔHbO of a group) and blue lines: the images loaded
    red = (pixels[:, :, 0] > 0.7) & (pixels[:, :, 1] < 0.3) & (pixels[:, :, 2] < 0.3)
    blue = (pixels[:, :, 2] > 0.6) & (pixels[:, :, 0] < 0.3)
    assert red.sum() > 500 and blue.sum() > 500


def test_participants_without_a_group_are_left_out_of_the_tests(study):
    from nirsd.clients import report_stats

    sub = study["subjects"].copy()
    orphan = sub[sub["participant_id"] == "sub-101"].copy()
    orphan["participant_id"], orphan["group"] = "sub-999", "n/a"
    tests = report_stats.tests_table(pd.concat([sub, orphan]))
    assert not tests["comparison"].str.contains("n/a").any()
    pd.testing.assert_frame_equal(tests, report_stats.tests_table(sub))
