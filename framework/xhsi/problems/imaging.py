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


def backprojection(observations: list[ObservationData], xp, floor: float = 0.0):
    """One Richardson–Lucy step from a flat sky: Σ_k A_kᵀ(E_k / A_k 1) / Σ_k A_kᵀ 1, with
    E_k = max(Y_k − B_k, 0) the excess counts. For a diagonal response this is E/a, the
    counts divided by exposure × area; in general each data voxel's excess is spread back
    over the sky voxels that feed it. A positive, data-only estimate of the sky cube, used
    to start the solvers and as the data-only baseline of each observation."""
    num = den = None
    for obs in observations:
        excess = obs.counts if obs.background is None else xp.clip(obs.counts - obs.background, min=0.0)
        response = obs.forward.apply(xp.ones(obs.forward.shape_in, dtype=obs.counts.dtype))
        tiny = float(xp.max(response)) * 1e-12 + 1e-30
        ratio = xp.where(response > tiny, excess / xp.clip(response, min=tiny), xp.zeros_like(excess))
        n = obs.forward.adjoint(ratio)
        d = obs.forward.adjoint(xp.ones_like(obs.counts))
        num, den = (n, d) if num is None else (num + n, den + d)
    tiny = float(xp.max(den)) * 1e-12 + 1e-30
    return xp.clip(num / xp.clip(den, min=tiny), min=floor)


def ratio_fusion(observations: list[ObservationData], xp):
    """A data-only fused estimate: z(e, p) = b_s(e, p) · Σ_e b_i(e, p) / Σ_e b_s(e, p), with
    b_k the back-projection of observation k alone (``backprojection``), s the observation
    with the most channels (finest spectra) and i the one with the most detector pixels
    (finest image); ties go to the first in config order. The spectral shape of every
    pixel is the spectrometer's, its broad-band flux the imager's: the ratio (Brovey) form
    of component substitution in pansharpening (Gillespie, Kahle & Walker 1987, Remote
    Sens. Environ. 22, 343). Pixels where the spectrometer's band flux is below 1e-6 of its
    maximum keep the joint back-projection. When one observation is finest in both, this
    is its own back-projection."""
    spectral = max(observations, key=lambda o: o.counts.shape[0])
    spatial = max(observations, key=lambda o: o.counts.shape[-2] * o.counts.shape[-1])
    b_spec = backprojection([spectral], xp)
    if spatial is spectral:
        return b_spec
    image = xp.sum(backprojection([spatial], xp), axis=0)
    band = xp.sum(b_spec, axis=0)
    tiny = float(xp.max(band)) * 1e-6
    ok = band > tiny
    ratio = xp.where(ok, image / xp.where(ok, band, xp.ones_like(band)), xp.zeros_like(band))
    if bool(xp.all(ok)):  # the fallback is not needed: skip its back-projection (cubes of memory)
        return b_spec * ratio
    return xp.where(ok, b_spec * ratio, backprojection(observations, xp))


def host_observation(obs: ObservationData) -> ObservationData:
    """``obs`` with its float32 host operator (``ObservationData.host_forward``) and float32
    numpy copies of its counts and background: the data-only starts computed from it are
    the same bits whatever the run's backend and dtype."""
    def host(a):
        return None if a is None else np.asarray(to_numpy(a), dtype=np.float32)

    return ObservationData(obs.name, obs.host_forward(), host(obs.counts), host(obs.background), obs.instrument)


def em_scaling(x0, operators, floor: float, per_slice: bool = False):
    """d = √D for the fixed diagonal metric D = max(x0, floor·mean(x0)) / Σ_k A_kᵀ1 of the
    solver's variable (normalised to mean(D) = 1), with A_k the operators from the variable
    to each observation's counts and x0 ≥ 0 the start; ``per_slice``: D averaged over each
    slice along the first axis (rank map or energy plane), for prox terms that accept only
    such a metric (``Regularizer.diagonal_metric``).

    D·∇f is the step of the expectation-maximisation (Richardson–Lucy) algorithm for a
    Poisson likelihood, x ← x − (x / Aᵀ1)·∇f(x) (Lantéri, Roche & Aime 2002, Inverse
    Problems 18, 1397; its use as a metric for projected gradients: Bonettini, Zanella &
    Zanni 2009, Inverse Problems 25, 015002, SGP). Steps scale with each voxel's flux and
    inverse sensitivity, where a single step size is bounded by the faintest voxels'
    curvature y/m². Here the metric is fixed at the start: the solver runs FISTA on u with
    x = d·u, a change of variable under which its guarantees hold unchanged and the
    projection on x ≥ 0 stays a clip (d > 0). The floor keeps voxels that are 0 at the
    start free to grow. Measured on the published low-rank + Sobolev fusion (rank-24 NMF,
    1000 iterations): final cost 453.53e3 in float32 and float64, against 456.9e3 (float32)
    and 455.3e3 (float64) without the metric; PSNR(float64) − PSNR(float32) = 1.9e-4 dB,
    against 9.6e-3 dB without."""
    xp = array_namespace(x0)
    sensitivity = None
    for op in operators:
        s = op.adjoint(xp.ones(tuple(op.shape_out), dtype=x0.dtype))
        sensitivity = s if sensitivity is None else sensitivity + s
    numerator = xp.clip(x0, min=floor * float(xp.mean(x0)))
    d2 = numerator / xp.clip(sensitivity, min=float(xp.max(sensitivity)) * 1e-6)
    if per_slice:  # shape (n, 1, ...): one scalar per slice, broadcast by the operators
        d2 = xp.mean(d2, axis=tuple(range(1, d2.ndim)), keepdims=True)
    return xp.sqrt(d2 / float(xp.mean(d2)))


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
    start: str = option("auto", choices=("auto", "backprojection", "ratio_fusion"),
                        doc="initial cube: auto (ratio_fusion for fusion, backprojection for deconvolution), the "
                            "joint back-projection, or the spectrometer's spectra scaled to the imager's image")
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


def read_start_cube(path: Path, grid) -> np.ndarray:
    """A sky cube FITS (photons / s / cm² per bin and pixel) on the model grid, read by the
    ``fits`` scene (EBOUNDS or a spectral WCS; resampled when the grids differ by integer
    factors, else a DataError), and checked to be ≥ 0."""
    from .. import plugins
    from ..backend import Backend
    from ..errors import XhsiError

    where = f"[problem] start_file {path}"
    if not Path(path).is_file():
        raise DataError(f"{where}: no such file; give the result.fits of an earlier run on this [model] grid.")
    scene_cls = plugins.get("scene", "fits")
    try:
        data = scene_cls(scene_cls.Options(path=Path(path))).generate(grid, Backend("numpy", "float64"))
    except XhsiError as exc:
        raise type(exc)(f"[problem] start_file: {exc}") from None
    if data.min() < 0:
        raise DataError(f"{where}: the cube has negative values; a start must be >= 0.")
    return np.asarray(data, dtype=np.float64)


class ImagingProblem(Problem):
    """Shared machinery of deconvolution and fusion (see the module docstring)."""

    Options = ImagingOptions

    def __init__(self, config, backend: Backend, grid, observations: list[ObservationData], regularizers: list,
                 likelihood_cls, pm=None, options: ImagingOptions | None = None):
        lo, hi = self.observations_allowed
        n = len(observations)
        if n < lo or (hi is not None and n > hi):
            want = f"exactly {lo}" if lo == hi else f"at least {lo}"
            raise ConfigError(f"problem `{self.name}` takes {want} observation(s), the config has {n}"
                              + (": use problem = \"fusion\" for several." if self.name == "deconvolution" else "."))
        self.config, self.backend, self.grid = config, backend, grid
        self.observations, self.pm = observations, pm
        params = [r for r in regularizers if isinstance(r, Parametrisation)]
        if len(params) > 1:
            raise ConfigError(f"at most one parametrisation (e.g. lowrank_pca) per run; the config has "
                              f"{', '.join(p.name for p in params)}.")
        self.parametrisation = params[0] if params else None
        self.regularizers = [r for r in regularizers if r is not self.parametrisation]
        self.likelihood_cls = likelihood_cls
        self.cube_shape = tuple(grid.shape)
        self.options = options if options is not None else ImagingOptions()
        if self.options.start_file is not None:
            self._start = read_start_cube(self.options.start_file, grid)  # checked before any heavy work

    # -- building ----------------------------------------------------------------------
    def initial_cube(self) -> np.ndarray:
        """The solver's start in physical units ([problem] start / start_file), a float64
        numpy array on the host. The data-only starts are computed from float32 host copies
        of the data through the host operators (``ObservationData.host_forward``), so that
        runs of one config in any dtype and backend start from the same bits, and learn the
        same low-rank basis from it: a rank-24 NMF moved its spectra by 1e-3 for the 6e-6
        relative difference of a start computed through float32 instead of float64
        operators, and the float32 and float64 results by 0.05 dB PSNR."""
        if self.options.start_file is not None:
            if float(self._start.max()) <= 0:
                raise DataError(f"[problem] start_file {self.options.start_file}: the cube is zero everywhere.")
            return self._start
        start = self.options.start
        if start == "auto":
            start = self.default_start
        make = ratio_fusion if start == "ratio_fusion" else backprojection
        return np.asarray(make([host_observation(obs) for obs in self.observations], np), dtype=np.float64)

    default_start = "backprojection"

    def build(self):
        """(x0, smooth term, prox term, variable → cube map)."""
        from ..likelihoods import DataTerm
        from ..operators import Diagonal
        from ..solvers import Composite, NonNegative, Precomposed, ProxChain, Zero

        xp, dtype = self.backend.xp, self.backend.dtype
        z0 = self.initial_cube()
        mean = float(np.mean(z0))
        self.scale = mean if mean > 0 else 1.0
        z0 = z0 / self.scale
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
        smooth_regs = [r for r in self.regularizers if r.smooth]
        prox_terms: list[Any] = [r for r in self.regularizers if not r.smooth]
        nonnegative = self.parametrisation is None or self.parametrisation.nonnegative
        self.metric = None
        self.metric_mode = mode = self._metric_mode(prox_terms, nonnegative)
        if mode is not None:
            # the change of variable x = d·u: every term sees x, the solver u (see em_scaling)
            d = em_scaling(x0, operators, self.options.precondition_floor, per_slice=mode == "slices")
            self.metric = Diagonal(d, tuple(x0.shape))
            operators = [op @ self.metric for op in operators]
            smooth_regs = [Precomposed(r, self.metric) for r in smooth_regs]
            x0, to_cube = x0 / d, to_cube @ self.metric
        data_terms = [DataTerm(self.likelihood_cls.for_counts(obs.counts), op, obs.counts, obs.background,
                               what=f"counts of `{obs.name}`") for op, obs in zip(operators, self.observations)]
        if prox_terms:
            noise = self.gradient_noise(data_terms)
            for reg in prox_terms:
                reg.calibrate_noise(noise)
        if nonnegative:
            prox_terms.append(NonNegative())
        prox = ProxChain(prox_terms) if prox_terms else Zero()
        return x0, Composite(data_terms + smooth_regs), prox, to_cube

    def _metric_mode(self, prox_terms: list, nonnegative: bool) -> str | None:
        """The metric to iterate in ([problem] precondition; see ``em_scaling``): "voxels"
        when every prox term accepts any diagonal metric, "slices" when they accept one
        constant per slice (``Regularizer.diagonal_metric``), else None (Euclidean)."""
        if self.options.precondition == "none":
            return None
        kinds = {r.diagonal_metric for r in prox_terms}
        if not nonnegative:
            why = "its variable is not constrained to >= 0 (the principal-spectra basis of lowrank_pca)"
        elif kinds <= {"voxels"}:
            return "voxels"
        elif kinds <= {"voxels", "slices"}:
            return "slices"
        else:
            why = (", ".join(f"`{r.name}`" for r in prox_terms if r.diagonal_metric is None)
                   + " solve their prox in the Euclidean metric only (starlet2d1d_l1 mixes energies; "
                     "starlet2d_l1 needs per_slice = true and MAD thresholds)")
        if self.options.precondition == "em":
            raise ConfigError(f"[problem] precondition = \"em\" does not apply to this run: {why}; "
                              "use precondition = \"auto\" or \"none\".")
        return None

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
        if getattr(solver, "name", "") == "palm":
            raise ConfigError(f"problem `{self.name}` has one unknown: use solver `fista` or `ista` "
                              "(palm is for several blocks, e.g. unmixing).")
        x0, smooth, prox, to_cube = self.build()
        out, history, meta = run_solver(self.name, solver, (x0, smooth, prox), callback,
                                        checkpoint_path=checkpoint_path, checkpoint_every=checkpoint_every,
                                        resume_from=resume_from, config_digest=config_digest)
        meta["metric"] = {"voxels": "em (per voxel)", "slices": "em (per slice)"}.get(self.metric_mode, "euclidean")
        arrays = {"cube": to_numpy(to_cube.apply(out.x))}
        if self.parametrisation is not None:
            h = out.x if self.metric is None else self.metric.apply(out.x)
            arrays["rank_maps"] = to_numpy(h) * self.scale
            arrays["basis"] = to_numpy(self.parametrisation.basis)
        return Result(arrays=arrays, history=history, metadata=meta)

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

