"""Sky cubes in FITS files (photons / s / cm² per true-energy bin and sky pixel), read onto
a run's model grid: the ``fits`` scene's truth and a ``[problem] start_file``.

The primary HDU (or ``hdu``) holds the cube ``(n_e, ny, nx)`` (FITS axes 3, 2, 1). Its energy
grid comes from an ``EBOUNDS`` extension (columns ``E_MIN``, ``E_MAX``, keV unless TUNIT says
eV) or, failing that, a linear spectral WCS on axis 3 (``CTYPE3`` starting with ``ENER``,
``CRVAL3``/``CDELT3``/``CRPIX3`` at bin centres, ``CUNIT3`` keV or eV). Its pixel size, if
the header has ``CDELT1`` (deg), is checked against the grid's. The cube is resampled onto
the grid when the two differ, on each axis, by an integer factor k only: ``"sum"`` (fluxes
per cell) coarsening sums k (k×k) cells and refining splits a cell equally; ``"mean"``
(intensive quantities) averages and replicates. Any other mismatch is a DataError.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..grid import ModelGrid

__all__ = ["read_sky_cube", "check_sky_cube", "read_truth_fits", "resample_to_grid"]

_EV_UNITS = {"ev": 1e-3, "kev": 1.0, "mev": 1e3}


def read_sky_cube(path, grid: ModelGrid, hdu: int = 0, mode: str = "sum") -> np.ndarray:
    """The cube of the FITS file ``path`` on ``grid``, float64 (n_e, ny, nx)."""
    cube, edges, pixel_arcsec = read_truth_fits(path, hdu)
    return resample_to_grid(cube, edges, pixel_arcsec, grid, mode, str(path))


def check_sky_cube(path, grid: ModelGrid, hdu: int = 0) -> None:
    """The checks of :func:`read_sky_cube` that need no data (the file, its HDU, energy
    grid and pixels map onto ``grid``), reading headers and EBOUNDS only: DataError
    otherwise."""
    shape, edges, pixel_arcsec = _read_grid(path, hdu, with_data=False)[1:]
    _grid_factors(shape, edges, pixel_arcsec, grid, str(path))


def read_truth_fits(path, hdu: int = 0) -> tuple[np.ndarray, np.ndarray, float | None]:
    """(cube float64 (n_e, ny, nx), energy edges keV (n_e+1,), pixel size arcsec or None)."""
    cube, _, edges, pixel = _read_grid(path, hdu, with_data=True)
    if not np.all(np.isfinite(cube)):
        raise DataError(f"{path}: the cube has non-finite values.")
    return cube, edges, pixel


def _read_grid(path, hdu: int, with_data: bool):
    """(cube float64 or None, shape (n_e, ny, nx), energy edges keV, pixel size arcsec or None)."""
    from astropy.io import fits

    path = Path(path)
    if not path.is_file():
        raise DataError(f"scene `fits`: no file {path}; set [simulate] options.path to an existing FITS cube.")
    cube = None
    try:
        with fits.open(path, memmap=False) as hdul:
            if hdu >= len(hdul):
                raise DataError(f"{path}: has {len(hdul)} HDUs, options.hdu = {hdu} does not exist.")
            header = hdul[hdu].header
            naxis = int(header.get("NAXIS", 0))
            if naxis != 3:
                raise DataError(f"{path}[{hdu}]: expected a 3-D cube (n_e, ny, nx), got "
                                f"{'no data' if naxis == 0 else f'{naxis} axes'}.")
            shape = tuple(int(header[f"NAXIS{k}"]) for k in (3, 2, 1))
            if with_data:
                cube = np.array(hdul[hdu].data, dtype=np.float64)
            edges = _ebounds_edges(hdul, path) if "EBOUNDS" in hdul else _wcs_edges(header, path)
    except OSError as exc:
        raise DataError(f"{path}: not a readable FITS file ({exc}).") from None
    if edges.size != shape[0] + 1:
        raise DataError(f"{path}: the cube has {shape[0]} energy bins but its energy grid has {edges.size - 1}.")
    if not (np.all(np.isfinite(edges)) and edges[0] > 0 and np.all(np.diff(edges) > 0)):
        raise DataError(f"{path}: energy bins must be positive and increasing.")
    pixel = abs(float(header["CDELT1"])) * 3600.0 if "CDELT1" in header else None
    return cube, shape, edges, pixel


def _ebounds_edges(hdul, path) -> np.ndarray:
    table = hdul["EBOUNDS"]
    names = [n.upper() for n in table.columns.names]
    if "E_MIN" not in names or "E_MAX" not in names:
        raise DataError(f"{path}: the EBOUNDS extension needs columns E_MIN and E_MAX (keV).")
    lo = np.asarray(table.data["E_MIN"], dtype=np.float64)
    hi = np.asarray(table.data["E_MAX"], dtype=np.float64)
    unit = (table.columns["E_MIN"].unit or "keV").strip().lower()
    if unit not in _EV_UNITS:
        raise DataError(f"{path}: EBOUNDS unit `{unit}` is not keV or eV.")
    lo, hi = lo * _EV_UNITS[unit], hi * _EV_UNITS[unit]
    if lo.size > 1 and not np.allclose(lo[1:], hi[:-1], rtol=1e-6, atol=0):
        raise DataError(f"{path}: EBOUNDS bins are not contiguous (E_MAX[i] != E_MIN[i+1]).")
    return np.concatenate([lo, hi[-1:]])


def _wcs_edges(header, path) -> np.ndarray:
    ctype = str(header.get("CTYPE3", "")).upper()
    if not ctype.startswith("ENER"):
        raise DataError(f"{path}: no energy grid: add an EBOUNDS extension (E_MIN, E_MAX in keV) or a "
                        "spectral WCS on axis 3 (CTYPE3 = 'ENERGY', CRVAL3, CDELT3, CRPIX3, CUNIT3).")
    unit = str(header.get("CUNIT3", "keV")).strip().lower()
    if unit not in _EV_UNITS:
        raise DataError(f"{path}: CUNIT3 `{unit}` is not keV or eV.")
    n = int(header["NAXIS3"])
    delta = float(header.get("CDELT3", header.get("CD3_3", 0.0)))
    if delta <= 0:
        raise DataError(f"{path}: CDELT3 must be a positive energy step.")
    centres = float(header.get("CRVAL3", 0.0)) + (np.arange(1, n + 1) - float(header.get("CRPIX3", 1.0))) * delta
    return np.concatenate([centres - 0.5 * delta, centres[-1:] + 0.5 * delta]) * _EV_UNITS[unit]


def _integer_factor(n_from: int, n_to: int):
    """('same' | 'coarsen' | 'refine', k) or None when the sizes are not integer multiples."""
    if n_from == n_to:
        return "same", 1
    if n_from > n_to and n_from % n_to == 0:
        return "coarsen", n_from // n_to
    if n_to > n_from and n_to % n_from == 0:
        return "refine", n_to // n_from
    return None


def _resample_axis(a: np.ndarray, axis: int, how: str, k: int, mode: str) -> np.ndarray:
    if how == "same":
        return a
    if how == "coarsen":
        shape = a.shape[:axis] + (a.shape[axis] // k, k) + a.shape[axis + 1:]
        blocks = a.reshape(shape)
        return blocks.sum(axis=axis + 1) if mode == "sum" else blocks.mean(axis=axis + 1)
    out = np.repeat(a, k, axis=axis)
    return out / k if mode == "sum" else out


def resample_to_grid(cube: np.ndarray, edges: np.ndarray, pixel_arcsec: float | None, grid: ModelGrid,
                     mode: str = "sum", source: str = "the FITS cube") -> np.ndarray:
    """Resample ``cube`` (energy ``edges`` keV, pixels of ``pixel_arcsec``) onto ``grid``
    by integer factors (see the module docstring); DataError on any other mismatch."""
    fe, fy, fx = _grid_factors(cube.shape, edges, pixel_arcsec, grid, source)
    out = _resample_axis(cube, 0, *fe, mode)
    out = _resample_axis(out, 1, *fy, mode)
    return _resample_axis(out, 2, *fx, mode)


def _grid_factors(shape, edges: np.ndarray, pixel_arcsec: float | None, grid: ModelGrid, source: str):
    """The (how, k) of each axis (see ``_integer_factor``) mapping a cube of ``shape`` onto
    ``grid``; DataError when they are not integer factors that line up."""
    n_e, ny, nx = shape
    what = (f"{source} ({n_e} bins {edges[0]:.4g}-{edges[-1]:.4g} keV, {ny} x {nx} pixels"
            f"{f' of {pixel_arcsec:.4g} arcsec' if pixel_arcsec else ''}) does not map onto the model grid "
            f"({grid.n_e} bins {grid.energy_edges_kev[0]:.4g}-{grid.energy_edges_kev[-1]:.4g} keV, "
            f"{grid.ny} x {grid.nx} pixels of {grid.pixel_arcsec:.4g} arcsec)")
    fix = " Resample the cube, or change [model] so the grids differ by an integer factor."
    fe = _integer_factor(n_e, grid.n_e)
    ok_energy = fe is not None and (
        np.allclose(edges[:: fe[1]], grid.energy_edges_kev, rtol=1e-6, atol=0) if fe[0] != "refine"
        else np.allclose(edges, grid.energy_edges_kev[:: fe[1]], rtol=1e-6, atol=0))
    if not ok_energy:
        raise DataError(f"{what}: the energy bins differ by a non-integer factor or do not line up.{fix}")
    fy, fx = _integer_factor(ny, grid.ny), _integer_factor(nx, grid.nx)
    if fy is None or fx is None or fy != fx:
        raise DataError(f"{what}: the pixel grids differ by a non-integer factor (or a different one in y and x).{fix}")
    if pixel_arcsec:
        expected = pixel_arcsec * (fy[1] if fy[0] == "coarsen" else 1.0 / fy[1])
        if not math.isclose(expected, grid.pixel_arcsec, rel_tol=1e-4):
            raise DataError(f"{what}: the pixel sizes are not in the ratio of the pixel counts.{fix}")
    return fe, fy, fx
