"""What the periodic status's quality assessment costs the loop: in one go, and as the
longest of the steps the loop now runs between frames (``Pipeline.assess_quality_steps``),
for a probe whose ring holds 12 s of clean, pulsing light.  In-process, no sockets.

    python bench/status_cost.py                  # 64x2@100 and 256x2@1000
    python bench/status_cost.py --loads 256x2@1000 --repeats 50
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Load, parse_load  # noqa: E402

from nirsd.daemon import config  # noqa: E402
from nirsd.daemon.pipeline import Pipeline  # noqa: E402
from nirsd.drivers.base import Info, Sample  # noqa: E402
from nirsd.drivers.nirsb import NirsbParser  # noqa: E402


def filled(load: Load, seconds: float = 12.0) -> Pipeline:
    """A pipeline whose ring holds ``seconds`` of clean light at ``load``."""
    cfg = config.parse(
        {"device": {"driver": "nirsb", "port": "/dev/null"}, "baseline": {"seconds": 1.0}}
    )
    info = Info(1, load.channels, (760.0, 850.0)[: load.wavelengths], load.rate_hz, "b")
    p = Pipeline(cfg, info, NirsbParser)
    rng = np.random.default_rng(0)
    n, block = int(seconds * load.rate_hz), max(1, int(load.rate_hz // 10))
    for k0 in range(0, n, block):
        t = np.arange(k0, k0 + block) / load.rate_hz
        pulse = 1 + 0.01 * np.sin(2 * np.pi * 1.2 * t)[:, None, None]
        shape = (block, load.channels, load.wavelengths)
        x = 30_000 * pulse * np.exp(rng.normal(0, 0.002, shape))
        samples = [Sample(k0 + i, t[i], 0, x[i]) for i in range(block)]
        b, _ = p.ingest(samples, 1000.0 + t[0])
        p.store(b)
    return p


def measure(load: Load, repeats: int) -> dict[str, float]:
    """Median ms over ``repeats``: the whole assessment, its longest step, the steps."""
    p = filled(load)
    whole, each = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        p.assess_quality()
        whole.append(time.perf_counter() - t0)
        steps, took = p.assess_quality_steps(), []
        while True:
            t0 = time.perf_counter()
            try:
                next(steps)
            except StopIteration:
                took.append(time.perf_counter() - t0)
                break
            took.append(time.perf_counter() - t0)
        each.append(took)
    n = min(len(t) for t in each)
    per_step = np.median([t[:n] for t in each], axis=0)
    return {
        "whole_ms": 1e3 * float(np.median(whole)),
        "longest_step_ms": 1e3 * float(np.median([max(t) for t in each])),
        "steps": n,
        "step_ms": [round(1e3 * float(v), 3) for v in per_step],
    }


def main(argv: list[str] | None = None) -> int:
    a = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a.add_argument("--loads", nargs="+", type=parse_load, default=None)
    a.add_argument("--repeats", type=int, default=20)
    a.add_argument("--steps", action="store_true", help="also each step's median ms")
    args = a.parse_args(argv)
    loads = args.loads or [parse_load("64x2@100"), parse_load("256x2@1000")]
    print("| load | assessment in one go ms | longest step ms | steps | ratio |")
    print("|---|---:|---:|---:|---:|")
    for load in loads:
        r = measure(load, args.repeats)
        ratio = r["whole_ms"] / r["longest_step_ms"]
        print(
            f"| {load.label} | {r['whole_ms']:.2f} | {r['longest_step_ms']:.2f} "
            f"| {r['steps']} | {ratio:.1f} |"
        )
        if args.steps:
            print(f"  steps, ms: {' '.join(f'{v:.2f}' for v in r['step_ms'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
