"""A SNIRF recording as a replayable probe: CW amplitudes, probe geometry and stims.

:func:`read_recording` reads the one continuous-wave amplitude block (dataType 1) of a
SNIRF file and everything the replay needs to present it as a NIRSB device: wavelengths
from the probe, the sample rate from the time vector, one channel per source-detector
pair (labels ``S1_D1`` from the probe's source/detector labels, distances from their
positions in the file's ``LengthUnit``, as MNE reads them), and the stims.

What cannot be replayed faithfully is refused with a :class:`ConfigError` naming what is
missing: several data blocks, data that are not CW amplitudes, no probe positions, an
irregular time vector (more than 1 % jitter, MNE's limit), a channel without every
wavelength.  Quirks of real exports are handled: a stim group repeated under a second
name is played once (the first name wins), overlapping stims are kept, a time vector
need not start at 0 (stim onsets are in the time vector's own time base, as the SNIRF
specification says).

Amplitudes are floats; NIRSB sends 32-bit integer counts.  :func:`gain_for` picks the
gain, a power of ten, that puts the largest absolute amplitude between 10⁸ and about
2.1 × 10⁹ counts; optical density, a ratio, does not depend on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nirsd.core.errors import ConfigError

#: the largest count a NIRSB DATA value holds (int32)
MAX_COUNT = 2**31 - 1
#: allowed deviation of sample times from a regular grid, fraction of a period (MNE's 1 %)
MAX_JITTER = 0.01
LENGTH_TO_MM = {"m": 1000.0, "cm": 10.0, "mm": 1.0}
TIME_TO_S = {"s": 1.0, "ms": 1e-3}
CW_AMPLITUDE = 1


@dataclass(frozen=True)
class Stim:
    """One stim row: label, onset and duration in seconds of the file's time base, and the
    samples where it starts and ends (``end_k`` is the first sample after it)."""

    label: str
    onset_s: float
    duration_s: float
    onset_k: int
    end_k: int


@dataclass(frozen=True)
class Recording:
    """A replayable CW recording.

    amplitude: float64 (n, n_channels, n_wavelengths) as in the file; time: (n,) s;
    rate_hz: samples per second (from the time vector); channels: one dict per channel
    (index, label, source, detector, distance_mm, source_pos_mm, detector_pos_mm);
    stims: in onset order; gain: counts per amplitude unit.
    """

    path: Path
    device_id: str
    wavelengths_nm: tuple[float, ...]
    rate_hz: float
    time: np.ndarray
    amplitude: np.ndarray
    channels: tuple[dict[str, Any], ...]
    stims: tuple[Stim, ...]
    length_unit: str
    gain: float
    duplicate_stims: tuple[str, ...] = ()

    @property
    def n_samples(self) -> int:
        return int(self.amplitude.shape[0])

    @property
    def n_channels(self) -> int:
        return int(self.amplitude.shape[1])

    @property
    def labels(self) -> tuple[str, ...]:
        """Stim labels in order of first appearance."""
        return tuple(dict.fromkeys(s.label for s in self.stims))

    def counts(self) -> np.ndarray:
        """The amplitudes as the replayed device sends them: int32, × ``gain``, rounded."""
        c = np.rint(self.amplitude * self.gain)
        return np.clip(np.nan_to_num(c, nan=0.0), -MAX_COUNT - 1, MAX_COUNT).astype(np.int32)


def gain_for(amplitude: np.ndarray) -> float:
    """The power of ten that scales the largest |amplitude| into [10⁸, 2³¹ − 1] counts."""
    finite = np.abs(amplitude[np.isfinite(amplitude)])
    peak = float(finite.max()) if finite.size else 0.0
    if peak <= 0:
        return 1.0
    return 10.0 ** math.floor(math.log10(MAX_COUNT / peak))


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as err:
        raise ConfigError(
            "reading SNIRF files needs h5py: pip install 'nirsd[snirf]'", "--replay"
        ) from err
    return h5py


def _text(value: Any) -> str:
    arr = np.asarray(value)
    item = arr.reshape(-1)[0] if arr.size else b""
    return item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)


def read_recording(path: str | Path) -> Recording:
    """Read a SNIRF file for replay; ConfigError naming what is missing or unsupported."""
    h5py = _h5py()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"SNIRF file {path} not found", "--replay")
    try:
        fh = h5py.File(path, "r")
    except OSError as err:
        raise ConfigError(f"{path} is not an HDF5/SNIRF file: {err}", "--replay") from None
    with fh:
        try:
            return _read(fh, path)
        except (KeyError, ValueError, TypeError, IndexError) as err:
            raise ConfigError(f"{path}: malformed SNIRF ({err})", "--replay") from None


def _refused(path: Path, what: str) -> ConfigError:
    """The error for what a replay cannot play, named with the file (``--replay``)."""
    return ConfigError(f"{path.name}: {what}", "--replay")


def _read(fh: Any, path: Path) -> Recording:
    nirs = _one_nirs_group(fh, path)
    block, data = _one_data_block(nirs, path)
    meta = nirs["metaDataTags"] if "metaDataTags" in nirs else {}
    probe, wavelengths = _probe_wavelengths(nirs, path)
    columns = _measurements(data, path, block)
    amp = _amplitudes(data, block, len(columns), path)
    time_s, rate = _time(data, meta, amp.shape[0], path)
    unit = _length_unit(meta, path)
    channels, order = _channels(probe, columns, wavelengths.size, LENGTH_TO_MM[unit], path)
    amplitude = amp[:, order].reshape(amp.shape[0], len(channels), wavelengths.size)
    stims, dupes = _stims(nirs, float(time_s[0]), rate, amp.shape[0])
    return Recording(
        path=path,
        device_id=path.stem[:64],
        wavelengths_nm=tuple(float(w) for w in wavelengths),
        rate_hz=rate,
        time=time_s,
        amplitude=amplitude,
        channels=channels,
        stims=stims,
        length_unit=unit,
        gain=gain_for(amplitude),
        duplicate_stims=dupes,
    )


def _one_nirs_group(fh: Any, path: Path) -> Any:
    """The file's one ``/nirs`` group (a replay plays one recording)."""
    nirs_groups = sorted(k for k in fh if k.startswith("nirs"))
    if not nirs_groups:
        raise _refused(path, "no /nirs group")
    if len(nirs_groups) > 1:
        raise _refused(
            path,
            f"{len(nirs_groups)} /nirs groups ({', '.join(nirs_groups)}); "
            "replay plays one recording",
        )
    return fh[nirs_groups[0]]


def _one_data_block(nirs: Any, path: Path) -> tuple[str, Any]:
    """(name, group) of the recording's one data block."""
    blocks = sorted(k for k in nirs if k.startswith("data"))
    if len(blocks) != 1:
        raise _refused(
            path,
            f"{len(blocks)} data blocks ({', '.join(blocks) or 'none'}); "
            "replay plays exactly one CW amplitude block",
        )
    return blocks[0], nirs[blocks[0]]


def _probe_wavelengths(nirs: Any, path: Path) -> tuple[Any, np.ndarray]:
    """The probe group and its wavelengths (at least two)."""
    probe = nirs["probe"] if "probe" in nirs else None
    if probe is None:
        raise _refused(path, "no /nirs/probe")
    wavelengths = (
        np.asarray(probe["wavelengths"][()], np.float64).reshape(-1)
        if ("wavelengths" in probe)
        else np.zeros(0)
    )
    if wavelengths.size < 2:
        raise _refused(path, f"probe/wavelengths lists {wavelengths.size} wavelengths (need 2+)")
    return probe, wavelengths


def _amplitudes(data: Any, block: str, n_columns: int, path: Path) -> np.ndarray:
    """``dataTimeSeries`` as float64 (samples ≥ 2, one column per measurement)."""
    amp = np.asarray(data["dataTimeSeries"][()], np.float64)
    if amp.ndim != 2 or amp.shape[0] < 2 or amp.shape[1] != n_columns:
        raise _refused(
            path,
            f"{block}/dataTimeSeries is {amp.shape}, expected "
            f"(samples ≥ 2, {n_columns} measurements)",
        )
    return amp


def _length_unit(meta: Any, path: Path) -> str:
    """``metaDataTags/LengthUnit``, one of LENGTH_TO_MM (the probe positions' unit)."""
    unit = _text(meta["LengthUnit"][()]) if "LengthUnit" in meta else ""
    if unit not in LENGTH_TO_MM:
        raise _refused(
            path,
            f"metaDataTags/LengthUnit is {unit or 'missing'!r} "
            f"(supported: {', '.join(LENGTH_TO_MM)})",
        )
    return unit


def _measurements(data: Any, path: Path, block: str) -> list[tuple[int, int, int]]:
    """(source, detector, wavelength) indices (1-based) of each dataTimeSeries column."""
    names = sorted(
        (k for k in data if k.startswith("measurementList") and k[15:].isdigit()),
        key=lambda k: int(k[15:]),
    )
    if not names:
        raise _refused(path, f"{block} has no measurementList")
    out = []
    for name in names:
        ml = data[name]
        dtype = int(np.asarray(ml["dataType"][()]).reshape(-1)[0])
        if dtype != CW_AMPLITUDE:
            label = _text(ml["dataTypeLabel"][()]) if "dataTypeLabel" in ml else ""
            raise _refused(
                path,
                f"{block}/{name} has dataType {dtype}"
                f"{' (' + label + ')' if label else ''}, not CW amplitude (1): "
                "replay plays raw continuous-wave intensities only",
            )
        out.append(
            tuple(
                int(np.asarray(ml[k][()]).reshape(-1)[0])
                for k in ("sourceIndex", "detectorIndex", "wavelengthIndex")
            )
        )
    return out  # type: ignore[return-value]


def _time(data: Any, meta: Any, n: int, path: Path) -> tuple[np.ndarray, float]:
    t = np.asarray(data["time"][()], np.float64).reshape(-1)
    unit = _text(meta["TimeUnit"][()]) if "TimeUnit" in meta else "s"
    if unit not in TIME_TO_S:
        raise _refused(path, f"metaDataTags/TimeUnit {unit!r} is not s or ms")
    t = t * TIME_TO_S[unit]
    if t.size == 2 and n != 2:  # the SNIRF short form: [start, period]
        t = t[0] + t[1] * np.arange(n)
    if t.size != n:
        raise _refused(path, f"time has {t.size} values for {n} samples")
    steps = np.diff(t)
    if not np.all(np.isfinite(t)) or np.any(steps <= 0):
        raise _refused(path, "time vector is not strictly increasing")
    rate = (n - 1) / (t[-1] - t[0])
    jitter = float(np.max(np.abs(t - (t[0] + np.arange(n) / rate)))) * rate
    if jitter > MAX_JITTER:
        raise _refused(
            path,
            f"irregular time vector: samples deviate up to {jitter:.1%} of a "
            f"period from a regular {rate:.4g} Hz grid (limit {MAX_JITTER:.0%})",
        )
    return t, float(rate)


def _positions(probe: Any, kind: str, scale: float, path: Path) -> tuple[np.ndarray, list[str]]:
    for dim in ("3D", "2D"):
        key = f"{kind}Pos{dim}"
        if key in probe:
            pos = np.asarray(probe[key][()], np.float64)
            pos = pos.reshape(-1, 3 if dim == "3D" else 2) * scale
            break
    else:
        raise _refused(
            path, f"probe has no {kind}Pos3D or {kind}Pos2D: channel distances cannot be known"
        )
    key = f"{kind}Labels"
    prefix = "S" if kind == "source" else "D"
    labels = [_text(x) for x in np.asarray(probe[key][()]).reshape(-1)] if key in probe else []
    if len(labels) < len(pos):
        labels += [f"{prefix}{i + 1}" for i in range(len(labels), len(pos))]
    return pos, labels


def _channels(
    probe: Any, columns: list[tuple[int, int, int]], n_wl: int, scale: float, path: Path
) -> tuple[tuple[dict[str, Any], ...], list[int]]:
    """One channel per (source, detector) pair in order of appearance, and the column
    order that makes the amplitudes channel-major (channel, wavelength)."""
    src_pos, src_lab = _positions(probe, "source", scale, path)
    det_pos, det_lab = _positions(probe, "detector", scale, path)
    pairs = list(dict.fromkeys((s, d) for s, d, _ in columns))
    where = {c: i for i, c in enumerate(columns)}
    channels, order = [], []
    for i, (s, d) in enumerate(pairs):
        if not (1 <= s <= len(src_pos) and 1 <= d <= len(det_pos)):
            raise _refused(path, f"measurement S{s}-D{d} has no probe position")
        for w in range(1, n_wl + 1):
            if (s, d, w) not in where:
                raise _refused(
                    path,
                    f"channel {src_lab[s - 1]}_{det_lab[d - 1]} lacks "
                    f"wavelength {w} of probe/wavelengths",
                )
            order.append(where[(s, d, w)])
        sp, dp = src_pos[s - 1], det_pos[d - 1]
        dim = max(sp.size, dp.size)
        sp3, dp3 = (
            np.resize(np.append(sp, [0.0] * (dim - sp.size)), dim),
            np.resize(np.append(dp, [0.0] * (dim - dp.size)), dim),
        )
        distance = float(np.linalg.norm(sp3 - dp3))
        if not distance > 0:
            raise _refused(
                path,
                f"channel {src_lab[s - 1]}_{det_lab[d - 1]}: source and "
                "detector at the same position",
            )
        channels.append(
            {
                "index": i,
                "label": f"{src_lab[s - 1]}_{det_lab[d - 1]}",
                "source": s,
                "detector": d,
                "distance_mm": distance,
                "source_pos_mm": [float(x) for x in sp],
                "detector_pos_mm": [float(x) for x in dp],
            }
        )
    return tuple(channels), order


def _stims(nirs: Any, t0: float, rate: float, n: int) -> tuple[tuple[Stim, ...], tuple[str, ...]]:
    """Every stim row once, in onset order; also the names of duplicate groups skipped."""
    seen: dict[bytes, str] = {}
    dupes: list[str] = []
    out: list[Stim] = []
    names = sorted((k for k in nirs if k.startswith("stim")), key=lambda k: (len(k), k))
    for key in names:
        group = nirs[key]
        if "data" not in group:
            continue
        rows = np.atleast_2d(np.asarray(group["data"][()], np.float64))
        if rows.size == 0 or rows.shape[1] < 2:
            continue
        label = _text(group["name"][()]) if "name" in group else key
        fingerprint = np.round(rows[:, :2], 9).tobytes()
        if fingerprint in seen:  # the same stims exported under a second name
            dupes.append(label)
            continue
        seen[fingerprint] = label
        label = label or key
        for onset, duration in rows[:, :2]:
            if not (np.isfinite(onset) and np.isfinite(duration)):
                continue
            k_on = int(round((onset - t0) * rate))
            if k_on >= n:
                continue  # after the last sample: never happens in this recording
            k_on = max(0, k_on)
            k_end = min(n - 1, max(k_on, int(round((onset + max(duration, 0.0) - t0) * rate))))
            out.append(Stim(label, float(onset), float(duration), k_on, k_end))
    out.sort(key=lambda s: (s.onset_k, s.end_k))
    return tuple(out), tuple(dupes)
