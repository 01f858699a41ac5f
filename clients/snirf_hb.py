"""The hemoglobin SNIRF beside a recording: ``FILE_hb.snirf`` for ``FILE.snirf``.

``mne.io.read_raw_snirf`` reads only ``/nirs/data1``, which in a nirsd recording holds
the raw intensities.  The hemoglobin file is a copy of the recording whose ``data1`` is
the recording's ``data2``: ΔHbO/ΔHbR per channel (dataType 99999, dataTypeLabel
``HbO``/``HbR``, dataUnit ``uM``; MNE scales ``uM`` by 1e-6, so ``get_data()`` is in M),
with the same probe, metaDataTags, stims (and their epoch-summary columns) and aux
(``nirsd_seq``, ``nirsd_quality``).  Its metaDataTags add ``nirsdRawFile`` (the
recording's file name) and ``nirsdContent`` = ``hb``.
"""

from __future__ import annotations

from pathlib import Path

import h5py

from nirsd.core.errors import NirsdError


def hb_path(path: str | Path) -> Path:
    """``FILE_hb.snirf`` for ``FILE.snirf`` (any other name gets ``_hb.snirf`` added)."""
    p = Path(path)
    stem = p.name[: -len(".snirf")] if p.name.endswith(".snirf") else p.name
    return p.with_name(f"{stem}_hb.snirf")


def write_hb_file(src: str | Path, dst: str | Path | None = None) -> Path:
    """Write the hemoglobin SNIRF of recording ``src`` (default :func:`hb_path`).

    Written to a temporary name and renamed, so a reader never sees half a file.
    """
    dst = hb_path(src) if dst is None else Path(dst)
    tmp = dst.with_name(dst.name + ".part")
    try:
        with h5py.File(src, "r") as fi, h5py.File(tmp, "w") as fo:
            if "nirs/data2" not in fi:
                raise NirsdError(f"{src} has no hemoglobin block (/nirs/data2)")
            fi.copy("formatVersion", fo)
            nirs = fo.create_group("nirs")
            for key in fi["nirs"]:
                if key == "data2":
                    fi.copy("nirs/data2", nirs, name="data1")
                elif key != "data1":
                    fi.copy(f"nirs/{key}", nirs, name=key)
            tags = nirs["metaDataTags"]
            for key, value in (("nirsdRawFile", Path(src).name), ("nirsdContent", "hb")):
                if key in tags:
                    del tags[key]
                tags.create_dataset(key, data=value.encode("utf-8"))
        tmp.replace(dst)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise NirsdError(f"cannot write {dst}: {err}") from err
    return dst
