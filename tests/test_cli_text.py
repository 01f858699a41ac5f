"""Output for people: ``tail`` without ``--json``, ``status``/``info`` on a terminal."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import time

import pytest

from nirsd.cli.testing import DaemonProcess, simulated_config, wait_for
from nirsd.clients import readable

LABELS = ("L3 left", "L4 right")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    chans = "".join(f'[[channel]]\nindex = {i}\nlabel = "{lab}"\n' for i, lab in enumerate(LABELS))
    d = DaemonProcess(
        tmp_path_factory.mktemp("text"), simulated_config(channels=2, rate_hz=20.0, extra=chans)
    )
    d.start()
    wait_for(lambda: d.control().status().get("baseline_ready"), 20, what="baseline")
    try:
        yield d
    finally:
        d.stop()


def _on_pty(daemon: DaemonProcess, *args: str) -> str:
    """``nirsd ARGS`` with stdout on a pseudo-terminal; what it printed."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nirsd.cli", *args],
        env=daemon.env,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
    )
    os.close(slave)
    out = bytearray()
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        out += data
    os.close(master)
    assert proc.wait(30) == 0, proc.stderr.read()
    proc.stderr.close()
    return out.decode().replace("\r\n", "\n")


def test_plain_tail_hb_has_a_header_local_time_labels_and_daemon_values(daemon):
    out = daemon.cli("tail", "-n", "4", check=True).stdout.splitlines()
    top, names, *rows = out
    assert "ΔHbO (µM)" in top and "ΔHbR (µM)" in top and "sample" in top
    assert top.startswith(f"time ({time.strftime('%Z')})")
    assert names.count("L3 left") == 2 and names.count("L4 right") == 2
    assert len(rows) == 4
    hist = daemon.control().history(since=0)
    hb, t = hist["hb"].array, hist["hb"].header["t"]
    for row in rows:
        m = re.match(r"(\d\d:\d\d:\d\d\.\d{3})\s+(\d+)\s+(\S+)\s+│(.*)│(.*)$", row)
        assert m, row
        seq = int(m.group(2))
        clock = time.strftime("%H:%M:%S", time.localtime(t[seq]))
        assert m.group(1) == f"{clock}.{int((t[seq] % 1) * 1000):03d}"
        hbo = [float(x) for x in m.group(4).split()]
        hbr = [float(x) for x in m.group(5).split()]
        assert hbo == pytest.approx(hb[seq, 0].tolist(), abs=0.0005 + 1e-12)
        assert hbr == pytest.approx(hb[seq, 1].tolist(), abs=0.0005 + 1e-12)
        # aligned: every row's separators sit where the header's do
        assert [i for i, c in enumerate(row) if c == "│"] == [
            i for i, c in enumerate(names) if c == "│"
        ]


def test_plain_tail_of_events_is_not_json(daemon):
    tail = subprocess.Popen(
        [sys.executable, "-m", "nirsd.cli", "tail", "--topic", "marker", "-n", "1"],
        env=daemon.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # the subscription takes a moment: mark until tail has printed
        def marked() -> bool:
            daemon.cli("mark", "blink", "--instant", check=True)
            return tail.poll() is not None

        wait_for(marked, 20, interval=0.3, what="tail printing a marker")
        line = tail.stdout.read().strip()
    finally:
        if tail.poll() is None:
            tail.kill()
        tail.wait()
    assert not line.startswith("{"), line
    assert re.match(r"\d\d:\d\d:\d\d\.\d{3}  marker  blink instant at sample \d+, id \d+$", line)


def test_status_and_info_for_people_on_a_terminal_json_otherwise(daemon):
    text = _on_pty(daemon, "status")
    assert not text.lstrip().startswith("{")
    lines = dict(line.split(None, 1) for line in text.splitlines() if line.strip())
    assert lines["state"].startswith("streaming")
    assert re.match(r"\d+\.\d Hz, \d+ samples", lines["rate"])
    assert lines["drops"] == "no samples lost"
    assert lines["epoch"] == "none open" and lines["protocol"] == "none running"
    assert json.loads(_on_pty(daemon, "status", "--json"))["state"] == "streaming"
    assert json.loads(daemon.cli("status", check=True).stdout)["state"] == "streaming"
    info = _on_pty(daemon, "info")
    assert "2 channels, 760/850 nm, 20 Hz" in info
    assert re.search(r"\b1\s+L4 right\s+30\.0 mm", info)


def test_drops_in_words():
    assert readable.drops_words({"lost_samples": 0, "crc_errors": 0}) == "no samples lost"
    assert (
        readable.drops_words({"lost_samples": 5, "crc_errors": 3, "length_errors": 1})
        == "5 samples lost by the device; 4 frames rejected (3 failed CRC, 1 bad length)"
    )
    assert readable.drops_words({}, {"messages missed here": 2}) == "2 messages missed here"
