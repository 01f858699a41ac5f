"""Throughput limit: raise the sample rate until samples are lost.

For a channel count, the daemon runs on a pty this process writes NIRSB frames to
(frames due are written together every 5 ms above 500 Hz), with one ``hb`` subscriber
process.  The rate doubles each step until a step loses samples (at the daemon, or on
the way to the subscriber), the daemon uses ≥ 95 % of a core, or the writer cannot
keep up.  Reported: the highest rate sustained without loss, in samples/s,
channel-values/s and wire MB/s, and what saturated first.

    python bench/throughput.py                   # 64 x 2, 1 kHz to 16 kHz, 5 s per step
    python bench/throughput.py --channels 256 --start 250 --seconds 5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, Load, save_results  # noqa: E402
from latency import fmt, run_nirsd  # noqa: E402

BURST_ABOVE_HZ = 500.0
BURST_S = 0.005


def verdict(r: dict[str, Any], seconds: float) -> str | None:
    """What saturated in this step, or None when it was sustained."""
    if r.get("error"):
        if "TimeoutError" in r["error"]:
            return f"the daemon's read loop fell behind the port ({r['error']})"
        return f"error: {r['error']}"
    if r["daemon_lost"] > 0 or r["counters"].get("lost_frames", 0) > 0:
        return "the daemon's read loop (frames lost before acceptance)"
    if r["cpu_pct"] >= 95.0:
        return (
            f"the daemon's CPU ({r['cpu_pct']:.0f} % of a core; it falls behind and "
            f"the port back-pressures the device, p50 {r['p50_us'] / 1e3:.0f} ms)"
        )
    if r["window_s"] > 1.2 * seconds:
        return "the benchmark's writer (could not write frames at this rate)"
    if r["lost"] > 0:
        return "the Python hb subscriber (PUB dropped messages it did not read in time)"
    return None


def run(
    channels: int = 64,
    wavelengths: int = 2,
    start_hz: float = 1000.0,
    seconds: float = 5.0,
    max_hz: float = 16_000.0,
    log=print,
) -> dict[str, Any]:
    steps = []
    rate = start_hz
    limit = None
    while rate <= max_hz:
        load = Load(channels, wavelengths, rate)
        log(f"  throughput {load.label} ({seconds:g} s) ...", file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix="nirsdbench") as tmp:
            try:
                r = run_nirsd(
                    load,
                    seconds,
                    2.0,
                    Path(tmp),
                    burst_s=BURST_S if rate > BURST_ABOVE_HZ else 0.0,
                    extra_cfg="[buffer]\nseconds = 10\n",
                    max_wait_s=10.0,
                )
                r.pop("_lat", None)
            except Exception as err:
                r = {"load": load.label, "error": f"{type(err).__name__}: {err}"[:300]}
        r["rate_hz"] = rate
        r["wire_mb_per_s"] = (
            r.get("wire_bytes", 0) / r["window_s"] / 1e6 if r.get("window_s") else None
        )
        r["saturated"] = verdict(r, seconds)
        steps.append(r)
        if r["saturated"]:
            limit = r["saturated"]
            break
        rate *= 2
    ok = [s for s in steps if not s["saturated"]]
    best = ok[-1] if ok else None
    return {
        "channels": channels,
        "wavelengths": wavelengths,
        "steps": steps,
        "max_rate_hz": best["rate_hz"] if best else None,
        "max_samples_per_s": best["rate_hz"] if best else None,
        "max_values_per_s": best["rate_hz"] * channels * wavelengths if best else None,
        "saturates_first": limit or f"nothing up to {max_hz:g} Hz",
    }


def table(res: dict[str, Any]) -> str:
    lines = [
        f"throughput: {res['channels']} ch x {res['wavelengths']} λ",
        "| rate Hz | lost (daemon/subscriber) | daemon CPU % | p50 µs | p99 µs | wire MB/s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for s in res["steps"]:
        if "error" in s:
            lines.append(f"| {s['rate_hz']:g} | error: {s['error']} |||||")
            continue
        lines.append(
            f"| {s['rate_hz']:g} | {s['daemon_lost']}/{s['lost']} | "
            f"{fmt(s['cpu_pct'], '.1f')} | {fmt(s['p50_us'])} | {fmt(s['p99_us'])} | "
            f"{fmt(s['wire_mb_per_s'], '.2f')} |"
        )
    mx = res["max_samples_per_s"]
    lines.append(
        f"max sustained: {fmt(mx, '.0f')} samples/s = "
        f"{fmt(res['max_values_per_s'], '.3g')} values/s; saturates first: "
        f"{res['saturates_first']}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--wavelengths", type=int, default=2)
    p.add_argument("--start", type=float, default=1000.0, help="first rate, Hz")
    p.add_argument("--max", type=float, default=16_000.0, help="last rate tried, Hz")
    p.add_argument("--seconds", type=float, default=5.0, help="measured s per step")
    p.add_argument("--quick", action="store_true", help="2 s per step")
    p.add_argument("--json", type=Path, default=RESULTS / "throughput.json")
    a = p.parse_args(argv)
    res = run(a.channels, a.wavelengths, a.start, 2.0 if a.quick else a.seconds, a.max)
    print(table(res))
    save_results(a.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
