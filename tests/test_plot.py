"""``nirsd plot``: the PNG, and the values it drew read back from the matplotlib artists."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("h5py")
pytest.importorskip("matplotlib")

from nirsd.clients import epoch_stats, plot  # noqa: E402
from nirsd.clients.recorder import journal_path  # noqa: E402
from nirsd.clients.snirf_writer import Meta, SnirfWriter, layout_from_info  # noqa: E402

RATE = 10.0
N_CH = 4
# (onset s, duration s, HbO, HbR) on a quiet background; channel i scaled by 1 + 0.5 i
EXTENSION = [(20.0, 15.0, 1.0, -0.5), (67.0, 15.0, 2.0, -1.0), (114.0, 15.0, 3.0, -1.5)]
FLEXION = [(47.0, 8.0, -0.5, 1.0), (94.0, 8.0, -1.0, 2.0)]
RETAKE_SEQ = 1350  # the daemon re-took I0 here: a +4 µM step follows
SCALE = 1 + 0.5 * np.arange(N_CH)


def _session(path, blink_at: float | None = 21.0) -> None:
    """A SNIRF file as the recorder writes it: rest, 3 extensions, 2 flexions, a re-take."""
    info = {
        "n_channels": N_CH,
        "wavelengths_nm": [760.0, 850.0],
        "channels": [
            {"index": i, "label": f"L{i + 2} left", "distance_mm": 35.0} for i in range(N_CH)
        ],
    }
    w = SnirfWriter(
        path, layout_from_info(info), Meta(subject="P012", group="eperisone", visit="week4")
    )
    n = int(150 * RATE)
    seq = np.arange(n)
    t = time.time() + seq / RATE
    hb = np.zeros((n, 3, N_CH))
    for onset, dur, o, r in EXTENSION + FLEXION:
        i0, i1 = int(onset * RATE), int((onset + dur) * RATE)
        hb[i0:i1, 0] = o * SCALE
        hb[i0:i1, 1] = r * SCALE
    hb[RETAKE_SEQ:, 0] += 4.0
    hb[:, 2] = hb[:, 0] + hb[:, 1]
    w.append(seq, t, np.full((n, N_CH, 2), 1e5), hb)
    stims = {
        "rest": np.array([[2.0, 6.0, 1.0]]),
        "extension": np.array([[o, d, 1.0] for o, d, *_ in EXTENSION]),
        "flexion": np.array([[o, d, 1.0] for o, d, *_ in FLEXION]),
    }
    if blink_at is not None:  # an instant marker right beside an epoch's onset
        stims["blink"] = np.array([[blink_at, 0.0, 1.0]])
    w.set_stims(stims)
    w.close()
    journal_path(path).write_text(json.dumps({"kind": "baseline", "seq": RETAKE_SEQ}) + "\n")


@pytest.fixture
def session(tmp_path):
    path = tmp_path / "s.snirf"
    _session(path)
    return plot.read_session(path)


def _gid(fig, gid: str) -> list:
    return [a for ax in fig.axes for a in [*ax.lines, *ax.collections] if a.get_gid() == gid]


def test_plot_writes_png_of_expected_size(tmp_path):
    src, out = tmp_path / "s.snirf", tmp_path / "s.png"
    _session(src)
    proc = subprocess.run(
        [sys.executable, "-m", "nirsd.cli", "plot", str(src), "-o", str(out)]
        + ["--width", "10", "--dpi", "80"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    reply = json.loads(proc.stdout)
    size = (reply["width_px"], reply["height_px"])
    assert size == plot.pixel_size(N_CH, N_CH, 10.0, 80, n_average=2) == (800, 902)
    import matplotlib.image as mpimg

    img = mpimg.imread(out)
    assert img.shape[:2] == (reply["height_px"], reply["width_px"])
    assert img[..., :3].std() > 0.05  # something was drawn


def test_epoch_average_panel_draws_mean_and_sd_across_repetitions(session):
    fig = plot.draw(session)
    f = SCALE.mean()  # the panel averages over channels
    for label, reps in (("extension", EXTENSION), ("flexion", FLEXION)):
        nb, length = int(10 * RATE), int(min(d for _, d, *_ in reps) * RATE)
        for k, kind in enumerate(("hbo", "hbr")):
            (line,) = _gid(fig, f"avg-{label}-{kind}")
            t, y = line.get_xdata(), line.get_ydata()
            assert t[0] == pytest.approx(-10.0) and len(t) == nb + length
            amps = np.array([r[2 + k] for r in reps]) * f
            np.testing.assert_allclose(y[:nb], 0.0, atol=1e-12)  # the baseline
            np.testing.assert_allclose(y[nb:], amps.mean(), rtol=1e-12)
            (band,) = _gid(fig, f"sd-{label}-{kind}")
            ys = band.get_paths()[0].vertices[:, 1]
            sd = amps.std(ddof=1)  # the baseline's band is 0 wide: every rep is 0 there
            assert ys.max() == pytest.approx(max(amps.mean() + sd, 0.0), rel=1e-9)
            assert ys.min() == pytest.approx(min(amps.mean() - sd, 0.0), rel=1e-9)
        ax = _gid(fig, f"avg-{label}-hbo")[0].axes
        assert f"over {len(reps)} repetitions" in ax.get_title()
        # the pre-epoch baseline is shaded from -10 s to the onset
        (shade,) = [p for p in ax.patches if p.get_gid() == "baseline"]
        x0, x1 = shade.get_x(), shade.get_x() + shade.get_width()  # a Rectangle
        assert (x0, x1) == (pytest.approx(-10.0), pytest.approx(0.0))


def test_table_gives_per_channel_mean_and_sd_from_the_file(session):
    cols, rows = plot.table_cells(session, ["extension", "flexion"], 10.0)
    assert cols[1:4] == ["extension ΔHbO (n=3)", "extension ΔHbR (n=3)", "extension ΔHbT (n=3)"]
    assert cols[4] == "flexion ΔHbO (n=2)"
    for i, row in enumerate(rows):
        assert row[0] == f"L{i + 2} left"
        s = SCALE[i]
        assert row[1] == f"{2.0 * s:+.2f} ± {1.0 * s:.2f}"  # HbO 1, 2, 3 × s
        assert row[2] == f"{-1.0 * s:+.2f} ± {0.5 * s:.2f}"
        assert row[3] == f"{1.0 * s:+.2f} ± {0.5 * s:.2f}"
        assert row[5] == f"{1.5 * s:+.2f} ± {np.std([1.0, 2.0], ddof=1) * s:.2f}"


def test_shared_scale_by_default_per_channel_on_request(session):
    shared = plot.draw(session)
    panels = [
        ax for ax in shared.axes if ax.get_ylabel().endswith("µM") and "left" in ax.get_ylabel()
    ]
    assert len(panels) == N_CH
    assert len({ax.get_ylim() for ax in panels}) == 1
    lo, hi = panels[0].get_ylim()
    every = np.concatenate([session.hbo, session.hbr, session.hbt])
    assert lo <= every.min() and hi >= every.max() == 3.0 * SCALE[-1]  # every channel fits
    own = plot.draw(session, scale="per-channel")
    panels = [ax for ax in own.axes if "left" in ax.get_ylabel()]
    assert len({ax.get_ylim() for ax in panels}) == N_CH


def test_hbt_retakes_legend_and_labels_that_do_not_overlap(session):
    fig = plot.draw(session)
    panels = [ax for ax in fig.axes if "left" in ax.get_ylabel()]
    t_retake = session.time_s[RETAKE_SEQ]
    for i, ax in enumerate(panels):
        green = [ln for ln in ax.lines if ln.get_color() == plot.HB_COLORS["hbt"]]
        assert len(green) == 1
        np.testing.assert_allclose(green[0].get_ydata(), session.hbo[:, i] + session.hbr[:, i])
        retakes = [ln for ln in ax.lines if ln.get_gid() == "baseline-retake"]
        assert [ln.get_xdata()[0] for ln in retakes] == [pytest.approx(t_retake)]
    (legend,) = fig.legends
    names = [t.get_text() for t in legend.get_texts()]
    assert names[:3] == ["ΔHbO", "ΔHbR", "ΔHbT"] and "baseline re-take" in names
    assert {"extension", "flexion", "rest", "blink"} <= set(names)
    renderer = fig.canvas.get_renderer()
    labels = [t for t in panels[0].texts if t.get_gid() == "epoch-label"]
    assert {t.get_text() for t in labels} >= {"extension", "blink", "baseline re-take"}
    boxes = [t.get_window_extent(renderer) for t in labels]
    for a in range(len(boxes)):
        for b in range(a + 1, len(boxes)):
            assert not boxes[a].overlaps(boxes[b]), (labels[a].get_text(), labels[b].get_text())


def test_save_the_figure_for_a_look(session, tmp_path):
    out = tmp_path / "look.png"
    plot.draw(session).savefig(out)
    assert out.stat().st_size > 10_000
    print(out)


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


def test_exercise_labels_leave_rest_and_instants_out(session):
    assert epoch_stats.exercise_labels(session) == ["extension", "flexion"]


def _journal(path) -> list[dict]:
    try:
        return [json.loads(x) for x in journal_path(path).read_text().splitlines() if x]
    except (OSError, ValueError):
        return []


def test_file_values_agree_with_the_daemons_epoch_summaries(tmp_path):
    """The table's numbers, computed from a real recording, equal the daemon's own."""
    import signal

    from nirsd.cli.testing import DaemonProcess, simulated_config, wait_for

    # 40 Hz with a 1 s pre-epoch window: the same sample counts as 20 Hz and 2 s, in half
    # the wall time (the comparison is per sample, not per second)
    cfg = simulated_config(channels=3, rate_hz=40.0, extra="[markers]\nbaseline_s = 1.0\n")
    d = DaemonProcess(tmp_path, cfg)
    d.start()
    path = tmp_path / "rec.snirf"
    rec = None
    try:
        wait_for(lambda: d.control().info()["seq"] >= 60, 20, what="1.5 s of samples")
        rec = subprocess.Popen(
            [sys.executable, "-m", "nirsd.cli", "record", str(path), "--backfill", "all"],
            env=d.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(lambda: any(e["kind"] == "run" for e in _journal(path)), 20, what="recording")
        for label in ("extension", "flexion", "extension"):
            ack = json.loads(d.cli("mark", label, check=True).stdout)
            wait_for(lambda: d.control().info()["seq"] >= ack["seq"] + 30, 10, what="0.75 s")
        d.cli("mark", "--end", check=True)
        wait_for(
            lambda: sum(e["kind"] == "epoch" for e in _journal(path)) == 3, 20, what="summaries"
        )
        rec.send_signal(signal.SIGINT)
        assert rec.wait(30) == 0, rec.stderr.read()
    finally:
        if rec is not None and rec.poll() is None:
            rec.kill()
            rec.wait()
        d.stop()
    s = plot.read_session(path)
    daemon_epochs = [e for e in _journal(path) if e["kind"] == "epoch"]
    assert s.epoch_baseline_s(10.0) == pytest.approx(1.0)
    for label in ("extension", "flexion"):
        mine = epoch_stats.changes(s, label, 1.0)
        theirs = [e for e in daemon_epochs if e["label"] == label]
        assert mine.n == len(theirs)
        for k, kind in enumerate(("hbo", "hbr", "hbt")):
            want = np.array([e[f"mean_{kind}"] for e in theirs], float)
            np.testing.assert_allclose(mine.per_rep[:, k], want, rtol=1e-9, atol=1e-12)
