"""The regression captures (tests/regression/<driver>/<name>.bin, gpsd-style): every
capture, fed whole and in pieces of 1, 7 and 64 bytes, decodes to exactly the frames and
counters stored beside it.  Regenerate with tests/regression/make_captures.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent / "regression"
sys.path.insert(0, str(HERE))

from make_captures import N, decode  # noqa: E402


def test_every_capture_decodes_as_recorded():
    captures = sorted(HERE.glob("*/*.bin"))
    assert len(captures) == 12  # 3 protocols x clean, noisy, cut, wrapped
    failures = []
    for path in captures:
        expected = json.loads(path.with_suffix(".json").read_text())
        spec = {k: expected[k] for k in ("driver", "wavelengths_nm", "options") if k in expected}
        data = path.read_bytes()
        for chunk in (None, 1, 7, 64):
            got = decode(spec, data, chunk)
            if got["frames"] != expected["frames"] or got["counters"] != expected["counters"]:
                failures.append(f"{path.parent.name}/{path.name} (pieces of {chunk})")
        samples = [f for f in expected["frames"] if f["type"] == "sample"]
        if path.stem in ("clean", "wrapped"):
            assert len(samples) == N, path  # nothing lost from an intact stream
            assert expected["counters"]["lost_frames"] == 0, path
        if path.stem == "wrapped" and expected["driver"] == "nirsb":
            seqs = [f["seq"] for f in samples]
            assert seqs == [(65536 - N // 2 + i) % 65536 for i in range(N)]
        if path.stem == "wrapped" and samples[0]["t_dev"] is not None:
            t = [f["t_dev"] for f in samples]
            assert max(t) > 4294 and min(t) < 1  # the device clock wrapped inside
    assert not failures, "captures decoded differently: " + ", ".join(failures)
