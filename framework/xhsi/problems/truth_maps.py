"""The truth a run's parameter maps are scored against (``map_metrics``): the ``[metrics]
truth_maps`` file when the config names one, else the ``[simulate]`` scene's components;
its checks against the run's maps (names, shapes, units, something finite), and the
simulated truth as the maps of a ``truth_maps.fits`` (format: ``xhsi.io.truth_maps``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, XhsiError, did_you_mean
from ..io.truth_maps import map_key, read_map_hdus
from ..simulate import ComponentTruth, SceneTruth
from .components import AMPLITUDE_UNIT


@dataclass
class MapTruth:
    """The truth of a run's maps: ``truth`` (a SceneTruth whose components carry the maps;
    a component without an amplitude map has ``amplitude`` None), where it came from
    (``source``: "truth_maps" or "simulate", and the ``file``)."""

    truth: SceneTruth
    source: str
    file: str | None = None
    names: list[str] = field(default_factory=list)

    def report(self, run_maps) -> dict:
        """What metrics.json says of it: its source, and the run's maps it scored
        (``compared``) and could not score (``missing``)."""
        have = set(self.names)
        return {"source": self.source, "file": self.file,
                "compared": [n for n in run_maps if n in have], "missing": [n for n in run_maps if n not in have]}


def scores_maps(config) -> bool:
    """Whether a run of ``config`` scores parameter maps: its problem has its own
    ``extra_metrics`` and the config [[components]] (unmixing, pixelfit, fusion_unmixing;
    not deconvolution or fusion)."""
    from .. import plugins
    from .base import Problem

    problem_cls = plugins.get("problem", config.run.problem)
    return problem_cls.extra_metrics is not Problem.extra_metrics and bool(config.components)


def run_map_units(config) -> dict[str, str] | None:
    """{map name: unit} of the maps a run of ``config`` writes to maps.fits, or None when
    it scores no maps (``scores_maps``)."""
    from ..backend import Backend
    from .checks import model_grid
    from .components import config_dir, map_names, map_units, resolve_components

    if not scores_maps(config):
        return None
    comps, blocks = resolve_components(config.components, model_grid(config), Backend("numpy", config.run.dtype),
                                       str(config.source), config_dir(config))
    units = map_units(comps, blocks)
    return {name: units[name] for name in map_names(comps, blocks)}


def _scale(found: str, expected: str, where: str) -> float:
    """The factor from a map's BUNIT ``found`` to the run's unit ``expected`` (1 when
    ``found`` is empty: the run's unit is assumed)."""
    from astropy import units

    if not found or found == expected:
        return 1.0
    try:
        return float(units.Unit(found).to(units.Unit(expected or "")))
    except (ValueError, TypeError, units.UnitsError):
        raise ConfigError(f"{where}: BUNIT `{found}` is not the unit of the run's map, "
                          f"`{expected or 'dimensionless'}`, nor convertible to it; write the map in that unit (or "
                          "leave BUNIT empty).") from None


def read_map_truth(config) -> MapTruth | None:
    """The ``[metrics] truth_maps`` of ``config`` as a MapTruth, or None when it names
    none. Every map of the file must be a map of the run (``run_map_units``), on the
    [model] pixels, in a unit convertible to the run's, with a finite value somewhere:
    anything else is a ConfigError saying what to change."""
    path = config.metrics.truth_maps if config.metrics is not None else None
    if path is None:
        return None
    where = f"{config.source}: metrics.truth_maps {path}"
    units = run_map_units(config)
    if units is None:
        raise ConfigError(f"{config.source}: metrics.truth_maps: problem `{config.run.problem}` writes no parameter "
                          "maps to score; truth maps apply to problems with [[components]] (unmixing, pixelfit, "
                          "fusion_unmixing). Remove `truth_maps` (a true sky cube is `[metrics] truth`).")
    if not Path(path).is_file():
        raise ConfigError(f"{where} does not exist: give the FITS file of the true maps (one image HDU per "
                          "`component.parameter`), relative to the config's folder.")
    try:
        hdus = read_map_hdus(path)
    except DataError as exc:
        raise ConfigError(f"{config.source}: metrics.truth_maps: {exc}") from None
    if not hdus:
        raise ConfigError(f"{where} holds no image HDU: write one per map, EXTNAME `component.parameter` "
                          f"(maps of this run: {', '.join(units)}).")
    by_key = {map_key(name): name for name in units}
    ny, nx = config.model.pixels
    maps: dict[str, np.ndarray] = {}
    for hdu in hdus:
        name = hdu.name if hdu.name in units else by_key.get(map_key(hdu.name))
        label = f"{where}: HDU `{hdu.extname}`"
        if name is None:
            raise ConfigError(f"{label} names no map of this run{_hint(hdu.name, by_key)}; maps of this run: "
                              f"{', '.join(units)} (EXTNAME or MAPNAME `component.parameter`).")
        if name in maps:
            raise ConfigError(f"{label}: a second HDU for map `{name}`; keep one.")
        if hdu.data.shape != (ny, nx):
            raise ConfigError(f"{label} (`{name}`) has shape {' × '.join(map(str, hdu.data.shape))}; expected "
                              f"{ny} × {nx} (ny × nx, the [model] pixels).")
        if not np.isfinite(hdu.data).any():
            raise ConfigError(f"{label} (`{name}`) has no finite value (all NaN or infinite): nothing to score "
                              "against; drop the HDU or fill it.")
        maps[name] = hdu.data * _scale(hdu.unit, units[name], label)
    return MapTruth(truth_from_maps(maps), "truth_maps", str(path), list(maps))


def _hint(name: str, by_key: dict[str, str]) -> str:
    """did_you_mean over the names as EXTNAMEs hold them (any case, ``_`` for ``.``), naming
    the run's map as the run writes it."""
    hint = did_you_mean(map_key(name), by_key)
    for key, real in by_key.items():
        hint = hint.replace(f"`{key}`", f"`{real}`")
    return hint


def truth_from_maps(maps: dict[str, np.ndarray]) -> SceneTruth:
    """A SceneTruth (no cube) whose components carry ``maps`` ({``component.parameter``:
    image}); a component with no ``<name>.amplitude`` map has amplitude None."""
    comps: dict[str, ComponentTruth] = {}
    for name, image in maps.items():
        comp, _, pname = name.rpartition(".")
        c = comps.setdefault(comp, ComponentTruth(comp, "", None))
        if pname == "amplitude":
            c.amplitude = image
        else:
            c.parameters[pname] = image
    return SceneTruth(None, list(comps.values()))


def simulated_map_truth(scene_truth: SceneTruth) -> MapTruth:
    """The [simulate] scene's components as a MapTruth."""
    names = [name for c in scene_truth.components
             for name in [f"{c.name}.{p}" for p in c.parameters] + [f"{c.name}.amplitude"]]
    return MapTruth(scene_truth, "simulate", None, names)


def simulated_truth_maps(scene_truth: SceneTruth) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """({``component.parameter``: map}, {name: unit}) of a simulated scene's components,
    for ``truth_maps.fits``: each component's amplitude (photon / (s cm2) per pixel over the
    model band) and varying parameters, in the units of the spectral model the component
    names (empty when that model is not registered); the constant ones are left out, as
    ``map_metrics`` leaves them."""
    from ..spectral.models import build_spectral_model

    maps, units = {}, {}
    for c in scene_truth.components:
        try:
            model_units = {p.name: p.unit for p in build_spectral_model(c.model).parameters}
        except XhsiError:
            model_units = {}
        for pname, image in c.parameters.items():
            maps[f"{c.name}.{pname}"] = np.asarray(image, dtype=np.float64)
            units[f"{c.name}.{pname}"] = model_units.get(pname, "")
        maps[f"{c.name}.amplitude"] = np.asarray(c.amplitude, dtype=np.float64)
        units[f"{c.name}.amplitude"] = AMPLITUDE_UNIT
    return maps, units


def write_simulated_truth_maps(path, scene_truth: SceneTruth, pixel_arcsec: float, wcs, header: dict):
    """``truth_maps.fits`` of a simulated scene (``simulated_truth_maps``) in the format of a
    run's ``maps.fits`` (``xhsi.io.maps.write_maps``), readable as ``[metrics] truth_maps``."""
    from ..io.maps import write_maps

    maps, units = simulated_truth_maps(scene_truth)
    return write_maps(path, maps, units, pixel_arcsec, wcs=wcs, header=header)

