"""Where the daemon's sockets live by default.

Local IPC sockets under ``$NIRSD_RUNTIME_DIR``, else ``$XDG_RUNTIME_DIR/nirsd``, else
``/run/nirsd`` (systemd's RuntimeDirectory).  Command-line flags and the config override.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def runtime_dir() -> Path:
    """The directory that holds the default IPC sockets."""
    if os.environ.get("NIRSD_RUNTIME_DIR"):
        return Path(os.environ["NIRSD_RUNTIME_DIR"])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "nirsd"
    return Path("/run/nirsd")


@dataclass(frozen=True)
class Endpoints:
    data: str
    control: str


def default_endpoints() -> Endpoints:
    base = runtime_dir()
    return Endpoints(data=f"ipc://{base / 'data'}", control=f"ipc://{base / 'control'}")


def resolve(
    data: str | None = None, control: str | None = None, configured: Endpoints | None = None
) -> Endpoints:
    """Flags beat the config, the config beats the runtime-directory default."""
    base = configured or default_endpoints()
    return Endpoints(data=data or base.data, control=control or base.control)


def ipc_path(endpoint: str) -> Path | None:
    """The filesystem path of an ``ipc://`` endpoint, else None."""
    return Path(endpoint[len("ipc://") :]) if endpoint.startswith("ipc://") else None


def remove_ipc(endpoint: str) -> None:
    """Remove an ``ipc://`` socket file left by a closed socket (no-op otherwise)."""
    path = ipc_path(endpoint)
    if path is not None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
