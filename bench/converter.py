"""Converter throughput: nirsd's streaming Beer-Lambert converter against MNE's batch
``optical_density`` + ``beer_lambert_law`` on the same synthetic intensities.

Throughput is samples × channels per second (a channel being one source-detector pair
with all its wavelengths).  nirsd is timed per block of 1 sample (as the daemon
streams, one device frame at a time) and per block of 100; MNE converts the whole
recording at once (its best case).  MNE is an optional dependency (``.[bench]``).

    python bench/converter.py                       # 64 ch x 2 λ, 30,000 samples
    python bench/converter.py --channels 256 --samples 20000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, save_results  # noqa: E402

from nirsd.daemon.converter import Converter  # noqa: E402

WAVELENGTHS = (760.0, 850.0)
DISTANCE_CM = 3.0
DPF = 6.0


def intensities(n: int, channels: int, seed: int = 1) -> np.ndarray:
    """(n, channels, 2) synthetic counts: a baseline level with 1 % slow changes."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(2e4, 6e4, (1, channels, len(WAVELENGTHS)))
    drift = 1 + 0.01 * np.sin(np.linspace(0, 20, n))[:, None, None]
    return level * drift * (1 + 1e-3 * rng.standard_normal((n, channels, len(WAVELENGTHS))))


def time_nirsd(data: np.ndarray, block: int, baseline: int) -> tuple[float, np.ndarray]:
    """Seconds to convert ``data`` in blocks of ``block`` samples, and the hb array."""
    conv = Converter(
        WAVELENGTHS, np.full(data.shape[1], DISTANCE_CM), DPF, baseline_samples=baseline
    )
    out = []
    t0 = time.perf_counter()
    for i in range(0, data.shape[0], block):
        out.append(conv.process(data[i : i + block])[0])
    dt = time.perf_counter() - t0
    return dt, np.concatenate(out)


def time_mne(data: np.ndarray, rate_hz: float) -> tuple[float, np.ndarray]:
    """Seconds for RawArray → optical_density → beer_lambert_law, and its (n, 2, ch) µM."""
    import mne

    mne.set_log_level("ERROR")
    n, channels, n_wl = data.shape
    names, locs = [], []
    for c in range(channels):
        src = np.array([0.0, 0.01 * c, 0.0])
        det = src + np.array([DISTANCE_CM / 100.0, 0.0, 0.0])
        for wl in WAVELENGTHS:
            names.append(f"S{c + 1}_D{c + 1} {int(wl)}")
            loc = np.zeros(12)
            loc[0:3] = (src + det) / 2
            loc[3:6], loc[6:9], loc[9] = src, det, wl
            locs.append(loc)
    info = mne.create_info(names, rate_hz, "fnirs_cw_amplitude")
    for ch, loc in zip(info["chs"], locs):
        ch["loc"][:] = loc
    values = np.ascontiguousarray(data.reshape(n, channels * n_wl).T)
    t0 = time.perf_counter()
    raw = mne.io.RawArray(values, info, verbose="ERROR")
    od = mne.preprocessing.nirs.optical_density(raw)
    hb = mne.preprocessing.nirs.beer_lambert_law(od, ppf=DPF)
    arr = hb.get_data()
    dt = time.perf_counter() - t0
    return dt, arr.reshape(channels, 2, n).transpose(2, 1, 0) * 1e6


def run(
    channels: int = 64, samples: int = 30_000, rate_hz: float = 100.0, log=print
) -> dict[str, Any]:
    data = intensities(samples, channels)
    work = samples * channels
    rows = []
    # "baseline open": every sample still inside the baseline window (the running-mean
    # path, the costliest); "steady state": I0 frozen after 10 s, as for the rest of a
    # recording
    for block in (1, 100):
        for phase, baseline in (("baseline open", samples), ("steady state", int(10 * rate_hz))):
            log(f"  converter nirsd block {block}, {phase} ...", file=sys.stderr)
            dt, _ = time_nirsd(data, block, baseline=baseline)
            rows.append(
                {
                    "method": f"nirsd Converter.process, block {block}, {phase}",
                    "seconds": dt,
                    "samples_x_channels_per_s": work / dt,
                    "us_per_sample": 1e6 * dt / samples,
                }
            )
    out: dict[str, Any] = {
        "channels": channels,
        "wavelengths": len(WAVELENGTHS),
        "samples": samples,
        "rows": rows,
    }
    try:
        log("  converter MNE batch ...", file=sys.stderr)
        dt, mne_hb = time_mne(data, rate_hz)
        rows.append(
            {
                "method": "MNE optical_density + beer_lambert_law (batch)",
                "seconds": dt,
                "samples_x_channels_per_s": work / dt,
                "us_per_sample": 1e6 * dt / samples,
            }
        )
        # agreement on the same data, with the baseline = mean of the whole recording
        # as MNE's optical_density takes it (ln 10 rounded to 2.303 there)
        conv = Converter(WAVELENGTHS, np.full(channels, DISTANCE_CM), DPF)
        conv.set_baseline(data.mean(axis=0))
        ours = conv.process(data)[0][:, :2, :]
        out["max_rel_diff_vs_mne"] = float(
            np.nanmax(np.abs(ours - mne_hb)) / np.nanmax(np.abs(ours))
        )
    except ImportError:
        out["mne"] = "not installed (pip install '.[bench]')"
    ref = {r["method"]: r["samples_x_channels_per_s"] for r in rows}
    mne_rate = next((v for k, v in ref.items() if k.startswith("MNE")), None)
    for r in rows:
        r["ratio_vs_mne"] = None if mne_rate is None else r["samples_x_channels_per_s"] / mne_rate
    return out


def table(res: dict[str, Any]) -> str:
    lines = [
        f"converter: {res['channels']} ch x {res['wavelengths']} λ, {res['samples']} samples",
        "| method | s | samples×channels/s | µs/sample | × MNE |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        ratio = "-" if r["ratio_vs_mne"] is None else f"{r['ratio_vs_mne']:.2f}"
        lines.append(
            f"| {r['method']} | {r['seconds']:.3f} | "
            f"{r['samples_x_channels_per_s']:.3g} | {r['us_per_sample']:.1f} | {ratio} |"
        )
    if "max_rel_diff_vs_mne" in res:
        lines.append(f"max |nirsd − MNE| / max |nirsd| = {res['max_rel_diff_vs_mne']:.2e}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--samples", type=int, default=30_000)
    p.add_argument("--quick", action="store_true", help="3,000 samples")
    p.add_argument("--json", type=Path, default=RESULTS / "converter.json")
    a = p.parse_args(argv)
    res = run(a.channels, 3000 if a.quick else a.samples)
    print(table(res))
    save_results(a.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
