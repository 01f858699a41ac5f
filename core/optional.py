"""Optional dependencies: import them, or fail with one line naming the extra to install.

Each optional feature sits behind a pip extra in pyproject.toml; a command that needs a
missing one says which extra installs it instead of ending in a traceback.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from .errors import NirsdError

#: import name -> the pip extra that installs it
EXTRA_OF = {"h5py": "snirf", "matplotlib": "plot", "rich": "view", "pylsl": "lsl"}


def require(module: str, feature: str, extra: str | None = None) -> ModuleType:
    """``import module`` for ``feature`` (e.g. "nirsd plot"), else a NirsdError that names
    the extra: ``pip install -e '.[EXTRA]'`` in a checkout, ``'nirsd[EXTRA]'`` otherwise."""
    extra = extra or EXTRA_OF.get(module.split(".")[0], "all")
    try:
        return import_module(module)
    except ImportError as err:
        raise NirsdError(
            f"{feature} needs {module.split('.')[0]}, which is not installed: "
            f"pip install 'nirsd[{extra}]' (in a source checkout: pip install -e '.[{extra}]')"
        ) from err
