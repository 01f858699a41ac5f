"""The daemon's status: what the ``status`` request answers and the ``status`` topic carries,
and when the periodic one goes out.

:func:`assemble_status` reads the acquisition's parts (device link, pipeline, stream
accounting, control server, loop guard, publisher, extensions) and changes none of them,
except that assessing quality marks later samples (``Pipeline.assess_quality``).
:class:`StatusSchedule` times the periodic message within the loop (and its steps in
the gaps between frames), and :func:`periodic_steps` makes it in steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import Any

from .security import rejected_handshakes

STATUS_SLACK_S = 0.25  # how long periodic status waits for a frame to follow
STATUS_QUIET_MAX_S = 0.02  # and then at most this long for that frame to be delivered
STATUS_STEP_MARGIN_S = 0.001  # steps start at least this long before the next frame
STATUS_STEP_WAIT_MAX_S = 1.0  # steps wait no longer than this for a frame to follow
GAPS_SHOWN = 10  # the newest gap events in a status message


def assemble_status(acq: Any, quality: dict | None = None) -> dict[str, Any]:
    """The status body (docs/protocol.md "status") of ``acq``
    (a :class:`~nirsd.daemon.acquisition.Acquisition`); ``quality``: the pipeline's
    assessment when it was made just before, in steps (else it is made here)."""
    p, device, stream, control = acq.pipeline, acq.device, acq.stream, acq.control
    body: dict[str, Any] = {
        "state": device.state,
        "port": device.port,
        "driver": device.driver.name,
        "samples": stream.next_seq,
        "rate_hz": round(stream.rate_hz, 3),
        "uptime_s": round(time.time() - acq.started, 3),
        "counters": {
            **device.counters(),
            "reconnects": device.reconnects,
            "shape_errors": p.shape_errors if p else 0,
            "clock_restarts": p.clock.restarts if p else 0,
            "clock_outliers": p.clock.outliers if p else 0,
            "clock_clamped": p.clock.clamped if p else 0,
            "lost_samples": stream.lost_samples,
            "control_served": control.served,
            "control_rejected": control.rejected,
            "control_refused": control.refused,
            "control_failed": control.failed,
            "loop_errors": acq.guard.errors,
            "subscriptions_ignored": acq.publisher.subscriptions_ignored,
            "info_ignored": acq.info_ignored,
            "gaps": stream.gaps.appended,
        },
        "gaps": stream.gaps[-GAPS_SHOWN:],
        "last_error": device.last_error,
        "last_loop_error": acq.guard.last_error,
        "loop_turn_max_ms": round(acq.turn_max_s * 1e3, 3),
    }
    if p is not None:
        body["quality"] = p.assess_quality() if quality is None else quality
        body["baseline_ready"] = bool(p.converter.baseline_ready)
        body["oldest"] = p.ring.oldest
    curve_rejected = rejected_handshakes(acq.ctx)
    if curve_rejected is not None:
        body["counters"]["curve_rejected"] = curve_rejected
    for ext in acq.extensions:
        body.update(ext.status())
    return body


class StatusSchedule:
    """When the periodic status goes out: every ``interval_s``, placed after a frame.

    Periodic status (quality spectra: about a millisecond, more for big probes) waits
    for a frame and then for a third of a frame period: by then that frame has reached
    its subscribers (on a small machine status work would compete with them for a core)
    and the next frame is still far.  Without frames it goes out STATUS_SLACK_S late.
    Its steps (:func:`periodic_steps`) then run in the gaps after frames
    (:func:`step_gap`), so a fast probe's frames do not wait for them either.
    """

    def __init__(self, interval_s: float, now: float) -> None:
        self.interval_s = interval_s
        self.next_s = now + interval_s  # monotonic s the next one is due
        self.at_s: float | None = None  # when the due one goes out (after a frame)
        self.frame_s: float | None = None  # when the loop last handled a frame

    def may_step(self, now: float, rate_hz: float) -> bool:
        """Whether a step of the status being made runs now: in the gap after a frame of
        a steady probe (:func:`step_gap`), so no frame waits for it; at once when no
        frame is coming."""
        if self.frame_s is None or rate_hz <= 0:
            return True
        opens, closes, none_coming = step_gap(rate_hz)
        since = now - self.frame_s
        return opens <= since <= closes or since >= none_coming

    def step_timeout_ms(self, now: float, rate_hz: float) -> int:
        """The poll timeout while a status is being made: 0 while a step may run, else
        until the gap after the last frame opens, or until no frame is coming."""
        if self.may_step(now, rate_hz):
            return 0
        assert self.frame_s is not None  # may_step is true without a frame
        opens, _, none_coming = step_gap(rate_hz)
        since = now - self.frame_s
        wait = (opens if since < opens else none_coming) - since
        return int(wait * 1000) + 1

    def timeout_ms(self, timeout_ms: int, now: float) -> int:
        """The poll timeout: ``timeout_ms``, or shorter when a status is about to go."""
        if self.at_s is None:
            return timeout_ms
        return min(timeout_ms, max(0, int((self.at_s - now) * 1000) + 1))

    def due(self, now: float, handled_frame: bool, rate_hz: Callable[[], float]) -> bool:
        """True when the periodic status should go out now (the next is then scheduled);
        ``handled_frame``: this loop turn delivered frames of a probe at ``rate_hz()``
        (asked only then).  Callers check ``now >= next_s`` first, sparing a call on
        most loop turns."""
        if now < self.next_s:
            return False
        if handled_frame and self.at_s is None:
            self.at_s = now + quiet_s(rate_hz())
        if (self.at_s is not None and now >= self.at_s) or now >= self.next_s + STATUS_SLACK_S:
            self.next_s = now + self.interval_s
            self.at_s = None
            return True
        return False


def periodic_steps(acq: Any) -> Generator[None, None, None]:
    """The periodic status in steps of about a millisecond or less (the quality and
    motion assessment, then the message), for the loop to run one per turn: a fast
    probe's frames wait for one step at most, not for the whole status."""
    p = acq.pipeline
    quality = None
    if p is not None:
        quality = yield from p.assess_quality_steps()
        yield
        if acq.pipeline is not p:  # rebuilt meanwhile: assess the new one at once
            quality = None
    acq.publish_status("periodic", quality)


def step_gap(rate_hz: float) -> tuple[float, float, float]:
    """When status steps may start after a frame of a probe at ``rate_hz`` (s after it):
    up to STATUS_STEP_MARGIN_S before the next frame is due (half a period at most for
    a fast probe: a step of about 0.3 ms at 256 x 2 then ends before the next frame of a
    1 kHz probe); from :func:`quiet_s` on (the frame is on its way) where the loop's
    millisecond timer can wait that long and still leave a margin, else right after the
    frame; and from two periods on, when no frame came (at most STATUS_STEP_WAIT_MAX_S: a
    stalled probe still gets its status)."""
    period, quiet = 1.0 / rate_hz, quiet_s(rate_hz)
    closes = max(period / 2.0, period - STATUS_STEP_MARGIN_S)
    opens = quiet if quiet + STATUS_STEP_MARGIN_S <= closes else 0.0
    return opens, closes, min(2.0 * period, STATUS_STEP_WAIT_MAX_S)


def quiet_s(rate_hz: float) -> float:
    """How long after a frame periodic status waits (a third of a frame period)."""
    return min(STATUS_QUIET_MAX_S, 1.0 / (3.0 * rate_hz)) if rate_hz > 0 else 0.0
