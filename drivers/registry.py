"""Driver registry: name -> Driver class, extended by the entry-point group ``nirsd.drivers``.

A third-party package adds a driver by declaring, in its pyproject.toml::

    [project.entry-points."nirsd.drivers"]
    mydevice = "mypackage.driver:MyDriver"

See docs/drivers.md.
"""

from __future__ import annotations

from importlib import import_module, metadata

from nirsd.core.errors import ConfigError

from .base import Driver

ENTRY_POINT_GROUP = "nirsd.drivers"

# Built-in drivers by import path, imported on first use so a missing optional
# dependency of one driver never breaks the others.
BUILTIN: dict[str, str] = {
    "nirsb": "nirsd.drivers.nirsb:NirsbDriver",
    "heg": "nirsd.drivers.heg:HegDriver",
    "csv": "nirsd.drivers.delimited:DelimitedDriver",
    "nonin": "nirsd.drivers.nonin:NoninDriver",
}


def _load(target: str) -> type[Driver]:
    module, _, attr = target.partition(":")
    return getattr(import_module(module), attr)


def available() -> dict[str, str]:
    """Every driver name known, built-in and from entry points, with its target."""
    names = dict(BUILTIN)
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        names.setdefault(ep.name, ep.value)
    return names


def get(name: str) -> type[Driver]:
    """The Driver class for ``name``; ConfigError naming the known drivers if unknown."""
    names = available()
    if name not in names:
        known = ", ".join(sorted([*names, "simulated"]))
        raise ConfigError(f"unknown driver {name!r} (known: {known})", "device.driver")
    try:
        cls = _load(names[name])
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"driver {name!r} cannot be loaded: {err}", "device.driver") from err
    if not (isinstance(cls, type) and issubclass(cls, Driver)):
        raise ConfigError(f"driver {name!r} is not a nirsd Driver subclass", "device.driver")
    return cls
