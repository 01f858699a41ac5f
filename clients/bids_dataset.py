"""The fNIRS-BIDS dataset: names, tables and sidecars (BIDS 1.10, NIRS datatype).

Only plain TSV and JSON are written here (no third-party BIDS library): every table is
rewritten whole through a temporary file and a rename, so a crash never leaves half a
table.  Layout of one run (entities ``sub``, ``ses``, ``task``, ``run``)::

    dataset_description.json  README  .bidsignore  participants.tsv/.json
    sub-<S>/sub-<S>_sessions.tsv/.json
    sub-<S>/ses-<V>/sub-<S>_ses-<V>_scans.tsv/.json
    sub-<S>/ses-<V>/nirs/sub-<S>_ses-<V>_task-<T>_run-<NN>_nirs.snirf (+ _nirs.json,
        _channels.tsv/.json, _events.tsv/.json); sub-<S>_ses-<V>_optodes.tsv,
        sub-<S>_ses-<V>_coordsystem.json
    derivatives/nirsd/sub-<S>/ses-<V>/nirs/<run>_desc-hb_nirs.snirf, <run>_epochs.tsv/.json,
        <run>_journal.jsonl

Channel names follow MNE's fNIRS convention (``S1_D1 760``), which is what
``mne.io.read_raw_snirf`` names them, so ``mne_bids.read_raw_bids`` matches
channels.tsv to the data.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nirsd.core.errors import NirsdError

BIDS_VERSION = "1.10.0"
LABEL_RE = re.compile(r"[A-Za-z0-9]+")
LOCK_NAME = ".nirsd.lock"
BIDSIGNORE = f"*.journal.jsonl\n{LOCK_NAME}\n"
EVENT_COLUMNS = (
    "onset",
    "duration",
    "trial_type",
    "sample",
    "nirsd_seq",
    "nirsd_end_seq",
    "marker_id",
    "end_marker_id",
    "source",
)


def check_label(what: str, value: str) -> str:
    if not isinstance(value, str) or not LABEL_RE.fullmatch(value):
        raise NirsdError(f"{what} must be letters and digits only (a BIDS label), got {value!r}")
    return value


@dataclass(frozen=True)
class BidsRun:
    """One run's entities and every path that belongs to it."""

    root: Path
    subject: str
    session: str
    task: str
    run: int

    def __post_init__(self) -> None:
        for what, value in (("subject", self.subject), ("session", self.session)):
            check_label(what, value)
        check_label("task", self.task)

    @property
    def sub_dir(self) -> Path:
        return self.root / f"sub-{self.subject}"

    @property
    def ses_dir(self) -> Path:
        return self.sub_dir / f"ses-{self.session}"

    @property
    def nirs_dir(self) -> Path:
        return self.ses_dir / "nirs"

    @property
    def prefix(self) -> str:
        return f"sub-{self.subject}_ses-{self.session}_task-{self.task}_run-{self.run:02d}"

    def path(self, suffix: str) -> Path:
        """``suffix`` e.g. ``nirs.snirf``, ``channels.tsv``."""
        return self.nirs_dir / f"{self.prefix}_{suffix}"

    @property
    def snirf(self) -> Path:
        return self.path("nirs.snirf")

    def session_file(self, suffix: str) -> Path:
        """Session-level files in nirs/: ``optodes.tsv``, ``coordsystem.json``."""
        return self.nirs_dir / f"sub-{self.subject}_ses-{self.session}_{suffix}"

    @property
    def scans(self) -> Path:
        return self.ses_dir / f"sub-{self.subject}_ses-{self.session}_scans.tsv"

    @property
    def sessions(self) -> Path:
        return self.sub_dir / f"sub-{self.subject}_sessions.tsv"

    def derivative(self, suffix: str) -> Path:
        rel = self.nirs_dir.relative_to(self.root)
        return self.root / "derivatives" / "nirsd" / rel / f"{self.prefix}_{suffix}"


def next_run(root: Path, subject: str, session: str, task: str, wanted: int | None) -> BidsRun:
    """The run numbered ``wanted`` (default 1), or the next number no file uses yet."""
    n = wanted or 1
    while True:
        run = BidsRun(root, subject, session, task, n)
        if not run.nirs_dir.exists() or not any(run.nirs_dir.glob(run.prefix + "_*")):
            return run
        n += 1


# -- files --------------------------------------------------------------------------

#: mode of every table and sidecar (less where the umask says so), as for recordings
FILE_MODE = 0o640


def write_text(path: Path, text: str) -> None:
    """Write ``path`` whole: a temporary file, fsync, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    # a study's tables name its participants: owner read-write, group read (as the SNIRF)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.fchmod(fd, os.fstat(fd).st_mode & FILE_MODE)
    with open(fd, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def cell(value: Any) -> str:
    """A TSV cell: ``n/a`` for missing values, no tabs or newlines."""
    if value is None or value == "" or isinstance(value, float) and value != value:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".") if abs(value) < 1e12 else repr(value)
    return re.sub(r"[\t\r\n]", " ", str(value))


def write_tsv(path: Path, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    lines = ["\t".join(columns)]
    lines += ["\t".join(cell(row.get(c)) for c in columns) for row in rows]
    write_text(path, "\n".join(lines) + "\n")


def read_tsv(path: Path) -> list[dict[str, str]]:
    """Rows as maps (``n/a`` kept as text); an absent file has no rows."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines:
        return []
    head = lines[0].split("\t")
    return [dict(zip(head, line.split("\t"))) for line in lines[1:] if line]


def upsert_tsv(path: Path, key: str, row: dict[str, Any], columns: Sequence[str]) -> None:
    """Add ``row`` to the table, or update the row with the same ``key`` value (only the
    fields given, so a later visit without an age keeps the age already there)."""
    rows: list[dict[str, Any]] = list(read_tsv(path))
    given = [k for k, v in row.items() if v not in (None, "")]
    cols = list(dict.fromkeys([*columns, *(c for r in rows for c in r), *given]))
    for r in rows:
        if r.get(key) == row[key]:
            r.update({k: v for k, v in row.items() if v not in (None, "")})
            break
    else:
        rows.append(row)
    write_tsv(path, cols, rows)


def iso_time(t: float) -> str:
    """``acq_time``: UTC, as BIDS writes it (``YYYY-MM-DDThh:mm:ss.ffffff``)."""
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


# -- dataset level -------------------------------------------------------------------


def init_dataset(root: Path, name: str, version: str) -> None:
    """dataset_description.json, README, .bidsignore, derivatives/nirsd (if absent)."""
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "dataset_description.json").exists():
        write_json(
            root / "dataset_description.json",
            {
                "Name": name,
                "BIDSVersion": BIDS_VERSION,
                "DatasetType": "raw",
                "License": "n/a",
                "Authors": ["n/a"],
                "GeneratedBy": [{"Name": "nirsd", "Version": version}],
            },
        )
    if not (root / "README").exists():
        write_text(
            root / "README",
            f"{name}\n\nNIRS of the paraspinal muscles recorded with nirsd {version}: one run "
            "per study session (one visit of one participant).  Hemoglobin changes and the "
            "daemon's epoch summaries are in derivatives/nirsd.\n",
        )
    if not (root / ".bidsignore").exists():
        write_text(root / ".bidsignore", BIDSIGNORE)
    deriv = root / "derivatives" / "nirsd" / "dataset_description.json"
    if not deriv.exists():
        write_json(
            deriv,
            {
                "Name": f"{name}: nirsd derivatives",
                "BIDSVersion": BIDS_VERSION,
                "DatasetType": "derivative",
                "GeneratedBy": [{"Name": "nirsd", "Version": version}],
            },
        )


PARTICIPANTS_JSON = {
    "participant_id": {"Description": "Participant label"},
    "group": {"Description": "Study group (treatment arm)"},
    "age": {"Description": "Age of the participant", "Units": "year"},
    "sex": {"Description": "Sex of the participant"},
}


def add_participant(root: Path, subject: str, group: str, age: Any, sex: Any) -> None:
    row = {"participant_id": f"sub-{subject}", "group": group, "age": age, "sex": sex}
    upsert_tsv(root / "participants.tsv", "participant_id", row, ("participant_id", "group"))
    cols = read_tsv(root / "participants.tsv")[0].keys()
    write_json(
        root / "participants.json", {k: v for k, v in PARTICIPANTS_JSON.items() if k in cols}
    )


def add_session(run: BidsRun, acq_time: str, group: str, note: str) -> None:
    row = {"session_id": f"ses-{run.session}", "acq_time": acq_time, "group": group, "note": note}
    keep = {k: v for k, v in row.items() if k != "acq_time" or not _has_row(run.sessions, row)}
    upsert_tsv(run.sessions, "session_id", keep, ("session_id", "acq_time", "group", "note"))
    write_json(
        run.sessions.with_suffix(".json"),
        {
            "acq_time": {"Description": "Start of the session's first run (UTC)"},
            "group": {"Description": "Study group at this session"},
            "note": {"Description": "Operator's note given when the session started"},
        },
    )


def _has_row(path: Path, row: dict[str, Any]) -> bool:
    return any(r.get("session_id") == row["session_id"] for r in read_tsv(path))


SCAN_COLUMNS = ("filename", "acq_time", "nirsd_session", "nirsd_end")


def add_scan(run: BidsRun, acq_time: str, session_id: str, end: str | None = None) -> None:
    """The run's row in scans.tsv; ``end`` (how the run ended) is n/a while it runs."""
    row = {
        "filename": str(run.snirf.relative_to(run.ses_dir)),
        "acq_time": acq_time,
        "nirsd_session": session_id,
        "nirsd_end": end,
    }
    upsert_tsv(run.scans, "filename", row, SCAN_COLUMNS)
    write_json(
        run.scans.with_suffix(".json"),
        {
            "acq_time": {"Description": "Time of the run's first sample (UTC)"},
            "nirsd_session": {"Description": "The nirsd session id the run records"},
            "nirsd_end": {
                "Description": "How the run ended: 'session ended' (all of the session), "
                "'recovered' (the recorder was killed; the run holds what it had "
                "written), or the reason the recording stopped early (SIGTERM, "
                "disk full, daemon restarted); n/a while it is being recorded"
            },
        },
    )


def end_scan(run: BidsRun, end: str) -> None:
    """Set how the run ended in its scans.tsv row."""
    name = str(run.snirf.relative_to(run.ses_dir))
    for row in read_tsv(run.scans):
        if row.get("filename") == name:
            add_scan(run, row["acq_time"], row.get("nirsd_session", ""), end)
            return
