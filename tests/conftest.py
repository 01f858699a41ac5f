"""Shared fixtures: a daemon subprocess on the simulated probe, unique per test."""

from __future__ import annotations

import pytest

from nirsd.cli.testing import DaemonProcess, simulated_config

pytest_plugins = ["fault_report", "hostile_report"]  # the fault and hostile suites' tables


@pytest.fixture
def daemon(tmp_path):
    """A running ``nirsd run`` on an 8-channel simulated probe at 10 Hz (1 s baseline)."""
    proc = DaemonProcess(tmp_path, simulated_config())
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
