"""Simulated muscle responses to lumbar extension and flexion, for the emulators.

During a sustained contraction intramuscular pressure limits inflow while the muscle
uses oxygen: oxy-Hb falls and deoxy-Hb rises towards a plateau.  After release, a
reactive hyperaemia brings an oxy-Hb overshoot while deoxy-Hb washes out.  The shapes
(first-order approach, gamma-like overshoot) are simple, smooth and known exactly, so
tests can check the daemon's epoch summaries against them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# µM plateau changes during contraction [HbO, HbR] per exercise (typical magnitudes
# for paraspinal muscle in published NIRS studies are a few µM).
AMPLITUDES_UM = {"extension": (-4.0, 2.5), "flexion": (-2.5, 1.5)}
TAU_S = 3.0  # approach to the plateau during contraction
RECOVERY_TAU_S = 6.0  # wash-out after release
HYPERAEMIA_UM = 2.0  # peak oxy-Hb overshoot after release
HYPERAEMIA_PEAK_S = 8.0


@dataclass
class ExerciseResponse:
    """Additive [ΔHbO, ΔHbR] (µM) for one exercise, as a function of device time (s).

    ``end_s`` may be None while the exercise goes on and set later.
    """

    onset_s: float
    end_s: float | None
    n_channels: int
    kind: str = "extension"
    gain: np.ndarray = field(default=None)  # type: ignore[arg-type]  # per-channel factor; set after init

    def __post_init__(self) -> None:
        if self.gain is None:
            self.gain = np.linspace(1.2, 0.8, self.n_channels)
        self.amp = np.asarray(AMPLITUDES_UM.get(self.kind, AMPLITUDES_UM["extension"]))

    def contraction(self, t: np.ndarray) -> np.ndarray:
        """Fraction of the plateau reached at times t (0 before onset)."""
        end = np.inf if self.end_s is None else self.end_s
        tt = np.clip(np.minimum(t, end) - self.onset_s, 0.0, None)
        return 1.0 - np.exp(-tt / TAU_S)

    def __call__(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        level = self.contraction(t)  # (n,)
        hbo = self.amp[0] * level
        hbr = self.amp[1] * level
        if self.end_s is not None:
            after = t >= self.end_s
            since = np.where(after, t - self.end_s, 0.0)
            decay = np.where(after, np.exp(-since / RECOVERY_TAU_S), 1.0)
            hbo = hbo * decay
            hbr = hbr * decay
            x = since / HYPERAEMIA_PEAK_S
            hbo = hbo + np.where(after, HYPERAEMIA_UM * x * np.exp(1.0 - x), 0.0)
        out = np.stack([hbo, hbr], axis=1)[:, :, None] * self.gain[None, None, :]
        return out
