"""The acquisition loop: one zmq.Poller over the serial port and the control socket.

Reading, parsing, converting, tagging, buffering and publishing happen here, in order,
in one thread, so markers and samples never race and no lock is needed.  Nothing in
the loop waits on a subscriber or on disk.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import structlog
import zmq

from nirsd.core.errors import NirsdError
from nirsd.drivers.base import Derived, Event, Info, Sample, SampleBlock
from nirsd.drivers.limits import info_problem

from .bounded import BoundedList, RateLimitedLog
from .config import Config

if TYPE_CHECKING:
    from .derived import DerivedChannel
from .control import ControlServer
from .device import STREAMING, DeviceLink
from .guard import LoopGuard
from .history import history_reply
from .notify import Notifier
from .pipeline import Pipeline
from .publisher import Publisher
from .security import rejected_handshakes

log = structlog.get_logger("nirsd.loop")

POLL_MS = 50  # loop wake-up for timers when nothing arrives
POLL_NO_FD_MS = 5  # ports without a descriptor (pyserial URL handlers) are polled
STATUS_SLACK_S = 0.25  # how long periodic status waits for a frame to follow
STATUS_QUIET_MAX_S = 0.02  # and then at most this long for that frame to be delivered
MAX_GAPS = 100  # gap events kept for status (the rest counted in counters.gaps)
REDESCRIBE_MIN_S = 2.0  # a device may change its description at most this often


class Acquisition:
    def __init__(
        self, cfg: Config, ctx: zmq.Context | None = None, notifier: Notifier | None = None
    ) -> None:
        self.cfg = cfg
        self.ctx = ctx or zmq.Context.instance()
        self.notifier = notifier or Notifier()
        try:
            self.publisher = Publisher(self.ctx, cfg.endpoints.data)
        except OSError as err:  # the runtime directory cannot be made or used
            raise NirsdError(
                f"cannot create the socket for {cfg.endpoints.data}: "
                f"{err.strerror} (set NIRSD_RUNTIME_DIR to a writable "
                f"directory, or run as the nirsd service)"
            ) from err
        try:
            self.control = ControlServer(self.ctx, cfg.endpoints.control)
        except Exception:
            self.publisher.close()
            raise
        try:
            self.device = DeviceLink(cfg)
        except BaseException:
            self.control.close()  # open sockets would block Context.term() forever
            self.publisher.close()
            raise
        self.guard = LoopGuard()  # one frame or request that fails is counted, not fatal
        self.control.guard = self.guard
        self.pipeline: Pipeline | None = None
        self.derived: DerivedChannel | None = None  # once a device sends computed values
        self._computes = self.device.driver.derived_layout() is not None
        self._rejected_info: Info | None = None
        self._described_at = -float("inf")  # monotonic s of the last accepted description
        self._described_reconnects = 0
        self.info_ignored = 0  # descriptions refused for changing too often
        self.turn_max_s = 0.0  # longest loop turn (work between two polls) since start
        self._log_redescribed = RateLimitedLog(log, "device_redescribed", burst=3)
        self._log_info_rejected = RateLimitedLog(log, "device_info_rejected", 3, level="error")
        self.next_seq = 0
        self.started = time.time()
        self.stop_requested = False
        self.ready_sent = False
        self.gaps = BoundedList(MAX_GAPS)  # the newest gap events (status shows 10)
        self.lost_samples = 0
        self._last_lost = 0
        self._rate_mark = (time.monotonic(), 0)
        self.rate_hz = 0.0
        self.extensions: list[Any] = []  # marker channel etc.: objects with hooks
        for cmd in ("info", "history", "status", "baseline"):
            self.control.register(cmd, getattr(self, "_cmd_" + cmd))
        from .markers import MarkerChannel

        self.markers = MarkerChannel(self)
        from .session import SessionManager

        self.sessions = SessionManager(self)

    # -- device frames --------------------------------------------------------------
    def _on_info(self, info: Info) -> None:
        if self.pipeline is not None and self.pipeline.info == info:
            if (self.device.last_error or "").startswith("device describes itself"):
                self.device.last_error = None  # the probe is back to what it said
            return
        if info == self._rejected_info:
            return
        problem = info_problem(info)
        if problem is None and self.pipeline is not None:
            # a description that flips every frame would rebuild the pipeline (and drop
            # the history) each time: one change per REDESCRIBE_MIN_S unless reconnected
            now = time.monotonic()
            if (
                now - self._described_at < REDESCRIBE_MIN_S
                and self.device.reconnects == self._described_reconnects
            ):
                self.info_ignored += 1
                return
            self._log_redescribed(old=str(self.pipeline.info)[:300], new=str(info)[:300])
        try:
            if problem is not None:
                raise NirsdError(f"outside the accepted limits: {problem}")
            pipeline = Pipeline(self.cfg, info, type(self.device.parser), self.next_seq)
        except (NirsdError, ValueError) as err:
            # a probe the config cannot describe: say so and keep running (samples that
            # do not fit the previous description are counted as shape errors)
            self._rejected_info = info
            self.device.last_error = f"device describes itself as {str(info)[:300]}: {err}"
            self._log_info_rejected(info=str(info)[:300], error=str(err))
            self.publisher.publish_event(
                "status", {"event": "device_info_rejected", "error": str(err)}
            )
            return
        self.pipeline = pipeline
        self._described_at = time.monotonic()
        self._described_reconnects = self.device.reconnects
        if (self.device.last_error or "").startswith("device describes itself"):
            self.device.last_error = None  # a good description ends the old complaint
        self.publisher.labels = self.labels()
        self.publisher.wavelengths_nm = list(info.wavelengths_nm)
        for ext in self.extensions:
            ext.on_pipeline(self.pipeline)
        self.publisher.publish_event(
            "status", {"event": "device_info", **self.pipeline.probe.describe()}
        )
        log.info(
            "device_described",
            channels=info.n_channels,
            wavelengths_nm=list(info.wavelengths_nm),
            rate_hz=info.rate_hz,
            device_id=info.device_id,
        )

    def labels(self) -> list[str]:
        return list(self.cfg.markers.labels)

    def _on_samples(self, samples: list[Sample | SampleBlock], arrival: float) -> None:
        if self.pipeline is None:
            head = samples[0]
            first = head if isinstance(head, Sample) else head.sample(0)
            info = self.device.default_info() or self._infer_info(first)
            self._on_info(info)
            if self.pipeline is None:
                return  # rejected: reported once in status, nothing to convert
        if self.device.take_clock_reset():  # reconnected: the device clock may restart
            self.pipeline.clock.reset()
        self.pipeline.want_tsi = self.publisher.wants("hb")
        out = self.pipeline.ingest(samples, arrival)
        if self.markers.outbox:  # what markers due in these samples publish and reply
            self.markers.flush()
        if out is None:
            return
        block, od = out
        gap = self.device.note_block(block.seq, float(block.t[0]), float(block.t[-1]), block.n)
        if gap is not None:  # the outage of an unplug, now that samples flow again
            self.gaps.append(gap)
            self.publisher.publish_event("status", gap)
        self.next_seq = block.end
        self.publisher.publish_block(block, od, self.pipeline.last_tsi)
        self.pipeline.store(block)
        for ext in self.extensions:
            ext.on_block(block)
        if self.device.state != STREAMING:
            self.device.state = STREAMING
            self.publish_status("streaming")
        if not self.ready_sent:
            self.ready_sent = True
            self.notifier.ready(f"streaming from {self.device.port}")

    def _infer_info(self, sample: Sample) -> Info:
        n_ch, n_wl = sample.intensity.shape
        wl = tuple(self.cfg.optics.wavelengths_nm)
        if len(wl) != n_wl:
            wl = wl[:n_wl] if len(wl) > n_wl else wl + tuple(0.0 for _ in range(n_wl - len(wl)))
        return Info(1, n_ch, wl, self.cfg.device.rate_hz, self.device.driver.name)

    def _check_lost(self, first_seq: int) -> None:
        lost = self.device.lost_frames()
        if lost > self._last_lost and self.pipeline is not None:
            gap = {
                "event": "gap",
                "seq": first_seq,
                "lost_samples": lost - self._last_lost,
                "span_s": (lost - self._last_lost) / self.pipeline.info.rate_hz,
            }
            self.gaps.append(gap)
            self.lost_samples += lost - self._last_lost
            self.publisher.publish_event("status", gap)
        self._last_lost = lost

    def handle_frames(self, frames: list, arrival: float) -> None:
        first_seq = self.next_seq  # lost frames fell among this read's samples
        samples: list[Sample | SampleBlock] = []
        if self._computes:  # computed values: their own path, never Beer-Lambert
            derived = [f for f in frames if type(f) is Derived]
            if derived:
                self._on_derived(derived, arrival)
                frames = [f for f in frames if type(f) is not Derived]
        for frame in frames:
            if isinstance(frame, (Sample, SampleBlock)):
                samples.append(frame)
                continue
            if samples:  # keep order: samples before an INFO/EVENT are handled first
                self.guard.run("samples", self._on_samples, samples, arrival)
                samples = []
            if isinstance(frame, Info):
                self.guard.run("info", self._on_info, frame)
            elif isinstance(frame, Event):
                self.guard.run("event", self._on_event, frame, arrival)
        if samples:
            self.guard.run("samples", self._on_samples, samples, arrival)
        self._check_lost(first_seq)

    def _on_derived(self, frames: list[Derived], arrival: float) -> None:
        channel = self.derived
        if channel is None:
            from .derived import DerivedChannel

            layout = self.device.driver.derived_layout()
            if layout is None or any(f.values.shape != (len(layout.names),) for f in frames):
                return  # a driver that did not describe its values: nothing to publish
            channel = self.derived = DerivedChannel(self, layout)
            self.publisher.labels = self.labels()
            self.publisher.publish_event("status", {"event": "device_info", **self.info_body()})
        if self.device.take_clock_reset():  # reconnected: counting starts over
            channel.clock.reset()
        n = len(channel.layout.names)
        good = [f for f in frames if f.values.shape == (n,)]
        if good:
            seq, t = channel.ingest(good, arrival)
            gap = self.device.note_block(seq, float(t[0]), float(t[-1]), len(good))
            if gap is not None:  # the outage of an unplug, now that values flow again
                self.gaps.append(gap)
                self.publisher.publish_event("status", gap)
        if self.device.state != STREAMING:
            self.device.state = STREAMING
            self.publish_status("streaming")
        if not self.ready_sent:
            self.ready_sent = True
            self.notifier.ready(f"streaming from {self.device.port}")

    def info_body(self) -> dict[str, Any]:
        """The derived values' description (``derived`` in ``info`` and status)."""
        return {"derived": self.derived.describe()} if self.derived is not None else {}

    def _on_event(self, event: Event, arrival: float) -> None:
        for ext in self.extensions:
            if ext.on_device_event(event, arrival):
                return
        self.publisher.publish_event(
            "marker",
            {
                "label": event.label,
                "action": "instant",
                "source": "device",
                "code": event.code,
                "seq": self.next_seq,
                "t": arrival,
            },
        )

    # -- status ---------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        p = self.pipeline
        body: dict[str, Any] = {
            "state": self.device.state,
            "port": self.device.port,
            "driver": self.device.driver.name,
            "samples": self.next_seq,
            "rate_hz": round(self.rate_hz, 3),
            "uptime_s": round(time.time() - self.started, 3),
            "counters": {
                **self.device.counters(),
                "reconnects": self.device.reconnects,
                "shape_errors": p.shape_errors if p else 0,
                "clock_restarts": p.clock.restarts if p else 0,
                "clock_outliers": p.clock.outliers if p else 0,
                "clock_clamped": p.clock.clamped if p else 0,
                "lost_samples": self.lost_samples,
                "control_served": self.control.served,
                "control_rejected": self.control.rejected,
                "control_refused": self.control.refused,
                "control_failed": self.control.failed,
                "loop_errors": self.guard.errors,
                "subscriptions_ignored": self.publisher.subscriptions_ignored,
                "info_ignored": self.info_ignored,
                "gaps": self.gaps.appended,
            },
            "gaps": self.gaps[-10:],
            "last_error": self.device.last_error,
            "last_loop_error": self.guard.last_error,
            "loop_turn_max_ms": round(self.turn_max_s * 1e3, 3),
        }
        if p is not None:
            body["quality"] = p.assess_quality()
            body["baseline_ready"] = bool(p.converter.baseline_ready)
            body["oldest"] = p.ring.oldest
        curve_rejected = rejected_handshakes(self.ctx)
        if curve_rejected is not None:
            body["counters"]["curve_rejected"] = curve_rejected
        for ext in self.extensions:
            body.update(ext.status())
        return body

    def _status_quiet_s(self) -> float:
        """How long after a frame periodic status waits (a third of a frame period)."""
        rate = self.pipeline.info.rate_hz if self.pipeline is not None else 0.0
        return min(STATUS_QUIET_MAX_S, 1.0 / (3.0 * rate)) if rate > 0 else 0.0

    def publish_status(self, event: str = "periodic") -> None:
        now = time.monotonic()
        t0, n0 = self._rate_mark
        if now - t0 > 0:
            self.rate_hz = (self.next_seq - n0) / (now - t0)
        self._rate_mark = (now, self.next_seq)
        self.publisher.publish_event("status", {"event": event, **self.status()})
        self.notifier.status(
            f"{self.device.state}; {self.rate_hz:.1f} Hz; "
            f"{self.next_seq} samples; lost {self.lost_samples}"
        )

    # -- control commands -----------------------------------------------------------
    def _cmd_info(self, req: dict) -> tuple[dict, list]:
        from importlib.metadata import version

        reply: dict[str, Any] = {
            "stream": self.publisher.stream,
            "version": version("nirsd"),
            "driver": self.device.driver.name,
            "port": self.device.port,
            "state": self.device.state,
            "seq": self.next_seq,
            "labels": self.labels(),
            "endpoints": {"data": self.cfg.endpoints.data, "control": self.cfg.endpoints.control},
        }
        reply["placement"] = self.cfg.probe.describe()
        if self.pipeline is not None:
            reply.update(self.pipeline.probe.describe())
            reply["oldest"] = self.pipeline.ring.oldest
            reply["conversion"] = self.pipeline.describe_conversion()
        reply.update(self.info_body())
        return reply, []

    def _cmd_status(self, req: dict) -> tuple[dict, list]:
        return self.status(), []

    def _cmd_history(self, req: dict) -> tuple[dict, list]:
        return history_reply(self.pipeline, self.publisher, req)

    def _cmd_baseline(self, req: dict) -> tuple[dict, list]:
        if self.pipeline is None:
            return {"ok": False, "error": "no data yet: the device has not streamed"}, []
        self.pipeline.rebaseline(self.next_seq)
        body = {"event": "baseline", "seq": self.next_seq, "seconds": self.cfg.baseline.seconds}
        self.publisher.publish_event("status", body)
        log.info("baseline_restarted", seq=self.next_seq)
        return body, []

    # -- the loop -------------------------------------------------------------------
    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.control.sock, zmq.POLLIN)
        poller.register(self.publisher.sock, zmq.POLLIN)  # subscription notices
        registered_fd: int | None = None
        interval = self.cfg.status.interval_s
        next_status = time.monotonic() + interval
        status_at: float | None = None  # when the due status goes out (after a frame)
        wd = self.notifier.watchdog_interval_s
        next_wd = time.monotonic()
        if not self.ready_sent and self.notifier.enabled:
            self.notifier.status(f"waiting for device on {self.device.port}")
        while not self.stop_requested:
            now = time.monotonic()
            if self.device.try_open(now):
                fd = self.device.fileno()
                if fd is not None and fd != registered_fd:
                    poller.register(fd, zmq.POLLIN)
                    registered_fd = fd
            elif not self.ready_sent:  # no probe yet: up and waiting for it (systemd READY)
                self.ready_sent = True
                self.notifier.ready(f"waiting for device on {self.device.port}")
            timeout = (
                POLL_MS
                if registered_fd is not None or not self.device.transport.is_open
                else POLL_NO_FD_MS
            )
            if status_at is not None:
                timeout = min(timeout, max(0, int((status_at - time.monotonic()) * 1000) + 1))
            events = dict(poller.poll(timeout))
            turn0 = time.monotonic()
            if self.publisher.sock in events:
                self.guard.run("subscriptions", self.publisher.read_subscriptions)
            handled = False
            if self.device.transport.is_open:
                if registered_fd is None or registered_fd in events:
                    frames = self.guard.run("read", self.device.read)
                    if frames:
                        self.guard.run("frames", self.handle_frames, frames, time.time())
                        handled = True
            if not self.device.transport.is_open and registered_fd is not None:
                poller.unregister(registered_fd)
                registered_fd = None
                self.publish_status("disconnected")
            if self.control.sock in events:
                self.guard.run("control", self.control.serve_pending)
            now = time.monotonic()
            if wd is not None and now >= next_wd:
                self.notifier.watchdog()
                next_wd = now + wd
            # Periodic status (quality spectra: about a millisecond, more for big probes)
            # waits for a frame and then for a third of a frame period: by then that
            # frame has reached its subscribers (on a small machine status work would
            # compete with them for a core) and the next frame is still far.  Without
            # frames it goes out STATUS_SLACK_S late.
            if now >= next_status:
                if handled and status_at is None:
                    status_at = now + self._status_quiet_s()
                if (
                    status_at is not None and now >= status_at
                ) or now >= next_status + STATUS_SLACK_S:
                    self.guard.run("status", self.publish_status)
                    next_status = now + interval
                    status_at = None
            self.turn_max_s = max(self.turn_max_s, time.monotonic() - turn0)
        if registered_fd is not None:
            poller.unregister(registered_fd)

    def close(self) -> None:
        self.notifier.stopping()
        self.device.close()
        self.control.close()
        self.publisher.close()
        log.info("stopped", samples=self.next_seq)
