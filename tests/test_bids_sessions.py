"""Study sessions recorded into fNIRS-BIDS, end to end with the embedded simulated probe.

One daemon serves every test here (module fixture); each records its own dataset.  The
truth is what the daemon published: the session messages (first and end sample) and the
protocol's markers, read by an independent subscriber; the dataset is read back with
the official validator (``bids-validator@1``) and ``mne_bids.read_raw_bids``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import snirf

from nirsd.cli.testing import Collector, DaemonProcess, simulated_config, wait_for
from nirsd.clients.bids_dataset import iso_time, read_tsv

RATE = 10.0
STEPS = [("rest", 1.5), ("extension", 2.0), ("rest", 1.0)]
PROTOCOLS = (
    "[protocol.short]\nsteps = ["
    + ", ".join(f'["{label}", {s}]' for label, s in STEPS)
    + ']\n[protocol.long]\nsteps = [["rest", 2.0], ["flexion", 3.0], ["rest", 1.5]]\n'
)
REPO = Path(__file__).resolve().parents[1]
LOCAL_VALIDATOR = REPO / ".ci" / "bids-validator" / "node_modules" / ".bin" / "bids-validator"


def validator_command() -> list[str] | None:
    """The project-local validator (.ci/run installs it), else npx's, else None."""
    if os.environ.get("NIRSD_BIDS_VALIDATOR"):
        return [os.environ["NIRSD_BIDS_VALIDATOR"]]
    if LOCAL_VALIDATOR.exists() and shutil.which("node"):
        return [str(LOCAL_VALIDATOR)]
    if shutil.which("npx"):
        return ["npx", "--yes", "bids-validator@1"]
    return None


def validate(root: Path) -> dict:
    cmd = validator_command()
    if cmd is None:
        pytest.skip("npx (Node.js) is not installed: bids-validator@1 cannot run")
    out = subprocess.run(
        [*cmd, "--json", str(root)], capture_output=True, text=True, timeout=600
    ).stdout
    return json.loads(out[out.index("{") :])


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """One daemon for the module (the tests' sessions follow one another)."""
    workdir = tmp_path_factory.mktemp("bidsd")
    with DaemonProcess(workdir, simulated_config(channels=4, rate_hz=RATE, extra=PROTOCOLS)) as d:
        yield d


@pytest.fixture
def follow(daemon):
    """Start followers; any still running when the test ends is killed."""
    started: list[Follower] = []

    def start(root: Path, *args: str) -> Follower:
        started.append(Follower(daemon, root, *args))
        return started[-1]

    yield start
    for f in started:
        if f.proc.poll() is None:
            f.proc.kill()
            f.proc.wait(10)


class Follower:
    """``nirsd record --bids ROOT`` as a subprocess, started once it follows sessions."""

    def __init__(self, daemon: DaemonProcess, root: Path, *args: str) -> None:
        self.out = root.parent / f"{root.name}.out"
        self.err = root.parent / f"{root.name}.err"
        cmd = [sys.executable, "-m", "nirsd.cli", "record", "--bids", str(root), *args]
        cmd += ["--data", daemon.endpoints.data, "--control", daemon.endpoints.control]
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(cmd, env=daemon.env, stdout=out, stderr=err)
        wait_for(lambda: "following" in self.err.read_text() or self.proc.poll() is not None, 30)
        assert self.proc.poll() is None, self.err.read_text()

    def lines(self) -> list[dict]:
        return [json.loads(x) for x in self.out.read_text().splitlines() if x.strip()]


def run_session(daemon: DaemonProcess, *args: str, protocol: str = "short") -> dict:
    """Start a session with a protocol and wait until the daemon says it ended."""
    r = daemon.cli("session", "start", *args, "--protocol", protocol)
    assert r.returncode == 0, r.stderr
    ack = json.loads(r.stdout)

    return {"ack": ack, "end": wait_for(lambda: ended(daemon, ack["session_id"]), 30, 0.1)}


def ended(daemon: DaemonProcess, session_id: str) -> dict | None:
    """The session as it ended, once the daemon reports it as its last one."""
    last = daemon.control().request("session_status")[0]["last"]
    return last if last and last["session_id"] == session_id else None


PLAN = [
    ("P01", "week0", "eperisone", ["--age", "52", "--sex", "F", "--att-mm", "6.5"]),
    ("P02", "week0", "mckenzie", ["--att-mm", "4,5,6,7"]),
    ("P01", "week4", "eperisone", []),
    ("P02", "week4", "mckenzie", []),
]


def test_four_sessions_dataset(daemon, follow, tmp_path):
    root = tmp_path / "study"
    with daemon.subscriber(("marker", "session")) as sub:
        truth = Collector(sub)
        follower = follow(root, "--sessions", "4")
        sessions = [run_first_session_refusing_a_second(daemon, truth, *PLAN[0])]
        for subject, visit, group, extra in PLAN[1:]:
            args = ("--subject", subject, "--session", visit, "--group", group, *extra)
            sessions.append(run_session(daemon, *args))
        assert follower.proc.wait(60) == 0, follower.err.read_text()
        last, end_seq = sessions[-1]["ack"]["session_id"], sessions[-1]["end"]["end_seq"]
        truth.until(  # everything the last session published has arrived
            lambda: (
                any(h["session_id"] == last for h in session_events(truth, "end"))
                and any(m["seq"] == end_seq and m["action"] == "end" for m in truth.of("marker"))
            ),
            what="the last session's end message and its last marker",
        )
    runs = follower.lines()[:-1]
    assert [r["reason"] for r in runs] == ["session ended"] * 4
    assert follower.lines()[-1]["runs"] == 4
    check_participants(root)
    starts = {h["session_id"]: h for h in session_events(truth, "start")}
    for (subject, visit, _, _), s, run in zip(PLAN, sessions, runs):
        sid, seq = s["ack"]["session_id"], s["ack"]["seq"]
        assert starts[sid]["seq"] == seq and run["seq"] == seq
        assert run["end_seq"] == s["end"]["end_seq"]
        assert s["end"]["reason"] == "protocol finished"
        check_run(root, subject, visit, s, truth.of("marker"))

    report = validate(root)
    assert report["issues"]["errors"] == [], report["issues"]["errors"]
    lengths = [s["end"]["end_seq"] - s["ack"]["seq"] for s in sessions]
    check_mne_bids(root, [(s, v) for s, v, _, _ in PLAN], lengths=lengths)


def session_events(truth: Collector, event: str) -> list[dict]:
    """Headers of the ``session`` messages ``event`` (start, end) received so far."""
    return [h for h in truth.of("session") if h["event"] == event]


def run_first_session_refusing_a_second(
    daemon: DaemonProcess, truth: Collector, subject: str, visit: str, group: str, extra: list
) -> dict:
    """While one session runs, a second is refused with a clear message."""
    args = ("--subject", subject, "--session", visit, "--group", group, *extra)
    r = daemon.cli("session", "start", *args, "--protocol", "short")
    ack = json.loads(r.stdout)
    refused = daemon.cli("session", "start", "--subject", "P09", "--session", "x1")
    assert refused.returncode == 1
    assert "one session at a time" in refused.stderr
    assert ack["session_id"] in refused.stderr
    return {"ack": ack, "end": wait_for(lambda: ended(daemon, ack["session_id"]), 30, 0.1)}


def check_participants(root: Path) -> None:
    """participants.tsv and each subject's sessions.tsv."""
    parts = {r["participant_id"]: r for r in read_tsv(root / "participants.tsv")}
    assert set(parts) == {"sub-P01", "sub-P02"}
    assert parts["sub-P01"]["group"] == "eperisone" and parts["sub-P02"]["group"] == "mckenzie"
    assert parts["sub-P01"]["age"] == "52" and parts["sub-P01"]["sex"] == "F"
    assert parts["sub-P02"]["age"] == "n/a"
    for subject in ("P01", "P02"):
        rows = read_tsv(root / f"sub-{subject}" / f"sub-{subject}_sessions.tsv")
        assert [r["session_id"] for r in rows] == ["ses-week0", "ses-week4"]


def check_run(root: Path, subject: str, visit: str, session: dict, markers: list) -> None:
    """One session's run: its files, events, channels and derivatives."""
    seq, end_seq = session["ack"]["seq"], session["end"]["end_seq"]
    nirs = root / f"sub-{subject}" / f"ses-{visit}" / "nirs"
    prefix = f"sub-{subject}_ses-{visit}_task-lumbar_run-01"
    # exactly the session's samples: first = the session's first sample, no backfill
    with h5py.File(nirs / f"{prefix}_nirs.snirf", "r") as f:
        rows = f["nirs/aux1/dataTimeSeries"][:, 0].astype(int)
        raw_tags = {k: f["nirs/metaDataTags"][k][()] for k in f["nirs/metaDataTags"]}
        tags = {k: v.decode() for k, v in raw_tags.items() if isinstance(v, bytes)}
    np.testing.assert_array_equal(rows, np.arange(seq, end_seq))
    assert tags["SubjectID"] == subject and tags["Visit"] == visit
    sidecar = json.loads((nirs / f"{prefix}_nirs.json").read_text())
    assert sidecar["SamplingFrequency"] == RATE and sidecar["NIRSChannelCount"] == 8
    assert sidecar["CapManufacturer"] == "none"
    assert sidecar["RecordingDuration"] == pytest.approx((end_seq - seq) / RATE, abs=0.05)
    scans = read_tsv(nirs.parent / f"sub-{subject}_ses-{visit}_scans.tsv")
    assert [r["filename"] for r in scans] == [f"nirs/{prefix}_nirs.snirf"]
    assert scans[0]["acq_time"] == iso_time(session["ack"]["t"])  # the first sample's time
    assert scans[0]["nirsd_session"] == session["ack"]["session_id"]
    assert scans[0]["nirsd_end"] == "session ended"
    check_events(read_tsv(nirs / f"{prefix}_events.tsv"), markers, seq, end_seq)
    check_att(read_tsv(nirs / f"{prefix}_channels.tsv"), tags, subject, visit)
    deriv = root / "derivatives" / "nirsd" / nirs.relative_to(root)
    for path in (nirs / f"{prefix}_nirs.snirf", deriv / f"{prefix}_desc-hb_nirs.snirf"):
        assert snirf.validateSnirf(str(path)).is_valid(), path
    epochs = read_tsv(deriv / f"{prefix}_epochs.tsv")
    assert len(epochs) == 3 * 4  # three epochs × four channels
    assert not list(nirs.glob("*.journal.jsonl"))  # the run finished


def check_events(events: list[dict], markers: list[dict], seq: int, end_seq: int) -> None:
    """events.tsv equals the protocol's markers to the sample."""
    mine = [m for m in markers if m.get("protocol") == "short" and seq <= m["seq"] <= end_seq]
    step_starts = [m for m in mine if m["action"] == "start"]
    step_ends = [m for m in mine if m["action"] == "end"]
    assert [e["trial_type"] for e in events] == [label for label, _ in STEPS]
    assert [int(e["nirsd_seq"]) for e in events] == [m["seq"] for m in step_starts]
    assert [int(e["nirsd_end_seq"]) for e in events] == [m["seq"] for m in step_ends]
    assert [int(e["sample"]) for e in events] == [m["seq"] - seq for m in step_starts]
    assert [int(e["marker_id"]) for e in events] == [m["id"] for m in step_starts]
    assert step_starts[0]["seq"] == seq and step_ends[-1]["seq"] == end_seq
    for e, (_, secs) in zip(events, STEPS):
        assert abs(float(e["duration"]) - secs) <= 1.5 / RATE


def check_att(chans: list[dict], tags: dict, subject: str, visit: str) -> None:
    """ATT per channel in channels.tsv and in the SNIRF metadata, as the session gave it."""
    att = [c["att_mm"] for c in chans]
    if subject == "P01" and visit == "week0":
        assert att == ["6.5"] * 8
        assert json.loads(tags["AdiposeTissueThickness_mm"]) == [6.5] * 4
    elif subject == "P02" and visit == "week0":
        assert att == ["4", "4", "5", "5", "6", "6", "7", "7"]
    else:
        assert att == ["n/a"] * 8


def check_mne_bids(
    root: Path, entities: list[tuple[str, str]], run: int = 1, lengths: list[int] | None = None
) -> None:
    mne_bids = pytest.importorskip("mne_bids")
    for k, (subject, visit) in enumerate(entities):
        path = mne_bids.BIDSPath(
            subject=subject,
            session=visit,
            task="lumbar",
            run=f"{run:02d}",
            datatype="nirs",
            suffix="nirs",
            extension=".snirf",
            root=root,
        )
        raw = mne_bids.read_raw_bids(path, verbose="error")
        events = read_tsv(path.copy().update(suffix="events", extension=".tsv").fpath)
        ann = raw.annotations
        assert list(ann.description) == [e["trial_type"] for e in events]
        np.testing.assert_allclose(
            ann.onset - raw.first_time, [float(e["onset"]) for e in events], atol=1e-6
        )
        # MNE clips an epoch that lasts to the end of the run at its own idea of the
        # end (last sample + 1 / mean rate): microseconds, far below a sample
        np.testing.assert_allclose(ann.duration, [float(e["duration"]) for e in events], atol=1e-3)
        assert len(raw.ch_names) == 8 and set(raw.get_channel_types()) == {"fnirs_cw_amplitude"}
        if lengths is not None:
            assert raw.n_times == lengths[k]


def test_bad_labels_refused_before_anything(daemon, tmp_path):
    for args in (
        ("--subject", "P-01", "--session", "week0"),
        ("--subject", "P01", "--session", "week 0"),
    ):
        r = daemon.cli("session", "start", *args)
        assert r.returncode == 1 and "letters and digits" in r.stderr, r.stderr
    # the daemon checks too (a client that skips the check)
    with pytest.raises(Exception, match="letters and digits"):
        daemon.control().request("session_start", subject="P_01", session="week0")
    with pytest.raises(Exception, match="task must be letters"):
        daemon.control().request("session_start", subject="P01", session="w0", task="a/b")
    assert daemon.control().request("session_status")[0]["session"] is None


def test_sigkill_and_recover(daemon, follow, tmp_path):
    root = tmp_path / "crash"
    follower = follow(root)
    r = daemon.cli(
        "session",
        "start",
        "--subject",
        "P03",
        "--session",
        "week0",
        "--group",
        "physio",
        "--protocol",
        "long",
    )
    ack = json.loads(r.stdout)
    nirs = root / "sub-P03" / "ses-week0" / "nirs"
    snirf = nirs / "sub-P03_ses-week0_task-lumbar_run-01_nirs.snirf"

    def rows() -> int:
        try:
            with h5py.File(snirf, "r", locking=False) as f:
                return len(f["nirs/aux1/time"])
        except (OSError, KeyError):
            return 0

    wait_for(lambda: rows() >= 30, 30, 0.1, "rows written")  # into the flexion step
    follower.proc.send_signal(signal.SIGKILL)
    follower.proc.wait(10)
    killed_at = daemon.control().status()["samples"]
    end = wait_for(lambda: ended(daemon, ack["session_id"]), 30, 0.1, "session end")
    assert (nirs / f"{snirf.name}.journal.jsonl").exists()
    scans = read_tsv(nirs.parent / "sub-P03_ses-week0_scans.tsv")
    assert [r["nirsd_end"] for r in scans] == ["n/a"]  # written when the run started
    # sidecars were written when the run started: the crashed dataset is already valid
    assert validate(root)["issues"]["errors"] == []

    r = daemon.cli("record", "--bids", str(root), "--recover")
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)["recovered"]
    assert [Path(x["file"]).name for x in rec] == [snirf.name]
    with h5py.File(snirf, "r") as f:
        seq = f["nirs/aux1/dataTimeSeries"][:, 0].astype(int)
    assert seq[0] == ack["seq"]
    np.testing.assert_array_equal(seq, np.arange(seq[0], seq[0] + len(seq)))
    assert killed_at - (seq[-1] + 1) <= 1.0 * RATE + 2  # lost at most about a second
    assert seq[-1] < end["end_seq"]
    events = read_tsv(nirs / "sub-P03_ses-week0_task-lumbar_run-01_events.tsv")
    assert [e["trial_type"] for e in events][:2] == ["rest", "flexion"]
    assert not list(nirs.glob("*.journal.jsonl"))
    assert validate(root)["issues"]["errors"] == []
    check_mne_bids(root, [("P03", "week0")])

    # runs are never overwritten: the same visit again becomes run 02; a recorder
    # started during a session records it whole, from the session's first sample
    before = snirf.stat().st_mtime_ns
    ack2 = json.loads(
        daemon.cli("session", "start", "--subject", "P03", "--session", "week0").stdout
    )
    status = daemon.control().status()
    assert status["session"]["session_id"] == ack2["session_id"]
    wait_for(lambda: daemon.control().status()["samples"] > ack2["seq"] + 15, 30, 0.1)
    follower = follow(root, "--sessions", "1")
    second = daemon.cli("record", "--bids", str(root), "--sessions", "1")  # one per dataset
    assert second.returncode == 1 and "another nirsd recorder" in second.stderr, second.stderr
    run2 = nirs / "sub-P03_ses-week0_task-lumbar_run-02_nirs.snirf"
    wait_for(lambda: run2.exists(), 30, 0.1, "run 02 started")
    stop = json.loads(daemon.cli("session", "stop").stdout)
    assert stop["session_id"] == ack2["session_id"] and stop["reason"] == "stopped"
    assert follower.proc.wait(30) == 0, follower.err.read_text()
    assert follower.lines()[0]["run"] == 2
    assert snirf.stat().st_mtime_ns == before
    with h5py.File(run2, "r") as f:
        seq2 = f["nirs/aux1/dataTimeSeries"][:, 0].astype(int)
    np.testing.assert_array_equal(seq2, np.arange(ack2["seq"], stop["end_seq"]))
    scans = read_tsv(nirs.parent / "sub-P03_ses-week0_scans.tsv")
    assert [r["nirsd_end"] for r in scans] == ["recovered", "session ended"]
