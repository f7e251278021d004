"""The sky grid of a binned event list: a tangent-plane (TAN) WCS centred where asked.

Each event's RA/Dec (from the X/Y column WCS, or the RA/DEC columns) is projected onto a new
TAN WCS centred on ``center`` (RA, Dec degrees) with square pixels of ``pixel`` arcsec, and the
event goes to the nearest pixel centre: the cube's WCS is that projection, whatever the event
file's own tangent point. The grid is ``size`` arcsec across (one number: square; two: width,
height), or the bounding box of the include regions; its centre is ``center``, else the
centre of that bounding box. Include / exclude regions (:mod:`xhsi.io.regions`) keep or drop
the events inside their shapes.
"""
from __future__ import annotations

import math

import numpy as np
from astropy.wcs import WCS

from ..errors import DataError
from .regions import read_sky_regions, region_reference, regions_bounding_box, regions_contain

__all__ = ["sky_grid", "tan_wcs"]


def tan_wcs(center_deg, pixel_arcsec: float, nx: int, ny: int) -> WCS:
    """A TAN WCS of ``nx`` x ``ny`` square pixels of ``pixel_arcsec``, centred on ``center_deg``
    (RA, Dec): the middle of the grid (FITS pixel (n + 1) / 2) is the tangent point."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0]
    w.wcs.crval = [float(center_deg[0]) % 360.0, float(center_deg[1])]
    w.wcs.cdelt = [-pixel_arcsec / 3600.0, pixel_arcsec / 3600.0]
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.radesys = "ICRS"
    return w


def _field(ra, dec) -> str:
    return (f"RA {np.min(ra):.5f} to {np.max(ra):.5f}, Dec {np.min(dec):.5f} to {np.max(dec):.5f} deg")


def sky_grid(ra, dec, path, opt, *, pixel_arcsec: float, center_deg=None, size_arcsec=None, region=None,
             exclude=None):
    """(wcs, nx, ny, ix, iy, header cards): the grid, and each event's 0-based pixel (-1 for
    an event outside it or dropped by a region). DataError for a region file that cannot be
    read, a region or grid outside the events' field, or a bad size."""
    if not (pixel_arcsec > 0 and math.isfinite(pixel_arcsec)):
        raise DataError(f"{opt('pixel_arcsec')} must be a positive number of arcsec, got {pixel_arcsec!r}.")
    include = read_sky_regions(region, opt("region")) if region is not None else None
    excluded = read_sky_regions(exclude, opt("exclude")) if exclude is not None else None
    center = None if center_deg is None else (float(center_deg[0]), float(center_deg[1]))
    if center is not None and not (-90.0 <= center[1] <= 90.0):
        raise DataError(f"{opt('center_deg')} Dec must lie in -90..90 degrees, got {center[1]!r}.")
    if size_arcsec is not None:
        size = tuple(float(s) for s in np.atleast_1d(size_arcsec))
        size = size * 2 if len(size) == 1 else size
        if len(size) != 2 or not all(s > 0 and math.isfinite(s) for s in size):
            raise DataError(f"{opt('size_arcsec')} must be one or two positive sizes in arcsec, got {size_arcsec!r}.")
    else:
        size = None
    if include is not None and (center is None or size is None):
        # Measure the regions on a fine tangent plane near them: 1/10 of the output pixel.
        fine = pixel_arcsec / 10.0
        probe = tan_wcs(region_reference(include), fine, 1, 1)
        x0, x1, y0, y1 = regions_bounding_box(include, probe)
        if center is None:
            c = probe.wcs_pix2world([[(x0 + x1) / 2.0, (y0 + y1) / 2.0]], 0)[0]
            center = (float(c[0]), float(c[1]))
        if size is None:
            size = ((x1 - x0) * fine, (y1 - y0) * fine)
    if size is None:
        raise DataError(f"{path}: a sky grid needs its size: pass {opt.either('size_arcsec', 'region')}.")
    if center is None:
        center = (float(np.median(ra)), float(np.median(dec)))
    nx, ny = (max(1, int(round(s / pixel_arcsec))) for s in size)
    wcs = tan_wcs(center, pixel_arcsec, nx, ny)
    px, py = wcs.wcs_world2pix(ra, dec, 0)
    ix = np.floor(px + 0.5).astype(np.int64)
    iy = np.floor(py + 0.5).astype(np.int64)
    keep = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    if not keep.any():
        raise DataError(f"{path}: the sky grid ({nx} x {ny} pixels of {pixel_arcsec:g} arcsec centred on RA "
                        f"{center[0]:.5f}, Dec {center[1]:.5f} deg) holds no event: it lies outside the event list's "
                        f"field ({_field(ra, dec)}). Check {opt.either('center_deg', 'region')}.")
    cards = {"XHSIGRID": f"{center[0]:.6f} {center[1]:.6f} {nx}x{ny} {pixel_arcsec:g}arcsec"[:68]}
    for regions, name, key, drop in ((include, region, "XHSIREG", False), (excluded, exclude, "XHSIEXCL", True)):
        if regions is None:
            continue
        inside = regions_contain(regions, wcs, px, py)
        if not inside.any():
            raise DataError(f"{name}: the {opt('exclude' if drop else 'region')} shapes hold no event of {path}: they "
                            f"lie outside the event list's field ({_field(ra, dec)}).")
        keep &= ~inside if drop else inside
        cards[key] = str(getattr(name, "name", name))[:68]
    ix[~keep] = -1
    iy[~keep] = -1
    return wcs, nx, ny, ix, iy, cards
