"""The daemon's side of one device: driver, transport and parser, with reconnection.

``DeviceLink`` opens the port when it can (:meth:`try_open`), and :meth:`read` says
what happened, gpsd-style: the frames parsed from the bytes waiting, ``NOTHING``, or
``PORT_LOST`` when the port vanished (the state is "disconnected" then); the loop
retries every ``device.reconnect_s``, by path, so a udev symlink that is re-pointed
works too.  The link owns its state fields (``state``, ``last_error``, ``reconnects``):
others change them through its methods.

Hot-plug: a port that errors (EIO) or reports end of file (a USB hang-up reads 0 bytes
when polled readable) is closed at once.  On reopening, the parser is new (a power-cycled
device restarts its frame counter, which must not count as lost frames) and the device
clock fit is restarted (:meth:`take_clock_reset`).  The outage itself (its span, the
samples it cost) is accounted by :class:`~nirsd.daemon.stream_accounting.StreamAccounting`.
With ``driver = "simulated"`` it first starts the embedded emulator on a
pseudo-terminal, so the real serial path is exercised on any machine.
"""

from __future__ import annotations

import os
import struct
import time

import structlog

from nirsd.core.errors import ConfigError, DeviceError
from nirsd.drivers import registry
from nirsd.drivers.base import DeviceSettings, Driver, Frame, Info, Parser
from nirsd.drivers.transport import SerialTransport

from .config import Config

log = structlog.get_logger("nirsd.device")

CONNECTING, STREAMING, DISCONNECTED = "connecting", "streaming", "disconnected"
INFO_PROBLEM = "device describes itself"  # how last_error starts for a refused INFO


class LinkEvent:
    """What a read brought instead of frames (compared by identity)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name.upper()


NOTHING = LinkEvent("nothing")  # no complete frame in the bytes read (or none waiting)
PORT_LOST = LinkEvent("port_lost")  # the port vanished and is closed now (disconnected)
ReadResult = list[Frame] | LinkEvent

#: consecutive empty reads of a polled-readable port taken as a hang-up
EOF_READS = 3
#: bytes and seconds without one valid frame before the status says so (wrong protocol?)
NO_FRAME_BYTES, NO_FRAME_S = 8192, 2.0


def make_driver(cfg: Config, port: str) -> Driver:
    dev = cfg.device
    embedded = dev.driver in ("simulated", "replay")  # an emulator speaking NIRSB
    name = "nirsb" if embedded else dev.driver
    settings = DeviceSettings(
        port=port,
        baudrate=dev.baudrate,
        wavelengths_nm=tuple(cfg.optics.wavelengths_nm),
        rate_hz=dev.rate_hz,
        n_channels=dev.channels,
        options={} if embedded else dict(dev.options),
    )
    return registry.get(name)(settings)


class DeviceLink:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.emulator = None
        port = cfg.device.port
        if cfg.device.driver in ("simulated", "replay"):
            start = self._start_replay if cfg.device.driver == "replay" else self._start_emulator
            try:
                self.emulator = start(cfg)
            except (ValueError, OverflowError, struct.error) as err:
                raise ConfigError(
                    f"the simulated probe cannot run with these settings: {err}", "device"
                ) from err
            port = self.emulator.port
        self.port: str = port or ""
        self.driver = make_driver(cfg, self.port)
        self.transport = SerialTransport(self.port, cfg.device.baudrate)
        self.parser: Parser = self.driver.make_parser()
        self.state = DISCONNECTED
        self.reconnects = 0
        self.opened_once = False
        self.last_error: str | None = None
        self._next_try = 0.0
        self.lost_counters: dict[str, int] = {}  # counters of parsers retired on reconnect
        self._clock_reset = False
        self._empty_reads = 0
        self._bytes_no_frame = 0  # bytes received since the last valid frame
        self._no_frame_since = 0.0  # monotonic s of the last valid frame or open
        self._flagged = False

    @staticmethod
    def _start_emulator(cfg: Config):
        from nirsd.drivers.sim.emulator import Emulator
        from nirsd.drivers.sim.physiology import Physiology

        dev, optics = cfg.device, cfg.optics
        dpf = optics.dpf if isinstance(optics.dpf, (int, float)) else 6.0
        phys = Physiology(
            dev.channels,
            optics.wavelengths_nm,
            dev.rate_hz,
            distance_cm=optics.distance_mm / 10.0,
            dpf=dpf,
            noise=2e-4,
        )
        emu = Emulator(
            n_channels=dev.channels,
            rate_hz=dev.rate_hz,
            wavelengths_nm=optics.wavelengths_nm,
            physiology=phys,
            device_id="nirsd-simulated",
        )
        port = emu.start()
        log.info("simulator_started", port=port, channels=dev.channels, rate_hz=dev.rate_hz)
        return emu

    @staticmethod
    def _start_replay(cfg: Config):
        """``driver = "replay"``: a SNIRF recording played on a pty (options: file,
        speed, loop)."""
        from nirsd.drivers.sim.replay_emulator import ReplayEmulator
        from nirsd.drivers.snirf_source import read_recording

        opts = cfg.device.options
        if "file" not in opts:
            raise ConfigError("required for driver 'replay'", "device.options.file")
        rec = read_recording(opts["file"])
        emu = ReplayEmulator(rec, speed=float(opts.get("speed", 1.0)), loop=bool(opts.get("loop")))
        port = emu.start()
        log.info(
            "replay_started",
            port=port,
            file=str(rec.path),
            samples=rec.n_samples,
            rate_hz=rec.rate_hz,
            gain=rec.gain,
            stims=len(rec.stims),
        )
        return emu

    def fileno(self) -> int | None:
        return self.transport.fileno()

    def default_info(self) -> Info | None:
        return self.driver.default_info()

    def try_open(self, now: float) -> bool:
        """Open the port if it is time to try; True when it is open."""
        if self.transport.is_open:
            return True
        if now < self._next_try:
            return False
        self._next_try = now + self.cfg.device.reconnect_s
        try:
            self.transport.open()
            self.transport.write(self.driver.start_commands())
        except DeviceError as err:
            if err.args[0] != self.last_error:
                log.warning("device_unavailable", port=self.port, error=str(err))
            self.last_error = str(err)
            self.transport.close()
            return False
        if self.opened_once:
            self.reconnects += 1
            self._clock_reset = True
        self.opened_once = True
        self._empty_reads = self._bytes_no_frame = 0
        self._no_frame_since, self._flagged = time.monotonic(), False
        self.last_error = None
        self.state = CONNECTING
        log.info("device_opened", port=self.port, driver=self.driver.name)
        return True

    def read(self, data: bytes | None = None) -> ReadResult:
        """The frames in whatever bytes are waiting (or in ``data``, bytes already read
        from the port), else ``NOTHING``; ``PORT_LOST`` when the port was lost (it is
        closed then, and retried later)."""
        if data is None:
            try:
                data = self.transport.read()
            except DeviceError as err:
                self.disconnect(str(err))
                return PORT_LOST
        if not data:
            # polled readable yet nothing to read: end of file, the device hung up
            if self.transport.fileno() is not None:
                self._empty_reads += 1
                if self._empty_reads >= EOF_READS or (
                    "://" not in self.port and not os.path.exists(self.port)
                ):
                    self.disconnect(f"serial port {self.port} hung up (end of file)")
                    return PORT_LOST
            return NOTHING
        self._empty_reads = 0
        frames = self.parser.feed_blocks(data)
        self._check_protocol(len(data), bool(frames))
        return frames or NOTHING

    def mark_streaming(self) -> None:
        """Samples flow: the state status and ``info`` report."""
        self.state = STREAMING

    def info_rejected(self, description: str, reason: str) -> None:
        """Say in ``last_error`` that the device's description cannot be used."""
        self.last_error = f"{INFO_PROBLEM} as {description}: {reason}"

    def info_accepted(self) -> None:
        """A usable description ends an earlier complaint about one (no other error)."""
        if (self.last_error or "").startswith(INFO_PROBLEM):
            self.last_error = None

    def _check_protocol(self, n_bytes: int, got_frames: bool) -> None:
        """Say in ``last_error`` when bytes keep coming but none makes a valid frame."""
        if got_frames:
            if self._flagged:
                self.last_error, self._flagged = None, False
            self._bytes_no_frame = 0
            self._no_frame_since = time.monotonic()
            return
        self._bytes_no_frame += n_bytes
        if (
            not self._flagged
            and self._bytes_no_frame >= NO_FRAME_BYTES
            and time.monotonic() - self._no_frame_since >= NO_FRAME_S
        ):
            self._flagged = True
            hint = getattr(self.parser, "no_frame_hint", lambda: None)()
            self.last_error = (
                f"{self._bytes_no_frame} bytes from {self.port} without one "
                f"valid {self.driver.name} frame: "
                f"{hint or 'wrong driver, baud rate or device?'}"
            )
            log.warning(
                "no_valid_frames",
                port=self.port,
                driver=self.driver.name,
                bytes=self._bytes_no_frame,
            )

    def take_clock_reset(self) -> bool:
        """True once after each reconnect: the device clock may have restarted."""
        reset, self._clock_reset = self._clock_reset, False
        return reset

    def disconnect(self, reason: str) -> None:
        log.warning("device_disconnected", port=self.port, reason=reason)
        self.transport.close()
        self.state = DISCONNECTED
        self.last_error = reason
        # a fresh parser after a reconnect: half a frame from before must not join
        for name, value in self.parser.counters.as_dict().items():
            self.lost_counters[name] = self.lost_counters.get(name, 0) + value
        self.parser = self.driver.make_parser()
        self._next_try = time.monotonic()

    def lost_frames(self) -> int:
        """Frames lost by sequence number, over every parser (cheap: once per block)."""
        return self.parser.counters.lost_frames + self.lost_counters.get("lost_frames", 0)

    def counters(self) -> dict[str, int]:
        now = self.parser.counters.as_dict()
        return {k: now[k] + self.lost_counters.get(k, 0) for k in now}

    def close(self) -> None:
        if self.transport.is_open:
            try:
                self.transport.write(self.driver.stop_commands())
            except DeviceError:
                pass  # the device is gone already
        self.transport.close()
        if self.emulator is not None:
            self.emulator.stop()
