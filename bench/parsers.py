"""Parser throughput (MB/s) for NIRSB, HEG and delimited text, against the link limits.

    python bench/parsers.py [--seconds S] [--chunk BYTES] [--api feed_blocks|feed]

Each parser decodes a clean stream fed in ``--chunk``-byte reads (a serial read returns
at most a few kB) for about ``--seconds`` s; the best of five runs is reported.  By
default through ``Parser.feed_blocks``, as the daemon reads (text parsers return one
``SampleBlock`` per read); ``--api feed`` measures the one-``Sample``-per-line API.  Anchors:
3 Mbaud serial moves about 0.3 MB/s, USB full speed about 1 MB/s; the target is at least
20x the USB full-speed rate, so the parser is never the bottleneck.  Prints a table and
saves JSON to bench/results/parsers.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from nirsd.drivers import nirsb
from nirsd.drivers.delimited import DelimitedParser, parse_layout
from nirsd.drivers.heg import HegParser, format_line
from nirsd.drivers.sim.physiology import Physiology

SERIAL_3MBAUD = 0.3  # MB/s
USB_FULL_SPEED = 1.0  # MB/s
TARGET_X = 20.0


def streams(n: int) -> dict[str, tuple[bytes, callable]]:
    phys8 = Physiology(8, (760.0, 850.0), 100.0, seed=1)
    counts8 = phys8.counts(np.arange(n))
    phys1 = Physiology(1, (660.0, 880.0), 100.0, seed=2)
    counts1 = phys1.counts(np.arange(n))
    nirsb_data = b"".join(nirsb.encode_data(k, k * 10_000, counts8[k]) for k in range(n))
    heg = b"".join(
        format_line(k * 10_000, int(c[0, 0]), int(c[0, 1]), 312, 64, 97)
        for k, c in enumerate(counts1)
    )
    heg_fast = b"".join(format_line(None, int(c[0, 0]), int(c[0, 1])) for c in counts1)
    cols = ["time"] + [f"ch{c}:{w}" for c in range(8) for w in (760, 850)]
    layout = parse_layout({"columns": cols}, (760.0, 850.0))
    csv = b"".join(
        b",".join([b"%d" % (k * 10)] + [b"%d" % v for v in counts8[k].ravel()]) + b"\r\n"
        for k in range(n)
    )
    return {
        "nirsb 8ch x 2wl": (nirsb_data, nirsb.NirsbParser),
        "heg 7-field": (heg, lambda: HegParser(synced=True)),
        "heg 3-field": (heg_fast, lambda: HegParser(synced=True)),
        "csv 8ch x 2wl + time": (csv, lambda: DelimitedParser(layout, synced=True)),
    }


def measure(
    data: bytes, make, chunk: int, seconds: float, api: str = "feed_blocks"
) -> tuple[float, int]:
    best = 0.0
    frames = 0
    for _ in range(5):
        p = make()
        feed = getattr(p, api)
        t0 = time.perf_counter()
        done = 0
        frames = 0
        while True:
            for i in range(0, len(data), chunk):
                frames += len(feed(data[i : i + chunk]))
            done += len(data)
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds / 5:
                break
        best = max(best, done / elapsed / 1e6)
    return best, frames


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--chunk", type=int, default=4096)
    ap.add_argument("--samples", type=int, default=20_000)
    ap.add_argument("--api", choices=("feed_blocks", "feed"), default="feed_blocks")
    args = ap.parse_args()
    rows = []
    print(
        f"{'stream':<22} {'MB/s':>8} {'Msamples/s':>11} {'x 0.3 MB/s':>11} "
        f"{'x 1 MB/s':>9}  target >= {TARGET_X:g}x"
    )
    for name, (data, make) in streams(args.samples).items():
        mbps, _ = measure(data, make, args.chunk, args.seconds, args.api)
        per_sample = len(data) / args.samples
        row = {
            "stream": name,
            "mb_per_s": round(mbps, 2),
            "samples_per_s": round(mbps * 1e6 / per_sample),
            "bytes_per_sample": round(per_sample, 1),
            "x_serial_3mbaud": round(mbps / SERIAL_3MBAUD, 1),
            "x_usb_full_speed": round(mbps / USB_FULL_SPEED, 1),
            "meets_target": mbps / USB_FULL_SPEED >= TARGET_X,
        }
        rows.append(row)
        print(
            f"{name:<22} {mbps:8.1f} {row['samples_per_s'] / 1e6:11.3f} "
            f"{row['x_serial_3mbaud']:11.1f} {row['x_usb_full_speed']:9.1f}  "
            f"{'ok' if row['meets_target'] else 'BELOW'}"
        )
    out = Path(__file__).resolve().parent / "results" / "parsers.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "chunk_bytes": args.chunk,
                "api": args.api,
                "python": platform.python_version(),
                "machine": platform.machine(),
                "cpus": __import__("os").cpu_count(),
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "anchors_mb_per_s": {
                    "serial_3mbaud": SERIAL_3MBAUD,
                    "usb_full_speed": USB_FULL_SPEED,
                },
                "results": rows,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
