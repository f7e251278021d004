"""What a run's FITS products say about themselves: where the model grid is on the sky, and
which observations, instruments and source they come from.

Sky position (:func:`sky_frame`), in order of precedence:

1. the celestial WCS of the first ``[[observations]]`` counts file that has one (and does
   not say ``POSKNOWN = F``), carried from its detector pixels to the model pixels (a
   detector pixel is ``spatial_rebin`` × ``spatial_rebin`` model pixels,
   :func:`xhsi.io.cubes.scale_wcs`);
2. ``[model] center_deg`` (RA, Dec in degrees, ICRS) at the grid's centre;
3. RA = Dec = 0, with ``POSKNOWN = F`` and a COMMENT saying the position is arbitrary.

Provenance cards (:func:`provenance_cards`): ``TELESCOP`` the missions of the observations
(instrument TOML ``[instrument] mission``) and ``INSTRUME`` their detectors (``detector``),
each joined by ``+`` in the order of ``[[observations]]`` with repeats dropped (one
observation: the plain names, e.g. ``XMM-Newton`` / ``EPIC-pn``; fusion:
``XMM-Newton+XRISM`` / ``EPIC-pn+Resolve``); one HISTORY line per observation (``input``
name, mission, detector, xhsi instrument, exposure, counts file or "simulated counts") and
one saying where the sky position comes from; ``OBJECT`` from
``[model] object``, else the first counts file's OBJECT, else none.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from astropy.wcs import WCS

from .errors import DataError
from .io.cubes import celestial_wcs, header_celestial_wcs, read_cube_info, scale_wcs

__all__ = ["SkyFrame", "sky_frame", "provenance_cards", "instrument_cards"]


@dataclass
class SkyFrame:
    """The model grid on the sky: ``wcs`` (celestial WCS of the model pixels), ``known``
    (False: RA/Dec arbitrary), ``source`` (where the position comes from, for HISTORY)."""

    wcs: WCS
    known: bool
    source: str

    def at(self, rebin: int = 1) -> WCS | None:
        """The WCS of pixels ``rebin`` × ``rebin`` model pixels (an observation's detector
        pixels), or None when the position is arbitrary: writers then mark it so."""
        if not self.known:
            return None
        return self.wcs if rebin == 1 else scale_wcs(self.wcs, rebin)


def sky_frame(cfg, grid) -> SkyFrame:
    """The sky position of ``grid`` (an ``xhsi.grid.ModelGrid``) for the run config ``cfg``
    (see the module docstring for the order of precedence)."""
    for i, obs in enumerate(cfg.observations):
        if obs.counts is None:
            continue
        try:
            wcs = header_celestial_wcs(read_cube_info(obs.counts).header, obs.counts)
        except DataError:  # the run's checks judge the inputs; a product must not fail after a solve
            continue
        if wcs is not None:
            return SkyFrame(scale_wcs(wcs, 1.0 / obs.spatial_rebin), True,
                            f"sky WCS of observations[{i}] counts {Path(obs.counts).name}")
    center = cfg.model.center_deg if cfg.model is not None else None
    if center is not None:
        return SkyFrame(celestial_wcs((grid.ny, grid.nx), grid.pixel_arcsec, center), True, "[model] center_deg")
    return SkyFrame(celestial_wcs((grid.ny, grid.nx), grid.pixel_arcsec), False, "arbitrary")


def _object_name(cfg) -> str | None:
    if cfg.model is not None and cfg.model.object:
        return cfg.model.object
    for obs in cfg.observations:
        if obs.counts is not None:
            try:
                name = read_cube_info(obs.counts).header.get("OBJECT")
            except DataError:
                continue
            if name:
                return str(name)[:68]
    return None


def _joined(values) -> str | None:
    unique = list(dict.fromkeys(v for v in values if v))
    return "+".join(unique)[:68] if unique else None


def instrument_cards(instrument) -> dict:
    """``TELESCOP`` (mission), ``INSTRUME`` (detector) of an ``xhsi.instruments.Instrument``
    (empty names left out)."""
    return {"TELESCOP": (instrument.mission or None) and (instrument.mission[:68], "mission"),
            "INSTRUME": (instrument.detector or None) and (instrument.detector[:68], "detector")}


def provenance_cards(cfg, observations, frame: SkyFrame | None = None) -> dict:
    """Cards for every FITS product of a run: TELESCOP, INSTRUME, OBJECT and HISTORY
    lines. ``observations``: the run's ``ObservationData`` (name, instrument), in the order
    of ``cfg.observations``; ``frame``: its sky position, recorded in HISTORY."""
    instruments = [o.instrument for o in observations]
    cards: dict = {
        "TELESCOP": _joined(i.mission for i in instruments),
        "INSTRUME": _joined(i.detector for i in instruments),
        "OBJECT": _object_name(cfg),
    }
    cards = {k: v for k, v in cards.items() if v is not None}
    history = []
    for data, section in zip(observations, cfg.observations):
        inst = data.instrument
        counts = Path(section.counts).name if section.counts is not None else "simulated counts"
        history.append(f"input {data.name}: {inst.mission} {inst.detector} ({inst.name}), {section.exposure_s:g} s, "
                       f"{counts}")
    if frame is not None:
        history.append(f"sky position: {frame.source}")
    cards["HISTORY"] = history
    return cards
