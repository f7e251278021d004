"""Semi-blind spectral unmixing (SUSHI, Lascar, Bobin & Acero 2024, A&A 686, A259).

The sky cube is a mixture of components, each a spectral model S_c with parameter maps θ_c
and an amplitude map a_c (photon flux per pixel over the model band, photons / s / cm²):

    Z(E, y, x) = Σ_c a_c(y, x) · S_c(E; θ_c(y, x)),

observed through each instrument's forward operator: counts_k ~ Poisson(A_k Z + B_k). The
unknowns are solved by PALM (Bolte, Sabach & Teboulle 2014) with one block per amplitude map
and one block per fitted parameter map, so that each map gets its own step size (a
temperature in keV and a redshift of order 1e-3 have curvatures many decades apart).
Amplitudes are projected on a ≥ 0, parameters on their bounds; optional starlet sparsity of
the maps with thresholds k·s_j(y, x) in the units of each map, s_j the starlet propagation of
s = 1/(σ·D) (``metric_noise``), σ the per-pixel Fisher errors of the start (``FisherStarlet``).
Each block's step is taken in the metric D of its pixel-local Fisher information
(``start_fisher``), so that a pixel's gradient step is a scoring step of its own size and the
thresholding acts at the noise level of that map; a parameter map's metric is floored at
1/s², s the spread of its start map (``metric_damping``: Levenberg–Marquardt damping at the
prior's scale, which keeps the prior acting where the data do not constrain the parameter;
docs/unmixing.md, "Measured").

Parameters may be *fixed* (a constant, e.g. the abundance) or *linked* to another
component's map (one velocity map shared by two plasmas: one block, gradients summed).
Amplitudes are solved relative to a per-pixel flux scale (the mean initial amplitude of the
pixel), which evens out their curvatures; maps are written back in physical units.

By default (``reduce = "auto"``) each component's model is tabulated as a low-rank basis and
interpolated coefficients, and the forward operators are folded onto that basis
(``xhsi.problems.reduction``); the result's cubes come from the exact models.
"""
from __future__ import annotations

import functools

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..backend import Backend, to_numpy
from ..errors import ConfigError
from ..results import Result
from ..schema import option
from ..spectral.models import latent_factors
from .base import ObservationData, Problem, run_solver
from .bootstrap import FROM as BOOTSTRAP_FROM, WRITTEN as BOOTSTRAP_WRITTEN
from .components import config_dir, map_metrics, map_units, parameter_rows, resolve_components
from .fitting import PixelFitter, spectral_response
from .mixture import DataFit, Mixture
from .reduction import SpectralReduction, check_reduction
from .starts import backprojection
from .joint_metric import JointPixelMetric
from .unmixing_prior import (METRIC_FLOOR, FisherStarlet, finest_scale_weights, information_shares,
                             local_thresholds, metric_noise, shared_coefficient_sigma, start_spread)


def combined_error(sigmas: list):
    """The 1-σ error of independent pieces of information whose errors are ``sigmas``
    (host arrays): (Σ σ_k⁻²)^(−1/2); one piece is returned as it is, 0 stays 0 and
    inf / NaN count as no information."""
    if len(sigmas) == 1:
        return sigmas[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        info = sum(np.where(np.isfinite(s), 1.0 / np.square(np.asarray(s, dtype=np.float64)), 0.0) for s in sigmas)
        return 1.0 / np.sqrt(info)


@dataclass
class UnmixingOptions:
    init_bin: int = option(2, min=0, doc="initialise the maps by per-pixel fits of the first observation binned "
                                          "bin × bin (0: start from the [[components]] init values)")
    init_iter: int = option(30, min=1, unit="iterations", doc="Levenberg–Marquardt iterations of that fit")
    precondition: bool = option(True, doc="per-pixel step sizes: PALM in the metric of each map's pixel-local "
                                          "Fisher information at the start (false: one step per map, set by its "
                                          "most curved pixel; the thresholds then act ~1/L of what they should)")
    metric_damping: float = option(1.0, min=0.0, doc="floor of each parameter map's per-pixel metric, in units of "
                                                     "1/s², s the robust scatter of its start map (Levenberg–Marquardt "
                                                     "damping at the prior's scale; 0: Fisher metric floored at "
                                                     "0.1 × its median only)")
    joint_metric: bool = option(True, doc="after each PALM sweep, a step over every map at once in each pixel's "
                                          "Fisher information, kept where the objective decreases "
                                          "(xhsi.problems.joint_metric; needs precondition; false: sweeps only)")
    reduce: str = option("auto", choices=("auto", "table", "none"),
                         doc="table: each component's model as a low-rank basis and an interpolated table of its "
                             "coefficients (fast; at most 3 fitted parameters per component); none: the exact "
                             "models on the full cube; auto: table where every component allows it")
    table_tol: float = option(1e-3, min=0.0, exclusive_min=True, max=0.1,
                              doc="largest relative L2 error of a tabulated spectrum (interpolation and rank)")
    errors: str = option("fisher", choices=("fisher", "bootstrap"),
                         doc="error maps: fisher (pixel-local Fisher information at the solution, prior ignored) or "
                             "bootstrap (parametric bootstrap: replicate counts re-solved, prior included; "
                             "xhsi.problems.bootstrap, docs/unmixing.md \"Error maps\")")
    bootstrap_samples: int = option(16, min=2, doc="bootstrap: replicates B (each costs about one fit)")
    bootstrap_iter: int = option(0, min=0, unit="iterations",
                                 doc="bootstrap: solver iterations of each replicate's fit (0: the run's [solver] "
                                     "max_iter, the estimator itself)")
    bootstrap_from: str = option("solution", choices=BOOTSTRAP_FROM,
                                 doc="bootstrap: draw the replicates at the solution, or at an unregularised "
                                     "pilot fit and measure their rms deviation from it (pilot: the prior's bias at "
                                     "a map as rough as the data's; wider)")
    bootstrap_interval: str = option("auto", choices=("auto",) + BOOTSTRAP_WRITTEN,
                                     doc="bootstrap: the error written, sure (Stein's unbiased estimate of the error "
                                         "at the truth from one more, unregularised, fit and replicates drawn at the "
                                         "solution) or rms (the replicates' rms deviation from where they were drawn: "
                                         "at the solution, the prior's bias at a sky as smooth as the map); auto: sure "
                                         "at the solution, rms at the pilot")


class Unmixing(SpectralReduction, Problem):
    """Semi-blind unmixing of one or several observations into ``[[components]]``."""

    name = "unmixing"
    Options = UnmixingOptions
    observations_allowed = (1, None)
    solver_unknowns = "blocks"
    # Peak resident memory of configs/unmixing_casa_chandra_small.toml on 64 × 64 pixels:
    # ~45 cubes (component spectra, their derivatives, the per-pixel fits of the start).
    memory_cubes = 40.0
    #: Factor on every starlet threshold of the maps (``amplitude_k``, ``parameter_k``): 0
    #: fits without the prior (the bootstrap's unregularised pilot, xhsi.problems.bootstrap).
    prior_factor = 1.0

    @classmethod
    def check_config(cls, config, regularizers: list | None = None) -> list:
        """Besides the shared checks: no [[regularizers]] (their place is in each component),
        and the [[components]] built on the grid (spectral models, parameters, bounds, links)."""
        from .checks import check_components, model_grid

        regularizers = super().check_config(config, regularizers)
        if regularizers:
            raise ConfigError(f"{config.source}: problem `unmixing` takes its regularisers per component "
                              "(amplitude_k, parameter_k, scales in [[components]]), not [[regularizers]].")
        check_components(config, model_grid(config))
        options = config.problem if config.problem is not None else cls.Options()
        if options.reduce == "table":  # more than 3 fitted maps in a component: refused
            comps, _ = resolve_components(config.components, model_grid(config), Backend("numpy", config.run.dtype),
                                          str(config.source), config_dir(config))
            check_reduction(config.source, options, comps)
        if options.errors == "bootstrap":  # each replicate fits at least one iteration; sure at the solution
            from .bootstrap import check_options

            check_options(options, config.solver.max_iter, str(config.source))
        return regularizers

    def extra_metrics(self, result: Result, truth) -> dict:
        """``maps``: the errors of the result's maps against the scene's components
        (``map_metrics``); ``maps_pixelfit``: the same for the conventional per-pixel fit
        (``baseline_maps``), the yardstick, with the physical maps of a learnt model's
        weights read out as for the result (``_physical_maps``)."""
        if not result.maps or not truth.components:
            return {}
        baseline = self.baseline_maps()
        baseline = {**baseline, **self._physical_maps(baseline)[0]}
        return {"maps": map_metrics(result.maps, truth), "maps_pixelfit": map_metrics(baseline, truth)}

    def __init__(self, config, backend: Backend, grid, observations: list[ObservationData], regularizers: list,
                 likelihood_cls, options: UnmixingOptions | None = None):
        self.options = options if options is not None else UnmixingOptions()
        if regularizers:
            raise ConfigError(f"{config.source}: problem `unmixing` takes its regularisers per component "
                              "(amplitude_k, parameter_k, scales in [[components]]), not [[regularizers]].")
        self.config, self.backend, self.grid = config, backend, grid
        self.observations, self.likelihood_cls = observations, likelihood_cls
        self.components, self.map_blocks = resolve_components(config.components, grid, backend, str(config.source),
                                                              config_dir(config))
        self._responses: dict = {}  # spectral responses of the observations the per-pixel fits see
        self.amp_names = [c.name for c, s in zip(self.components, config.components) if not s.fixed_amplitude]
        self._tabulate()  # reduce: the tabulated models in `components`, the exact ones kept

    # -- building -------------------------------------------------------------------------
    def build(self):
        """(x0 list, the smooth part (``DataFit``: its ``value``, and its ``joint`` curvature
        model with ``joint_metric``), PALM blocks, mixture)."""
        from ..likelihoods import DataTerm
        from ..solvers import Block, Box, NonNegative, ProxChain
        xp, dtype = self.backend.xp, self.backend.dtype
        n_comp = len(self.components)
        start = self.initial_maps()
        if start is None:
            flux0 = xp.sum(backprojection(self.observations, xp), axis=0)  # photons / s / cm² per pixel
            start = {f"{c.name}.amplitude": flux0 / n_comp for c in self.components}
            start.update({b.name: b.init for b in self.map_blocks})
        map_starts = [xp.clip(self.backend.asarray(start[b.name]), min=b.bounds[0], max=b.bounds[1])
                      for b in self.map_blocks]
        # Amplitudes are solved relative to a per-pixel flux scale s_p (the mean initial
        # amplitude of the pixel, floored at 1e-3 of the image mean): the Poisson curvature
        # of a_p scales like counts_p / a_p², so in absolute units faint pixels would set one
        # tiny step for the whole map and a step sized for them empties bright ones.
        total = None
        for c in self.components:
            a = self.backend.asarray(start[f"{c.name}.amplitude"])
            total = a if total is None else total + a
        mean = float(xp.mean(total)) / n_comp
        scale = xp.clip(total / n_comp, min=1e-3 * mean if mean > 0 else 1e-30)
        amps = []
        for comp, sec in zip(self.components, self.config.components):
            init = self.backend.asarray(start[f"{comp.name}.amplitude"]) / scale
            if sec.fixed_amplitude:
                comp.amplitude_init = init
            else:
                comp.amplitude_slot = len(amps)
                amps.append(init)
        mixture, operators = self._mixture(len(amps), scale)
        terms = [DataTerm(self.likelihood_cls.for_counts(o.counts), op, o.counts, o.background,
                          what=f"counts of `{o.name}`") for o, op in zip(self.observations, operators)]

        data = DataFit(mixture, terms)
        x0 = amps + map_starts
        metrics, sigmas, shares = self.start_fisher(mixture, x0)
        blocks = []
        specs = [(name, (0.0, None), self._amp_k(name), self._scales(name)) for name in self.amp_names]
        specs += [(b.name, b.bounds, b.sparsity_k, b.scales) for b in self.map_blocks]
        for i, (name, (lo, hi), k, scales) in enumerate(specs):
            proxes: list[Any] = []
            k = None if k is None else k * self.prior_factor
            if k is not None and k > 0:
                # Thresholds k·s_j(p) in the units of the map, from its Fisher errors at the
                # start (s = 1/(σ·D), see metric_noise). (They used to be the MAD of the
                # gradient's counting noise with one step per map: in map units the noise of
                # the brightest pixels only, and the prior never acted.)
                sig = shared_coefficient_sigma(sigmas[i], shares[i], scales, seed=self.config.run.seed or 0)
                if i < mixture.n_amp:  # an amplitude's noise level jumps at the source's edges
                    sig = local_thresholds(sig, sigmas[i], scales)
                mask = xp.asarray([1.0] * scales + [0.0], dtype=dtype)[:, None, None]  # coarse: free
                metric = metrics[i] if self.options.precondition else None
                proxes.append(FisherStarlet(k * sig * mask, scales, metric))  # a penalty in cost units
            proxes.append(NonNegative() if hi is None else Box(lo, hi))
            # In the Fisher metric L ≈ 1: a step above 1 (backtracking lets L drift below 1
            # where the data are flatter than their Fisher information says) would scale the
            # thresholds far beyond the noise level with it.
            blocks.append(Block(gradient=functools.partial(data.partial, i),
                                prox=ProxChain(proxes), name=name,
                                metric=metrics[i] if self.options.precondition else None,
                                max_step=1.0 if len(proxes) > 1 and self.options.precondition else None))
        if self.options.joint_metric and self.options.precondition:  # PALM's joint steps (xhsi.problems.joint_metric)
            data.joint = JointPixelMetric(self, mixture, metrics)
        return x0, data, blocks, mixture

    def _fisher_observations(self) -> list[int]:
        """The observations whose per-pixel fits' Fisher information sets the start metric,
        the thresholds and the error maps (their information adds up): the first one."""
        return [self._fit_observation()]

    def _fisher_fitters(self) -> list[PixelFitter]:
        """The unbinned per-pixel fits of ``_fisher_observations``."""
        return [self._fitter(1, index) for index in self._fisher_observations()]

    @functools.cached_property
    def _fisher_optics(self) -> list[tuple]:
        """Per ``_fisher_observations``, (its PSF on the model grid or None, the weight of its
        curvature in the per-pixel metrics: ``finest_scale_weights``, 1 for one
        observation). They depend on the instruments and the grid, not on the counts: once
        per problem (and shared by the bootstrap's copies)."""
        indices = self._fisher_observations()
        psfs = [self._model_psf(index) for index in indices]
        factors = [self._fitter(1, index).factor for index in indices]
        weights = finest_scale_weights(list(zip(factors, psfs)), seed=self.config.run.seed or 0)
        return list(zip(psfs, weights))

    def _model_psf(self, index: int):
        """Observation ``index``'s PSF on the model grid at the middle of its band (a host
        kernel summing to 1), or None where its instrument has none."""
        instrument = self.observations[index].instrument
        if getattr(getattr(getattr(instrument, "spec", None), "psf", None), "kind", None) is None:
            return None
        return instrument.psf_image(self.grid.pixel_arcsec)

    def start_fisher(self, mixture, x0) -> tuple[list, list, list]:
        """Per block, on the model grid and in the units of the solver's variable: the
        diagonal of the pixel-local Poisson Fisher information at the start (PALM's block
        metric D; first observation, PSF neglected; floored at ``METRIC_FLOOR`` × its median)
        and the noise level s = 1/(σ·D) of the starlet thresholds (``metric_noise``), σ the
        marginal 1-σ Fisher error √(F⁻¹)_ii (the noise of a per-pixel fit; capped at the
        robust scatter s of the start map for parameters (``start_spread``), 10× the largest
        start value for amplitudes, where a pixel carries no information). A parameter's
        metric is also floored at ``metric_damping``/s².

        The metric is not normalised: with D = diag F, L_i ≈ 1 and a PALM step on a block is
        a Fisher-scoring step of each pixel's own size, whatever its brightness. With several
        observations each one's curvature counts by the fraction of the finest starlet scale
        its PSF and pixels keep, relative to the sharpest one's (``finest_scale_weights``):
        a coarse, blurred observation's per-pixel curvature is that of its blurred block
        means, which a diagonal metric would charge to every model pixel; counted in full, it
        shrank the thresholds of the prior's prox (step·λ/D) where only the imager resolves
        the map (docs/fusion_unmixing.md, "Thresholds per scale").

        Also, per block, each fitter's share of the information, its block size and its
        observation's PSF (``information_shares``): the thresholds count a coarse or blurred
        observation's information at each starlet scale by what its PSF and pixels keep of
        that scale (``shared_coefficient_sigma``)."""
        xp, dtype = self.backend.xp, self.backend.dtype
        maps = self._maps(mixture, x0)
        scale = to_numpy(mixture.scale) if hasattr(mixture.scale, "shape") else float(mixture.scale)
        curvs: list[Any] = [None] * len(x0)
        infos: list[list] = [[] for _ in x0]  # per block, each fitter's (1-σ errors on the model grid, block size)
        for fitter, (psf, weight) in zip(self._fisher_fitters(), self._fisher_optics):
            _, fisher = fitter.fisher_at_maps(maps)
            p = fisher.shape[-1]
            eye = xp.eye(p, dtype=fisher.dtype)
            diag = to_numpy(xp.sum(fisher * eye, axis=-1))  # (npix, P)
            err = to_numpy(fitter.errors(fisher))           # (npix, P)
            factor = fitter.factor
            ny, nx = self.grid.ny // factor, self.grid.nx // factor

            def up(a, ny=ny, nx=nx, factor=factor):
                return np.kron(np.reshape(a, (ny, nx)), np.ones((factor, factor)))

            def add(k, curv, sigma, factor=factor, psf=psf, weight=weight):
                curv = curv * weight
                curvs[k] = curv if curvs[k] is None else curvs[k] + curv
                infos[k].append((sigma, factor, psf))
            for j, comp in enumerate(self.components):
                if comp.amplitude_slot is not None:
                    # x = a / scale; a detector block's amplitude is the sum of its factor² model pixels
                    add(comp.amplitude_slot, up(diag[:, j]) * scale ** 2, up(err[:, j]) / scale)
            for i in range(len(self.map_blocks)):
                col = len(self.components) + i
                add(mixture.n_amp + i, up(diag[:, col]) / factor ** 2, up(err[:, col]) * factor)

        def capped(sigma, cap):  # no information (inf, NaN) or more than the cap: the cap
            return np.clip(np.nan_to_num(sigma, nan=cap, posinf=cap), 0.0, cap)
        sigmas: list[Any] = [None] * len(x0)
        caps: list[float] = [1.0] * len(x0)
        floors: list[float] = [0.0] * len(x0)
        for j, comp in enumerate(self.components):
            if comp.amplitude_slot is None:
                continue
            k = comp.amplitude_slot
            cap = 10.0 * float(np.max(to_numpy(x0[k]))) if x0[k].size else 1.0
            caps[k] = cap
            sigmas[k] = capped(combined_error([part[0] for part in infos[k]]), cap)
        for i, block in enumerate(self.map_blocks):
            k = mixture.n_amp + i
            start = to_numpy(x0[k])
            cap = start_spread(start, to_numpy(block.init), block.bounds)
            caps[k] = cap
            # Levenberg–Marquardt damping at the prior's scale: no pixel's metric is flatter
            # than the curvature 1/s² of a Gaussian of the map's own spread s (robust scatter
            # of the start). Where the data hardly constrain a parameter (Γ where the
            # synchrotron is < 10 % of the flux, or any parameter of a component whose start
            # amplitude is 0, whose Fisher curvature at the start is 0 and grows with the
            # amplitude) the floored Fisher metric let a step cross the box and Γ wander to
            # its bounds; the metric also turns the thresholds into the penalty λ = D·T,
            # which was ~0 there (docs/unmixing.md, "Measured").
            floors[k] = self.options.metric_damping / cap ** 2
            sigmas[k] = capped(combined_error([part[0] for part in infos[k]]), cap)
        out_m, out_s = [], []
        for curv, sig, cap, floor in zip(curvs, sigmas, caps, floors):
            curv = np.where(np.isfinite(curv), curv, 0.0)
            med = float(np.median(curv)) if np.median(curv) > 0 else (float(curv.mean()) or 1.0)
            d = np.clip(curv, max(METRIC_FLOOR * med, floor), None)
            out_m.append(xp.asarray(d, dtype=dtype))
            out_s.append(xp.asarray(np.clip(metric_noise(sig, d), 0.0, cap), dtype=dtype))
        return out_m, out_s, [information_shares(parts) for parts in infos]

    def initial_maps(self) -> dict | None:
        """Maps from per-pixel fits of the binned first observation (SUSHI's coarse
        initialisation), or None when ``init_bin = 0`` or the grid does not divide."""
        b = self.options.init_bin
        counts = self.observations[self._fit_observation()].counts
        if b == 0 or counts.shape[1] % b or counts.shape[2] % b:
            return None
        maps = self._pixel_fit(b)
        if b == 1:
            self._pixelfit_maps = maps
        return maps

    def _fit_observation(self) -> int:
        """Index of the observation the start's per-pixel fits and the yardstick see."""
        return 0

    def _fitter(self, bin: int, index: int | None = None) -> PixelFitter:
        """The per-pixel fitting engine (``xhsi.problems.fitting``) on observation ``index``
        (default ``_fit_observation``), its detector pixels binned ``bin × bin``."""
        index = self._fit_observation() if index is None else index
        obs = self.observations[index]
        if index not in self._responses:
            self._responses[index] = spectral_response(obs, self.backend)
        return PixelFitter(self.components, self.map_blocks, self._responses[index], obs.counts, obs.background,
                           (self.grid.ny, self.grid.nx), self.backend, bin)

    def _pixel_fit(self, b: int) -> dict:
        """Maps of ``init_iter`` Levenberg–Marquardt iterations of the per-pixel fits of the
        first observation binned ``b × b``."""
        fitter = self._fitter(b)
        return fitter.maps_from(fitter.fit(self.options.init_iter).u)[0]

    def baseline_maps(self) -> dict:
        """The conventional per-pixel fit (pixelfit, unbinned, ``init_iter`` iterations) of
        the first observation, as maps: the yardstick of ``metrics.json``."""
        if getattr(self, "_pixelfit_maps", None) is None:
            self._pixelfit_maps = self._pixel_fit(1)
        return self._pixelfit_maps

    def _section(self, name):
        return next(s for s in self.config.components if s.name == name)

    def _amp_k(self, name):
        return self._section(name).amplitude_k

    def _scales(self, name):
        return self._section(name).scales

    # -- solving ---------------------------------------------------------------------------
    @classmethod
    def selection_candidates(cls, config) -> list:
        """The default candidates of ``[selection] select = "auto"``
        (``xhsi.selection.candidates.mixture_candidates``: the amplitude prior)."""
        from ..selection.candidates import mixture_candidates

        return mixture_candidates(config)

    def selection_fit(self, starts: dict, fraction: float):
        """As ``ImagingProblem.selection_fit``: the problem's own start (per-pixel fits of
        the fold's counts; ``starts`` and ``fraction`` unused), the run's solver over its blocks, scored
        on the mixture's cube (with tables its rank maps) through each observation's
        operator; no sky cube for the oracle."""
        x0, data, blocks, mixture = self.build()
        return (x0, data, blocks), [term.operator for term in data.terms], mixture.cube, None

    def solve(self, solver, callback: Callable | None = None, checkpoint_path=None, checkpoint_every: int = 0,
              resume_from=None, config_digest: str | None = None) -> Result:
        x0, value, blocks, mixture = self.build()
        out, history, meta = run_solver(self.name, solver, (x0, value, blocks), callback,
                                        checkpoint_path=checkpoint_path, checkpoint_every=checkpoint_every,
                                        resume_from=resume_from, config_digest=config_digest)
        meta.update(solver.notes() if hasattr(solver, "notes") else {})
        meta["spectral_tables"] = self.spectral_tables()
        xs = out.x
        maps = self._maps(mixture, xs)
        mixture = self._output_mixture(mixture)
        arrays: dict[str, np.ndarray] = {"cube": to_numpy(mixture.cube(xs))}
        components = {name: to_numpy(c) for name, c in mixture.component_cubes(xs).items()}
        from . import bootstrap  # [problem] errors: fisher (error_maps) or bootstrap

        errors, notes = bootstrap.error_maps(self, solver, mixture, blocks, xs, maps)
        meta.update(notes)
        physical, physical_units = self._physical_maps(maps)
        return Result(arrays=arrays, history=history, metadata=meta, maps={**maps, **physical},
                      map_units={**map_units(self.components, self.map_blocks), **physical_units}, map_errors=errors,
                      components=components)

    def _physical_maps(self, maps: dict) -> tuple[dict, dict]:
        """Maps of the physical parameters of components whose model, or a factor of whose
        product model (``absorption * iae``), is learnt on latent variables (the IAE: its
        parameters are weights of its anchors' codes): ``<component>.<name>``, fitted per pixel to the
        decoded spectra (``fit_physical``), or read out by the learnt map (``physical``)
        where the source model is not known (a library, a response). No error maps: the
        Fisher errors are those of the weights."""
        from ..errors import ConfigError

        out, units = {}, {}
        for comp in self.exact_components:
            for model in latent_factors(comp.model):
                theta = self.backend.asarray(parameter_rows(comp, model.parameters, maps, self.map_blocks,
                                                            (self.grid.ny, self.grid.nx)))
                try:
                    values = model.fit_physical(theta)
                except ConfigError:
                    values = model.physical(theta)
                for parameter in model.physical_parameters:
                    name = f"{comp.name}.{parameter.name}"
                    if name not in maps:
                        out[name] = to_numpy(values[parameter.name])
                        units[name] = parameter.unit
        return out, units

    def _maps(self, mixture: Mixture, xs) -> dict[str, np.ndarray]:
        """The solver's variables ``xs`` as host maps in physical units, named as
        ``components.map_names``."""
        maps = {f"{comp.name}.amplitude": to_numpy(mixture.scale * mixture.amplitude(comp, xs))
                for comp in self.components}
        maps.update({block.name: to_numpy(xs[mixture.n_amp + i]) for i, block in enumerate(self.map_blocks)})
        return maps

    def error_maps(self, maps: dict) -> dict:
        """1-σ error maps from the Poisson Fisher information of each detector pixel of the
        first observation at the solution. Pixel-local: correlations through the PSF and the
        sparsity regularisation are neglected, so they are the errors of a per-pixel fit at
        the unmixing solution (documented approximation; none of the published codes gives
        any). With several fits (``_fisher_fitters``) their information adds up, each one's
        weighted as in the metric (``_fisher_optics``: the fraction of the finest starlet scale
        its pixels and PSF keep, relative to the sharpest observation's): a coarse, blurred
        observation's block information, repeated onto every model pixel of its block,
        otherwise counted as if each model pixel had it all (a Resolve pixel covers 9 of pn's,
        behind a 78″ PSF: its weight is ~1e-3; counted in full, the joint kT and z error maps
        were 3–10 × below the maps' actual errors)."""
        per_fit = []
        for fitter, (_, weight) in zip(self._fisher_fitters(), self._fisher_optics):
            errors = fitter.error_maps(maps)
            if weight != 1.0:  # 0: no information (an infinite error)
                errors = {k: e / np.sqrt(weight) if weight > 0 else np.full_like(e, np.inf) for k, e in errors.items()}
            per_fit.append(errors)
        return {name: combined_error([e[name] for e in per_fit]) for name in per_fit[0]}

    def baselines(self) -> dict[str, Any]:
        xp = self.backend.xp
        return {obs.name: to_numpy(backprojection([obs], xp)) for obs in self.observations}
