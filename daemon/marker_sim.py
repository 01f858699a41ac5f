"""The simulated probe's muscle responding to exercise markers.

A hook of the embedded simulator (``device.driver = "simulated"``): called with each
accepted marker's label and action, it adds an exercise response to the emulator's
physiology at its current sample time and ends it when the exercise ends, so the
simulated ΔHb changes with the epochs an operator marks (the ground truth is
``nirsd.drivers.sim.exercise``).
"""

from __future__ import annotations

from typing import Any

MAX_SIMULATED = 16  # exercise responses the embedded simulator keeps


class SimulatedResponse:
    def __init__(self, emulator: Any, allow_overlap: bool) -> None:
        self.emulator = emulator
        self.allow_overlap = allow_overlap
        self._open: dict[str, Any] = {}  # open exercise responses, by label

    @classmethod
    def of(cls, device: Any, allow_overlap: bool) -> SimulatedResponse | None:
        """The hook for ``device`` (a DeviceLink), or None without a simulated muscle."""
        emu = getattr(device, "emulator", None)
        if emu is None or getattr(emu, "physiology", None) is None:
            return None
        return cls(emu, allow_overlap)

    def __call__(self, label: str, action: str) -> None:
        emu = self.emulator
        physiology = emu.physiology
        if physiology is None:
            return
        from nirsd.drivers.sim.exercise import AMPLITUDES_UM, ExerciseResponse

        now_s = emu.samples_sent / emu.rate_hz
        for open_label in list(self._open):
            if action == "start" and not self.allow_overlap or open_label == label:
                self._open.pop(open_label).end_s = now_s
        if action == "start" and label in AMPLITUDES_UM:
            response = ExerciseResponse(now_s, None, emu.n_channels, label)
            kept = [r for r in physiology.responses if r.end_s is None]
            ended = [r for r in physiology.responses if r.end_s is not None]
            # every response costs the emulator thread work per sample: keep the newest
            # (the oldest ended ones have decayed the most); a new list, so the thread
            # iterating the old one is undisturbed
            room = max(0, MAX_SIMULATED - 1 - len(kept))
            physiology.responses = [*kept[-(MAX_SIMULATED - 1) :], *ended[-room:][:room]]
            physiology.responses.append(response)
            self._open[label] = response
