"""Imports flow one way: core ← drivers ← daemon ← clients ← cli."""

from __future__ import annotations

from pathlib import Path

from nirsd.cli.layers import LAYERS, imported_modules, layer_of, violations

ROOT = Path(__file__).resolve().parents[1]


def test_no_module_imports_a_later_layer():
    assert violations(ROOT) == []


def test_the_check_sees_an_upward_import(tmp_path):
    for folder in LAYERS:
        (tmp_path / folder).mkdir()
    (tmp_path / "drivers" / "bad.py").write_text(
        "def f():\n    from nirsd.daemon.config import load\n    return load\n"
    )
    (tmp_path / "clients" / "good.py").write_text("from nirsd.daemon import wire\n")
    assert violations(tmp_path) == [
        "drivers/bad.py: imports nirsd.daemon.config",
        "drivers/bad.py: imports nirsd.daemon.config.load",
    ]


def test_imported_modules_reads_every_form(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(
        "import os, nirsd.core.errors as e\nfrom nirsd.daemon import wire\nfrom . import sibling\n"
    )
    assert imported_modules(path) == [
        "os",
        "nirsd.core.errors",
        "nirsd.daemon",
        "nirsd.daemon.wire",
    ]
    assert layer_of("nirsd.clients.tail") == 3 and layer_of("numpy") is None
