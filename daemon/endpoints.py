"""Where the daemon's sockets live by default.

Local IPC sockets under ``$NIRSD_RUNTIME_DIR``, else ``$XDG_RUNTIME_DIR/nirsd``, else
``/run/nirsd`` (systemd's RuntimeDirectory).  Command-line flags and the config override.

Before the daemon binds an ``ipc://`` endpoint, :func:`check_ipc_endpoint` makes sure no
other local user can take the socket over (docs/security.md "Local users"): the
directory holding it belongs to the daemon's user (or root), is not writable by others
(group-writable only when its group is the daemon's own group), and the socket path is
either free or a socket of the daemon's user, never a symlink or another kind of file.
ZeroMQ unlinks whatever is at the path when it binds, so anything else is refused, with
a :class:`~nirsd.core.errors.ConfigError` (exit status 78).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from nirsd.core.errors import ConfigError

#: mode of a runtime directory the daemon creates (group members reach the sockets)
RUNTIME_DIR_MODE = 0o750


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


def _owner_ok(st: os.stat_result) -> bool:
    return st.st_uid in (os.geteuid(), 0)


def _check_dir(directory: Path, key: str) -> None:
    try:
        st = os.stat(directory)
    except OSError as err:
        raise ConfigError(
            f"cannot use the socket directory {directory}: {err.strerror}", key
        ) from None
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{directory} is not a directory", key)
    if not _owner_ok(st):
        raise ConfigError(
            f"the socket directory {directory} belongs to uid {st.st_uid}, not to this "
            f"daemon's user (uid {os.geteuid()}): another user could replace its sockets; "
            "use a directory of your own (NIRSD_RUNTIME_DIR) or the service's /run/nirsd",
            key,
        )
    own_group = st.st_uid == os.geteuid() and st.st_gid == os.getegid()
    if st.st_mode & stat.S_IWOTH or (st.st_mode & stat.S_IWGRP and not own_group):
        raise ConfigError(
            f"the socket directory {directory} is writable by "
            f"{'every user' if st.st_mode & stat.S_IWOTH else 'group ' + str(st.st_gid)} "
            f"(mode {stat.S_IMODE(st.st_mode):04o}): another user could replace its "
            f"sockets; chmod go-w {directory} or use a private directory",
            key,
        )


def check_ipc_endpoint(endpoint: str, key: str = "endpoints") -> None:
    """Refuse an ``ipc://`` path another local user could hijack (ConfigError, exit 78).

    Creates a missing directory (mode 0750, parents as the umask allows).  No-op for other
    transports.
    """
    path = ipc_path(endpoint)
    if path is None:
        return
    if not path.name:
        raise ConfigError(f"{endpoint} names a directory, not a socket path", key)
    directory = path.parent
    if not directory.exists():
        try:
            directory.mkdir(parents=True, mode=RUNTIME_DIR_MODE)
        except FileExistsError:
            pass  # made meanwhile: checked below like any other
        except OSError as err:
            raise ConfigError(
                f"cannot create the socket directory {directory}: {err}", key
            ) from None
    _check_dir(directory, key)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as err:
        raise ConfigError(f"cannot check {path}: {err.strerror}", key) from None
    if stat.S_ISLNK(st.st_mode):
        raise ConfigError(f"{path} is a symbolic link; refusing to bind through it", key)
    if not stat.S_ISSOCK(st.st_mode):
        raise ConfigError(
            f"{path} exists and is not a socket; refusing to replace it (binding would "
            "delete it): choose another endpoint path",
            key,
        )
    if st.st_uid != os.geteuid():
        raise ConfigError(
            f"{path} is a socket of uid {st.st_uid}, not this daemon's (uid "
            f"{os.geteuid()}); refusing to replace it",
            key,
        )


def secure_socket_file(endpoint: str, mode: int) -> None:
    """After bind: set the socket file's mode, without following a symlink."""
    path = ipc_path(endpoint)
    if path is None:
        return
    st = os.lstat(path)
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid():
        raise ConfigError(f"{path} is not the socket just bound (replaced meanwhile?)")
    os.chmod(path, mode)  # a socket, not a link: chmod cannot land elsewhere


def ipc_access_problem(endpoint: str) -> str | None:
    """Why this user cannot connect to an ``ipc://`` endpoint, when it is permissions."""
    path = ipc_path(endpoint)
    if path is None:
        return None
    try:
        os.stat(path)
    except PermissionError:
        return f"permission denied: cannot reach {path.parent} (not in its group?)"
    except OSError:
        return None
    if not os.access(path, os.R_OK | os.W_OK):
        return (
            f"permission denied on {path} (it is for the daemon's group: "
            "add this user to it, e.g. the nirsd group)"
        )
    return None


def remove_ipc(endpoint: str) -> None:
    """Remove an ``ipc://`` socket file left by a closed socket (no-op otherwise).

    Only a socket of this user is removed: never a file, a link or another's socket.
    """
    path = ipc_path(endpoint)
    if path is None:
        return
    try:
        st = os.lstat(path)
        if stat.S_ISSOCK(st.st_mode) and st.st_uid == os.geteuid():
            path.unlink()
    except OSError:
        pass  # gone already, or not ours to remove
