"""``nirsd plot``: a PNG of the expected size from a recorded file."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("h5py")
pytest.importorskip("matplotlib")

from nirsd.clients import plot  # noqa: E402
from nirsd.clients.recorder import journal_path  # noqa: E402
from nirsd.clients.snirf_writer import Meta, SnirfWriter, layout_from_info  # noqa: E402


def _session(path, n_ch: int = 4, seconds: float = 60.0, rate: float = 10.0) -> None:
    """A SNIRF file as the recorder writes it, with a rest and an extension epoch."""
    info = {
        "n_channels": n_ch,
        "wavelengths_nm": [760.0, 850.0],
        "channels": [
            {"index": i, "label": f"L{i + 2} left", "distance_mm": 35.0} for i in range(n_ch)
        ],
    }
    w = SnirfWriter(
        path, layout_from_info(info), Meta(subject="P012", group="eperisone", visit="week4")
    )
    n = int(seconds * rate)
    seq = np.arange(n)
    t = time.time() + seq / rate
    hb = np.zeros((n, 3, n_ch))
    hb[200:350, 0] = 1.5  # extension: HbO +1.5 µM, HbR -0.5 µM
    hb[200:350, 1] = -0.5
    hb[:, 2] = hb[:, 0] + hb[:, 1]
    w.append(seq, t, np.full((n, n_ch, 2), 1e5), hb)
    w.set_stims({"rest": np.array([[5.0, 10.0, 1.0]]), "extension": np.array([[20.0, 15.0, 1.0]])})
    w.close()


def test_plot_writes_png_of_expected_size(tmp_path):
    src, out = tmp_path / "s.snirf", tmp_path / "s.png"
    _session(src)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "nirsd.cli",
            "plot",
            str(src),
            "-o",
            str(out),
            "--width",
            "10",
            "--dpi",
            "80",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    reply = json.loads(proc.stdout)
    assert (reply["width_px"], reply["height_px"]) == plot.pixel_size(4, 2, 10.0, 80) == (800, 546)
    import matplotlib.image as mpimg

    img = mpimg.imread(out)
    assert img.shape[:2] == (reply["height_px"], reply["width_px"])
    assert img[..., :3].std() > 0.05  # something was drawn


def test_summaries_from_file(tmp_path):
    src = tmp_path / "s.snirf"
    _session(src)
    rows = plot.summaries(plot.read_session(src))
    assert [r["label"] for r in rows] == ["rest", "extension"]
    ext = rows[1]
    assert ext["source"] == "file"
    assert ext["hbo"] == pytest.approx(1.5) and ext["hbr"] == pytest.approx(-0.5)
    assert ext["hbt"] == pytest.approx(1.0)
    assert rows[0]["hbo"] == pytest.approx(0.0)


def test_summaries_prefer_daemon_epochs_from_journal(tmp_path):
    src = tmp_path / "s.snirf"
    _session(src)
    t0 = plot._file_t0(plot.read_session(src))
    epoch = {
        "kind": "epoch",
        "label": "extension",
        "onset_seq": 200,
        "end_seq": 350,
        "onset_t": t0 + 20.0,
        "duration_s": 15.0,
        "mean_hbo": [2.0, 2.0, 2.0, None],
        "mean_hbr": [-1.0] * 4,
        "mean_hbt": [1.0] * 4,
    }
    journal_path(src).write_text(json.dumps(epoch) + "\n")
    ext = [r for r in plot.summaries(plot.read_session(src)) if r["label"] == "extension"][0]
    assert ext["source"] == "daemon"
    assert ext["hbo"] == pytest.approx(2.0) and ext["hbr"] == pytest.approx(-1.0)


def test_plot_rejects_file_without_hb(tmp_path):
    bad = tmp_path / "bad.snirf"
    bad.write_bytes(b"not hdf5")
    proc = subprocess.run(
        [sys.executable, "-m", "nirsd.cli", "plot", str(bad), "-o", str(tmp_path / "x.png")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "cannot read" in proc.stderr and "Traceback" not in proc.stderr
