"""Spectral libraries: sets of spectra with their physical parameters, read from a file to
train a learnt spectral model (``xhsi train-model`` with ``[iae] library = FILE``).

Two formats, chosen by the file name:

* ``.npz`` (read with ``allow_pickle=False``): ``spectra`` (n, n_e) photons per bin (any
  normalisation), ``parameters`` (n, p), ``parameter_names`` (p,) strings,
  ``energy_edges_kev`` (n_e + 1,) bin edges in keV; optional ``parameter_units`` (p,).
* FITS (``.fits``, ``.fit``, ``.fts``, optionally ``.gz``): a binary-table extension
  ``SPECTRA`` with a vector column ``SPECTRUM`` (n_e values per row, photons per bin) and
  one scalar column per parameter (its name is the parameter's name, its TUNIT the unit),
  and an extension ``ENERGIES`` with columns ``ENERG_LO`` and ``ENERG_HI`` (keV), as in an
  OGIP table model (memo 92-009).

Every spectrum must be finite, non-negative and have a positive sum; parameters finite;
names distinct. Anything else is a DataError naming the file and the first bad row.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .models import check_energy_edges

__all__ = ["SpectralLibrary", "read_spectral_library", "write_spectral_library"]

_FITS_SUFFIXES = (".fits", ".fit", ".fts")


@dataclass
class SpectralLibrary:
    """Spectra (n, n_e) on ``energy_edges_kev`` (n_e + 1, keV) and their parameters (n, p)."""

    spectra: np.ndarray
    parameters: np.ndarray
    names: list[str]
    units: list[str]
    energy_edges_kev: np.ndarray
    path: Path | None = None


def _is_fits(path: Path) -> bool:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return bool(suffixes) and suffixes[-1] in _FITS_SUFFIXES


def read_spectral_library(path: str | Path) -> SpectralLibrary:
    """Read and check a spectral library (npz or FITS, see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such spectral library file.")
    lib = _read_fits(path) if _is_fits(path) else _read_npz(path)
    return _checked(lib)


def _read_npz(path: Path) -> SpectralLibrary:
    if path.suffix.lower() != ".npz":
        raise DataError(f"{path}: a spectral library is a .npz or a FITS (.fits) file.")
    try:
        with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot be read as an npz spectral library ({type(exc).__name__}: {exc}).") from None
    missing = [k for k in ("spectra", "parameters", "parameter_names", "energy_edges_kev") if k not in arrays]
    if missing:
        raise DataError(f"{path}: missing array(s) {', '.join(missing)}; a spectral library npz holds spectra (n, n_e), "
                        "parameters (n, p), parameter_names (p,) and energy_edges_kev (n_e + 1,).")
    names = [str(n) for n in np.atleast_1d(arrays["parameter_names"])]
    units = [str(u) for u in np.atleast_1d(arrays.get("parameter_units", np.array([""] * len(names))))]
    try:
        spectra = np.asarray(arrays["spectra"], dtype=np.float64)
        params = np.asarray(arrays["parameters"], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: spectra and parameters must be numeric arrays ({exc}).") from None
    return SpectralLibrary(spectra, params.reshape(params.shape[0], -1) if params.ndim == 1 else params, names,
                           units, np.asarray(arrays["energy_edges_kev"]), path)


def _read_fits(path: Path) -> SpectralLibrary:
    from ..io._fits import column, find_hdu, open_fits

    what = "spectral library"
    with open_fits(path, what) as hdul:
        spec = find_hdu(hdul, ("SPECTRA",), path, what)
        ene = find_hdu(hdul, ("ENERGIES",), path, what)
        lo = np.asarray(column(ene, "ENERG_LO", path), dtype=np.float64)
        hi = np.asarray(column(ene, "ENERG_HI", path), dtype=np.float64)
        spectra = np.asarray(column(spec, "SPECTRUM", path), dtype=np.float64).reshape(len(spec.data), -1)
        cols = [c for c in spec.columns if c.name.upper() != "SPECTRUM"]
        if not cols:
            raise DataError(f"{path}: extension SPECTRA has no parameter column besides SPECTRUM.")
        names = [c.name for c in cols]
        units = [str(c.unit or "") for c in cols]
        params = np.stack([np.asarray(spec.data.field(c.name), dtype=np.float64).reshape(-1) for c in cols], axis=1)
    if lo.size != hi.size or lo.size == 0 or not np.allclose(lo[1:], hi[:-1], rtol=1e-6):
        raise DataError(f"{path}: ENERGIES must be contiguous bins (ENERG_LO[i+1] = ENERG_HI[i], keV).")
    return SpectralLibrary(spectra, params, names, units, np.append(lo, hi[-1]), path)


def _checked(lib: SpectralLibrary) -> SpectralLibrary:
    where = lib.path or "spectral library"
    try:
        edges = check_energy_edges(lib.energy_edges_kev)
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None
    spectra, params = lib.spectra, lib.parameters
    if spectra.ndim != 2 or spectra.shape[1] != edges.size - 1:
        raise DataError(f"{where}: spectra have shape {spectra.shape}; expected (n, {edges.size - 1}) for "
                        f"{edges.size - 1} energy bins.")
    if params.ndim != 2 or params.shape != (spectra.shape[0], len(lib.names)):
        raise DataError(f"{where}: parameters have shape {params.shape}; expected ({spectra.shape[0]}, "
                        f"{len(lib.names)}) for {spectra.shape[0]} spectra and parameters {lib.names}.")
    if len(set(lib.names)) != len(lib.names) or not all(lib.names):
        raise DataError(f"{where}: parameter names must be distinct and non-empty, got {lib.names}.")
    bad = ~np.all(np.isfinite(spectra), axis=1)
    if np.any(bad):
        raise DataError(f"{where}: {int(bad.sum())} spectra hold NaN or infinite values (first: row {int(np.argmax(bad))}); "
                        "remove or recompute them.")
    bad = np.any(spectra < 0, axis=1) | (spectra.sum(axis=1) <= 0)
    if np.any(bad):
        raise DataError(f"{where}: {int(bad.sum())} spectra are negative somewhere or have no flux (first: row "
                        f"{int(np.argmax(bad))}); library spectra must be photons per bin, >= 0 with a positive sum.")
    bad = ~np.all(np.isfinite(params), axis=1)
    if np.any(bad):
        raise DataError(f"{where}: {int(bad.sum())} rows have non-finite parameters (first: row {int(np.argmax(bad))}).")
    lib.energy_edges_kev = edges
    return lib


def write_spectral_library(path: str | Path, spectra, parameters, names, energy_edges_kev, units=None) -> Path:
    """Write a library (.npz, or FITS for a .fits name) in the format read above."""
    from astropy.io import fits

    from ..atomic import atomic_write_bytes

    path = Path(path)
    spectra = np.asarray(spectra, dtype=np.float64)
    parameters = np.asarray(parameters, dtype=np.float64)
    edges = np.asarray(energy_edges_kev, dtype=np.float64)
    units = list(units) if units is not None else [""] * len(names)
    if _is_fits(path):
        cols = [fits.Column("SPECTRUM", f"{spectra.shape[1]}D", array=spectra)]
        cols += [fits.Column(n, "D", unit=u or None, array=parameters[:, i]) for i, (n, u) in enumerate(zip(names, units))]
        ene = fits.BinTableHDU.from_columns([fits.Column("ENERG_LO", "D", unit="keV", array=edges[:-1]),
                                             fits.Column("ENERG_HI", "D", unit="keV", array=edges[1:])], name="ENERGIES")
        hdul = fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols, name="SPECTRA"), ene])
        buffer = io.BytesIO()
        hdul.writeto(buffer)
        data = buffer.getvalue()
        if path.suffix.lower() == ".gz":
            import gzip

            data = gzip.compress(data)
        atomic_write_bytes(path, data)
        return path
    buffer = io.BytesIO()
    np.savez(buffer, spectra=spectra, parameters=parameters, parameter_names=np.array(list(names)),
             parameter_units=np.array(units), energy_edges_kev=edges)
    atomic_write_bytes(path, buffer.getvalue())
    return path
