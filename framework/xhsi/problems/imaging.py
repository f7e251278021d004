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
only through the operators. Z = W·H ≥ 0 is then not imposed (the Poisson term's model
floor keeps the likelihood defined); this is the published low-rank set-up.

Units: the solver works on the dimensionless cube X = Z / s, with s the mean of the
initial (back-projected) cube, so that iterates are of order one whatever the flux and
exposure; regularisers act on X (or on the rank maps of X), which makes their weights
comparable between sources. Results are given back in physical units.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from ..backend import Backend, to_numpy
from ..errors import ConfigError
from ..operators import Identity, LinearOperator, Scaled
from ..regularizers import Parametrisation
from ..results import Result
from .base import ObservationData, Problem


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


class ImagingProblem(Problem):
    """Shared machinery of deconvolution and fusion (see the module docstring)."""

    def __init__(self, config, backend: Backend, grid, observations: list[ObservationData], regularizers: list,
                 likelihood_cls, pm=None):
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

    # -- building ----------------------------------------------------------------------
    def initial_cube(self):
        return backprojection(self.observations, self.backend.xp)

    def build(self):
        """(x0, smooth term, prox term, variable → cube map)."""
        from ..likelihoods import DataTerm
        from ..solvers import Composite, NonNegative, ProxChain, Zero

        xp, dtype = self.backend.xp, self.backend.dtype
        z0 = self.initial_cube()
        mean = float(xp.mean(z0))
        self.scale = mean if mean > 0 else 1.0
        z0 = z0 / self.scale
        scaling = Scaled(Identity(self.cube_shape), self.scale)
        if self.parametrisation is not None:
            p = self.parametrisation
            p.setup(self.cube_shape, xp, dtype)
            p.fit(z0)
            to_cube = scaling @ ParametrisedCube(p, self.cube_shape)
            x0 = p.from_cube(z0)
        else:
            to_cube = scaling
            x0 = z0
        operators = [obs.forward @ to_cube for obs in self.observations]
        smooth_terms: list[Any] = [DataTerm(self.likelihood_cls.for_counts(obs.counts), op, obs.counts, obs.background,
                                            what=f"counts of `{obs.name}`")
                                   for op, obs in zip(operators, self.observations)]
        prox_terms: list[Any] = []
        for reg in self.regularizers:
            reg.setup(tuple(x0.shape), xp, dtype)
            (smooth_terms if reg.smooth else prox_terms).append(reg)
        if prox_terms:
            data_gradient = Composite(smooth_terms[: len(self.observations)]).gradient(x0)
            for reg in prox_terms:
                reg.calibrate_noise(data_gradient)
        if self.parametrisation is None:
            prox_terms.append(NonNegative())
        prox = ProxChain(prox_terms) if prox_terms else Zero()
        return x0, Composite(smooth_terms), prox, to_cube

    # -- solving -----------------------------------------------------------------------
    def solve(self, solver, callback: Callable | None = None, checkpoint_path=None, checkpoint_every: int = 0,
              resume_from=None, config_digest: str | None = None) -> Result:
        if getattr(solver, "name", "") == "palm":
            raise ConfigError(f"problem `{self.name}` has one unknown: use solver `fista` or `ista` "
                              "(palm is for several blocks, e.g. unmixing).")
        x0, smooth, prox, to_cube = self.build()
        solver.setup(x0, smooth, prox)
        t0 = time.perf_counter()
        out = solver.run(callback, checkpoint_path=checkpoint_path, checkpoint_every=checkpoint_every,
                         resume_from=resume_from, config_digest=config_digest)
        arrays = {"cube": to_numpy(to_cube.apply(out.x))}
        if self.parametrisation is not None:
            arrays["rank_maps"] = to_numpy(out.x) * self.scale
            arrays["basis"] = to_numpy(self.parametrisation.basis)
        history = [dict(zip(("iteration", "cost", "step", "time_s"), row)) for row in out.history]
        meta = {"problem": self.name, "solver": solver.name, "n_iter": out.n_iter, "stop_reason": out.stop_reason,
                "converged": out.converged, "solve_wall_s": time.perf_counter() - t0,
                "final_cost": history[-1]["cost"] if history else None}
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

