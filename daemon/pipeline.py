"""Samples in, published blocks out: timestamps, conversion, epoch tags, ring buffer.

One ``Pipeline`` exists per probe description; it is rebuilt when a device describes
itself differently (absolute sample indices carry on across the rebuild).
"""

from __future__ import annotations

from collections.abc import Callable, Generator

import numpy as np

from nirsd.drivers.base import FLAG_SATURATED, Info, Parser, Sample, SampleBlock

from .clock import DeviceClock
from .config import Config
from .converter import Converter
from .motion import MOTION, detect, live_step, od_of
from .probe import Probe, build_probe
from .quality import QualityMonitor, run_steps, step_share
from .resident import make_resident
from .ringbuffer import NO_EPOCH, Block, RingBuffer
from .srs import SrsEstimator

QUALITY_FEED_S = 0.05  # the quality window is fed about this often (s of samples),
QUALITY_FEED_MIN = 64  # and with at least this many (slow probes: at the status, as before)
_SATURATED_ONE = np.ones(1, bool)  # the device flag of a one-sample block that clipped
MOTION_WINDOW_S = 10.0  # history the live motion check looks at (σ needs some)
MOTION_RECENT_S = 1.0  # a detection this recent sets MOTION until the next assessment
MOTION_STEP_VALUES = 2_500  # OD values one step of the live motion check judges at 1 kHz
Tagger = Callable[[int, np.ndarray, "np.ndarray | None"], np.ndarray]
_FLAGS_ONE: dict[int, np.ndarray] = {}  # read-only (1,) uint8 per flags value, shared


def _flags_one(flags: int) -> np.ndarray:
    """The flags of a one-sample block, without a new array per frame (the ring copies)."""
    out = _FLAGS_ONE.get(flags)
    if out is None:
        out = np.array((flags,), np.uint8)
        out.flags.writeable = False
        if 0 <= flags < 256:  # a device value: the table stays bounded
            _FLAGS_ONE[flags] = out
    return out


def ring_capacity(cfg: Config, info: Info) -> int:
    per_sample = RingBuffer.bytes_per_sample(info.n_channels, len(info.wavelengths_nm))
    by_span = int(np.ceil(cfg.buffer.seconds * info.rate_hz))
    by_memory = int(cfg.buffer.max_mb * 1e6 // per_sample)
    return max(16, min(by_span, by_memory))


def _join(parts: list[Sample | SampleBlock]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(raw (n, ch, wl), flags (n,) uint8, device times (n,) s or None) of the parts."""
    if len(parts) == 1 and type(parts[0]) is SampleBlock:
        b = parts[0]
        return b.intensity, b.flags.astype(np.uint8, copy=False), b.t_dev
    raw = np.concatenate(
        [s.intensity if type(s) is SampleBlock else s.intensity[None] for s in parts]
    )
    flags = np.concatenate(
        [s.flags if type(s) is SampleBlock else [s.flags] for s in parts]
    ).astype(np.uint8)
    if any(s.t_dev is None for s in parts):
        return raw, flags, None
    t = np.concatenate([s.t_dev if type(s) is SampleBlock else [s.t_dev] for s in parts])
    return raw, flags, t.astype(np.float64)


class Pipeline:
    def __init__(
        self, cfg: Config, info: Info, parser_cls: type[Parser], first_seq: int = 0
    ) -> None:
        self.cfg = cfg
        self.probe: Probe = build_probe(cfg, info)
        self.shape = (info.n_channels, len(info.wavelengths_nm))
        self.clock = DeviceClock(
            parser_cls.clock_modulus_s, info.rate_hz, trust=cfg.device.clock == "device"
        )
        self.converter = Converter(
            info.wavelengths_nm,
            self.probe.distances_cm,
            self.probe.dpf,
            extinction=cfg.optics.extinction,
            baseline_samples=max(1, int(round(cfg.baseline.seconds * info.rate_hz))),
            saturation_level=cfg.optics.saturation_level,
            light_floor=cfg.optics.light_floor,
        )
        self.ring = RingBuffer(ring_capacity(cfg, info), *self.shape, first_seq=first_seq)
        # its pages fault in now, in the background, not one by one under frames
        self.resident = make_resident(self.ring.arrays, "ring")
        self.baseline_seq = first_seq  # first sample of the current baseline window
        self.shape_errors = 0
        self.quality = QualityMonitor(info.n_channels, info.rate_hz)
        self._poor = np.zeros(info.n_channels, np.uint8)  # POOR_SIGNAL bits, last assessed
        self._any_poor = False
        self._quality_seq = first_seq  # next ring sample the quality window has not seen
        every = max(QUALITY_FEED_MIN, int(np.ceil(QUALITY_FEED_S * info.rate_hz)))
        # where a status interval brings at most two feeds' worth (a 100 Hz probe's 100
        # rows a second), the assessment's own feed takes them all: one call, not two
        by_status = cfg.status.interval_s * info.rate_hz <= 2 * every
        self._quality_every = 1 << 62 if by_status else every
        self.srs = [
            (np.array(idx), SrsEstimator(info.wavelengths_nm, dist, cfg.optics.extinction))
            for _, idx, dist in self.probe.srs_groups
        ]
        self.last_tsi: np.ndarray | None = None  # (n, n_groups) % for the last block
        self.want_tsi = True  # TSI travels with hb only: off while no one subscribes to hb
        # set by the marker channel: (seq0, t (n,), t_dev (n,)) -> epoch indices (n,)
        self.tagger: Tagger | None = None

    def set_tagger(self, tagger: Tagger) -> None:
        """The marker channel's ``tag``: epoch label indices for each block."""
        self.tagger = tagger

    @property
    def info(self) -> Info:
        return self.probe.info

    def set_want_tsi(self, wanted: bool) -> None:
        """Compute TSI for the blocks to come (only while someone subscribes to hb)."""
        self.want_tsi = wanted

    def ingest(
        self, samples: list[Sample | SampleBlock], arrival: float
    ) -> tuple[Block, np.ndarray | None] | None:
        """Convert and tag samples that arrived together; returns (block, od).

        ``samples`` mixes :class:`Sample` and :class:`SampleBlock` frames, in order.
        The block is ready to publish; :meth:`store` must follow before the next ingest
        (publishing first keeps bookkeeping off the latency path).
        """
        if len(samples) == 1 and type(samples[0]) is Sample:
            return self._ingest_one(samples[0], arrival)
        if any(type(s) is SampleBlock for s in samples):
            parts = [
                s
                for s in samples
                if s.intensity.shape[-2:] == self.shape
                and s.intensity.ndim == (3 if type(s) is SampleBlock else 2)
            ]
            n = sum(len(s) if type(s) is SampleBlock else 1 for s in parts)
            self.shape_errors += sum(len(s) if type(s) is SampleBlock else 1 for s in samples) - n
            if not n:
                return None
            raw, flags, t_raw = _join(parts)
        else:
            good = [s for s in samples if s.intensity.shape == self.shape]
            self.shape_errors += len(samples) - len(good)
            if not good:
                return None
            n = len(good)
            raw = np.stack([s.intensity for s in good])
            flags = np.fromiter((s.flags for s in good), np.uint8, n)
            t_raw = (
                None
                if any(s.t_dev is None for s in good)
                else np.fromiter((s.t_dev for s in good), np.float64, n)
            )
        t_dev = self.clock.unwrap(t_raw, n)
        t = self.clock.to_host(t_dev, arrival)
        saturated = (flags & FLAG_SATURATED) > 0
        hb, quality = self.converter.process(raw, saturated if saturated.any() else None)
        return self._finish(t, t_dev, raw, hb, quality, flags)

    def _ingest_one(self, s: Sample, arrival: float) -> tuple[Block, np.ndarray | None] | None:
        """One sample, the usual streaming case: scalar clock arithmetic, no joins."""
        if s.intensity.shape != self.shape:
            self.shape_errors += 1
            return None
        raw = s.intensity.reshape(1, *self.shape)
        t_dev = self.clock.unwrap_one(s.t_dev)
        t = self.clock.to_host_one(t_dev, arrival)
        hb, quality = self.converter.process(
            raw, _SATURATED_ONE if s.flags & FLAG_SATURATED else None
        )
        return self._finish(
            np.array((t,)), np.array((t_dev,)), raw, hb, quality, _flags_one(s.flags)
        )

    def _finish(
        self,
        t: np.ndarray,
        t_dev: np.ndarray,
        raw: np.ndarray,
        hb: np.ndarray,
        quality: np.ndarray,
        flags: np.ndarray,
    ) -> tuple[Block, np.ndarray | None]:
        if self._any_poor:
            quality = quality | self._poor
        if self.srs and self.want_tsi:
            self.last_tsi = np.stack([est.tsi(raw[:, idx, :]) for idx, est in self.srs], axis=1)
        else:
            self.last_tsi = None
        epoch = (
            self.tagger(self.ring.head, t, t_dev)
            if self.tagger is not None
            else np.full(t.shape[0], NO_EPOCH, np.int16)
        )
        return (
            Block(self.ring.head, t, t_dev, raw, hb, quality, flags, epoch),
            self.converter.last_od,
        )

    def rebaseline(self, seq: int) -> None:
        """Restart I0 from sample ``seq`` (the next one to arrive)."""
        self.converter.rebaseline()
        self.baseline_seq = seq

    def describe_conversion(self) -> dict:
        """What a reader needs to redo the conversion (plain types, for ``info``)."""
        from nirsd.core.extinction import extinction_matrix

        conv, optics = self.converter, self.cfg.optics
        i0 = conv.i0
        from .dpf import PRESETS

        preset = PRESETS.get(optics.dpf.strip().lower()) if isinstance(optics.dpf, str) else None
        return {
            "dpf_spec": optics.dpf
            if isinstance(optics.dpf, (str, int, float))
            else str(optics.dpf),
            "dpf_source": f"{optics.dpf}: {preset.source}"
            if preset
            else f"optics.dpf = {optics.dpf}",
            "extinction": optics.extinction,
            "extinction_per_M_cm": extinction_matrix(
                self.info.wavelengths_nm, optics.extinction
            ).tolist(),
            "baseline_s": self.cfg.baseline.seconds,
            "baseline_samples": conv.baseline_samples,
            "baseline_seq": self.baseline_seq,
            "baseline_ready": bool(conv.baseline_ready),
            "i0": [[None if x != x else float(x) for x in row] for row in i0.tolist()],
            "light_floor": optics.light_floor,
            "saturation_level": optics.saturation_level,
        }

    def store(self, block: Block) -> None:
        """Keep a published block in the history ring (the quality window reads it later)."""
        self.ring.append(block)
        if self.ring.head - self._quality_seq >= self._quality_every:
            self._feed_quality(whole_buckets=True)

    def _feed_quality(self, whole_buckets: bool = False) -> None:
        """Bring the quality window up to the ring's head (or, with ``whole_buckets``, to
        the last bucket boundary before it): every QUALITY_FEED_S of samples (at least
        QUALITY_FEED_MIN) after a publish and before each assessment, never per frame.
        Buckets are only ever split at an assessment, so the window is the same as when
        fed all at once; a fast probe's status no longer averages half a second of
        samples in one go."""
        since = max(self._quality_seq, self.ring.oldest)
        until = self.ring.head
        if whole_buckets:
            until = since + self.quality.whole_bucket_rows(until - since)
            if until == since:
                return
        hb, quality = self.ring.columns(since, until, ("hb", "quality"))
        if hb.shape[0]:
            self.quality.update(hb[:, 0, :], quality)
        self._quality_seq = until

    def assess_quality(self) -> dict:
        """Per-channel quality summary (for ``status``); later samples get POOR_SIGNAL."""
        return run_steps(self.assess_quality_steps())

    def assess_quality_steps(self) -> Generator[None, None, dict]:
        """:meth:`assess_quality` in steps of about a millisecond or less, for the loop to
        run between frames (a fast probe's frames then wait for one step, not for the
        whole assessment); the summary is the generator's return value."""
        from .converter import POOR_SIGNAL

        self._feed_quality()
        yield
        summary = yield from self.quality.summary_steps()
        yield
        moving = yield from self._recent_motion()
        self._poor = (
            np.where(summary["poor"], POOR_SIGNAL, 0) | np.where(moving, MOTION, 0)
        ).astype(np.uint8)
        self._any_poor = bool(self._poor.any())
        summary["motion"] = [bool(v) for v in moving]
        summary["channels"] = list(self.probe.labels)
        return summary

    def _recent_motion(self) -> Generator[None, None, np.ndarray]:
        """Per channel: motion (nirsd.daemon.motion) within the last MOTION_RECENT_S, judged
        on the last MOTION_WINDOW_S of the ring; once per assessment, off the frame path
        (steps: the samples out of the ring, then the detection for a share of the
        channels at a time)."""
        rate, head = self.info.rate_hz, self.ring.head
        n = min(int(MOTION_WINDOW_S * rate), head - self.ring.oldest)
        n_ch, n_wl = self.shape
        # only every k-th sample leaves the ring (as detect_live would keep): a full 10 s
        # copy of a 256 x 2 probe at 1 kHz was 40 MB and most of a status's time
        k = live_step(n, n_ch * n_wl, rate)
        m = (n // k) * k
        recent = -(-max(1, int(round(MOTION_RECENT_S * rate))) // k)
        if m == 0:
            return np.zeros(n_ch, dtype=bool)
        (raw,) = self.ring.columns(head - m, head, ("raw",), step=k)
        od = od_of(raw)
        # channels are judged independently: a share of them per step, about
        # MOTION_STEP_VALUES values each (times step_share), so no step holds a fast
        # probe's frames long
        values = MOTION_STEP_VALUES * step_share(rate)
        per_step = max(1, values // max(1, od.shape[0] * n_wl))
        # the channels in about equal shares (64 channels in one step, not 62 and 2: a
        # step's numpy calls cost about the same for 2 channels as for 62)
        per_step = -(-n_ch // max(1, round(n_ch / per_step)))
        moving = np.zeros(n_ch, dtype=bool)
        for first in range(0, n_ch, per_step):
            yield
            part = slice(first, first + per_step)
            moving[part] = detect(od[:, part], rate / k, last=recent).any(axis=0)
        return moving
