"""An OGIP spectrum (PHA) as an observation: its instrument made from the response files
its header names, its channels grouped (GROUPING) and selected (QUALITY, the config's
``notice_kev`` ranges), and its background (BACKFILE) scaled onto it.

The instrument of a spectrum is built from RESPFILE (and ANCRFILE, else a constant 1 cm²:
an RMF with the area folded in) and describes one detector pixel the size of the model
pixel, with a PSF far smaller than it (a spectrum has no spatial information). The
observation's channels are the PHA's groups: a group's counts are the sum of its channels'
counts and its response row the sum of theirs. Groups with a bad channel (QUALITY ≠ 0) or
whose centre lies outside every notice range are left out of the fit (the forward
operator's ``channel_keep``).

Background (``background_model``): ``"scaled"`` (default) adds the background spectrum,
scaled by (BACKSCAL · AREASCAL · EXPOSURE)_src / (BACKSCAL · AREASCAL · EXPOSURE)_bkg per
channel, to the model as fixed counts; ``"wstat"`` fits the background spectrum as Poisson
counts of its own with the background per channel profiled out (W-stat: Cash 1979;
Wachter, Leach & Kellogg 1979; ``xhsi.likelihoods.wstat_value``), α of a group being its
channels' scale factors weighted by their background counts; ``"none"`` ignores BACKFILE.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from .instrument import Instrument
from .schema import parse_instrument

__all__ = ["SpectrumObservation", "spectrum_observation", "spectrum_forward", "BACKGROUND_MODELS"]

BACKGROUND_MODELS = ("scaled", "wstat", "none")
#: The PSF of a spectrum's instrument, in model pixels: far inside one pixel.
_PSF_FWHM_PIXELS = 1e-3
_INSTRUMENTS: dict[tuple, Instrument] = {}


@dataclass
class SpectrumObservation:
    """What a run uses of one spectrum: the instrument, the channel edges (keV) of every
    group of the response's band, the indices ``keep`` of the groups fitted, their counts and
    scaled background counts (numpy, (n_keep,); background None when there is none), the
    exposure (s) times the source AREASCAL, and for W-stat the background spectrum's counts
    and scale factors α per kept group (else None)."""

    spectrum: object
    instrument: Instrument
    channel_edges_kev: np.ndarray
    keep: np.ndarray
    counts: np.ndarray
    background: np.ndarray | None
    exposure_s: float
    wstat: tuple[np.ndarray, np.ndarray] | None = None


def _instrument(response: Path, ancillary: Path | None, pixel_arcsec: float, name: str) -> Instrument:
    key = (str(response), response.stat().st_mtime_ns, str(ancillary),
           ancillary.stat().st_mtime_ns if ancillary else None, float(pixel_arcsec))
    if key not in _INSTRUMENTS:
        area = {"kind": "arf", "file": str(ancillary)} if ancillary else {"kind": "constant", "cm2": 1.0}
        data = {"instrument": {"name": name, "description": f"the responses of the spectrum {name}"},
                "spectral_response": {"kind": "rmf", "file": str(response)}, "effective_area": area,
                "spatial": {"pixel_arcsec": float(pixel_arcsec)},
                "psf": {"kind": "gaussian", "fwhm_arcsec": _PSF_FWHM_PIXELS * float(pixel_arcsec)}}
        _INSTRUMENTS.clear()  # one spectrum's responses at a time are enough to keep
        _INSTRUMENTS[key] = Instrument(parse_instrument(data, str(response), response.parent))
    return _INSTRUMENTS[key]


def _group_sum(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    return np.add.reduceat(values, starts)


def spectrum_observation(obs, pixel_arcsec: float, where: str = "") -> SpectrumObservation:
    """The :class:`SpectrumObservation` of an ``[[observations]]`` table with ``spectrum``
    (its ``spectrum_row``, ``notice_kev``, ``background_model``); DataError or ConfigError,
    prefixed with ``where``, for a missing or mismatched response or background file."""
    from ..io.pha import read_pha

    where = f"{where}: " if where else ""
    try:
        spec = read_pha(obs.spectrum, obs.spectrum_row)
    except DataError as exc:
        raise DataError(f"{where}spectrum: {exc}") from None
    if spec.response is None:
        raise DataError(f"{where}spectrum {spec.path}: the header has no RESPFILE; xhsi needs the spectrum's response "
                        "(set RESPFILE to the RMF, relative to the PHA's folder).")
    for key, path in (("RESPFILE", spec.response), ("ANCRFILE", spec.ancillary)):
        if path is not None and not path.is_file():
            raise DataError(f"{where}spectrum {spec.path}: {key} names {path}, which does not exist (a relative name "
                            "is taken from the PHA's folder).")
    if np.ptp(spec.areascal) > 0:
        raise DataError(f"{where}spectrum {spec.path}: AREASCAL varies across channels; xhsi takes one AREASCAL "
                        "per source spectrum.")
    inst = _instrument(spec.response, spec.ancillary, pixel_arcsec, spec.path.name)
    rmf = inst.rmf
    if rmf.n_channels != spec.n_channels or int(rmf.channels[0]) != int(spec.channels[0]):
        raise DataError(f"{where}spectrum {spec.path}: its {spec.n_channels} channels "
                        f"({spec.channels[0]}–{spec.channels[-1]}) do not match the {rmf.n_channels} channels "
                        f"({rmf.channels[0]}–{rmf.channels[-1]}) of its RESPFILE {spec.response}; the response must "
                        "be the one made for this spectrum.")
    starts = spec.group_starts()
    edges = np.append(rmf.e_min[starts], rmf.e_max[-1])
    if np.any(np.diff(edges) <= 0):
        raise DataError(f"{where}spectrum {spec.path}: the channels of {spec.response} have empty or decreasing "
                        "energy ranges; group them (GROUPING) so that every group has a positive width.")
    bad = _group_sum((spec.quality != 0).astype(np.int64), starts) > 0
    centres = 0.5 * (edges[:-1] + edges[1:])
    noticed = np.ones(centres.size, dtype=bool)
    if obs.notice_kev:
        lo_band, hi_band = float(rmf.e_min[0]), float(rmf.e_max[-1])
        noticed[:] = False
        for i, (lo, hi) in enumerate(obs.notice_kev):
            if lo < lo_band or hi > hi_band:
                raise ConfigError(f"{where}notice_kev[{i}]: [{lo}, {hi}] keV reaches outside the channels of "
                                  f"{spec.response} ({lo_band:.4g}–{hi_band:.4g} keV).")
            noticed |= (centres >= lo) & (centres < hi)
    keep = np.nonzero(noticed & ~bad)[0]
    if not keep.size:
        raise ConfigError(f"{where}: no channel of spectrum {spec.path} is left to fit after QUALITY and notice_kev.")
    counts = _group_sum(spec.counts, starts)[keep]
    exposure = spec.exposure * float(spec.areascal[0])
    background, wstat = None, None
    if obs.background_model == "wstat" and spec.background is None:
        raise ConfigError(f"{where}background_model = \"wstat\" needs a background spectrum, and the spectrum "
                          f"{spec.path} has no BACKFILE.")
    if obs.background_model != "none" and spec.background is not None:
        if not spec.background.is_file():
            raise DataError(f"{where}spectrum {spec.path}: BACKFILE names {spec.background}, which does not exist.")
        try:
            bkg = read_pha(spec.background, obs.spectrum_row if _is_type2(spec.background) else None)
        except DataError as exc:
            raise DataError(f"{where}background spectrum: {exc}") from None
        if bkg.n_channels != spec.n_channels:
            raise DataError(f"{where}background spectrum {bkg.path} has {bkg.n_channels} channels, the source "
                            f"spectrum {spec.n_channels}.")
        scale = (spec.backscal * exposure) / (bkg.backscal * bkg.areascal * bkg.exposure)
        scaled = _group_sum(bkg.counts * scale, starts)[keep]
        if obs.background_model == "scaled":
            background = scaled
        else:
            b = _group_sum(bkg.counts, starts)[keep]
            mean_scale = (_group_sum(scale, starts) / np.diff(np.append(starts, spec.n_channels)))[keep]
            wstat = (b, np.where(b > 0, scaled / np.where(b > 0, b, 1.0), mean_scale))
    return SpectrumObservation(spec, inst, edges, keep, counts, background, exposure, wstat)


def _is_type2(path: Path) -> bool:
    from astropy.io import fits

    try:
        return str(fits.getheader(path, "SPECTRUM").get("HDUCLAS4", "")).upper() == "TYPE:II"
    except (OSError, KeyError):
        return False


def spectrum_forward(spectrum: SpectrumObservation, grid, backend=None, cache: bool = True):
    """The forward operator of a spectrum on a run's 1 × 1 pixel model grid
    (``xhsi.grid.ModelGrid``): onto the spectrum's channel groups, the ignored ones dropped."""
    from .forward import compile_forward

    return compile_forward(spectrum.instrument, grid.energy_edges_kev, (grid.ny, grid.nx), grid.pixel_arcsec,
                           spectrum.exposure_s, backend=backend, channel_edges_kev=spectrum.channel_edges_kev,
                           cache=cache, channel_keep=spectrum.keep)
