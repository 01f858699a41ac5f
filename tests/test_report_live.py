"""``nirsd report`` on a dataset recorded by nirsd itself (``nirsd record --bids``):
its epochs.tsv equals the epoch summaries the daemon published live for the same
epochs (mean change and peak, every channel and chromophore, to 1e-6), both from the
hemoglobin derivative and when the report converts the raw amplitudes itself."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("statsmodels")
if importlib.util.find_spec("nirsd.clients.bids_recorder") is None:
    pytest.skip("nirsd record --bids is not in this tree", allow_module_level=True)

from stream_support import joined, recv_topic  # noqa: E402

from nirsd.cli.testing import DaemonProcess, simulated_config, wait_for  # noqa: E402

RATE = 10.0
BASELINE_S = 1.5
# each epoch is preceded by at least BASELINE_S of the session (its pre-epoch window)
STEPS = [("rest", 2.0), ("extension", 2.0), ("rest", 2.0), ("flexion", 2.0), ("rest", 1.5)]
EXTRA = (
    f"[markers]\nbaseline_s = {BASELINE_S}\n[protocol.short]\nsteps = ["
    + ", ".join(f'["{label}", {s}]' for label, s in STEPS)
    + "]\n"
)


def test_report_epochs_equal_the_live_epoch_summaries(tmp_path):
    root = tmp_path / "study"
    config = simulated_config(channels=4, rate_hz=RATE, extra=EXTRA)
    with DaemonProcess(tmp_path / "d", config) as daemon:
        with daemon.subscriber(("epoch", "session", "status")) as live:
            joined(live)  # every epoch summary of the session reaches this subscriber
            err = tmp_path / "rec.err"
            cmd = [sys.executable, "-m", "nirsd.cli", "record", "--bids", str(root)]
            cmd += ["--sessions", "1", "--data", daemon.endpoints.data]
            cmd += ["--control", daemon.endpoints.control]
            with open(err, "w") as fh:
                rec = subprocess.Popen(cmd, env=daemon.env, stdout=subprocess.DEVNULL, stderr=fh)
            wait_for(lambda: "following" in err.read_text() or rec.poll() is not None, 30)
            sessions = {}  # participant → (first seq, end seq)
            for subject, group in (("P01", "eperisone"),):
                args = ["session", "start", "--subject", subject, "--session", "week0"]
                r = daemon.cli(*args, "--group", group, "--protocol", "short")
                assert r.returncode == 0, r.stderr
                ack = json.loads(r.stdout)

                def ended(sid=ack["session_id"]):
                    last = daemon.control().request("session_status")[0]["last"]
                    return last if last and last["session_id"] == sid else None

                end = wait_for(ended, 60, 0.1)
                sessions[f"sub-{subject}"] = (ack["seq"], end["end_seq"])
            assert rec.wait(60) == 0, err.read_text()
            summaries = []
            while (msg := recv_topic(live, "epoch", 0.5)) is not None:
                summaries.append(msg.header)
    raw_only = tmp_path / "study-raw"
    shutil.copytree(root, raw_only)
    for path in (raw_only / "derivatives" / "nirsd").rglob("*_desc-hb_nirs.snirf"):
        path.unlink()  # here the report converts the CW amplitudes with nirsd's converter
    # the two reports are independent processes: run side by side
    procs = [start_report(root, tmp_path / "from_derivative")]
    procs.append(start_report(raw_only, tmp_path / "from_raw"))
    try:
        ep = report_epochs(procs[0], tmp_path / "from_derivative", "derivative")
        assert compare(ep, summaries, sessions) == 4 * 4 * 3
        ep = report_epochs(procs[1], tmp_path / "from_raw", "raw")
        assert compare(ep, summaries, sessions) == 4 * 4 * 3
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def start_report(root, out) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "nirsd.cli", "report", str(root), "--out", str(out)]
        + ["--baseline-s", str(BASELINE_S)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def report_epochs(proc: subprocess.Popen, out, source: str) -> pd.DataFrame:
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    runs = pd.read_csv(out / "runs.tsv", sep="\t")
    assert runs["source"].str.split(" ").str[0].eq(source).all(), runs["source"]
    assert (runs["dpf_source"] == "file tag nirsdDPF").all()  # the DPF the daemon used
    ep = pd.read_csv(out / "epochs.tsv", sep="\t", na_values=["n/a"], keep_default_na=False)
    return ep[ep["channel"] != "all"]


def compare(ep: pd.DataFrame, summaries: list[dict], sessions: dict) -> int:
    """Check every live summary whose pre-epoch window lies in a run; returns how many
    channel × chromophore values were compared."""
    compared = 0
    for s in summaries:
        who = [p for p, (a, b) in sessions.items() if a <= s["onset_seq"] < b]
        if not who:
            continue
        first = sessions[who[0]][0]
        if s["onset_seq"] - s["n_baseline"] < first:
            continue  # its pre-epoch window began before the session's first sample
        onset = (s["onset_seq"] - first) / RATE  # on the run's time axis (± clock jitter)
        mine = ep[
            (ep["participant_id"] == who[0])
            & (ep["trial_type"] == s["label"])
            & (np.abs(ep["onset"] - onset) < 0.5 / RATE)
        ]
        for c, name in enumerate(s["channels"]):
            for chrom in ("hbo", "hbr", "hbt"):
                (row,) = mine[(mine["channel"] == name) & (mine["chromophore"] == chrom)].index
                live = s[f"mean_{chrom}"][c], s[f"peak_{chrom}"][c]
                assert ep.loc[row, "mean_change"] == pytest.approx(live[0], rel=1e-6)
                assert ep.loc[row, "peak_change"] == pytest.approx(live[1], rel=1e-6)
                compared += 1
    return compared  # per session: extension, rest, flexion, rest
