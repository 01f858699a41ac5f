"""Device clock -> host clock.

Each sample's host time is its device time plus an offset that is estimated online
from when bytes arrive.  Arrival is the device time plus a delay that is never
negative and sometimes large (USB polling, scheduler), so the smallest recent
``arrival - device_time`` is the best estimate of the fixed transit; a least-squares
line through per-window minima follows the crystal drift.  This removes jitter as
LSL's dejitter does, and also keeps the delay floor instead of averaging it away.

A device clock that jumps backwards by less than half its range, in a block that also
arrives later than the estimate predicts, did not wrap: the device restarted (a power
cycle, a replug).  The fit is then restarted from the
new clock, as :meth:`DeviceClock.reset` does when the daemon knows it reconnected.

Text protocols have no checksum, so a corrupted time field can claim a sample is later
than it is, which would pull the delay floor down for everyone.  A block that arrives
more than ``JUMP_S`` earlier than the estimate predicts is therefore ignored for the
fit (counted in ``outliers``) unless ``CONFIRM`` blocks in a row agree, which means the
host or device clock really stepped: then the fit starts over.

Host times never go backwards, whatever the device clock does (reordered frames, a
restart, a corrupted time): no sample is timed more than ``LATE_S`` after its arrival
(a corrupted time that claims so is given its arrival time), and a time at or before the
previous one is raised to it plus ``MIN_STEP_S`` and counted in ``clamped``.  A reset
keeps that floor, so a host clock stepped back holds the published time until the host
clock passes it.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

WINDOW_S = 1.0  # one minimum per window of device time
FIT_WINDOWS = 120  # minima kept for the drift fit (2 minutes)
MIN_FIT = 10  # windows needed before the drift is fitted
JUMP_S = 0.25  # arriving this much earlier than predicted is not physical ...
CONFIRM = 3  # ... unless it lasts this many blocks (then the clock stepped)
MIN_STEP_S = 1e-6  # published times increase by at least this much
LATE_S = 1e-3  # a sample timed this much after its own arrival is given its arrival


class DeviceClock:
    def __init__(
        self, modulus_s: float | None = None, rate_hz: float | None = None, trust: bool = False
    ) -> None:
        self.modulus_s = modulus_s
        self.rate_hz = rate_hz
        # trust: the device clock is the time base (a replayed recording, which may run
        # faster than real time): one offset, taken from the first block, for good
        self.trust = trust
        self._last_raw: float | None = None
        self._wraps = 0.0
        self._n_counted = 0  # samples seen, for devices without a clock
        self._win_start: float | None = None
        self._win_min = math.inf
        self._minima: deque[tuple[float, float]] = deque(maxlen=FIT_WINDOWS)
        self._fit: tuple[float, float, float] | None = None  # (t_ref, offset, drift)
        self._floor = math.inf  # minimum offset so far, before the fit exists
        self._suspect = 0  # consecutive implausibly early blocks
        self._backstep = False  # the newest block went back in device time
        self._last_host = -math.inf  # newest host time handed out (never decreases)

    #: device-clock restarts seen (backward jumps that are not wraps)
    restarts = 0
    #: blocks whose arrival was implausibly early (ignored for the fit)
    outliers = 0
    #: samples whose host time was raised so that time never goes backwards
    clamped = 0

    def reset(self) -> None:
        """Forget everything (a new device or a reconnect with a restarted clock),
        except the newest host time handed out: times stay monotonic across it."""
        last = self._last_host
        self.__init__(self.modulus_s, self.rate_hz, self.trust)  # type: ignore[misc]
        self._last_host = last

    def unwrap(self, t_raw: np.ndarray | None, n: int) -> np.ndarray:
        """Monotonic device time in s for a block; from the sample count if no clock."""
        if n == 1:
            return np.array((self.unwrap_one(None if t_raw is None else float(t_raw[0])),))
        if t_raw is None:
            if not self.rate_hz:
                raise ValueError("a device without a clock needs a sample rate")
            t = (self._n_counted + np.arange(n)) / self.rate_hz
            self._n_counted += n
            return t
        t_raw = np.asarray(t_raw, dtype=np.float64)
        self._n_counted += n
        self._note_backstep(float(t_raw[0]))
        if self.modulus_s is None:
            self._last_raw = float(t_raw[-1])
            return t_raw
        prev = self._last_raw if self._last_raw is not None else float(t_raw[0])
        steps = np.diff(np.concatenate(([prev], t_raw)))
        # a backwards step of more than half the range is a wrap, not a reorder
        wraps = self._wraps + self.modulus_s * np.cumsum(steps < -self.modulus_s / 2)
        self._last_raw = float(t_raw[-1])
        self._wraps = float(wraps[-1])
        return t_raw + wraps

    def unwrap_one(self, value: float | None) -> float:
        """:meth:`unwrap` for one sample (the streaming case) in plain float arithmetic."""
        if value is None:
            if not self.rate_hz:
                raise ValueError("a device without a clock needs a sample rate")
            self._n_counted += 1
            return (self._n_counted - 1) / self.rate_hz
        self._n_counted += 1
        self._note_backstep(value)
        prev, self._last_raw = self._last_raw, value
        if self.modulus_s is None:
            return value
        if prev is not None and value - prev < -self.modulus_s / 2:
            self._wraps += self.modulus_s
        return value + self._wraps

    def _note_backstep(self, first: float) -> None:
        last = self._last_raw
        if (
            last is not None
            and first < last
            and (self.modulus_s is None or last - first < self.modulus_s / 2)
        ):
            self._backstep = True  # a restart, or a corrupted previous time: to_host decides

    def _forget_fit(self) -> None:
        """Start the offset estimate over, keeping the unwrap state."""
        self._win_start, self._win_min = None, math.inf
        self._minima.clear()
        self._fit = None
        self._floor = math.inf
        self._suspect = 0
        self._backstep = False

    def _offset(self, t_dev: Any) -> Any:
        if self._fit is None:
            return self._floor
        t_ref, offset, drift = self._fit
        return offset + drift * (t_dev - t_ref)

    def to_host(self, t_dev: np.ndarray, arrival: float) -> np.ndarray:
        """Host times (s since the Unix epoch) for device times that arrived at ``arrival``."""
        self._observe(float(t_dev[-1]), arrival)
        t = t_dev + self._offset(t_dev)
        if not self.trust:  # a replay's own clock may run ahead of real time
            t = np.where(t > arrival + LATE_S, arrival, t)
        if t[0] > self._last_host and (t.shape[0] == 1 or bool((t[1:] > t[:-1]).all())):
            self._last_host = float(t[-1])
            return t
        return self._monotonic(np.asarray(t, dtype=np.float64))

    def _monotonic(self, t: np.ndarray) -> np.ndarray:
        """``t`` raised where needed so it increases by MIN_STEP_S past the last time."""
        step = MIN_STEP_S * np.arange(1, t.shape[0] + 1)
        floor = np.maximum.accumulate(np.maximum(t - step, self._last_host))
        out = floor + step
        self.clamped += int(np.count_nonzero(out != t))
        self._last_host = float(out[-1])
        return out

    def to_host_one(self, t_dev: float, arrival: float) -> float:
        """:meth:`to_host` for one sample, in plain float arithmetic."""
        self._observe(t_dev, arrival)
        t = t_dev + self._offset(t_dev)
        if t > arrival + LATE_S and not self.trust:
            t = arrival
        if t > self._last_host:
            self._last_host = t
            return t
        self.clamped += 1
        self._last_host += MIN_STEP_S
        return self._last_host

    def host_one(self, value: float, arrival: float) -> tuple[float, float]:
        """(:meth:`unwrap_one`, :meth:`to_host_one`) of one sample in one call: the lean
        per-frame path's clock.  The streaming case (the device time moved on, the block
        is not implausibly early, the offset estimate exists) is done here in plain float
        arithmetic, with exactly the same results; anything else goes through the two."""
        last, fit, floor = self._last_raw, self._fit, self._floor
        if (
            last is None
            or not value >= last
            or self.trust
            or self._backstep
            or self._win_start is None
            or (fit is None and not -math.inf < floor < math.inf)
        ):
            t_dev = self.unwrap_one(value)
            return t_dev, self.to_host_one(t_dev, arrival)
        t_dev = value + self._wraps if self.modulus_s is not None else value
        expected = floor if fit is None else fit[1] + fit[2] * (t_dev - fit[0])
        sample_offset = arrival - t_dev
        if sample_offset < expected - JUMP_S:  # an outlier or a step: the general way
            t_dev = self.unwrap_one(value)
            return t_dev, self.to_host_one(t_dev, arrival)
        self._n_counted += 1
        self._last_raw = value
        self._suspect = 0
        if sample_offset < floor:
            self._floor = floor = sample_offset
        if sample_offset < self._win_min:
            self._win_min = sample_offset
        if t_dev - self._win_start >= WINDOW_S:
            self._minima.append((self._win_start, self._win_min))
            self._win_start, self._win_min = t_dev, math.inf
            if len(self._minima) >= MIN_FIT:
                self._refit()
            fit = self._fit
        t = t_dev + (floor if fit is None else fit[1] + fit[2] * (t_dev - fit[0]))
        if t > arrival + LATE_S:
            t = arrival
        if t > self._last_host:
            self._last_host = t
            return t_dev, t
        self.clamped += 1
        self._last_host += MIN_STEP_S
        return t_dev, self._last_host

    def event_time(self, t_raw: float) -> tuple[float, float] | None:
        """(device time unwrapped like the samples', host time) of a device time read
        from the device, such as an EVENT's, without changing the mapping; None before
        the first sample."""
        last = self._last_raw
        if last is None or (self._fit is None and not math.isfinite(self._floor)):
            return None
        t_dev = t_raw + self._wraps
        if self.modulus_s is not None:
            # an event stamped just before or after a wrap of the sample times
            if t_raw - last > self.modulus_s / 2:
                t_dev -= self.modulus_s
            elif t_raw - last < -self.modulus_s / 2:
                t_dev += self.modulus_s
        return t_dev, float(t_dev + self._offset(t_dev))

    def _observe(self, newest: float, arrival: float) -> None:
        """Update the offset estimate with a block whose newest device time is ``newest``."""
        sample_offset = arrival - newest
        if self.trust and math.isfinite(self._floor):
            return
        if self._fit is not None or math.isfinite(self._floor):
            expected = self._offset(newest)
            if self._backstep and sample_offset > expected + JUMP_S:
                self.restarts += 1  # the device clock went back and the host did not
                self._forget_fit()
            elif sample_offset < expected - JUMP_S:
                self._suspect += 1
                if self._suspect < CONFIRM:
                    self.outliers += 1
                    self._backstep = False
                    return
                self._forget_fit()  # it lasted: the clock really stepped
        self._suspect = 0
        self._backstep = False
        if sample_offset < self._floor:
            self._floor = sample_offset
        if self._win_start is None:
            self._win_start = newest
        if sample_offset < self._win_min:
            self._win_min = sample_offset
        if newest - self._win_start >= WINDOW_S:
            self._minima.append((self._win_start, self._win_min))
            self._win_start, self._win_min = newest, math.inf
            if len(self._minima) >= MIN_FIT:
                self._refit()

    def _refit(self) -> None:
        pts = np.asarray(self._minima)
        x = pts[:, 0] - pts[-1, 0]
        drift, offset = np.polyfit(x, pts[:, 1], 1)
        # the line must lie under the minima: lower it onto the lowest one
        offset -= max(0.0, float(np.max(offset + drift * x - pts[:, 1])))
        self._fit = (float(pts[-1, 0]), float(offset), float(drift))
