"""One exception hierarchy for the whole of nirsd.

Every error nirsd raises on purpose derives from :class:`NirsdError`, so a caller can
catch the family; each subclass names where the fault lies (config, device, frame,
wire protocol).
"""

from __future__ import annotations

# sysexits.h EX_CONFIG: systemd's RestartPreventExitStatus keys on it.
EXIT_CONFIG = 78
EXIT_DEVICE = 74  # EX_IOERR


class NirsdError(Exception):
    """Base of every error nirsd raises deliberately."""


class ConfigError(NirsdError):
    """A configuration file or value is wrong; the message names the key."""

    def __init__(self, message: str, key: str | None = None) -> None:
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


class DeviceError(NirsdError):
    """A serial device cannot be opened, read or written."""


class FrameError(NirsdError):
    """A frame failed its length or CRC check (parsers count these, not raise them)."""


class ProtocolError(NirsdError):
    """A wire or control message is malformed."""
