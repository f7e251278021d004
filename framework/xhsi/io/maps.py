"""FITS files of unmixing results: ``maps.fits`` (one image HDU per parameter or amplitude
map, with the sky WCS and BUNIT) and ``components.fits`` (one cube HDU per component plus
the EBOUNDS table of the true-energy grid)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

from ._fits import write_atomic
from .cubes import celestial_wcs


def _extname(name: str) -> str:
    return name.upper().replace(".", "_")[:68]


def write_maps(path: str | Path, maps: dict[str, np.ndarray], units: dict[str, str], pixel_arcsec: float,
               errors: dict[str, np.ndarray] | None = None) -> Path:
    """One image HDU per map, named after it (``THERMAL_KT``), BUNIT from ``units``;
    ``errors`` (same keys) adds ``<NAME>_ERR`` HDUs of 1-σ uncertainties."""
    hdus: list = [fits.PrimaryHDU()]
    for name, image in maps.items():
        for suffix, data in (("", image), ("_ERR", (errors or {}).get(name))):
            if data is None:
                continue
            header = celestial_wcs(np.shape(data), pixel_arcsec).to_header()
            header["BUNIT"] = units.get(name, "")
            header["MAPNAME"] = (name + (" 1-sigma error" if suffix else ""))[:68]
            hdus.append(fits.ImageHDU(np.asarray(data, dtype=np.float64), header=header,
                                      name=_extname(name) + suffix))
    return write_atomic(fits.HDUList(hdus), path)


def write_components(path: str | Path, components: dict[str, np.ndarray], energy_edges_kev,
                     pixel_arcsec: float, bunit: str = "photon / (s cm2)") -> Path:
    """One cube HDU (n_e, ny, nx) per component, and an EBOUNDS table (keV)."""
    edges = np.asarray(energy_edges_kev, dtype=np.float64)
    hdus: list = [fits.PrimaryHDU()]
    for name, cube in components.items():
        header = celestial_wcs(np.shape(cube)[1:], pixel_arcsec).to_header()
        header["BUNIT"] = bunit
        hdus.append(fits.ImageHDU(np.asarray(cube), header=header, name=_extname(name)))
    hdus.append(fits.BinTableHDU.from_columns([
        fits.Column("CHANNEL", "J", array=np.arange(1, edges.size, dtype=np.int32)),
        fits.Column("E_MIN", "D", unit="keV", array=edges[:-1]),
        fits.Column("E_MAX", "D", unit="keV", array=edges[1:]),
    ], name="EBOUNDS"))
    return write_atomic(fits.HDUList(hdus), path)
