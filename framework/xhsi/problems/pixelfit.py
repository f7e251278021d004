"""Pixel-by-pixel spectral fitting: the conventional baseline of unmixing, and a tool.

Every detector pixel (or block of ``bin × bin`` pixels) of one observation is fitted alone
by Poisson maximum likelihood with the same ``[[components]]`` as unmixing, through the
instrument's spectral response only (the PSF is ignored, as in the usual per-region
spectral fits), by Levenberg–Marquardt iterations batched over pixels; 1-σ errors are
√diag(F⁻¹), F the Poisson Fisher information at the solution. The fits are those of the
per-pixel fitting engine, ``xhsi.problems.fitting.PixelFitter``, which unmixing also runs
for its start and its error maps; this module makes a problem of it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from ..backend import Backend, to_numpy
from ..errors import ConfigError
from ..results import Result
from ..schema import option
from .base import ObservationData, Problem
from .components import config_dir, map_metrics, map_units, parameter_rows, resolve_components
from .fitting import DAMPING, GTOL, PixelFitter, spectral_response


@dataclass
class PixelFitOptions:
    bin: int = option(1, min=1, doc="fit blocks of bin × bin detector pixels (sums of their counts)")
    damping: float = option(DAMPING, min=0.0, doc="initial Levenberg–Marquardt damping λ (relative to diag F)")
    gtol: float = option(GTOL, min=0.0, unit="σ",
                         doc="a pixel has converged when its likelihood gradient is below gtol per 1-σ error "
                             "of every free variable ([solver] tol is not used)")


class PixelFit(Problem):
    """Independent Poisson fits of ``[[components]]`` in every (binned) detector pixel."""

    name = "pixelfit"
    Options = PixelFitOptions
    observations_allowed = (1, 1)
    memory_cubes = 16.0  # component spectra and their derivatives at every pixel (rough)
    pixel_local = True  # the PSF is ignored: xhsi tiles chunks the pixels with no overlap

    @classmethod
    def check_config(cls, config, regularizers: list | None = None) -> list:
        """Besides the shared checks: no [[regularizers]], the Poisson likelihood, a ``bin``
        that divides the detector pixels, and the [[components]] built on the grid."""
        from .checks import check_components, model_grid

        regularizers = super().check_config(config, regularizers)
        if regularizers:
            raise ConfigError(f"{config.source}: problem `pixelfit` fits each pixel alone and takes no "
                              "[[regularizers]].")
        if config.run.likelihood != "poisson":
            raise ConfigError(f"{config.source}: problem `pixelfit` fits Poisson likelihoods only.")
        grid = model_grid(config)
        r = config.observations[0].spatial_rebin
        b = (config.problem if config.problem is not None else PixelFitOptions()).bin
        if (grid.ny // r) % b or (grid.nx // r) % b:
            raise ConfigError(f"{config.source}: pixelfit bin = {b} does not divide the detector grid "
                              f"{(grid.ny // r, grid.nx // r)}.")
        check_components(config, grid)
        return regularizers

    def extra_metrics(self, result: Result, truth) -> dict:
        """``maps``: the fitted maps against the scene's components (``map_metrics``)."""
        return {"maps": map_metrics(result.maps, truth)} if result.maps and truth.components else {}

    def __init__(self, config, backend: Backend, grid, observations: list[ObservationData], regularizers: list,
                 likelihood_cls, options: PixelFitOptions | None = None):
        if len(observations) != 1:
            raise ConfigError(f"{config.source}: problem `pixelfit` fits one observation; the config has "
                              f"{len(observations)}.")
        if regularizers:
            raise ConfigError(f"{config.source}: problem `pixelfit` fits each pixel alone and takes no "
                              "[[regularizers]].")
        if getattr(likelihood_cls, "name", "poisson") != "poisson":
            raise ConfigError(f"{config.source}: problem `pixelfit` fits Poisson likelihoods only.")
        self.config, self.backend, self.grid = config, backend, grid
        self.observation = observations[0]
        self.options = options if options is not None else PixelFitOptions()
        self.components, self.map_blocks = resolve_components(config.components, grid, backend, str(config.source),
                                                              config_dir(config))
        counts = self.observation.counts
        b = self.options.bin
        if counts.shape[1] % b or counts.shape[2] % b:
            raise ConfigError(f"{config.source}: pixelfit bin = {b} does not divide the detector grid "
                              f"{tuple(counts.shape[1:])}.")

    def fitter(self) -> PixelFitter:
        """The per-pixel fitting engine on the observation, binned ``bin × bin``."""
        obs = self.observation
        return PixelFitter(self.components, self.map_blocks, spectral_response(obs, self.backend), obs.counts,
                           obs.background, (self.grid.ny, self.grid.nx), self.backend, self.options.bin,
                           wstat=getattr(obs, "wstat", None))

    def solve(self, solver, callback: Callable | None = None, checkpoint_path=None, checkpoint_every: int = 0,
              resume_from=None, config_digest: str | None = None) -> Result:
        if resume_from is not None:
            raise ConfigError("problem `pixelfit` has no checkpoints to resume from; run it again.")
        t0 = time.perf_counter()
        fitter = self.fitter()
        fit = fitter.fit(solver.max_iter, self.options.gtol, self.options.damping, callback, solver.report_every)
        maps, errors = fitter.maps_from(fit.u, fitter.errors(fit.fisher))
        cubes = self._component_cubes(maps)
        history = fit.history
        meta = {"problem": self.name, "solver": "levenberg-marquardt (per pixel)", "n_iter": fit.n_iter,
                "stop_reason": fit.stop_reason, "converged": fit.n_converged == fit.converged.size,
                "pixels_converged": fit.n_converged, "pixels_stalled": fit.n_stalled,
                "pixels": int(fit.converged.size), "solve_wall_s": time.perf_counter() - t0,
                "final_cost": history[-1]["cost"] if history else None}
        return Result(arrays={"cube": sum(cubes.values())}, history=history, metadata=meta, maps=maps,
                      map_units=map_units(self.components, self.map_blocks), map_errors=errors, components=cubes)

    def _component_cubes(self, maps) -> dict:
        """Each component's cube on the model grid from the fitted maps."""
        out = {}
        for comp in self.components:
            rows = parameter_rows(comp, comp.model.parameters, maps, self.map_blocks, (self.grid.ny, self.grid.nx))
            spec = to_numpy(comp.model.evaluate(self.backend.asarray(rows)))
            out[comp.name] = maps[f"{comp.name}.amplitude"][None] * spec
        return out
