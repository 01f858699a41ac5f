"""Config validation: every error names its key; check-config exits 78."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from nirsd.core.errors import ConfigError
from nirsd.daemon import config

ROOT = Path(__file__).resolve().parents[1]


def _check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nirsd.cli", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("path", sorted((ROOT / "config").glob("*.toml")), ids=lambda p: p.name)
def test_example_configs_are_accepted(path):
    result = _check(path)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


@pytest.mark.parametrize(
    "text,key,words",
    [
        ('[device]\ndriver = "nirsb"\nport = "/dev/x"\nprot = 3\n', "device.prot", "unknown key"),
        (
            '[device]\ndriver = "simulated"\nbaudrate = "fast"\n',
            "device.baudrate",
            "expected an integer",
        ),
        ('[device]\ndriver = "nirsb"\n', "device.port", "required"),
        ("[optics]\ndistance_mm = -3\n", "optics.distance_mm", "must be positive"),
        ("[optics]\nwavelengths_nm = [760]\n", "optics.wavelengths_nm", "at least 2"),
        ("[optics]\nwavelengths_nm = [760, 1200]\n", "optics.wavelengths_nm", "outside"),
        ('[optics]\ndpf = "bogus"\n', "optics.dpf", "bogus"),
        ('[device]\ndriver = "nosuch"\nport = "/dev/x"\n', "device.driver", "unknown driver"),
        ("[sensors]\nx = 1\n", "sensors", "unknown section"),
        ('[[channel]]\nlabel = "L3"\n', "channel[0].index", "required"),
        (
            '[markers]\nlabels = ["rest"]\n[protocol.p]\nsteps = [["jump", 5]]\n',
            "protocol.p.steps",
            "not in markers.labels",
        ),
        ('[endpoints]\ndata = "nowhere"\n', "endpoints.data", "ZeroMQ endpoint"),
        ("[device\n", None, "not valid TOML"),
    ],
)
def test_bad_config_names_the_key_and_exits_78(tmp_path, text, key, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = _check(path)
    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one clear line, no traceback
    if key:
        assert key in lines[0]
    assert words in lines[0]


def test_missing_file_is_a_config_error(tmp_path):
    result = _check(tmp_path / "absent.toml")
    assert result.returncode == 78 and "not found" in result.stderr


def test_parse_gives_frozen_values():
    cfg = config.parse(
        {
            "device": {"driver": "nirsb", "port": "/dev/ttyACM0"},
            "optics": {"wavelengths_nm": [760, 850, 905], "dpf": "muscle-calf"},
            "channel": [{"index": 1, "label": "L3 left", "distance_mm": 35.0}],
            "protocol": {"std": {"steps": [["rest", 60], ["extension", 15]], "repeat": 2}},
        }
    )
    assert cfg.device.port == "/dev/ttyACM0"
    assert cfg.optics.wavelengths_nm == (760.0, 850.0, 905.0)
    assert cfg.channels[0].label == "L3 left"
    assert cfg.protocols["std"] == (("rest", 60.0), ("extension", 15.0)) * 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.device.port = "/dev/other"  # type: ignore[misc]  # frozen


def test_wrong_type_and_unknown_key_have_distinct_messages():
    msgs = set()
    for data in (
        {"device": {"driver": "simulated", "x": 1}},
        {"device": {"driver": "simulated", "rate_hz": "10"}},
        {"device": {"driver": "heg"}},
    ):
        with pytest.raises(ConfigError) as err:
            config.parse(data)
        msgs.add(str(err.value))
    assert len(msgs) == 3
