"""The package layers and the rule between them, checked by the test suite.

``nirsd.core`` ← ``nirsd.drivers`` ← ``nirsd.daemon`` ← ``nirsd.clients`` ← ``nirsd.cli``:
a module may import its own layer and the layers before it, never one after it, so a
driver can be used without the daemon and the daemon never depends on a client.
"""

from __future__ import annotations

import ast
from pathlib import Path

LAYERS: tuple[str, ...] = ("core", "drivers", "daemon", "clients", "cli")


def imported_modules(path: Path) -> list[str]:
    """Absolute module names that ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def layer_of(module: str) -> int | None:
    """Index in LAYERS of a ``nirsd.<layer>…`` module name, else None."""
    parts = module.split(".")
    if len(parts) >= 2 and parts[0] == "nirsd" and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return None


def violations(root: Path) -> list[str]:
    """``file: imports module`` for every import that points up the layers."""
    found = []
    for own, folder in enumerate(LAYERS):
        for path in sorted((root / folder).rglob("*.py")):
            for name in imported_modules(path):
                other = layer_of(name)
                if other is not None and other > own:
                    found.append(f"{path.relative_to(root)}: imports {name}")
    return found
