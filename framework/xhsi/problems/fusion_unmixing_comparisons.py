"""The comparisons of a joint fusion + unmixing run (docs/fusion_unmixing.md, "Measured"),
computed by the run itself when ``[problem] comparisons`` names them, so that
``metrics.json`` holds their maps' errors beside the joint maps' (``maps_<name>``):

- ``imager_alone``: the same problem (components, priors, start, solver settings) on the
  imager's counts alone;
- ``spectrometer_alone``: the same on the spectrometer's counts at its own detector pixels
  (a model grid ``spatial_rebin`` × coarser, its PSF kernel shrunk by that factor, no
  spatial rebin), its maps repeated onto the fine grid (an amplitude, a flux per pixel, shared
  equally between the fine pixels);
- ``fusion_pixelfit``: the fusion set-up of the config named by ``[problem]
  comparison_fusion`` (its ``[[regularizers]]`` and ``[solver]``) on the run's observations
  and grid, then per-pixel fits of the fused cube with the run's components (pseudo-counts:
  the cube × the spectrometer's exposure × its mean effective area per bin, through an
  identity redistribution; ``init_iter`` Levenberg–Marquardt iterations).

Each is solved with the run's ``[solver]`` (the fusion with its own config's); they need
the truth only to be scored, and are skipped (with the reason in ``metrics.json``) when the
run has none.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError, did_you_mean

COMPARISONS = ("imager_alone", "spectrometer_alone", "fusion_pixelfit")


def check_comparisons(config, options) -> None:
    """ConfigError for an unknown comparison, or ``fusion_pixelfit`` without a fusion config
    to take its set-up from (named, existing, and a fusion config): before the run, not after
    its solve."""
    for name in options.comparisons:
        if name not in COMPARISONS:
            raise ConfigError(f"{config.source}: `problem.comparisons`: unknown comparison `{name}`"
                              f"{did_you_mean(name, COMPARISONS)}; one of {', '.join(COMPARISONS)}.")
    if "fusion_pixelfit" in options.comparisons:
        if not options.comparison_fusion:
            raise ConfigError(f"{config.source}: `problem.comparisons` has `fusion_pixelfit`: set "
                              "`problem.comparison_fusion` to a fusion config whose [[regularizers]] and [solver] "
                              "it runs (e.g. \"fusion_xmm_xrism_small.toml\", relative to this config).")
        fusion_config(config, options)


def fusion_config(config, options):
    """The config ``comparison_fusion`` names (resolved against the run config's folder);
    ConfigError when it is missing or not a fusion config."""
    from ..config import load_config

    path = fusion_config_path(config, options)
    if not path.is_file():
        raise ConfigError(f"{config.source}: `problem.comparison_fusion` = {options.comparison_fusion!r}: no such "
                          f"file ({path}).")
    fcfg = load_config(path)
    if fcfg.run.problem != "fusion":
        raise ConfigError(f"{config.source}: `problem.comparison_fusion` ({path}) is a config of problem "
                          f"`{fcfg.run.problem}`; it must be a fusion config.")
    return fcfg


def fusion_config_path(config, options) -> Path:
    """``comparison_fusion`` resolved against the config's folder."""
    from .components import config_dir

    path = Path(options.comparison_fusion)
    return path if path.is_absolute() else Path(config_dir(config)) / path


def _solver(section):
    from .. import plugins

    return plugins.get("solver", section.name).from_config(section)


def upsampled(maps: dict[str, np.ndarray], factor: int) -> dict[str, np.ndarray]:
    """Maps of a coarser grid repeated onto a grid ``factor`` times finer per axis;
    amplitudes (fluxes per pixel) shared equally between the fine pixels."""
    ones = np.ones((factor, factor))
    return {name: np.kron(m, ones) / (factor ** 2 if name.endswith(".amplitude") else 1.0)
            for name, m in maps.items()}


def _solved_alone(problem, grid, observation) -> dict:
    """Maps of the same problem (config, options, solver) on one observation and ``grid``."""
    alone = type(problem)(problem.config, problem.backend, grid, [observation], [], problem.likelihood_cls,
                          problem.options)
    return alone.solve(_solver(problem.config.solver)).maps


def imager_alone(problem) -> dict:
    """Maps of the problem on the imager's counts alone."""
    return _solved_alone(problem, problem.grid, problem.observations[problem.imager])


def spectrometer_alone(problem) -> dict:
    """Maps of the problem on the spectrometer's counts at its own pixels, on the fine grid."""
    from ..grid import ModelGrid
    from ..instruments.forward import compile_forward
    from .base import ObservationData

    spec = problem.observations[problem.spectrometer]
    section = next(o for o in problem.config.observations if o.name == spec.name)
    r, g = section.spatial_rebin, problem.grid
    coarse = ModelGrid(g.energy_edges_kev, g.ny // r, g.nx // r, g.pixel_arcsec * r)
    psf = None if section.psf_size is None else max(1, (section.psf_size // r) | 1)
    forward = compile_forward(section.instrument, coarse.energy_edges_kev, (coarse.ny, coarse.nx), coarse.pixel_arcsec,
                              section.exposure_s, spectral_rebin=section.spectral_rebin, backend=problem.backend,
                              psf_size=psf)
    obs = ObservationData(spec.name, forward, spec.counts, spec.background, spec.instrument)
    return upsampled(_solved_alone(problem, coarse, obs), r)


def fusion_pixelfit(problem) -> dict:
    """Maps of per-pixel fits of the cube fused by ``comparison_fusion``'s set-up."""
    from .. import plugins
    from .base import make_regularizers
    from .imaging import Fusion

    fcfg = fusion_config(problem.config, problem.options)
    fusion = Fusion(fcfg, problem.backend, problem.grid, problem.observations, make_regularizers(fcfg),
                    plugins.get("likelihood", "poisson"), fcfg.problem)
    return pixelfit_of_cube(problem, fusion.solve(_solver(fcfg.solver)).arrays["cube"])


def pixelfit_of_cube(problem, cube) -> dict:
    """Maps of per-pixel fits of a sky ``cube`` (physical units, on the problem's grid) with
    the problem's components: pseudo-counts cube × the spectrometer's exposure × mean
    effective area per bin, through an identity redistribution (amplitudes come out as
    fluxes), ``init_iter`` Levenberg–Marquardt iterations."""
    from .fitting import PixelFitter

    be = problem.backend
    cube = np.asarray(cube, dtype=np.float64)
    spec = problem.observations[problem.spectrometer].forward
    edges = problem.grid.energy_edges_kev
    weight = float(spec.exposure_s) * spec.instrument.mean_effective_area(edges)
    counts = be.asarray(cube * weight[:, None, None])
    fitter = PixelFitter(problem.components, problem.map_blocks, (be.asarray(weight), be.asarray(np.eye(edges.size - 1))),
                         counts, None, (problem.grid.ny, problem.grid.nx), be, 1)
    return fitter.maps_from(fitter.fit(problem.options.init_iter).u)[0]


def comparison_metrics(problem, truth) -> dict:
    """``maps_<name>`` (``map_metrics``) for each of ``[problem] comparisons``, and
    ``comparisons`` (the names, each one's wall time, or why none ran)."""
    from .components import map_metrics

    names = list(problem.options.comparisons)
    if not names:
        return {}
    if truth is None or not truth.components:
        return {"comparisons": {"skipped": "the run has no truth to score them against ([simulate] or "
                                           "[metrics] truth_maps)", "names": names}}
    run = {"imager_alone": imager_alone, "spectrometer_alone": spectrometer_alone, "fusion_pixelfit": fusion_pixelfit}
    out, seconds = {}, {}
    for name in names:
        t0 = time.perf_counter()
        out[f"maps_{name}"] = map_metrics(run[name](problem), truth)
        seconds[name] = round(time.perf_counter() - t0, 2)
    out["comparisons"] = {"names": names, "wall_s": seconds}
    return out
