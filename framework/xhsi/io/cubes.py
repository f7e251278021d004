"""FITS cubes of counts or sky intensity on an (energy, y, x) grid.

Layout (readable by astropy, ds9 and any FITS WCS reader):

- primary HDU: the data, NumPy shape ``(n_chan, ny, nx)`` (FITS ``NAXIS1 = nx``,
  ``NAXIS2 = ny``, ``NAXIS3 = n_chan``); a celestial WCS on axes 1–2 (``RA---TAN`` /
  ``DEC--TAN``, ``CDELT`` in degrees) and a plain channel-index axis 3 (``CTYPE3 =
  'CHANNEL'``, the energies themselves being in the table below); header keys ``EXPOSURE``
  (s), ``INSTRUME`` (the xhsi instrument name), ``BUNIT``;
- ``EBOUNDS`` table: ``CHANNEL``, ``E_MIN``, ``E_MAX`` (keV), one row per plane, as in an
  OGIP RMF. For a counts cube these are detector channels; for a sky cube the true-energy bins.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from ..backend import to_numpy
from ..errors import DataError, ShapeError
from ._fits import find_hdu, open_fits, write_atomic

__all__ = ["Cube", "read_cube", "read_cube_grid", "write_cube", "celestial_wcs"]


@dataclass
class Cube:
    """A cube read from FITS. ``data`` is a numpy array (n_chan, ny, nx); ``e_min``/``e_max``
    the energy bounds of each plane in keV; ``wcs`` the 2-D celestial WCS."""

    data: np.ndarray
    e_min: np.ndarray
    e_max: np.ndarray
    wcs: WCS
    channels: np.ndarray
    exposure_s: float | None = None
    instrument: str | None = None
    bunit: str | None = None
    header: Any = None
    path: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def energy_edges_kev(self) -> np.ndarray:
        """Plane edges in keV (n_chan + 1); DataError when the planes are not contiguous."""
        return _contiguous_edges(self.e_min, self.e_max, self.path)

    @property
    def energies_kev(self) -> np.ndarray:
        return 0.5 * (self.e_min + self.e_max)

    @property
    def pixel_arcsec(self) -> float:
        """Pixel size in arcsec (geometric mean of the two axes)."""
        scales = proj_plane_pixel_scales(self.wcs) * 3600.0
        return float(np.sqrt(scales[0] * scales[1]))


def celestial_wcs(shape_yx, pixel_arcsec: float, center_deg=(0.0, 0.0)) -> WCS:
    """A TAN WCS of ``shape_yx`` = (ny, nx) pixels of ``pixel_arcsec`` arcsec centred on
    ``center_deg`` = (RA, Dec) in degrees (RA increasing to the left, as on the sky)."""
    if not pixel_arcsec > 0:
        raise DataError(f"pixel_arcsec must be > 0 arcsec, got {pixel_arcsec}.")
    ny, nx = (int(s) for s in shape_yx)
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0]
    w.wcs.crval = [float(center_deg[0]), float(center_deg[1])]
    w.wcs.cdelt = [-pixel_arcsec / 3600.0, pixel_arcsec / 3600.0]
    return w


def _bounds(energy_edges_kev, n: int) -> tuple[np.ndarray, np.ndarray]:
    edges = np.asarray(to_numpy(energy_edges_kev), dtype=np.float64)
    if edges.ndim == 2 and edges.shape == (n, 2):
        e_min, e_max = edges[:, 0], edges[:, 1]
    elif edges.ndim == 1 and edges.size == n + 1:
        e_min, e_max = edges[:-1], edges[1:]
    else:
        raise ShapeError(f"energy_edges_kev must hold n + 1 = {n + 1} edges (or an (n, 2) array of bounds) "
                         f"for a cube of {n} planes; got shape {edges.shape}.")
    if np.any(~np.isfinite(edges)) or np.any(e_max <= e_min) or np.any(e_min < 0):
        raise DataError("energy_edges_kev must be finite, >= 0 keV and increasing within each bin.")
    return e_min, e_max


def write_cube(path: str | Path, data, energy_edges_kev, *, pixel_arcsec: float | None = None,
               wcs: WCS | None = None, center_deg=(0.0, 0.0), exposure_s: float | None = None,
               instrument: str | None = None, bunit: str = "count", channels=None,
               header: dict | None = None, overwrite: bool = True) -> Path:
    """Write a cube ``data`` (n_chan, ny, nx) — any backend array — to ``path`` atomically.

    ``energy_edges_kev``: n_chan + 1 edges in keV (or an (n_chan, 2) array of bounds).
    Give either ``wcs`` (a 2-D celestial astropy WCS) or ``pixel_arcsec`` (then a TAN WCS
    centred on ``center_deg`` = (RA, Dec) in degrees). ``exposure_s`` (s) and ``instrument``
    go to ``EXPOSURE`` and ``INSTRUME``; ``bunit`` to ``BUNIT`` ("count" for counts,
    e.g. "photon / (s cm2)" for a sky cube); ``channels`` are the channel numbers (1..n by
    default); ``header`` holds extra primary-header cards (keys of at most 8 characters)."""
    array = np.asarray(to_numpy(data))
    if array.ndim != 3:
        raise ShapeError(f"{path}: a cube must be 3-D (n_chan, ny, nx); got shape {array.shape}.")
    n, ny, nx = array.shape
    e_min, e_max = _bounds(energy_edges_kev, n)
    if wcs is None:
        if pixel_arcsec is None:
            raise DataError(f"{path}: give write_cube either `wcs` or `pixel_arcsec`.")
        wcs = celestial_wcs((ny, nx), pixel_arcsec, center_deg)
    if wcs.naxis != 2:
        wcs = wcs.celestial
    if array.dtype.kind not in "fiu":
        raise DataError(f"{path}: cube data must be numeric, got {array.dtype}.")
    hdr = wcs.to_header()
    primary = fits.PrimaryHDU(data=array, header=hdr)
    h = primary.header
    h["WCSAXES"] = 3
    h["CTYPE3"] = ("CHANNEL", "plane index; energies in the EBOUNDS table")
    h["CRPIX3"], h["CRVAL3"], h["CDELT3"] = 1.0, 1.0, 1.0
    h["BUNIT"] = bunit
    if exposure_s is not None:
        if not exposure_s > 0:
            raise DataError(f"{path}: exposure_s must be > 0 s, got {exposure_s}.")
        h["EXPOSURE"] = (float(exposure_s), "[s] exposure time")
    if instrument:
        h["INSTRUME"] = (str(instrument), "xhsi instrument name")
    h["HDUCLAS1"] = "XHSI_CUBE"
    for key, value in (header or {}).items():
        if value is not None:
            h[key] = value
    if channels is None:
        channels = np.arange(1, n + 1)
    channels = np.asarray(channels, dtype=np.int64)
    if channels.shape != (n,):
        raise ShapeError(f"{path}: channels must hold {n} numbers, got shape {channels.shape}.")
    eb = fits.BinTableHDU.from_columns([
        fits.Column("CHANNEL", "J", array=channels.astype(np.int32)),
        fits.Column("E_MIN", "D", unit="keV", array=e_min),
        fits.Column("E_MAX", "D", unit="keV", array=e_max),
    ], name="EBOUNDS")
    eb.header["TLMIN1"] = int(channels.min()) if n else 1
    eb.header["TLMAX1"] = int(channels.max()) if n else 1
    return write_atomic(fits.HDUList([primary, eb]), path, overwrite)


def read_cube(path: str | Path) -> Cube:
    """Read a cube written by :func:`write_cube` (or any FITS file with the same layout).

    DataError for a missing file, a primary HDU that is not 3-D, a missing ``EBOUNDS`` table
    or one whose row count differs from the number of planes."""
    path = Path(path)
    with open_fits(path, "cube") as hdul:
        primary = hdul[0]
        if primary.data is None or primary.data.ndim != 3:
            shape = None if primary.data is None else primary.data.shape
            raise DataError(f"{path}: the primary HDU must be a 3-D cube (n_chan, ny, nx); got shape {shape}.")
        # FITS is big-endian; device arrays and fast kernels want native byte order.
        data = np.asarray(primary.data, dtype=primary.data.dtype.newbyteorder("="))
        header = primary.header.copy()
        e_min, e_max, channels = _read_ebounds(hdul, path)
    if e_min.size != data.shape[0]:
        raise DataError(f"{path}: EBOUNDS has {e_min.size} rows but the cube has {data.shape[0]} planes.")
    try:
        wcs = WCS(header, naxis=[1, 2])
    except Exception as exc:  # astropy raises several types for broken WCS keywords
        raise DataError(f"{path}: cannot read the celestial WCS of axes 1-2 ({exc}).") from None
    exposure = header.get("EXPOSURE")
    return Cube(data=data, e_min=e_min, e_max=e_max, wcs=wcs, channels=channels,
                exposure_s=float(exposure) if exposure is not None else None,
                instrument=header.get("INSTRUME"), bunit=header.get("BUNIT"), header=header, path=path)


def read_cube_grid(path: str | Path) -> tuple[tuple[int, int, int], np.ndarray]:
    """The grid of a cube file without reading its data: (shape (n_chan, ny, nx) from the
    primary header, plane edges in keV (n_chan + 1) from its ``EBOUNDS`` table). The same
    DataErrors as :func:`read_cube` (and non-contiguous planes): what a run's config check
    reads of its counts, background and truth files."""
    path = Path(path)
    with open_fits(path, "cube") as hdul:
        header = hdul[0].header
        if header.get("NAXIS") != 3:
            raise DataError(f"{path}: the primary HDU must be a 3-D cube (n_chan, ny, nx); got "
                            f"{header.get('NAXIS', 0)} axes.")
        shape = (int(header["NAXIS3"]), int(header["NAXIS2"]), int(header["NAXIS1"]))
        e_min, e_max, _ = _read_ebounds(hdul, path)
    if e_min.size != shape[0]:
        raise DataError(f"{path}: EBOUNDS has {e_min.size} rows but the cube has {shape[0]} planes.")
    return shape, _contiguous_edges(e_min, e_max, path)


def _contiguous_edges(e_min: np.ndarray, e_max: np.ndarray, path) -> np.ndarray:
    if e_min.size > 1 and not np.allclose(e_min[1:], e_max[:-1], rtol=1e-6, atol=1e-9):
        raise DataError(f"{path}: the EBOUNDS bins are not contiguous, so they have no single edge list.")
    return np.append(e_min, e_max[-1])


def _read_ebounds(hdul, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(E_MIN keV, E_MAX keV, channel numbers) of a cube's EBOUNDS table."""
    try:
        eb = find_hdu(hdul, ("EBOUNDS",), path, "cube (energy axis table)")
    except DataError:
        raise DataError(f"{path}: no EBOUNDS table, so the energy of each plane is unknown; write the cube "
                        "with xhsi.io.write_cube or add an EBOUNDS table (CHANNEL, E_MIN, E_MAX in keV).") from None
    names = [c.upper() for c in eb.columns.names]
    for col in ("E_MIN", "E_MAX"):
        if col not in names:
            raise DataError(f"{path}: EBOUNDS has no {col} column.")
    e_min = np.asarray(eb.data["E_MIN"], dtype=np.float64).reshape(-1)
    e_max = np.asarray(eb.data["E_MAX"], dtype=np.float64).reshape(-1)
    units = {c.name.upper(): (c.unit or "").strip().lower() for c in eb.columns}
    channels = (np.asarray(eb.data["CHANNEL"], dtype=np.int64).reshape(-1) if "CHANNEL" in names
                else np.arange(1, e_min.size + 1))
    for col, arr in (("E_MIN", e_min), ("E_MAX", e_max)):
        if units.get(col) == "ev":
            arr /= 1000.0
    return e_min, e_max, channels
