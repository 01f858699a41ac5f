"""What a device may describe itself as: the probe sizes the daemon accepts.

A self-describing device (NIRSB INFO) chooses its channel count, wavelengths and rate;
a corrupted or hostile description with a valid CRC must not make the daemon allocate
gigabytes or stall.  These bounds are far above any real NIRS probe (the largest
commercial CW systems have a few hundred channels and 2-8 wavelengths) and keep one
sample within what every parser holds (NIRSB: 4 bytes per value, far below
``MAX_PENDING``).  docs/operations.md "Limits" lists them.
"""

from __future__ import annotations

from .base import Info

MAX_CHANNELS = 4096  # the largest reference load (4096 x 2 @ 10 Hz)
MAX_WAVELENGTHS = 16
MIN_WAVELENGTH_NM, MAX_WAVELENGTH_NM = 200.0, 2000.0
MIN_RATE_HZ, MAX_RATE_HZ = 0.001, 10_000.0
#: device clock values (s) beyond this are not a clock: about 317 years, so Unix times in
#: s, ms or µs (scaled by the configured unit) and any uptime counter pass
MAX_DEVICE_TIME_S = 1e10


def info_problem(info: Info) -> str | None:
    """Why the daemon cannot accept this description, or None when it can."""
    if not 1 <= info.n_channels <= MAX_CHANNELS:
        return f"{info.n_channels} channels (accepted: 1 to {MAX_CHANNELS})"
    n_wl = len(info.wavelengths_nm)
    if not 1 <= n_wl <= MAX_WAVELENGTHS:
        return f"{n_wl} wavelengths (accepted: 1 to {MAX_WAVELENGTHS})"
    bad = [w for w in info.wavelengths_nm if not MIN_WAVELENGTH_NM <= w <= MAX_WAVELENGTH_NM]
    if bad:
        return (
            f"wavelength {bad[0]:g} nm (accepted: {MIN_WAVELENGTH_NM:g} to "
            f"{MAX_WAVELENGTH_NM:g} nm)"
        )
    if not MIN_RATE_HZ <= info.rate_hz <= MAX_RATE_HZ:
        return f"rate {info.rate_hz:g} Hz (accepted: {MIN_RATE_HZ:g} to {MAX_RATE_HZ:g} Hz)"
    return None
