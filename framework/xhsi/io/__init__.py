"""File formats: OGIP responses (RMF/ARF), FITS cubes with WCS and an energy axis, event lists.

Every reader raises :class:`xhsi.errors.DataError` naming the file for missing or malformed
input; every writer writes atomically (temporary file in the target folder, then rename).
"""
from .cubes import Cube, celestial_wcs, read_cube, write_cube
from .events import bin_events
from .ogip import AncillaryResponse, ResponseMatrix, read_arf, read_rmf, write_arf, write_rmf

__all__ = [
    "ResponseMatrix", "AncillaryResponse", "read_rmf", "read_arf", "write_rmf", "write_arf",
    "Cube", "read_cube", "write_cube", "celestial_wcs", "bin_events",
]
