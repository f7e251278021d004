"""Truth parameter maps as FITS (``[metrics] truth_maps``, ``truth_maps.fits``): one image
HDU per map, in the format of a run's ``maps.fits`` (:func:`xhsi.io.maps.write_maps`), so
that one run's ``maps.fits`` reads back as another's truth.

A map is named ``component.parameter`` (``thermal.kT``, ``thermal.amplitude``): by its
``MAPNAME`` card when it has one (``write_maps`` writes it), else by its ``EXTNAME``, read
case-insensitively with ``_`` standing for the ``.`` (``THERMAL_KT``); ``BUNIT`` is its
unit (a unit astropy cannot parse is the ``[text]`` of an empty BUNIT's comment, as
``write_maps`` writes it). The 1-σ error HDUs of ``maps.fits`` (``..._ERR``) are skipped."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ._fits import open_fits

#: What ``write_maps`` appends to the MAPNAME of an error HDU.
ERROR_SUFFIX = " 1-sigma error"


@dataclass
class MapHDU:
    """One map read from a FITS file: its name as written, the HDU's EXTNAME, the image
    (float64) and its unit as text ("" when none)."""

    name: str
    extname: str
    data: np.ndarray
    unit: str


def map_key(name: str) -> str:
    """The form a map name and an EXTNAME share (``thermal.kT`` and ``THERMAL_KT`` alike)."""
    return str(name).strip().upper().replace(".", "_")


def _unit(header) -> str:
    unit = str(header.get("BUNIT", "") or "").strip()
    if unit:
        return unit
    comment = str(header.comments["BUNIT"]) if "BUNIT" in header else ""
    return comment[1:comment.index("]")].strip() if comment.startswith("[") and "]" in comment else ""


def read_map_hdus(path: str | Path) -> list[MapHDU]:
    """Every image HDU of ``path`` that holds data, but the 1-σ error HDUs of ``maps.fits``
    (MAPNAME ending in " 1-sigma error", or no MAPNAME and an EXTNAME ending in ``_ERR``).
    A missing or unreadable file is a DataError naming it."""
    from astropy.io import fits

    maps = []
    with open_fits(path, "truth maps") as hdul:
        for index, hdu in enumerate(hdul):
            if not isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU)) or hdu.data is None:
                continue
            header = hdu.header
            extname = str(header.get("EXTNAME", "") or ("PRIMARY" if index == 0 else f"HDU {index}"))
            mapname = str(header.get("MAPNAME", "") or "").strip()
            if mapname.endswith(ERROR_SUFFIX) or (not mapname and extname.upper().endswith("_ERR")):
                continue
            try:
                data = np.asarray(hdu.data, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise DataError(f"{path}: HDU `{extname}` is not a numeric image ({exc}).") from None
            maps.append(MapHDU(mapname or extname, extname, data, _unit(header)))
    return maps

