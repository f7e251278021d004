"""Sky region files (DS9, CASA CRTF) read through the astropy ``regions`` package.

A region file selects events on the sky: ``xhsi bin --region`` keeps the events inside any
of its shapes, ``--exclude`` drops those inside any of its shapes (e.g. a point source).
Shapes must be in sky coordinates (DS9 ``fk5``/``icrs``/``galactic``, CRTF ``J2000``/``ICRS``):
image or physical pixel coordinates depend on which image the file was drawn on, so they are
refused with a message saying how to save the file in sky coordinates.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..errors import DataError

__all__ = ["read_sky_regions", "region_reference", "regions_bounding_box", "regions_contain"]

#: File-name endings → ``regions`` format names; anything else is tried as DS9, then CRTF.
_FORMATS = {".reg": "ds9", ".crtf": "crtf"}


def read_sky_regions(path: str | Path, option: str = "region file") -> list:
    """The sky regions of the DS9 or CRTF file ``path`` (a list of ``regions.SkyRegion``).

    DataError naming the file when it is missing, in another format, empty, or holds shapes
    in pixel coordinates. ``option`` is how the caller names the file in messages."""
    from regions import Regions, SkyRegion

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such region file ({option}).")
    fmt = _FORMATS.get(path.suffix.lower())
    errors = []
    found = None
    for candidate in ([fmt] if fmt else ["ds9", "crtf"]):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # unsupported shapes: reported below as an empty file
                found = list(Regions.read(str(path), format=candidate))
        except Exception as exc:  # noqa: BLE001 -- the parsers raise their own error types on any bad line
            errors.append(f"{candidate}: {exc}")
            found = None
            continue
        if found:
            break
    if not found:
        detail = f" ({'; '.join(errors)})" if errors else ""
        raise DataError(f"{path}: {option} is not a region file xhsi can read: no DS9 (.reg) or CASA CRTF (.crtf) "
                        f"shape in sky coordinates was found{detail}. Save it from DS9 as 'ds9' format in 'fk5' "
                        "coordinates.")
    pixel = [type(r).__name__ for r in found if not isinstance(r, SkyRegion)]
    if pixel:
        raise DataError(f"{path}: {option} has shapes in image/physical pixel coordinates ({', '.join(pixel)}), which "
                        "depend on the image they were drawn on. Save the regions in sky coordinates (DS9: Region > "
                        "Save, coordinate system fk5).")
    return found


def regions_contain(sky_regions: list, wcs, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Boolean mask: which of the points (0-based pixels ``px``, ``py`` of ``wcs``) lie inside
    any of ``sky_regions``. The shapes are projected onto ``wcs`` (a tangent plane centred on
    the field, where a few-arcminute shape is undistorted)."""
    from regions import PixCoord

    points = PixCoord(np.asarray(px, dtype=np.float64), np.asarray(py, dtype=np.float64))
    inside = np.zeros(np.shape(px), dtype=bool)
    for region in sky_regions:
        inside |= np.asarray(region.to_pixel(wcs).contains(points), dtype=bool)
    return inside


def regions_bounding_box(sky_regions: list, wcs) -> tuple[float, float, float, float]:
    """(x_min, x_max, y_min, y_max) in 0-based pixels of ``wcs`` enclosing every shape."""
    boxes = [region.to_pixel(wcs).bounding_box for region in sky_regions]
    return (min(b.ixmin for b in boxes) - 0.5, max(b.ixmax for b in boxes) - 0.5,
            min(b.iymin for b in boxes) - 0.5, max(b.iymax for b in boxes) - 0.5)


def region_reference(sky_regions: list) -> tuple[float, float]:
    """(RA, Dec) degrees of the first shape's centre (or first vertex): a tangent point near
    the shapes, from which their bounding box is measured."""
    first = sky_regions[0]
    coord = getattr(first, "center", None)
    if coord is None:
        coord = first.vertices[0]
    icrs = coord.icrs
    return float(icrs.ra.deg), float(icrs.dec.deg)
