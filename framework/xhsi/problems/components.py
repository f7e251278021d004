"""The ``[[components]]`` of the unmixing and pixelfit problems, resolved: each component's
spectral model set up on the model grid, each of its parameters a fitted map (a
``MapBlock``), a constant (``fixed``) or a link to another component's map
(``resolve_components``); the names and units of the maps they produce, and their errors
against the true components (``map_metrics``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import Backend
from ..errors import ConfigError, did_you_mean

#: Unit of an amplitude map: photon flux of a pixel over the model band.
AMPLITUDE_UNIT = "photon / (s cm2)"


@dataclass
class ResolvedComponent:
    """A component with its spectral model set up and each parameter resolved to a block
    index (``slots``), a constant (``constants``) or a link."""

    name: str
    model: Any
    slots: dict[str, int] = field(default_factory=dict)
    constants: dict[str, float] = field(default_factory=dict)
    amplitude_slot: int | None = None
    amplitude_init: Any = None


@dataclass
class MapBlock:
    """One fitted map: its name, initial value, bounds (for the projection), unit and the
    starlet sparsity it asked for."""

    name: str
    init: Any
    bounds: tuple[float, float]
    unit: str
    sparsity_k: float | None
    scales: int


def config_dir(config) -> Path:
    """The folder relative paths of a run config are taken from (a surrogate's ``file``):
    the config file's, or the working directory for a config built in memory."""
    return Path(config.source).resolve().parent if config.source is not None else Path(".")


def map_names(components: list[ResolvedComponent], blocks: list[MapBlock]) -> list[str]:
    """Names of the maps of a fit, in the order of its variables: each component's
    ``<name>.amplitude``, then each fitted parameter map."""
    return [f"{c.name}.amplitude" for c in components] + [b.name for b in blocks]


def parameter_rows(comp: ResolvedComponent, parameters, maps: dict, blocks: list[MapBlock], shape) -> np.ndarray:
    """(len(parameters), *shape) host array of a component's ``parameters`` (spectral-model
    Parameters) on the model grid: each fitted one's map from ``maps`` (named as
    ``map_names``), each other one its constant."""
    return np.stack([maps[blocks[comp.slots[p.name]].name] if p.name in comp.slots
                     else np.full(tuple(shape), comp.constants[p.name]) for p in parameters])


def map_units(components: list[ResolvedComponent], blocks: list[MapBlock]) -> dict[str, str]:
    """{map name: unit} of the maps of ``map_names``."""
    units = {f"{c.name}.amplitude": AMPLITUDE_UNIT for c in components}
    units.update({b.name: b.unit for b in blocks})
    return units


def resolve_components(sections, grid, backend: Backend, source: str,
                       base_dir=".") -> tuple[list[ResolvedComponent], list[MapBlock]]:
    """Build the spectral models of ``[[components]]`` and assign blocks. Every user error
    (unknown model or parameter, init out of bounds, bad links) is a ConfigError naming the
    dotted key."""
    from ..spectral.models import build_spectral_model

    if not sections:
        raise ConfigError(f"{source}: problems `unmixing` and `pixelfit` need [[components]] (name, model, ...).")
    ny, nx = grid.ny, grid.nx
    xp = backend.xp
    comps: list[ResolvedComponent] = []
    blocks: list[MapBlock] = []
    by_name: dict[str, tuple[ResolvedComponent, Any]] = {}
    for i, sec in enumerate(sections):
        where = f"{source}: `components[{i}]`"
        if sec.name in by_name:
            raise ConfigError(f"{where}.name: component names must be unique; `{sec.name}` is repeated.")
        model = build_spectral_model(sec.model, sec.options, where=f"{where}.model", base_dir=base_dir).setup(
            grid.energy_edges_kev, xp, backend.dtype)
        if model.response is not None:
            raise ConfigError(
                f"{where}.model: this surrogate emulates `{getattr(model, 'emulated', '?')}` after the "
                f"{model.response.get('instrument', '?')} response ({model.n_out} channels); unmixing and pixelfit "
                "apply each observation's response themselves and need spectra on the true-energy [model] grid: "
                "retrain it without a [response] table (`xhsi train-model`).")
        params = {p.name: p for p in model.parameters}
        for key in ("init", "bounds", "link"):
            for pname in getattr(sec, key):
                if pname not in params:
                    raise ConfigError(f"{where}.{key}.{pname}: `{sec.model}` has no parameter `{pname}`"
                                      f"{did_you_mean(pname, params)}; parameters: {', '.join(params)}.")
        for pname in sec.fixed:
            if pname not in params:
                raise ConfigError(f"{where}.fixed: `{sec.model}` has no parameter `{pname}`; parameters: "
                                  f"{', '.join(params)}.")
        comp = ResolvedComponent(sec.name, model)
        for pname, par in params.items():
            lo, hi = par.bounds
            if pname in sec.bounds:
                b = sec.bounds[pname]
                if not (isinstance(b, list) and len(b) == 2 and all(isinstance(v, (int, float)) for v in b)):
                    raise ConfigError(f"{where}.bounds.{pname}: expected [lower, upper] in {par.unit or 'no unit'}.")
                lo, hi = max(lo, float(b[0])), min(hi, float(b[1]))
                if not lo < hi:
                    raise ConfigError(f"{where}.bounds.{pname}: [{b[0]}, {b[1]}] leaves nothing inside the model's "
                                      f"range {par.bounds}.")
            value = sec.init.get(pname, par.default)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ConfigError(f"{where}.init.{pname}: expected a number in {par.unit or 'no unit'}.")
            if not lo <= value <= hi:
                raise ConfigError(f"{where}.init.{pname}: {value} {par.unit} is outside the bounds [{lo}, {hi}].")
            if pname in sec.link:
                continue  # resolved once every component is known
            if pname in sec.fixed:
                comp.constants[pname] = float(value)
                continue
            comp.slots[pname] = len(blocks)
            blocks.append(MapBlock(f"{sec.name}.{pname}", xp.full((ny, nx), float(value), dtype=backend.dtype),
                                   (lo, hi), par.unit, sec.parameter_k, sec.scales))
        comps.append(comp)
        by_name[sec.name] = (comp, params)
    for i, sec in enumerate(sections):
        comp, params = by_name[sec.name]
        for pname, target in sec.link.items():
            where = f"{source}: `components[{i}].link.{pname}`"
            other, _, tparam = str(target).partition(".")
            if other not in by_name or not tparam:
                raise ConfigError(f"{where}: `{target}` must be \"component.parameter\" with a component among "
                                  f"{', '.join(by_name)}.")
            ocomp, oparams = by_name[other]
            if tparam not in ocomp.slots:
                raise ConfigError(f"{where}: `{target}` is not a fitted map (it is fixed, linked or unknown).")
            if oparams[tparam].unit != params[pname].unit:
                raise ConfigError(f"{where}: cannot link `{pname}` ({params[pname].unit or 'no unit'}) to `{target}` "
                                  f"({oparams[tparam].unit or 'no unit'}): the units differ.")
            comp.slots[pname] = ocomp.slots[tparam]
    return comps, blocks


def map_metrics(maps: dict[str, np.ndarray], truth) -> dict[str, dict[str, float]]:
    """Median and flux-weighted relative error, and median absolute error, of each fitted
    parameter map against the component truth (``SceneTruth``: the scene's, or the
    ``[metrics] truth_maps``), over the pixels where the component's true amplitude is above
    1 % of its maximum (elsewhere a parameter is not constrained) and the true map is
    finite; a component with no true amplitude (None) is scored over every finite pixel,
    unweighted. For a redshift map ``z`` also ``median_absolute_error_kms``."""
    out: dict[str, dict[str, float]] = {}
    for comp in getattr(truth, "components", []):
        amp = None if comp.amplitude is None else np.asarray(comp.amplitude, dtype=np.float64)
        bright = True if amp is None else _bright(amp)
        for pname, true_map in list(comp.parameters.items()) + ([] if amp is None else [("amplitude", amp)]):
            key = f"{comp.name}.{pname}"
            t = np.asarray(true_map, dtype=np.float64)
            mask = np.isfinite(t) & bright
            if key not in maps or not mask.any():
                continue
            est = np.asarray(maps[key], dtype=np.float64)
            denom = np.abs(t[mask])
            floor = max(float(np.median(denom)) * 1e-3, 1e-12)
            rel = np.abs(est[mask] - t[mask]) / np.maximum(denom, floor)
            w = np.ones(rel.size) if amp is None else amp[mask]
            w = w / w.sum()
            out[key] = {"median_relative_error": float(np.median(rel)),
                        "flux_weighted_relative_error": float(np.sum(w * rel)),
                        "median_absolute_error": float(np.median(np.abs(est[mask] - t[mask])))}
            if pname == "z":
                # The relative error of a redshift is ill-defined where z crosses 0 (the
                # CasA-like velocity dipole does): also the median absolute error as a
                # line-of-sight speed, c·|Δz| (c = 299 792.458 km/s, exact by SI definition).
                from ..spectral.spectra import SPEED_OF_LIGHT_KMS

                out[key]["median_absolute_error_kms"] = SPEED_OF_LIGHT_KMS * out[key]["median_absolute_error"]
    return out


def _bright(amp: np.ndarray) -> np.ndarray:
    """Pixels whose true amplitude is finite and above 1 % of its finite maximum."""
    finite = np.isfinite(amp)
    peak = float(amp[finite].max()) if finite.any() else 0.0
    return finite & (amp > 0.01 * peak) if peak > 0 else np.zeros(amp.shape, dtype=bool)
