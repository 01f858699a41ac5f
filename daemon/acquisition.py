"""The acquisition loop: one poll over the serial port and the ZeroMQ sockets (wakeups.py).

Reading, parsing, converting, tagging, buffering and publishing happen here, in order,
in one thread, so markers and samples never race and no lock is needed.  Nothing in
the loop waits on a subscriber or on disk.  The parts it drives own their state: the
device link (daemon/device.py) says what a read brought, the stream accounting
(stream_accounting.py) keeps the sample index, gaps, losses and rates, the status is
assembled in status.py and the acquisition's control requests live in
control_handlers.py.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import structlog
import zmq

from nirsd.core.errors import NirsdError
from nirsd.drivers.base import Derived, Event, Info, Sample, SampleBlock
from nirsd.drivers.limits import info_problem

from .bounded import RateLimitedLog
from .config import Config

if TYPE_CHECKING:
    from .derived import DerivedChannel
from .control import ControlServer
from .control_handlers import StreamRequests
from .device import PORT_LOST, STREAMING, DeviceLink
from .fastpath import HANDLED, LeanPath
from .guard import LoopGuard
from .notify import Notifier
from .pipeline import Pipeline
from .publisher import Publisher
from .status import StatusSchedule, assemble_status, periodic_steps
from .stream_accounting import StreamAccounting
from .wakeups import Wakeups

log = structlog.get_logger("nirsd.loop")

POLL_MS = 50  # loop wake-up for timers when nothing arrives
POLL_NO_FD_MS = 5  # ports without a descriptor (pyserial URL handlers) are polled
REDESCRIBE_MIN_S = 2.0  # a device may change its description at most this often


class Acquisition:
    def __init__(
        self, cfg: Config, ctx: zmq.Context | None = None, notifier: Notifier | None = None
    ) -> None:
        self.cfg = cfg
        self.ctx = ctx or zmq.Context.instance()
        self.notifier = notifier or Notifier()
        self.guard = LoopGuard()  # one frame or request that fails is counted, not fatal
        try:
            self.publisher = Publisher(self.ctx, cfg.endpoints.data)
        except OSError as err:  # the runtime directory cannot be made or used
            raise NirsdError(
                f"cannot create the socket for {cfg.endpoints.data}: "
                f"{err.strerror} (set NIRSD_RUNTIME_DIR to a writable "
                f"directory, or run as the nirsd service)"
            ) from err
        try:
            self.control = ControlServer(self.ctx, cfg.endpoints.control, self.guard)
        except Exception:
            self.publisher.close()
            raise
        try:
            self.device = DeviceLink(cfg)
        except BaseException:
            self.control.close()  # open sockets would block Context.term() forever
            self.publisher.close()
            raise
        self.stream = StreamAccounting(cfg.device.rate_hz)
        self.pipeline: Pipeline | None = None
        self.derived: DerivedChannel | None = None  # once a device sends computed values
        self._computes = self.device.driver.derived_layout() is not None
        self._rejected_info: Info | None = None
        self._described_at = -float("inf")  # monotonic s of the last accepted description
        self._described_reconnects = 0
        self.info_ignored = 0  # descriptions refused for changing too often
        self.turn_max_s = 0.0  # longest loop turn (work between two polls) since start
        self._status_steps: Generator[None, None, None] | None = None  # periodic, in steps
        self._log_redescribed = RateLimitedLog(log, "device_redescribed", burst=3)
        self._log_info_rejected = RateLimitedLog(log, "device_info_rejected", 3, level="error")
        self.started = time.time()
        self.stop_requested = False
        self.ready_sent = False
        self.extensions: list[Any] = []  # marker channel etc.: objects with hooks
        self.requests = StreamRequests(self)  # info, history, status, baseline
        from .markers import MarkerChannel

        self.markers = MarkerChannel(self)
        from .session import SessionManager

        self.sessions = SessionManager(self)
        self.lean = LeanPath(self)  # the frame dispatch (fastpath.py)

    def request_stop(self) -> None:
        """Leave the loop at its next turn (it wakes at least every POLL_MS)."""
        self.stop_requested = True

    @property
    def next_seq(self) -> int:
        """The absolute index of the next sample (kept by the stream accounting)."""
        return self.stream.next_seq

    # -- device frames --------------------------------------------------------------
    def _on_info(self, info: Info) -> None:
        if self.pipeline is not None and self.pipeline.info == info:
            self.device.info_accepted()  # the probe is back to what it said
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
            pipeline = Pipeline(self.cfg, info, type(self.device.parser), self.stream.next_seq)
        except (NirsdError, ValueError) as err:
            # a probe the config cannot describe: say so and keep running (samples that
            # do not fit the previous description are counted as shape errors)
            self._rejected_info = info
            self.device.info_rejected(str(info)[:300], str(err))
            self._log_info_rejected(info=str(info)[:300], error=str(err))
            self.publisher.publish_event(
                "status", {"event": "device_info_rejected", "error": str(err)}
            )
            return
        self._use_pipeline(pipeline)

    def _use_pipeline(self, pipeline: Pipeline) -> None:
        """Convert with ``pipeline`` from now on (a new or changed description)."""
        self.pipeline = pipeline
        info = pipeline.info
        self._described_at = time.monotonic()
        self._described_reconnects = self.device.reconnects
        self.device.info_accepted()  # a good description ends the old complaint
        pipeline.set_want_tsi(self.publisher.wants("hb"))
        self.publisher.set_labels(self.labels())
        self.publisher.set_wavelengths(info.wavelengths_nm)
        for ext in self.extensions:
            ext.on_pipeline(pipeline)
        self.publisher.publish_event(
            "status", {"event": "device_info", **pipeline.probe.describe()}
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
        out = self.pipeline.ingest(samples, arrival)
        if self.markers.outbox:  # what markers due in these samples publish and reply
            self.markers.flush()
        if out is None:
            return
        block, od = out
        gap = self.stream.note_block(
            block.seq, float(block.t[0]), float(block.t[-1]), block.n, self.device.reconnects
        )
        if gap is not None:  # the outage of an unplug, now that samples flow again
            self.publisher.publish_event("status", gap)
        self.publisher.publish_block(block, od, self.pipeline.last_tsi)
        self.pipeline.store(block)
        for ext in self.extensions:
            ext.on_block(block)
        if self.device.state != STREAMING or not self.ready_sent:
            self._now_streaming()

    def _now_streaming(self) -> None:
        """The first samples (since start or a reconnect) have been published."""
        if self.device.state != STREAMING:
            self.device.mark_streaming()
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

    def handle_frames(self, frames: list, arrival: float) -> None:
        first_seq = self.stream.next_seq  # lost frames fell among this read's samples
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
        lost = self.device.lost_frames()
        if lost != self.stream.lost_frames:  # frames went missing in this read
            self._on_lost(lost, first_seq)

    def _on_lost(self, lost_frames: int, first_seq: int) -> None:
        rate = self.pipeline.info.rate_hz if self.pipeline is not None else None
        gap = self.stream.note_lost(lost_frames, first_seq, rate)
        if gap is not None:
            self.publisher.publish_event("status", gap)

    def _on_derived(self, frames: list[Derived], arrival: float) -> None:
        channel = self.derived
        if channel is None:
            from .derived import DerivedChannel

            layout = self.device.driver.derived_layout()
            if layout is None or any(f.values.shape != (len(layout.names),) for f in frames):
                return  # a driver that did not describe its values: nothing to publish
            channel = self.derived = DerivedChannel(self, layout)
            self.publisher.set_labels(self.labels())
            self.publisher.publish_event("status", {"event": "device_info", **self.info_body()})
        if self.device.take_clock_reset():  # reconnected: counting starts over
            channel.clock.reset()
        n = len(channel.layout.names)
        good = [f for f in frames if f.values.shape == (n,)]
        if good:
            seq, t = channel.ingest(good, arrival)
            gap = self.stream.note_block(
                seq, float(t[0]), float(t[-1]), len(good), self.device.reconnects
            )
            if gap is not None:  # the outage of an unplug, now that values flow again
                self.publisher.publish_event("status", gap)
        if self.device.state != STREAMING or not self.ready_sent:
            self._now_streaming()

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
                "seq": self.stream.next_seq,
                "t": arrival,
            },
        )

    # -- status ---------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return assemble_status(self)

    def _probe_rate_hz(self) -> float:
        return self.pipeline.info.rate_hz if self.pipeline is not None else 0.0

    def publish_status(self, event: str = "periodic", quality: dict | None = None) -> None:
        rate_hz = self.stream.update_rate(time.monotonic())
        body = assemble_status(self, quality)
        self.publisher.publish_event("status", {"event": event, **body})
        self.notifier.status(
            f"{self.device.state}; {rate_hz:.1f} Hz; "
            f"{self.stream.next_seq} samples; lost {self.stream.lost_samples}"
        )

    def _status_step(self) -> None:
        """One step of the periodic status being made (``status.periodic_steps``)."""
        steps = self._status_steps
        try:
            next(steps)  # type: ignore[arg-type]
        except StopIteration:
            self._status_steps = None
        except BaseException:  # counted by the guard; the next status starts afresh
            self._status_steps = None
            raise

    def _read_subscriptions(self) -> None:
        try:
            self.publisher.read_subscriptions()
        finally:  # TSI travels with hb only: computed while someone subscribes to it
            if self.pipeline is not None:
                self.pipeline.set_want_tsi(self.publisher.wants("hb"))

    # -- the loop -------------------------------------------------------------------
    def run(self) -> None:
        # the control requests and the data socket's subscription notices
        wakeups = Wakeups((self.control.sock, self.publisher.sock))
        fd: int | None = None  # the device's descriptor while it is polled
        schedule = StatusSchedule(self.cfg.status.interval_s, time.monotonic())
        wd = self.notifier.watchdog_interval_s
        next_wd = end = time.monotonic()  # end: when the last turn ended
        if not self.ready_sent and self.notifier.enabled:
            self.notifier.status(f"waiting for device on {self.device.port}")
        while not self.stop_requested:
            is_open = self.device.try_open(end)
            if is_open:
                new_fd = self.device.fileno()
                if new_fd is not None and new_fd != fd:
                    wakeups.watch_port(new_fd)
                    fd = new_fd
            elif not self.ready_sent:  # no probe yet: up and waiting for it (systemd READY)
                self.ready_sent = True
                self.notifier.ready(f"waiting for device on {self.device.port}")
            timeout = POLL_MS if fd is not None or not is_open else POLL_NO_FD_MS
            if schedule.at_s is not None:  # a status goes out soon after a frame
                timeout = schedule.timeout_ms(timeout, time.monotonic())
            if self._status_steps is not None:  # a status being made: its next step soon
                timeout = schedule.step_timeout_ms(time.monotonic(), self._probe_rate_hz())
            port_woke, readable, turn0 = wakeups.wait(timeout)
            if self.publisher.sock in readable:
                self.guard.run("subscriptions", self._read_subscriptions)
                wakeups.served(self.publisher.sock)
            handled = False
            if is_open and (fd is None or port_woke):
                got = self.lean.turn(turn0)  # the lean path (fastpath.py), else the general
                if got is PORT_LOST:
                    is_open = False
                    self.stream.disconnected(time.time())
                else:
                    handled = got is HANDLED
            if not is_open and fd is not None:  # the port was lost
                wakeups.watch_port(None)
                fd = None
                self.publish_status("disconnected")
            if self.control.sock in readable:
                self.guard.run("control", self.control.serve_pending)
                wakeups.served(self.control.sock)
            now = time.monotonic()
            if wd is not None and now >= next_wd:
                self.notifier.watchdog()
                next_wd = now + wd
            if handled:  # status steps go in the gaps between frames
                schedule.frame_s = turn0
            if self._status_steps is not None:
                if schedule.may_step(now, self._probe_rate_hz()):
                    self.guard.run("status", self._status_step)
            elif now >= schedule.next_s and schedule.due(now, handled, self._probe_rate_hz):
                self._status_steps = periodic_steps(self)
                self.guard.run("status", self._status_step)
            end = time.monotonic()
            if end - turn0 > self.turn_max_s:
                self.turn_max_s = end - turn0
        wakeups.watch_port(None)

    def close(self) -> None:
        self.notifier.stopping()
        self.device.close()
        self.control.close()
        self.publisher.close()
        log.info("stopped", samples=self.stream.next_seq)
