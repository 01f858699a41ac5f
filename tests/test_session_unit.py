"""Fast in-process tests: session labels and requests, BIDS naming, tables and events."""

from __future__ import annotations

import numpy as np
import pytest

from nirsd.clients import bids_dataset as ds
from nirsd.clients import bids_sidecars as sc
from nirsd.clients.bids_recorder import _clip
from nirsd.core.errors import NirsdError, ProtocolError
from nirsd.daemon.session import (
    Session,
    check_att,
    check_label,
    first_at_or_after,
    parse_start,
)
from nirsd.daemon.wire import Message


@pytest.mark.parametrize("label", ["P01", "week0", "a", "X" * 64])
def test_good_labels(label):
    assert check_label("subject", label) == label


@pytest.mark.parametrize("label", ["", "P-01", "P_01", "week 0", "ü1", "x" * 65, None, 3, "a\n"])
def test_bad_labels(label):
    with pytest.raises(ProtocolError, match="letters and digits"):
        check_label("subject", label)


def test_parse_start_defaults_and_errors():
    s = parse_start({"subject": "P01", "session": "week0"}, n_channels=4)
    assert (s.task, s.group, s.run, s.att_mm, s.protocol) == ("lumbar", "", None, None, None)
    s = parse_start({"subject": "P01", "session": "w0", "group": None, "task": None}, 4)
    assert (s.group, s.task) == ("", "lumbar")  # nil is "not given" (msgpack clients)
    s = parse_start({"subject": "P01", "session": "w4", "att_mm": 5, "run": 3, "age": 40}, 4)
    assert s.att_mm == [5.0] * 4 and s.run == 3 and s.age == 40.0
    for bad, match in (
        ({"run": 0}, "run"),
        ({"run": True}, "run"),
        ({"age": 200}, "age"),
        ({"group": "a\tb"}, "tabs"),
        ({"note": "x" * 3000}, "note"),
        ({"task": "a-b"}, "task"),
        ({"att_mm": [1, 2]}, "one per channel"),
        ({"att_mm": -1}, "att_mm"),
        ({"att_mm": float("nan")}, "att_mm"),
        ({"protocol": 5}, "protocol"),
    ):
        with pytest.raises(ProtocolError, match=match):
            parse_start({"subject": "P01", "session": "w0", **bad}, n_channels=4)


def test_check_att_per_channel():
    assert check_att([1, 2.5, 3, 4], 4) == [1.0, 2.5, 3.0, 4.0]
    assert check_att([7], None) == [7.0]
    assert check_att(None, 4) is None


def test_ack_has_the_contract_fields():
    ack = Session("P01", "week0", group="eperisone", task="lumbar").ack()
    for key in ("session_id", "seq", "subject", "session", "group", "task", "run", "end_seq"):
        assert key in ack
    assert len(ack["session_id"]) == 12


def test_alignment_is_the_marker_rule():
    t = np.array([10.0, 10.1, 10.2])
    assert first_at_or_after(50, t, 10.05) == 51
    assert first_at_or_after(50, t, 10.1) == 51  # at or after
    assert first_at_or_after(50, t, 9.0) == 50
    assert first_at_or_after(50, t, 10.25) is None


def test_run_names_and_next_free_run(tmp_path):
    run = ds.next_run(tmp_path, "P01", "week0", "lumbar", None)
    assert run.run == 1
    assert (
        run.snirf
        == tmp_path / "sub-P01/ses-week0/nirs/sub-P01_ses-week0_task-lumbar_run-01_nirs.snirf"
    )
    assert run.session_file("optodes.tsv").name == "sub-P01_ses-week0_optodes.tsv"
    assert run.scans.name == "sub-P01_ses-week0_scans.tsv"
    assert run.derivative("epochs.tsv").relative_to(tmp_path).parts[:3] == (
        "derivatives",
        "nirsd",
        "sub-P01",
    )
    ds.write_text(run.path("channels.tsv"), "x\n")  # a run exists once any file has its name
    assert ds.next_run(tmp_path, "P01", "week0", "lumbar", None).run == 2
    assert ds.next_run(tmp_path, "P01", "week0", "lumbar", 1).run == 2
    assert ds.next_run(tmp_path, "P01", "week0", "lumbar", 5).run == 5
    assert ds.next_run(tmp_path, "P01", "week0", "other", None).run == 1
    with pytest.raises(NirsdError, match="letters and digits"):
        ds.BidsRun(tmp_path, "P01", "week-0", "lumbar", 1)


def test_tables_upsert_and_cells(tmp_path):
    ds.add_participant(tmp_path, "P01", "eperisone", None, None)
    ds.add_participant(tmp_path, "P02", "mckenzie", 61.0, "M")
    ds.add_participant(tmp_path, "P01", "eperisone", 52.0, None)  # a later visit adds the age
    rows = ds.read_tsv(tmp_path / "participants.tsv")
    assert [(r["participant_id"], r["age"], r["sex"]) for r in rows] == [
        ("sub-P01", "52", "n/a"),
        ("sub-P02", "61", "M"),
    ]
    assert (tmp_path / "participants.tsv").read_text().splitlines()[0] == (
        "participant_id\tgroup\tage\tsex"
    )
    assert ds.cell(float("nan")) == "n/a" and ds.cell(1.25) == "1.25" and ds.cell("a\tb") == "a b"
    assert ds.iso_time(0.5) == "1970-01-01T00:00:00.500000"


def test_events_from_a_journal():
    seq = np.arange(100, 150)
    time_s = (seq - 100) / 10.0
    journal = [
        {"kind": "marker", "id": 7, "label": "rest", "action": "start", "seq": 100,
         "source": "protocol"},
        {"kind": "marker", "id": 8, "label": "rest", "action": "end", "seq": 120},
        {"kind": "marker", "id": 9, "label": "extension", "action": "start", "seq": 120,
         "source": "protocol"},
        {"kind": "marker", "id": 11, "label": "click", "action": "instant", "seq": 125,
         "source": "device"},
        {"kind": "epoch", "label": "rest", "onset_seq": 100, "end_seq": 120},
    ]  # fmt: skip
    rows = sc.event_rows(journal, seq, time_s)
    assert [(r["trial_type"], r["sample"], r["nirsd_seq"], r["marker_id"]) for r in rows] == [
        ("rest", 0, 100, 7),
        ("extension", 20, 120, 9),
        ("click", 25, 125, 11),
    ]
    assert rows[0]["duration"] == pytest.approx(2.0) and rows[0]["end_marker_id"] == 8
    assert rows[1]["duration"] == pytest.approx(3.0)  # open to the end of the run
    assert rows[1]["nirsd_end_seq"] == 150 and rows[2]["duration"] == 0.0


def test_clip_keeps_only_the_session_samples():
    n = 5
    header = {"seq": 10, "n": n, "t": [0, 1, 2, 3, 4], "epoch": list("abcde"),
              "quality": bytes(range(10))}  # fmt: skip
    msg = Message("hb", header, np.arange(n * 3 * 2, dtype=float).reshape(n, 3, 2))
    part = _clip(msg, 12, 14)
    assert (part.seq, part.n, part.header["t"], part.header["epoch"]) == (12, 2, [2, 3], ["c", "d"])
    assert part.header["quality"] == bytes([4, 5, 6, 7])
    np.testing.assert_array_equal(part.array, msg.array[2:4])
    assert _clip(msg, 15, None) is None and _clip(msg, 0, 10) is None
    assert _clip(msg, 0, None) is msg


def test_att_from_the_config_and_from_the_session():
    from nirsd.daemon import config
    from nirsd.daemon.probe import build_probe
    from nirsd.drivers.base import Info

    cfg = config.parse({"channel": [{"index": 0, "att_mm": 6.5}, {"index": 2, "att_mm": 0}]})
    info = build_probe(cfg, Info(1, 3, (760.0, 850.0), 10.0, "p")).describe()
    assert [ch.get("att_mm") for ch in info["channels"]] == [6.5, None, 0.0]
    assert sc.att_per_channel(info, None) == [6.5, None, 0.0]
    assert sc.att_per_channel(info, [4.0]) == [4.0, 4.0, 4.0]  # the session's values win
    assert sc.att_per_channel(info, [1.0, 2.0, 3.0]) == [1.0, 2.0, 3.0]
    with pytest.raises(config.ConfigError, match="att_mm"):
        config.parse({"channel": [{"index": 0, "att_mm": -1}]})


def test_dataset_files_are_not_world_readable(tmp_path):
    """Tables and sidecars name participants: written 0640 like the recordings (umask 022)."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        ds.write_tsv(tmp_path / "participants.tsv", ["participant_id"], [{"participant_id": "P1"}])
        ds.write_json(tmp_path / "dataset_description.json", {"Name": "x"})
    finally:
        os.umask(old)
    for name in ("participants.tsv", "dataset_description.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640, name
    assert (tmp_path / "participants.tsv").read_text().splitlines()[1] == "P1"
