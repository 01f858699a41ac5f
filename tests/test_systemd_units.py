"""The files in systemd/: `systemd-analyze verify` is clean, exposure ≤ 1.5, snippets parse.

`systemd-analyze verify` checks that ExecStart's binary exists, so the units are copied
to a temporary directory with /opt/nirsd/bin/nirsd rewritten to an executable shim
there; the template is verified as an instance (nirsd-record@test.service).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parent.parent / "systemd"
INSTALLED_BIN = "/opt/nirsd/bin/nirsd"
MAX_EXPOSURE = 1.5

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed on this machine "
    "(CI has it): unit files not verified here",
)


def _copy_units(tmp_path: Path) -> list[Path]:
    shim = tmp_path / "bin" / "nirsd"
    shim.parent.mkdir()
    shim.write_text("#!/bin/sh\nexit 0\n")
    shim.chmod(0o755)
    out = []
    for src, name in (
        ("nirsd.service", "nirsd.service"),
        ("nirsd-record@.service", "nirsd-record@test.service"),
        ("nirsd-bids@.service", "nirsd-bids@test.service"),
    ):
        text = (UNITS / src).read_text()
        assert INSTALLED_BIN in text
        dst = tmp_path / name
        dst.write_text(text.replace(INSTALLED_BIN, str(shim)))
        out.append(dst)
    return out


@needs_analyze
def test_units_verify_clean(tmp_path):
    units = _copy_units(tmp_path)
    res = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    problems = [line for line in (res.stdout + res.stderr).splitlines() if line.strip()]
    assert not problems, "\n".join(problems)


def _exposure(unit: Path) -> float:
    res = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", res.stdout)
    assert match, res.stdout + res.stderr
    return float(match.group(1))


@needs_analyze
def test_service_exposure_is_low():
    exposure = _exposure(UNITS / "nirsd.service")
    assert exposure <= MAX_EXPOSURE, f"nirsd.service exposure {exposure}"


@needs_analyze
def test_recorder_exposure_is_low():
    assert _exposure(UNITS / "nirsd-record@.service") <= MAX_EXPOSURE
    assert _exposure(UNITS / "nirsd-bids@.service") <= MAX_EXPOSURE


def _directives(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_service_contract():
    d = _directives(UNITS / "nirsd.service")
    assert d["Type"] == ["notify"]
    assert d["Restart"] == ["on-failure"]
    assert "78" in d["RestartPreventExitStatus"][0].split()
    assert d["User"] == ["nirsd"] and d["RuntimeDirectory"] == ["nirsd"]
    assert d["ConfigurationDirectory"] == ["nirsd"]
    assert "WatchdogSec" in d and d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert any("NIRSD_RUNTIME_DIR=/run/nirsd" in v for v in d["Environment"])
    assert d["ExecStart"][0].startswith(INSTALLED_BIN + " run --config /etc/nirsd/")


def test_sysusers_tmpfiles_and_udev_snippets():
    users = [
        line.split()
        for line in (UNITS / "nirsd.sysusers").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ["u", "nirsd", "-"] == users[0][:3] and ["m", "nirsd", "dialout"] in users
    for line in (UNITS / "nirsd.tmpfiles").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            kind, path, mode, user, group, _age = line.split()
            assert kind == "d" and path.startswith("/") and re.fullmatch(r"0[0-7]{3}", mode)
    rules = (UNITS / "70-nirsd.rules").read_text()
    assert 'SYMLINK+="nirs/probe"' in rules and "nirs/by-serial/" in rules
    assert 'TAG+="systemd"' in rules and 'ENV{SYSTEMD_WANTS}+="nirsd.service"' in rules
    labels = set(re.findall(r'GOTO="(\w+)"', rules))
    assert labels == set(re.findall(r'LABEL="(\w+)"', rules))
