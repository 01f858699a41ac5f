"""A SNIRF recording played as a NIRSB v1 probe on a pseudo-terminal.

:class:`ReplayEmulator` is the NIRSB :class:`~.emulator.Emulator` with the physiology
replaced by a :class:`RecordingSource` over a
:class:`~nirsd.drivers.snirf_source.Recording`:

- INFO: the recording's channels, wavelengths (rounded to whole nm, as INFO carries
  them), rate (mHz) and the file name as the device id.
- DATA: sample k is the file's sample k, amplitudes × ``recording.gain`` as int32
  counts; the device clock ``t_us`` is the file's time vector minus its first value, so
  the daemon sees the recording's own timing at any ``speed``.
- EVENT: every stim sends code 3 (stim onset) before its onset sample and code 4 (stim
  offset) before the sample after it, stamped half a period before that sample, so the
  daemon aligns each to exactly that sample.
- ``speed`` plays that many samples per wall-clock second per sample period (2 = twice
  as fast); ``loop`` starts over after the last sample, the device clock running on.
  Without ``loop`` the device falls silent after the last sample (:attr:`finished`).

Fault injection (:class:`~.faults.Faults`) works as for the other emulators.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from ..snirf_source import Recording
from .emulator import Emulator
from .truth import Source

#: EVENT codes sent by a replay (DEVICES.md has 1 trigger input and 2 button)
CODE_STIM_ON, CODE_STIM_OFF = 3, 4


class RecordingSource(Source):
    """A recording's counts, clock and stims, by sample index since power-on."""

    def __init__(self, recording: Recording, loop: bool) -> None:
        wavelengths = tuple(float(round(w)) for w in recording.wavelengths_nm)
        super().__init__(recording.n_channels, wavelengths, recording.rate_hz)
        self._counts_all = recording.counts()
        self._n = recording.n_samples
        self.length = None if loop else self._n
        self._rel_us = np.rint((recording.time - recording.time[0]) * 1e6).astype(np.int64)
        self._period_us = 1e6 / recording.rate_hz
        self._loop_us = round(self._n * self._period_us)
        # per sample: ends of earlier stims first (one may end where the next begins),
        # then onsets, then the ends of stims as short as one sample period or less
        order: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
        for stim in recording.stims:
            order[stim.onset_k].append((1, CODE_STIM_ON, stim.label))
            late = 2 if stim.end_k == stim.onset_k else 0
            order[stim.end_k].append((late, CODE_STIM_OFF, stim.label))
        self._at = {
            k: [(c, lab) for _, c, lab in sorted(v, key=lambda e: e[0])] for k, v in order.items()
        }

    def clock_us(self, k_rel: int) -> int:
        lap, i = divmod(k_rel, self._n)
        return int(self._rel_us[i]) + lap * self._loop_us

    def events(self, k_rel: int) -> list[tuple[int, str, int]]:
        events = self._at.get(k_rel % self._n)
        if not events:
            return []
        dt_us = -round(self._period_us / 2)
        return [(code, label, dt_us) for code, label in events]

    def values(self, k: int, n: int, k_rel: int) -> np.ndarray:
        i = k_rel % self._n
        if i + n <= self._n:
            return self._counts_all[i : i + n]
        return self._counts_all[np.arange(i, i + n) % self._n]

    def truth(self, k: np.ndarray) -> np.ndarray:
        raise NotImplementedError("a recording has no hemoglobin truth")


class ReplayEmulator(Emulator):
    """Plays ``recording`` as a NIRSB device; ``start()`` returns the pty path."""

    def __init__(
        self, recording: Recording, speed: float = 1.0, loop: bool = False, **kwargs: Any
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.recording = recording
        self.speed = float(speed)
        self.loop = loop
        source = RecordingSource(recording, loop)
        kwargs.setdefault("device_id", recording.device_id)
        super().__init__(
            n_channels=recording.n_channels,
            rate_hz=recording.rate_hz,
            wavelengths_nm=source.wavelengths_nm,
            source=source,
            speed=speed,
            **kwargs,
        )
