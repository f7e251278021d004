"""FITS cubes of counts or sky intensity on an (energy, y, x) grid.

Layout (readable by astropy, ds9 and any FITS WCS reader):

- primary HDU: the data, NumPy shape ``(n_chan, ny, nx)`` (FITS ``NAXIS1 = nx``,
  ``NAXIS2 = ny``, ``NAXIS3 = n_chan``); a celestial WCS on axes 1–2 (``RA---TAN`` /
  ``DEC--TAN``, ``CDELT`` in degrees, ICRS) and a spectral WCS on axis 3 (see
  :func:`spectral_axis`): ``CTYPE3 = 'ENER'``, ``CUNIT3 = 'keV'`` with ``CRVAL3`` /
  ``CDELT3`` / ``CRPIX3`` at the plane centres when the planes are equally wide (every model
  grid), else ``CTYPE3 = 'ENER-TAB'``, the plane centres tabulated in a ``WCS-TAB``
  extension (FITS WCS paper III, Greisen et al. 2006, §6; astropy reads it with
  ``WCS(header, fobj=hdul)``). Header keys ``BUNIT`` (astropy.units-parsable), ``DATE``,
  ``CREATOR``, ``EXPOSURE`` (s), ``INSTRUME``, ``XHSIINST`` (the xhsi instrument name), and
  whatever the caller adds (``TELESCOP``, ``OBJECT``, ...). A cube whose sky position is
  unknown (a simulation with no ``[model] center_deg``) is put at RA = Dec = 0 with
  ``POSKNOWN = F`` and a COMMENT saying so;
- ``EBOUNDS`` table: ``CHANNEL``, ``E_MIN``, ``E_MAX`` (keV), one row per plane, as in an
  OGIP RMF: the exact plane bounds. For a counts cube these are detector channels; for a
  sky cube the true-energy bins.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from ..backend import to_numpy
from ..errors import DataError, ShapeError
from ._cards import add_cards, bunit_card, creation_cards
from ._fits import check_stream_complete, find_hdu, open_fits, write_atomic

__all__ = ["Cube", "CubeInfo", "read_cube", "read_cube_grid", "read_cube_info", "write_cube", "celestial_wcs",
           "scale_wcs", "spectral_axis", "header_celestial_wcs"]

#: Relative spread of plane widths below which an energy axis is written as linear.
_LINEAR_RTOL = 1e-6
#: WCS keywords of axis 3 (and of its coupling to axes 1–2).
_AXIS3_KEY = re.compile(r"^(CTYPE|CUNIT|CRPIX|CRVAL|CDELT|CROTA|CNAME|CRDER|CSYER)3[A-Z]?$"
                        r"|^P[SV]3_\d+[A-Z]?$|^(PC|CD)(3_\d|\d_3)[A-Z]?$")


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

    @property
    def position_known(self) -> bool:
        """False when the file says its RA/Dec are arbitrary (``POSKNOWN = F``)."""
        return self.header is None or bool(self.header.get("POSKNOWN", True))


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


def scale_wcs(wcs: WCS, factor: float) -> WCS:
    """The celestial WCS of the same sky on pixels ``factor`` times as large along each axis,
    the two pixel grids sharing their lower-left corner: ``factor = r`` gives the detector
    pixels of a model grid rebinned r × r (``spatial_rebin``), ``1 / r`` the model pixels of
    a detector grid. FITS pixel p of the new grid is centred on old pixel
    ``(p − 0.5)·factor + 0.5``, so ``CRPIX' = (CRPIX − 0.5) / factor + 0.5`` and the scale
    (``CDELT``, or ``CD``) is multiplied by ``factor``."""
    if not factor > 0:
        raise DataError(f"scale_wcs: factor must be > 0, got {factor}.")
    out = (wcs if wcs.naxis == 2 else wcs.celestial).deepcopy()
    out.wcs.crpix = [(c - 0.5) / factor + 0.5 for c in out.wcs.crpix]
    if out.wcs.has_cd():
        out.wcs.cd = np.asarray(out.wcs.cd) * factor
    else:
        out.wcs.cdelt = [c * factor for c in out.wcs.cdelt]
    out.wcs.set()
    return out


def header_celestial_wcs(header, path=None) -> WCS | None:
    """The celestial WCS of a cube header's axes 1–2, or None when the header has none (no
    celestial ``CTYPE1/2``) or says its position is arbitrary (``POSKNOWN = F``)."""
    if not bool(header.get("POSKNOWN", True)):
        return None
    ctypes = (str(header.get("CTYPE1", "")).upper(), str(header.get("CTYPE2", "")).upper())
    if not (ctypes[0][:4] in ("RA--", "GLON", "ELON") and ctypes[1][:4] in ("DEC-", "GLAT", "ELAT")):
        return None
    try:
        return _celestial(header)
    except Exception as exc:  # astropy raises several types for broken WCS keywords
        raise DataError(f"{path or 'header'}: cannot read the celestial WCS of axes 1-2 ({exc}).") from None


def _celestial(header) -> WCS:
    """The 2-D WCS of axes 1–2 of ``header``, whatever axis 3 holds (a ``-TAB`` energy axis
    needs its table to be read, which the sky axes do not)."""
    h = header.copy()
    for key in [k for k in h.keys() if _AXIS3_KEY.match(k)]:
        del h[key]
    h["WCSAXES"] = 2
    return WCS(h, naxis=[1, 2])


def spectral_axis(e_min, e_max) -> tuple[dict, fits.BinTableHDU | None]:
    """The spectral WCS cards of axis 3 for planes of bounds ``e_min``..``e_max`` (keV), and
    the table they need (None for a linear axis).

    Equally wide, contiguous planes (to 1e-6): ``CTYPE3 = 'ENER'`` (the linear energy axis of
    FITS WCS paper III, table 1), ``CUNIT3 = 'keV'``, ``CRPIX3 = 1``, ``CRVAL3`` the centre of
    plane 1, ``CDELT3`` the plane width. Otherwise
    (detector channels snapped to RMF edges): ``CTYPE3 = 'ENER-TAB'`` with the plane centres
    (keV) in column ``COORDS`` of a one-row ``WCS-TAB`` table (FITS WCS paper III §6)."""
    e_min, e_max = np.asarray(e_min, dtype=np.float64), np.asarray(e_max, dtype=np.float64)
    centres = 0.5 * (e_min + e_max)
    widths = e_max - e_min
    n = centres.size
    contiguous = n < 2 or np.allclose(e_min[1:], e_max[:-1], rtol=_LINEAR_RTOL, atol=0.0)
    if n == 1 or (contiguous and np.allclose(widths, widths.mean(), rtol=_LINEAR_RTOL, atol=0.0)):
        step = float(widths[0]) if n == 1 else float((centres[-1] - centres[0]) / (n - 1))
        return {"CTYPE3": ("ENER", "energy at the plane centre; bounds in EBOUNDS"),
                "CUNIT3": ("keV", "unit of CRVAL3 and CDELT3"),
                "CRPIX3": (1.0, "pixel of the reference plane"),
                "CRVAL3": (float(centres[0]), "[keV] centre of plane 1"),
                "CDELT3": (step, "[keV] plane width")}, None
    table = fits.BinTableHDU.from_columns([
        fits.Column("COORDS", format=f"{n}D", dim=f"(1,{n})", unit="keV", array=centres[None, :, None]),
    ], name="WCS-TAB")
    table.header["COMMENT"] = "Plane centres of the primary HDU's axis 3 (CTYPE3 = 'ENER-TAB')."
    return {"CTYPE3": ("ENER-TAB", "energy at the plane centre, tabulated"),
            "CUNIT3": ("keV", "unit of the tabulated energies"),
            "CRPIX3": 1.0, "CRVAL3": 1.0, "CDELT3": 1.0,
            "PS3_0": ("WCS-TAB", "table extension of axis 3"),
            "PS3_1": ("COORDS", "column of plane centres")}, table


#: COMMENT lines of a cube (or map) whose sky position is not known.
ARBITRARY_POSITION = ["The sky position is arbitrary (RA = Dec = 0): the input had no sky",
                      "WCS and the config no [model] center_deg. Pixel sizes are right."]


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
               wcs: WCS | None = None, center_deg=None, exposure_s: float | None = None,
               instrument: str | None = None, bunit: str = "count", channels=None,
               header: dict | None = None, overwrite: bool = True) -> Path:
    """Write a cube ``data`` (n_chan, ny, nx) — any backend array — to ``path`` atomically.

    ``energy_edges_kev``: n_chan + 1 edges in keV (or an (n_chan, 2) array of bounds).
    Give either ``wcs`` (a 2-D celestial astropy WCS) or ``pixel_arcsec`` (then a TAN WCS
    centred on ``center_deg`` = (RA, Dec) in degrees; with no ``center_deg`` the position is
    arbitrary, RA = Dec = 0, and the header says so: ``POSKNOWN = F`` and a COMMENT).
    ``exposure_s`` (s) goes to ``EXPOSURE``; ``instrument`` (the xhsi instrument name) to
    ``XHSIINST`` and to ``INSTRUME`` unless ``header`` names the detector there; ``bunit``
    (an astropy.units string: "count" for counts, "photon / (s cm2)" for a sky cube) to
    ``BUNIT``; ``channels`` are the channel numbers (1..n by default); ``header`` holds
    extra primary-header cards (keys of at most 8 characters; values or (value, comment);
    lists of lines for HISTORY and COMMENT), which override the ones set here."""
    array = np.asarray(to_numpy(data))
    if array.ndim != 3:
        raise ShapeError(f"{path}: a cube must be 3-D (n_chan, ny, nx); got shape {array.shape}.")
    n, ny, nx = array.shape
    e_min, e_max = _bounds(energy_edges_kev, n)
    arbitrary = wcs is None and center_deg is None
    if wcs is None:
        if pixel_arcsec is None:
            raise DataError(f"{path}: give write_cube either `wcs` or `pixel_arcsec`.")
        wcs = celestial_wcs((ny, nx), pixel_arcsec, (0.0, 0.0) if arbitrary else center_deg)
    if wcs.naxis != 2:
        wcs = wcs.celestial
    if array.dtype.kind not in "fiu":
        raise DataError(f"{path}: cube data must be numeric, got {array.dtype}.")
    hdr = wcs.to_header()
    primary = fits.PrimaryHDU(data=array, header=hdr)
    h = primary.header
    h["WCSAXES"] = 3
    spectral, tab = spectral_axis(e_min, e_max)
    add_cards(h, spectral)
    h["BUNIT"] = bunit_card(bunit, "per plane and pixel" if bunit != "count" else "")
    add_cards(h, creation_cards())
    if exposure_s is not None:
        if not exposure_s > 0:
            raise DataError(f"{path}: exposure_s must be > 0 s, got {exposure_s}.")
        h["EXPOSURE"] = (float(exposure_s), "[s] exposure time")
    if instrument:
        h["INSTRUME"] = (str(instrument)[:68], "instrument")
        h["XHSIINST"] = (str(instrument)[:68], "xhsi instrument name")
    h["HDUCLAS1"] = "XHSI_CUBE"
    if arbitrary:
        h["POSKNOWN"] = (False, "F: RA/Dec arbitrary, pixel scale right")
        add_cards(h, {"COMMENT": ARBITRARY_POSITION})
    add_cards(h, header)
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
    return write_atomic(fits.HDUList([primary, eb] + ([tab] if tab is not None else [])), path, overwrite)


def read_cube(path: str | Path) -> Cube:
    """Read a cube written by :func:`write_cube` (or any FITS file with the same layout).

    The cube is the primary HDU's data or, when the primary HDU holds none, the one image
    extension with 3 axes (its header keys completed by the primary's). DataError for a
    missing or truncated file, no 3-D cube (the message lists each HDU's axes), a missing
    ``EBOUNDS`` table or one whose row count differs from the number of planes."""
    path = Path(path)
    with open_fits(path, "cube") as hdul:
        hdu = _cube_hdu(hdul, path)
        try:
            raw = hdu.data
            # FITS is big-endian; device arrays and fast kernels want native byte order.
            data = np.asarray(raw, dtype=raw.dtype.newbyteorder("="))
        except (ValueError, OSError, EOFError) as exc:  # a damaged compressed file, or data unlike the header
            raise DataError(f"{path}: the cube's data cannot be read ({type(exc).__name__}: {exc}); the file is "
                            "damaged or cut short: copy or produce it again.") from None
        header = _cube_header(hdul, hdu)
        e_min, e_max, channels = _read_ebounds(hdul, path)
    if e_min.size != data.shape[0]:
        raise DataError(f"{path}: EBOUNDS has {e_min.size} rows but the cube has {data.shape[0]} planes.")
    try:
        wcs = _celestial(header)
    except Exception as exc:  # astropy raises several types for broken WCS keywords
        raise DataError(f"{path}: cannot read the celestial WCS of axes 1-2 ({exc}).") from None
    exposure = header.get("EXPOSURE")
    return Cube(data=data, e_min=e_min, e_max=e_max, wcs=wcs, channels=channels,
                exposure_s=float(exposure) if exposure is not None else None,
                instrument=header.get("XHSIINST", header.get("INSTRUME")), bunit=header.get("BUNIT"),
                header=header, path=path)



@dataclass
class CubeInfo:
    """What a cube file says of itself without its data (:func:`read_cube_info`): ``shape``
    (n_chan, ny, nx), plane edges in keV (n_chan + 1) and the cube HDU's header (keys it
    lacks taken from the primary header when the cube is in an extension)."""

    shape: tuple[int, int, int]
    energy_edges_kev: np.ndarray
    header: Any


def read_cube_info(path: str | Path) -> CubeInfo:
    """The grid and header of a cube file, read from its headers and EBOUNDS table only:
    what a run's config check reads of its counts, background and truth files. The same
    DataErrors as :func:`read_cube` (and non-contiguous planes)."""
    path = Path(path)
    with open_fits(path, "cube") as hdul:
        hdu = _cube_hdu(hdul, path)
        h = hdu.header
        shape = (int(h["NAXIS3"]), int(h["NAXIS2"]), int(h["NAXIS1"]))
        header = _cube_header(hdul, hdu)
        e_min, e_max, _ = _read_ebounds(hdul, path)
    if e_min.size != shape[0]:
        raise DataError(f"{path}: EBOUNDS has {e_min.size} rows but the cube has {shape[0]} planes.")
    return CubeInfo(shape, _contiguous_edges(e_min, e_max, path), header)


def read_cube_grid(path: str | Path) -> tuple[tuple[int, int, int], np.ndarray]:
    """The grid of a cube file without reading its data: (shape (n_chan, ny, nx), plane
    edges in keV (n_chan + 1)); see :func:`read_cube_info`."""
    info = read_cube_info(path)
    return info.shape, info.energy_edges_kev


def _cube_hdu(hdul, path: Path):
    """The HDU holding the cube: the primary HDU when it has 3 axes, else the only image
    extension with 3 axes; DataError naming each HDU's axes otherwise."""
    if hdul[0].header.get("NAXIS") == 3:
        return hdul[0]
    cubes = [hdu for hdu in hdul[1:] if hdu.is_image and hdu.header.get("NAXIS") == 3]
    if len(cubes) == 1 and not hdul[0].header.get("NAXIS"):
        return cubes[0]

    def axes(k, hdu):
        h = hdu.header
        n = int(h.get("NAXIS", 0))
        if not hdu.is_image:
            return f"HDU {k} ({hdu.name}): a table of {h.get('NAXIS2', 0)} rows"
        dims = " x ".join(str(h.get(f"NAXIS{i}")) for i in range(n, 0, -1))
        return f"HDU {k} ({hdu.name or 'PRIMARY'}): " + (f"an image of {n} axes ({dims})" if n else "no data")

    listing = "; ".join(axes(k, hdu) for k, hdu in enumerate(hdul))
    if len(cubes) > 1:
        what = (f"{len(cubes)} image extensions hold 3-D cubes, so which one is meant is unclear; keep one per "
                "file")
    else:
        what = ("the primary HDU must hold the 3-D cube (n_chan, ny, nx), or be empty with the cube in one image "
                "extension")
    raise DataError(f"{path}: {what}. This file has: {listing}.")


def _cube_header(hdul, hdu):
    """A copy of the cube HDU's header; for a cube in an extension, completed by the keys of
    the primary header it lacks (OGIP keys such as EXPOSURE, TELESCOP often sit there)."""
    header = hdu.header.copy()
    if hdu is not hdul[0]:
        for card in hdul[0].header.cards:
            if card.keyword and card.keyword not in header and card.keyword not in ("COMMENT", "HISTORY", ""):
                if card.keyword.startswith("NAXIS") or card.keyword in ("SIMPLE", "BITPIX", "EXTEND"):
                    continue
                header[card.keyword] = (card.value, card.comment)
    return header


def _contiguous_edges(e_min: np.ndarray, e_max: np.ndarray, path) -> np.ndarray:
    if e_min.size > 1 and not np.allclose(e_min[1:], e_max[:-1], rtol=1e-6, atol=1e-9):
        raise DataError(f"{path}: the EBOUNDS bins are not contiguous, so they have no single edge list.")
    return np.append(e_min, e_max[-1])


def _read_ebounds(hdul, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(E_MIN keV, E_MAX keV, channel numbers) of a cube's EBOUNDS table."""
    if not any(hdu.name.upper() == "EBOUNDS" for hdu in hdul):
        check_stream_complete(hdul, path, "cube")  # a compressed file cut short has lost its last tables
        raise DataError(f"{path}: no EBOUNDS table, so the energy of each plane is unknown; write the cube "
                        "with xhsi.io.write_cube or add an EBOUNDS table (CHANNEL, E_MIN, E_MAX in keV).")
    eb = find_hdu(hdul, ("EBOUNDS",), path, "cube (energy axis table)")
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
