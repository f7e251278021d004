"""FITS files of maps and per-component cubes: ``maps.fits`` (one image HDU per parameter or
amplitude map, with the sky WCS and BUNIT; also the residual maps) and ``components.fits``
(one cube HDU per component, with the sky WCS and the spectral axis of
:func:`xhsi.io.cubes.spectral_axis`, plus the EBOUNDS table of the true-energy grid).

Every HDU carries ``DATE`` and ``CREATOR`` and the caller's ``header`` cards (``TELESCOP``,
``INSTRUME``, ``OBJECT``, ...); HISTORY and COMMENT lines go to the primary HDU only."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from ..errors import DataError
from ._cards import TEXT_CARDS, add_cards, bunit_card, creation_cards
from ._fits import write_atomic
from .cubes import ARBITRARY_POSITION, celestial_wcs, spectral_axis


def _extname(name: str) -> str:
    return name.upper().replace(".", "_")[:68]


def _sky(shape_yx, wcs: WCS | None, pixel_arcsec: float | None, path) -> tuple[WCS, bool]:
    """(celestial WCS of ``shape_yx``, whether its position is arbitrary)."""
    if wcs is not None:
        return (wcs if wcs.naxis == 2 else wcs.celestial), False
    if pixel_arcsec is None:
        raise DataError(f"{path}: give either `wcs` or `pixel_arcsec`.")
    return celestial_wcs(shape_yx, pixel_arcsec), True


def _headers(header: dict | None, arbitrary: bool) -> tuple[fits.Header, dict]:
    """(the primary header, the cards every extension repeats)."""
    cards = {**creation_cards(), **(header or {})}
    if arbitrary:
        cards["POSKNOWN"] = (False, "F: RA/Dec arbitrary, pixel scale right")
    primary = fits.Header()
    add_cards(primary, cards)
    if arbitrary:
        add_cards(primary, {"COMMENT": ARBITRARY_POSITION})
    return primary, {k: v for k, v in cards.items() if k.upper() not in TEXT_CARDS}


def write_maps(path: str | Path, maps: dict[str, np.ndarray], units: dict[str, str],
               pixel_arcsec: float | None = None, errors: dict[str, np.ndarray] | None = None, *,
               wcs: WCS | None = None, header: dict | None = None) -> Path:
    """One image HDU per map, named after it (``THERMAL_KT``), BUNIT from ``units`` (text
    astropy.units cannot parse, such as "solar" or "sigma", goes to the BUNIT comment of a
    dimensionless map); ``errors`` (same keys) adds ``<NAME>_ERR`` HDUs of 1-σ
    uncertainties. The sky grid is ``wcs`` (a celestial WCS of the maps' pixels) or, without
    one, pixels of ``pixel_arcsec`` at an arbitrary position (``POSKNOWN = F``); ``header``:
    cards for every HDU (see the module docstring)."""
    hdus: list = []
    extension_cards: dict = {}
    for name, image in maps.items():
        for suffix, data in (("", image), ("_ERR", (errors or {}).get(name))):
            if data is None:
                continue
            sky, arbitrary = _sky(np.shape(data), wcs, pixel_arcsec, path)
            if not hdus:
                primary, extension_cards = _headers(header, arbitrary)
                hdus.append(fits.PrimaryHDU(header=primary))
            hdr = sky.to_header()
            hdr["BUNIT"] = bunit_card(units.get(name, ""), "1-sigma error" if suffix else "")
            hdr["MAPNAME"] = (name + (" 1-sigma error" if suffix else ""))[:68]
            add_cards(hdr, extension_cards)
            hdus.append(fits.ImageHDU(np.asarray(data, dtype=np.float64), header=hdr, name=_extname(name) + suffix))
    if not hdus:
        hdus.append(fits.PrimaryHDU(header=_headers(header, False)[0]))
    return write_atomic(fits.HDUList(hdus), path)


def write_components(path: str | Path, components: dict[str, np.ndarray], energy_edges_kev,
                     pixel_arcsec: float | None = None, bunit: str = "photon / (s cm2)", *,
                     wcs: WCS | None = None, header: dict | None = None) -> Path:
    """One cube HDU (n_e, ny, nx) per component, with a celestial WCS (``wcs``, or
    ``pixel_arcsec`` at an arbitrary position) and the spectral axis of its energy bins, and
    an EBOUNDS table (keV); ``header``: cards for every HDU."""
    edges = np.asarray(energy_edges_kev, dtype=np.float64)
    spectral, tab = spectral_axis(edges[:-1], edges[1:])
    shapes = [np.shape(c)[1:] for c in components.values()]
    sky, arbitrary = _sky(shapes[0] if shapes else (1, 1), wcs, pixel_arcsec, path)
    primary, extension_cards = _headers(header, arbitrary)
    hdus: list = [fits.PrimaryHDU(header=primary)]
    for name, cube in components.items():
        hdr = sky.to_header()
        hdr["WCSAXES"] = 3
        add_cards(hdr, spectral)
        hdr["BUNIT"] = bunit_card(bunit, "per energy bin and pixel")
        add_cards(hdr, extension_cards)
        hdus.append(fits.ImageHDU(np.asarray(cube), header=hdr, name=_extname(name)))
    hdus.append(fits.BinTableHDU.from_columns([
        fits.Column("CHANNEL", "J", array=np.arange(1, edges.size, dtype=np.int32)),
        fits.Column("E_MIN", "D", unit="keV", array=edges[:-1]),
        fits.Column("E_MAX", "D", unit="keV", array=edges[1:]),
    ], name="EBOUNDS"))
    add_cards(hdus[-1].header, extension_cards)
    if tab is not None:
        hdus.append(tab)
    return write_atomic(fits.HDUList(hdus), path)
