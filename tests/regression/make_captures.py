"""Generate the regression captures: byte-exact streams of each protocol with the
decoded output expected from them, gpsd-style.

    python tests/regression/make_captures.py        # rewrites tests/regression/<driver>/

For each protocol (nirsb, heg, csv) four captures: ``clean``, ``noisy`` (1 % flipped
bits and garbage bursts), ``cut`` (starts and ends mid-frame, frames cut short in the
middle), ``wrapped`` (frame counter through 65535 -> 0 and device clock through
2**32 µs -> 0).  Bytes come from the emulators' encoders with fixed seeds; beside each
``NAME.bin`` is ``NAME.json``: the driver and its options, and the frames and counters
the parser produced when the capture was made.  Review a changed ``.json`` before
committing it: it is the behaviour the regression test holds the parsers to.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from nirsd.drivers import registry
from nirsd.drivers.base import DeviceSettings, Event, Info, Sample
from nirsd.drivers.sim.csv_emulator import DelimitedEmulator
from nirsd.drivers.sim.emulator import Emulator
from nirsd.drivers.sim.heg_emulator import HegEmulator

HERE = Path(__file__).resolve().parent
RATE = 20.0
N = 60


def frame_json(f: Any) -> dict[str, Any]:
    if isinstance(f, Sample):
        return {
            "type": "sample",
            "seq": f.seq,
            "t_dev": f.t_dev,
            "flags": f.flags,
            "intensity": f.intensity.tolist(),
        }
    if isinstance(f, Event):
        return {"type": "event", "seq": f.seq, "t_dev": f.t_dev, "code": f.code, "label": f.label}
    assert isinstance(f, Info)
    return {
        "type": "info",
        "version": f.version,
        "n_channels": f.n_channels,
        "wavelengths_nm": list(f.wavelengths_nm),
        "rate_hz": f.rate_hz,
        "device_id": f.device_id,
    }


def make_parser(spec: dict[str, Any]):
    settings = DeviceSettings(
        "capture",
        wavelengths_nm=tuple(spec["wavelengths_nm"]),
        rate_hz=RATE,
        options=spec.get("options", {}),
    )
    return registry.get(spec["driver"])(settings).make_parser()


def decode(spec: dict[str, Any], data: bytes, chunk: int | None = None) -> dict[str, Any]:
    """What the driver's parser makes of ``data`` (fed whole, or in ``chunk``-byte pieces)."""
    p = make_parser(spec)
    step = chunk or max(1, len(data))
    frames = [f for i in range(0, len(data), step) for f in p.feed(data[i : i + step])]
    return {"frames": [frame_json(f) for f in frames], "counters": p.counters.as_dict()}


def emulator(driver: str, **kw: Any) -> Emulator:
    if driver == "nirsb":
        return Emulator(n_channels=2, rate_hz=RATE, **kw)
    if driver == "heg":
        return HegEmulator(rate_hz=RATE, **kw)
    return DelimitedEmulator(n_channels=2, rate_hz=RATE, time_unit="us", **kw)


def spec_of(emu: Emulator, driver: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"driver": driver, "wavelengths_nm": list(emu.wavelengths_nm)}
    if isinstance(emu, DelimitedEmulator):
        spec["options"] = {**emu.options(), "time_wrap": 4294967296}
    return spec


def stream(
    emu: Emulator, n: int, seq0: int = 0, t0_us: int = 0, event_at: int | None = None
) -> list[bytes]:
    """Wire units (one per frame or line), as the emulator would send them."""
    counts = emu.physiology.counts(np.arange(n))
    units = [emu.encoder.greeting(), emu.encoder.preamble()]
    seq = seq0
    for k in range(n):
        t_us = (t0_us + round(k * 1e6 / emu.rate_hz)) % (1 << 32)
        if k == event_at:
            units.append(emu.encoder.event(seq % 65536, t_us, 1, "extension"))
            seq += 1
        units.append(emu.encoder.sample(seq % 65536, t_us, counts[k]))
        seq += 1
    return [u for u in units if u]


def noisy(units: list[bytes], emu: Emulator, rng: np.random.Generator) -> bytes:
    out = bytearray()
    for i, u in enumerate(units):
        if i % 9 == 4:
            out += rng.bytes(int(rng.integers(1, 30))) + emu.garbage_end
        out += u
    hits = np.flatnonzero(rng.random(len(out)) < 0.01)
    for pos, bit in zip(hits, rng.integers(0, 8, hits.size)):
        out[pos] ^= 1 << int(bit)
    return bytes(out)


def cut(units: list[bytes], rng: np.random.Generator) -> bytes:
    out = bytearray(units[2][len(units[2]) // 2 :])  # start mid-frame
    for i, u in enumerate(units[3:-1], 3):
        out += u[: int(rng.integers(1, len(u)))] if i % 7 == 0 else u
    out += units[-1][: len(units[-1]) // 2]  # end mid-frame
    return bytes(out)


def captures(driver: str) -> dict[str, tuple[dict[str, Any], bytes]]:
    rng = np.random.default_rng({"nirsb": 1, "heg": 2, "csv": 3}[driver])
    emu = emulator(driver)
    spec = spec_of(emu, driver)
    units = stream(emu, N, event_at=10)
    wrapped = stream(emu, N, seq0=65536 - N // 2, t0_us=(1 << 32) - 1_000_000)
    return {
        "clean": (spec, b"".join(units)),
        "noisy": (spec, noisy(units, emu, rng)),
        "cut": (spec, cut(units, rng)),
        "wrapped": (spec, b"".join(wrapped)),
    }


def to_json(expected: dict[str, Any]) -> str:
    """Readable, diffable JSON: one frame per line."""
    head = {k: v for k, v in expected.items() if k != "frames"}
    lines = ",\n  ".join(json.dumps(f) for f in expected["frames"])
    return json.dumps(head)[:-1] + ',\n "frames": [\n  ' + lines + "\n ]\n}\n"


def main() -> int:
    for driver in ("nirsb", "heg", "csv"):
        folder = HERE / driver
        folder.mkdir(exist_ok=True)
        for name, (spec, data) in captures(driver).items():
            (folder / f"{name}.bin").write_bytes(data)
            expected = {**spec, **decode(spec, data)}
            (folder / f"{name}.json").write_text(to_json(expected))
            print(f"{driver}/{name}: {len(data)} bytes, {len(expected['frames'])} frames")
    return 0


if __name__ == "__main__":
    sys.exit(main())
