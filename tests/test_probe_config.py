"""The ``[probe]`` config section: keys validated with errors that name them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nirsd.cli.testing import simulated_config
from nirsd.core.errors import ConfigError
from nirsd.daemon import config

ROOT = Path(__file__).resolve().parents[1]


def test_paraspinal_example_describes_a_lumbar_placement():
    cfg = config.load(ROOT / "config" / "paraspinal-8ch.toml")
    probe = cfg.probe
    assert probe.coordinate_system == "Other"
    assert "L5 spinous process" in probe.coordinate_system_description
    assert list(probe.landmarks) == [f"L{k} spinous process" for k in (2, 3, 4, 5)]
    assert probe.landmarks["L3 spinous process"] == (0.0, 70.0, 0.0)
    assert len(probe.source_labels) == len(probe.detector_labels) == 8
    # every channel's positions agree with the configured distance (35 mm)
    for ch in cfg.channels:
        d = sum((a - b) ** 2 for a, b in zip(ch.source_pos_mm, ch.detector_pos_mm)) ** 0.5
        assert d == pytest.approx(cfg.optics.distance_mm)
    assert probe.describe()["landmarks"]["L2 spinous process"] == [0.0, 105.0, 0.0]


def test_defaults_without_a_probe_section():
    probe = config.parse({}).probe
    assert probe.coordinate_system == "Other" and probe.landmarks == {}
    assert probe.source_labels is None and probe.manufacturer is None


def test_a_2d_landmark_gets_z_zero():
    cfg = config.parse({"probe": {"landmarks": {"L4": [0, 35]}}})
    assert cfg.probe.landmarks["L4"] == (0.0, 35.0, 0.0)


@pytest.mark.parametrize(
    ("probe", "key", "words"),
    [
        ({"colour": "red"}, "probe.colour", "unknown key"),
        ({"coordinate_system": ""}, "probe.coordinate_system", "non-empty"),
        ({"coordinate_system_description": 3}, "probe.coordinate_system_description", "string"),
        ({"landmarks": [1, 2]}, "probe.landmarks", "table"),
        ({"landmarks": {"L3": [0, 1, 2, 3]}}, "probe.landmarks", "[x, y, z]"),
        ({"landmarks": {"L3": [0, "up", 2]}}, "probe.landmarks", "finite number"),
        ({"landmarks": {"L3": [0, float("nan"), 2]}}, "probe.landmarks", "finite number"),
        ({"source_labels": ["a", "a"]}, "probe.source_labels", "duplicate"),
        ({"detector_labels": []}, "probe.detector_labels", "list"),
        ({"manufacturer": 7}, "probe.manufacturer", "string"),
        ({"model": ""}, "probe.model", "non-empty"),
    ],
)
def test_bad_probe_values_name_the_key(probe, key, words):
    with pytest.raises(ConfigError) as err:
        config.parse({"probe": probe})
    assert key in str(err.value) and words in str(err.value)


def test_optode_labels_must_match_the_channels_optodes():
    chans = [
        {
            "index": i,
            "source": 1,
            "detector": i + 1,
            "source_pos_mm": [0, 0],
            "detector_pos_mm": [i, 30],
        }
        for i in range(2)
    ]
    with pytest.raises(ConfigError) as err:
        config.parse({"channel": chans, "probe": {"source_labels": ["a", "b"]}})
    assert "probe.source_labels" in str(err.value) and "2 labels for 1 sources" in str(err.value)
    ok = config.parse(
        {"channel": chans, "probe": {"source_labels": ["a"], "detector_labels": ["x", "y"]}}
    )
    assert ok.probe.detector_labels == ("x", "y")


def test_check_config_cli_names_a_bad_probe_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(simulated_config(extra='[probe]\nlandmarks = { L3 = [0, "x"] }\n'))
    out = subprocess.run(
        [sys.executable, "-m", "nirsd.cli", "check-config", str(path)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 78
    assert "probe.landmarks" in out.stderr + out.stdout
