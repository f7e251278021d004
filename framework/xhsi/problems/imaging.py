"""Deconvolution and fusion (HIFReD, Lascar et al. 2025, A&A 694, A34).

Both minimise, over the sky cube Z (n_e, ny, nx) in photons / s / cm² per bin per pixel,

    Σ_k L(Y_k | A_k Z + B_k) + Σ_r w_r φ_r(Z),   Z ≥ 0,

with L the Poisson negative log-likelihood (or Gaussian χ²), A_k the compiled forward
operator of observation k and B_k its expected background counts. Deconvolution takes one
observation, fusion two or more of the same sky.

Regularisers that are smooth (``sobolev``, ``l2``) join the data term's gradient;
proximable ones (``starlet2d_l1``, ``starlet2d1d_l1``, ``wavelet2d_l1``, third-party) are
applied in config order, followed by the projection on Z ≥ 0 (``ProxChain``). A
parametrisation (``lowrank_pca``: Z = W·H) changes the unknown to the rank maps H: the
operators become A_k ∘ W, the other regularisers act on H, and the cube is materialised
only through the operators. With principal spectra (the published set-up) Z = W·H ≥ 0 is
not imposed (the Poisson term's model floor keeps the likelihood defined); with a
non-negative basis (``lowrank_pca`` ``basis = "nmf"``) H ≥ 0 is, and Z ≥ 0 follows.

The start is a data-only estimate (``starts.py``) computed on the host in float32 whatever
the run's precision, and the solver iterates in the fixed expectation-maximisation metric
where the prox terms allow it (``metric.py``; [problem] precondition).

Units: the solver works on the dimensionless cube X = Z / s, with s the mean of the
initial (back-projected) cube, so that iterates are of order one whatever the flux and
exposure; regularisers act on X (or on the rank maps of X), which makes their weights
comparable between sources. Results are given back in physical units.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..backend import Backend, array_namespace, to_numpy
from ..errors import ConfigError, DataError
from ..operators import Identity, LinearOperator, Scaled
from ..regularizers import Parametrisation
from ..results import Result
from ..schema import option
from .base import ObservationData, Problem, run_solver
from .metric import em_scaling, metric_mode, relative_scaling
from .starts import (backprojection, check_start_cube, host_observation, ratio_channels, ratio_fusion,
                     read_start_cube)

#: ``basis_passes`` of a run whose regularisers the selection chose (the untuned configs),
#: when they learn a spectral basis. On bench/fusion_suite.py's 9 scenes (2026-12-07,
#: docs/fusion.md "Basis passes") the second pass gains 1.8 dB of PSNR on average (−1.1 to
#: +8.6 dB; 7 scenes better) and ASAM on 6; it fits the basis to the fused cube rather
#: than to the start's one-step spectra.
SELECTED_BASIS_PASSES = 2


class ParametrisedCube(LinearOperator):
    """The linear map H → Z = to_cube(H) of a parametrisation, as an operator, so that
    A_k ∘ W composes like any other operator."""

    def __init__(self, parametrisation: Parametrisation, cube_shape):
        super().__init__(parametrisation.variable_shape, cube_shape)
        self.parametrisation = parametrisation
        self.xp = getattr(parametrisation, "xp", None)

    def _apply(self, h):
        return self.parametrisation.to_cube(h)

    def _adjoint(self, z):
        return self.parametrisation.to_cube_adjoint(z)


def _substitute(scale, operators, x0, to_cube):
    """The change of variable x = scale·y (``scale`` a Diagonal): the operators and the
    variable → cube map take y, and the start becomes x0 / scale."""
    return [op @ scale for op in operators], x0 / scale.weight, to_cube @ scale


def data_noise_std(likelihood, data):
    """Standard deviation of the noise of every data voxel, for ``gradient_noise``: the
    Gaussian likelihood's own σ (its ``variance`` array, else ``options.sigma``); for
    Poisson (and any other counts likelihood) √max(y, 1), the Poisson σ estimated by the
    counts and floored at one count (as Neyman's χ², ``Gaussian.for_counts``)."""
    from ..likelihoods import Gaussian

    xp = array_namespace(data)
    if isinstance(likelihood, Gaussian):
        if likelihood.variance is not None:
            return xp.sqrt(xp.astype(likelihood.variance, data.dtype)) * xp.ones_like(data)
        return xp.full_like(data, likelihood.options.sigma)
    return xp.sqrt(xp.clip(data, min=1.0))


#: Where the start is (nearly) zero, ``start_floor`` is taken of this fraction of the
#: start's mean over the pixels instead (per energy plane or rank map): a start of exactly
#: zero (no counts anywhere in any instrument's PSF footprint) would leave no floor.
ZERO_START = 1e-3


def start_floor(x0, fraction: float):
    """The lower bound ``[problem] start_floor`` puts on the solver's variable: ``fraction``
    of its start x0, and at least of ZERO_START times x0's mean over the pixels of each
    plane (energy or rank map), so that every pixel keeps a spectrum with the start's
    direction, or, where the start is zero, the mean of x0's planes: in the solver's
    variable, which the relative change of variable and the EM metric scale pixel by pixel,
    so a mean of the start's spectral shapes rather than its flux-weighted mean spectrum
    (docs/fusion.md, "A floor under the fit", compares the two)."""
    xp = array_namespace(x0)
    x0 = xp.clip(x0, min=0.0)
    mean = xp.mean(xp.reshape(x0, (x0.shape[0], -1)), axis=1)
    return fraction * xp.maximum(x0, ZERO_START * xp.reshape(mean, (-1,) + (1,) * (x0.ndim - 1)))


def floor_pixels(x, floor) -> dict:
    """How many sky pixels of the solver's variable ``x`` (planes × pixels) sit at their
    ``start_floor`` bound ``floor`` (``start_floor``'s array) in every plane, i.e. hold no
    counts the fit could use (their spectra are the start's): {"pixels": n, "of": all}."""
    xp = array_namespace(x)
    held = xp.all(x <= floor * (1.0 + 1e-4), axis=0)
    return {"pixels": int(xp.sum(xp.astype(held, xp.int64))), "of": int(held.size)}


def gradient_noise(data_terms, backend: Backend, seed: int = 0):
    """One seeded realisation of the counting-noise part of the data term's gradient,
    Σ_k A_kᵀ(ε_k / σ_k), with ε_k standard normal and σ_k the noise standard deviation of
    each data voxel (``data_noise_std``), in the units of the terms' variable.

    This is what the prox thresholds of noise-calibrated regularisers (starlet: λ = k·σ)
    must be measured on (``Regularizer.calibrate_noise``): at a model that fits the data,
    ∇f is exactly this fluctuation. The gradient *at the initial point* is not a noise
    proxy: it also holds the misfit of the initial estimate, which on bright sources is
    tens of times the noise (on the CasA-like fusion example its deviance is ~700× the
    number of voxels), so MAD thresholds taken from it over-smooth by that factor. The draw
    uses its own generator, seeded by ``seed`` ([run] seed), so it shifts no other draw."""
    import numpy as np

    xp, dtype = backend.xp, backend.dtype
    rng = np.random.default_rng([int(seed), 0x6E6F6973])  # a stream of its own ("nois")
    total = None
    for term in data_terms:
        eps = backend.asarray(rng.standard_normal(tuple(term.data.shape)))
        g = term.operator.adjoint(eps / data_noise_std(term.likelihood, term.data))
        total = g if total is None else total + g
    return xp.astype(total, dtype)


@dataclass
class ImagingOptions:
    start: str = option("auto", choices=("auto", "backprojection", "ratio_fusion", "ratio_channels"),
                        doc="initial cube: auto (ratio_fusion for fusion, backprojection for deconvolution), the "
                            "joint back-projection, the spectrometer's spectra scaled to the imager's image, or "
                            "scaled per imager channel (xhsi.problems.starts.ratio_channels)")
    start_file: Path | None = option(None, doc="start from this sky cube FITS instead (e.g. the result.fits of an "
                                               "earlier run on the same [model] grid); relative to the config file")
    precondition: str = option("auto", choices=("auto", "em", "none"),
                               doc="em: iterate in the fixed diagonal metric max(x0, floor) / Σ_k A_kᵀ1 of the "
                                   "expectation-maximisation (Richardson-Lucy) step, averaged per rank map or "
                                   "energy plane when a regulariser's prox needs it; auto: em where it applies "
                                   "(variable >= 0, no starlet2d1d_l1 or other Euclidean-only prox), else none")
    precondition_floor: float = option(0.1, min=0.0, exclusive_min=True,
                                       doc="floor of the em metric's numerator, as a fraction of the start's mean: "
                                           "voxels that are 0 at the start can still grow")
    precondition_max: float | None = option(None, min=1.0,
                                            doc="upper bound of the em metric D, as a multiple of its mean (none: "
                                                "unbounded): where the sensitivity is tiny (field corners, band "
                                                "edges) D is thousands of times its mean, which slows an iterative "
                                                "prox in the metric (starlet2d1d_l1 prox = \"exact\")")
    regularize: str = option("relative", choices=("absolute", "relative"),
                             doc="relative: the regularisers act on the cube (or rank maps) divided by the start's "
                                 "broad-band image b (mean 1), so faint regions are regularised like bright ones "
                                 "(the default: docs/fusion.md \"The scene suite\"); absolute: on the cube itself")
    relative_floor: float = option(0.1, min=0.0, exclusive_min=True, max=1.0,
                                   doc="floor of b with regularize = relative, as a fraction of its mean")
    start_floor: float = option(1e-6, min=0.0, max=0.5,
                                doc="lower bound of every unknown (voxel, or rank-map pixel) as a fraction of its value "
                                    "at the start, instead of 0: where the data hold no counts the Poisson fit goes to "
                                    "exactly zero, a spectrum with no direction; the floor keeps the start's there, "
                                    "far below what counts constrain (1e-6 of the start; of 1e-3 of its mean where "
                                    "the start is zero). 0: x >= 0")
    basis_passes: int | None = option(None, min=1, max=5, unit="passes",
                                      doc="with a learnt spectral basis (lowrank_pca): fit, learn the basis again "
                                          "from the result, and fit again from it, this many times in all (same "
                                          "options and iterations each; the first basis is learnt from the start). "
                                          "Default: 2 when the selection chose the regularisers, else 1")
    pass_iter: list[int] | None = option(None, doc="iterations of each pass before the last (basis_passes - 1 "
                                                   "values; the last pass runs [solver] max_iter); default: "
                                                   "max_iter each. The selection sets them from held-out counts")


class ImagingProblem(Problem):
    """Shared machinery of deconvolution and fusion (see the module docstring)."""

    Options = ImagingOptions
    solver_unknowns = "one"

    def __init__(self, config, backend: Backend, grid, observations: list[ObservationData], regularizers: list,
                 likelihood_cls, options: ImagingOptions | None = None):
        self.config, self.backend, self.grid = config, backend, grid
        self.observations = observations
        self.parametrisation = self._parametrisation(regularizers)
        self.regularizers = [r for r in regularizers if r is not self.parametrisation]
        self.likelihood_cls = likelihood_cls
        self.cube_shape = tuple(grid.shape)
        self.options = options if options is not None else ImagingOptions()
        if self.options.start_file is not None:
            self._start = read_start_cube(self.options.start_file, grid)  # checked before any heavy work
        self.metric_mode = self._metric_mode(self.options, regularizers)

    @staticmethod
    def _metric_mode(options: ImagingOptions, regularizers: list) -> str | None:
        """See ``metric.metric_mode``: known from the options alone."""
        params = [r for r in regularizers if isinstance(r, Parametrisation)]
        prox_terms = [r for r in regularizers if not r.smooth and r not in params]
        return metric_mode(options.precondition, prox_terms, not params or params[0].nonnegative)

    @staticmethod
    def _parametrisation(regularizers: list) -> Parametrisation | None:
        params = [r for r in regularizers if isinstance(r, Parametrisation)]
        if len(params) > 1:
            raise ConfigError(f"at most one parametrisation (e.g. lowrank_pca) per run; the config has "
                              f"{', '.join(p.name for p in params)}.")
        return params[0] if params else None

    @classmethod
    def check_config(cls, config, regularizers: list | None = None) -> list:
        """Besides the shared checks: at most one parametrisation, a ``precondition = "em"``
        that applies, and a ``start_file`` that exists and maps onto the grid (its header)."""
        regularizers = super().check_config(config, regularizers)
        learnt = cls._parametrisation(regularizers) is not None
        options = config.problem if config.problem is not None else ImagingOptions()
        cls._metric_mode(options, regularizers)
        chosen = "regularizers" not in (getattr(config, "_raw", None) or {"regularizers": []})  # by the selection
        if options.pass_iter is not None and (len(options.pass_iter) != (options.basis_passes or 1) - 1
                                              or any(int(n) < 0 for n in options.pass_iter)):
            raise ConfigError(f"{config.source or '<config>'}: [problem] pass_iter = {list(options.pass_iter)} must "
                              f"give the iterations (>= 0) of each pass before the last: "
                              f"{(options.basis_passes or 1) - 1} value(s) for basis_passes = "
                              f"{options.basis_passes or 1}.")
        if (options.basis_passes or 1) > 1 and not learnt and not chosen:
            raise ConfigError(f"{config.source or '<config>'}: [problem] basis_passes = {options.basis_passes} learns "
                              "the spectral basis of a lowrank_pca regulariser again from each pass's result, and "
                              "this config has none: add [[regularizers]] name = \"lowrank_pca\", or remove "
                              "basis_passes.")
        if options.start_file is not None:
            from .checks import model_grid

            check_start_cube(options.start_file, model_grid(config))
        return regularizers

    # -- building ----------------------------------------------------------------------
    def initial_cube(self) -> np.ndarray:
        """The solver's start in physical units ([problem] start / start_file), a float64
        numpy array on the host. The data-only starts are computed from float32 host copies
        of the data through the host operators (``ObservationData.host_forward``), so that
        runs of one config in any dtype and backend start from the same bits, and learn the
        same low-rank basis from it: a rank-24 NMF moved its spectra by 1e-3 for the 6e-6
        relative difference of a start computed through float32 instead of float64
        operators, and the float32 and float64 results by 0.05 dB PSNR."""
        if self.start_cube is not None:
            return self.start_cube
        if self.options.start_file is not None:
            if float(self._start.max()) <= 0:
                raise DataError(f"[problem] start_file {self.options.start_file}: the cube is zero everywhere.")
            return self._start
        start = self.options.start
        if start == "auto":
            start = self.default_start
        make = {"ratio_fusion": ratio_fusion, "ratio_channels": ratio_channels}.get(start, backprojection)
        return np.asarray(make([host_observation(obs) for obs in self.observations], np), dtype=np.float64)

    default_start = "backprojection"
    #: A start given by the caller instead (float64 numpy, physical units): the selection's
    #: fits of one thinned fold share the one start computed for it (xhsi.selection).
    start_cube: np.ndarray | None = None

    def build(self):
        """(x0, smooth term, prox term, variable → cube map)."""
        from ..likelihoods import DataTerm
        from ..operators import Diagonal
        from ..solvers import Composite, LowerBound, NonNegative, Precomposed, ProxChain, Zero

        xp, dtype = self.backend.xp, self.backend.dtype
        z0 = self.initial_cube()
        mean = float(np.mean(z0))
        self.scale = mean if mean > 0 else 1.0
        z0 = z0 / self.scale
        sky = np.sum(np.asarray(z0, dtype=np.float64), axis=0)  # broad-band image of the start
        # relative: only where a regulariser acts (without one the change of variable would
        # only re-scale the solver's path)
        relative = self.options.regularize == "relative" and bool(self.regularizers)
        brightness = relative_scaling(sky, self.options.relative_floor) if relative else None
        scaling = Scaled(Identity(self.cube_shape), self.scale)
        if self.parametrisation is not None:
            # learnt and projected in float64 (then cast to the run's dtype): see initial_cube
            p = self.parametrisation
            p.setup(self.cube_shape, xp, dtype)
            z0 = self.backend.asarray(z0, dtype=xp.float64)
            p.fit(z0)
            to_cube = scaling @ ParametrisedCube(p, self.cube_shape)
            x0 = p.from_cube(z0)
        else:
            to_cube = scaling
            x0 = self.backend.asarray(z0)
        del z0
        operators = [self._variable_forward(obs, to_cube, x0) for obs in self.observations]
        for reg in self.regularizers:
            reg.setup(tuple(x0.shape), xp, dtype)
            reg.calibrate_sky(sky)
        smooth_regs = [r for r in self.regularizers if r.smooth]
        prox_terms: list[Any] = [r for r in self.regularizers if not r.smooth]
        nonnegative = self.parametrisation is None or self.parametrisation.nonnegative
        self.relative = self.metric = None
        if brightness is not None:
            # x = b·v: the regularisers (smooth and prox alike) act on v; see relative_scaling
            self.relative = Diagonal(self.backend.asarray(brightness), tuple(x0.shape))
            operators, x0, to_cube = _substitute(self.relative, operators, x0, to_cube)
        if self.metric_mode is not None:
            # x = d·u: every term sees x (smooth regularisers through Precomposed), the solver u
            d = em_scaling(x0, operators, self.options.precondition_floor, per_slice=self.metric_mode == "slices",
                           cap=self.options.precondition_max)
            self.metric = Diagonal(d, tuple(x0.shape))
            operators, x0, to_cube = _substitute(self.metric, operators, x0, to_cube)
            smooth_regs = [Precomposed(r, self.metric) for r in smooth_regs]
            for reg in prox_terms:
                if reg.diagonal_metric == "weighted":
                    reg.use_metric(d)
        data_terms = [DataTerm(self.likelihood_cls.for_counts(obs.counts), op, obs.counts, obs.background,
                               what=f"counts of `{obs.name}`") for op, obs in zip(operators, self.observations)]
        if prox_terms:
            noise = self.gradient_noise(data_terms)
            for reg in prox_terms:
                reg.calibrate_noise(noise)
        self.floor = None  # the start_floor bound on the solver's variable, when there is one
        if nonnegative:
            if self.options.start_floor > 0:
                self.floor = start_floor(x0, self.options.start_floor)
            prox_terms.append(NonNegative() if self.floor is None else LowerBound(self.floor))
        prox = ProxChain(prox_terms) if prox_terms else Zero()
        return x0, Composite(data_terms + smooth_regs), prox, to_cube

    def gradient_noise(self, data_terms):
        """See :func:`gradient_noise`."""
        return gradient_noise(data_terms, self.backend, getattr(getattr(self.config, "run", None), "seed", 0) or 0)

    def _variable_forward(self, obs: ObservationData, to_cube, x0):
        """The operator from the solver's variable to ``obs``'s counts. With a low-rank
        parametrisation and a forward operator whose parts commute with the spectral basis
        (xhsi.operators.lowrank), the PSF and rebinning act on the rank maps and the full
        cube is never formed; otherwise A ∘ (variable → cube)."""
        if self.parametrisation is not None:
            from ..operators.lowrank import spectral_basis_forward

            fast = spectral_basis_forward(obs.forward, self.parametrisation.basis)
            if fast is not None:
                return fast @ Scaled(Identity(tuple(x0.shape)), self.scale)
        return obs.forward @ to_cube

    # -- solving -----------------------------------------------------------------------
    def solve(self, solver, callback: Callable | None = None, checkpoint_path=None, checkpoint_every: int = 0,
              resume_from=None, config_digest: str | None = None) -> Result:
        passes = (self.options.basis_passes or 1) if self.parametrisation is not None else 1
        earlier, last_iter = [], solver.max_iter
        for i in range(passes - 1):  # deterministic, so a resume recomputes them and continues the last
            x0, smooth, prox, to_cube = self.build()
            solver.max_iter = self.options.pass_iter[i] if self.options.pass_iter else last_iter
            try:
                out, _, meta = run_solver(self.name, solver, (x0, smooth, prox), callback)
            except KeyboardInterrupt:
                solver.state = None  # no checkpoint of an earlier pass: its basis is not the last pass's
                raise
            finally:
                solver.max_iter = last_iter
            earlier.append({"n_iter": meta.get("n_iter"), "stop_reason": meta.get("stop_reason")})
            self.start_cube = to_numpy(to_cube.apply(out.x)).astype(np.float64)  # the next basis is learnt from it
        x0, smooth, prox, to_cube = self.build()
        out, history, meta = run_solver(self.name, solver, (x0, smooth, prox), callback,
                                        checkpoint_path=checkpoint_path, checkpoint_every=checkpoint_every,
                                        resume_from=resume_from, config_digest=config_digest)
        meta["metric"] = {"voxels": "em (per voxel)", "slices": "em (per slice)"}.get(self.metric_mode, "euclidean")
        if earlier:
            meta["basis_passes"] = earlier + [{"n_iter": meta.get("n_iter"), "stop_reason": meta.get("stop_reason")}]
        if self.floor is not None:
            meta["floor_pixels"] = floor_pixels(out.x, self.floor)
        arrays = {"cube": to_numpy(to_cube.apply(out.x))}
        if self.parametrisation is not None:
            h = out.x
            for change in (self.metric, self.relative):  # back from the solver's variable to H
                h = h if change is None else change.apply(h)
            arrays["rank_maps"] = to_numpy(h) * self.scale
            arrays["basis"] = to_numpy(self.parametrisation.basis)
        return Result(arrays=arrays, history=history, metadata=meta)

    @classmethod
    def selection_final(cls, config, pass_iter: list[int] | None = None) -> dict:
        """Overrides of the final fit of a selection (``xhsi.selection.driver``) beyond the
        chosen candidate and stop: the basis passes of its held-out fits, ``pass_iter`` the
        fold-averaged stops of their earlier passes; without held-out fits in passes (the
        discrepancy rule), ``SELECTED_BASIS_PASSES`` of the chosen stop each when the chosen
        regularisers learn a spectral basis and the config does not set ``basis_passes``."""
        from .. import plugins

        if pass_iter:
            return {"problem.basis_passes": len(pass_iter) + 1, "problem.pass_iter": list(pass_iter)}
        options = config.problem if config.problem is not None else ImagingOptions()
        learnt = any(issubclass(plugins.get("regularizer", r.name), Parametrisation) for r in config.regularizers)
        return {"problem.basis_passes": SELECTED_BASIS_PASSES} if learnt and options.basis_passes is None else {}

    def selection_passes(self) -> int:
        """Basis passes of each held-out fit of the selection: those of the final fit
        (``basis_passes``, or ``SELECTED_BASIS_PASSES`` when unset) with a learnt basis, else 1."""
        if self.parametrisation is None:
            return 1
        return self.options.basis_passes or SELECTED_BASIS_PASSES

    def selection_refit(self, start_cube):
        """``selection_fit``'s set-up for the next basis pass, from ``start_cube`` (the
        previous pass's best iterate, in the fold's units): the basis is learnt from it."""
        self.start_cube = start_cube
        return self._selection_setup()

    def selection_fit(self, starts: dict, fraction: float):
        """What one fit of the selection (``xhsi.selection.driver.fit_task``) needs: (the
        solver's ``setup`` arguments, the operators from the scored quantity to each
        observation's expected counts, the scored quantity of the solver's variable, its
        sky cube for the benches' oracle). The fold's start is computed once per kind of
        start and shared through ``starts``; a start file is in physical units, and a fold
        thinned to ``fraction`` fits that fraction of the sky."""
        kind = (self.options.start, self.options.start_file)
        if kind not in starts:
            start = self.initial_cube()
            starts[kind] = start * fraction if self.options.start_file is not None else start
        self.start_cube = starts[kind]
        return self._selection_setup()

    def _selection_setup(self):
        x0, smooth, prox, to_cube = self.build()
        operators = [term.operator for term in smooth.terms[:len(self.observations)]]
        return (x0, smooth, prox), operators, (lambda x: x), to_cube.apply

    def baselines(self) -> dict[str, Any]:
        """Data-only estimates of the sky, one per observation (its normalised
        back-projection), to show what deconvolution or fusion gained."""
        xp = self.backend.xp
        return {obs.name: to_numpy(backprojection([obs], xp)) for obs in self.observations}


class Deconvolution(ImagingProblem):
    """Recover the sky cube from one observation through its instrument response."""

    name = "deconvolution"
    observations_allowed = (1, 1)


class Fusion(ImagingProblem):
    """Recover one sky cube from several observations of it (e.g. XMM-Newton EPIC-pn's
    images with XRISM Resolve's spectra): the HIFReD problem (Lascar et al. 2025)."""

    name = "fusion"
    observations_allowed = (2, None)

    # ``ratio_fusion``: the spectra of the observation with the most channels, scaled
    # pixel by pixel to the broad-band image of the one with the most detector pixels.
    #
    # The start matters more in fusion than in deconvolution: the sky components that
    # neither instrument sees (fine spectral detail at scales finer than the
    # spectrometer's pixels) lie in the null space of every A_k, where gradient steps do
    # not move them, so the solver keeps whatever the start holds there. The joint
    # back-projection mixes the imager's smeared spectra into every pixel (ASAM of the
    # start 42° on configs/fusion_xmm_xrism_small.toml, vs 24° for the Resolve-only
    # baseline); this start has the spectrometer's spectral angles and the imager's
    # broad-band image (ASAM 24°, PSNR 40.3 dB vs 38.7 dB for either baseline).
    default_start = "ratio_fusion"

