"""Packaging: every package folder is listed, the import names and the entry point."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = cfg["package-dir"]
    listed = set(cfg["packages"])
    found = set()
    for import_name, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([import_name, *rel.parts]))
    assert found, "no packages found"
    assert found <= listed, f"package folders missing from pyproject: {sorted(found - listed)}"
    # nothing at the top level may shadow PyPI's `daemon` or `drivers`
    assert not any(name.split(".")[0] in {"daemon", "drivers", "clients"} for name in listed)


def test_version_and_entry_point():
    assert metadata.version("nirsd")
    scripts = {ep.name: ep.value for ep in metadata.entry_points(group="console_scripts")}
    assert scripts.get("nirsd") == "nirsd.cli.main:main"


def test_bare_names_are_not_imported():
    """No module imports a bare ``daemon``, ``drivers``, ``clients``, ``core`` or ``cli``."""
    from nirsd.cli.layers import imported_modules

    bare = {"daemon", "drivers", "clients", "core", "cli"}
    for path in ROOT.glob("*/**/*.py"):
        if ".venv" in path.parts or ".mypy-packages" in path.parts:
            continue
        for name in imported_modules(path):
            assert name.split(".")[0] not in bare, f"{path} imports bare {name!r}"
