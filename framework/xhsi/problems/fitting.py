"""The per-pixel fitting engine of the pixelfit and unmixing problems.

Every detector pixel (or block of ``bin × bin`` pixels) of one observation is fitted alone
by Poisson maximum likelihood with resolved ``[[components]]`` (``xhsi.problems.components``),
through the observation's spectral response only (exposure × effective area,
redistribution; the PSF is ignored, as in the usual per-region spectral fits):

    m_p(c) = Σ_e R[e, c] · exposure · ARF(e) · Σ_comp a_comp,p S_comp(E_e; θ_comp,p) + B_p(c).

All pixels are fitted at once by Levenberg–Marquardt iterations on the Fisher scoring
system (Poisson Fisher information F = Jᵀ diag(1/m) J), batched over pixels with one
small P × P solve per pixel (P = free amplitudes + free parameters); each step is projected
on the bounds (amplitudes ≥ 0) and kept only where it lowers that pixel's likelihood, the
damping λ growing ×10 where it does not (the pixel retries) and shrinking ÷3 where it does.
A pixel stops when its projected gradient is below ``gtol`` per 1-σ error (converged) or
when no damping lowers its cost (stalled), never because one step was rejected.

Uncertainties: 1-σ errors are √diag(F⁻¹) at the solution (Cramér–Rao, local; parameters
at a bound get the error of the unconstrained quadratic model).

``PixelFitter`` is a plain object on explicit inputs (components, response, counts,
background, binning, backend): the ``pixelfit`` problem runs its fit; ``unmixing`` starts
from its fit of the binned data, and takes its start metric and its error maps from the
Fisher information at given maps (``fisher_at_maps``, ``error_maps``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..backend import Backend, to_numpy
from ..likelihoods import wstat_value
from .base import ObservationData
from .components import MapBlock, ResolvedComponent, map_names

#: Initial Levenberg–Marquardt damping λ, relative to diag F.
DAMPING = 1e-3
#: A pixel has converged when its likelihood gradient is below GTOL per 1-σ error of every
#: free variable: the minimum located to 1e-3 σ, a cost within ~1e-6 of it.
GTOL = 1e-3
#: Damping beyond which no step lowers a pixel's cost: the pixel has stalled.
LAMBDA_MAX = 1e10


@dataclass
class Fit:
    """What ``PixelFitter.fit`` returns: the fitted variables u (P, npix), the Fisher
    information there (npix, P, P), the cost history, the iterations run, per pixel whether
    it converged (gradient test) or stalled (host bool arrays), and why the fit stopped."""

    u: Any
    fisher: Any
    history: list
    n_iter: int
    converged: np.ndarray
    stalled: np.ndarray
    stop_reason: str

    @property
    def n_converged(self) -> int:
        return int(self.converged.sum())

    @property
    def n_stalled(self) -> int:
        return int(self.stalled.sum())


def spectral_response(obs: ObservationData, backend: Backend):
    """(weight (n_e,), matrix (n_e, n_chan)) of an observation's spectral response on the
    model grid: exposure × mean effective area per true-energy bin, and the redistribution
    onto the observation's channels, in the backend's namespace."""
    fwd = obs.forward
    inst = fwd.instrument
    edges = fwd.model_energy_edges_kev
    weight = float(fwd.exposure_s) * inst.mean_effective_area(edges)
    matrix = inst.redistribution(edges, None, fwd.channel_edges_kev)
    dense = matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix)
    keep = getattr(fwd, "channel_keep", None)  # a spectrum's fitted channels
    if keep is not None:
        dense = dense[:, keep]
    return backend.asarray(weight), backend.asarray(dense)


class PixelFitter:
    """Independent Poisson fits of ``components`` (their fitted parameters ``map_blocks``)
    in every block of ``bin × bin`` detector pixels of one observation.

    ``response``: (weight, matrix) of ``spectral_response``; ``counts`` and ``background``
    (or None): (n_chan, ny_det, nx_det) on the backend; ``model_shape``: (ny, nx) of the
    model grid, an integer multiple ``rebin`` of the detector grid per axis. The fitted
    variables u are (P, npix): the amplitudes (photon flux of a block, one per component),
    then the parameter maps, in the order of ``map_names``."""

    def __init__(self, components: list[ResolvedComponent], map_blocks: list[MapBlock], response, counts,
                 background, model_shape: tuple[int, int], backend: Backend, bin: int = 1, wstat=None):
        self.components, self.map_blocks = components, map_blocks
        self.wstat = wstat  # (background spectrum counts like counts, α (n_chan,)): W-stat, else None
        self.weight, self.matrix = response
        self.counts, self.background = counts, background
        self.model_shape, self.backend, self.bin = tuple(model_shape), backend, bin
        self.rebin = self.model_shape[0] // counts.shape[1]  # model pixels per detector pixel, per axis
        self.factor = bin * self.rebin  # model pixels per fitted block, per axis
        self._folded_bases: dict = {}

    # -- the per-pixel model ---------------------------------------------------------------
    def _binned(self, cube):
        xp = self.backend.xp
        b = self.bin
        n, ny, nx = cube.shape
        return xp.reshape(xp.sum(xp.reshape(cube, (n, ny // b, b, nx // b, b)), axis=(2, 4)), (n, (ny // b) * (nx // b)))

    def _thetas(self, u):
        """Per component (n_params, npix) from the free variables u (P, npix)."""
        xp = self.backend.xp
        n_amp = len(self.components)
        out = []
        for comp in self.components:
            rows = []
            for p in comp.model.parameters:
                if p.name in comp.slots:
                    rows.append(u[n_amp + comp.slots[p.name], ...])
                else:
                    rows.append(xp.full(u.shape[1:], comp.constants[p.name], dtype=u.dtype))
            out.append(xp.stack(rows, axis=0))
        return out

    def _model_and_jacobian(self, u, background):
        """Expected counts m (n_chan, npix) and J (P, n_chan, npix)."""
        xp = self.backend.xp
        weight, matrix = self.weight, self.matrix
        n_amp = len(self.components)
        fold = lambda s: xp.matmul(xp.matrix_transpose(matrix), weight[:, None] * s)  # noqa: E731
        m = None
        cols: list[Any] = [None] * u.shape[0]
        for c, (comp, theta) in enumerate(zip(self.components, self._thetas(u))):
            evaluate, jvp = self._folding(comp, fold)
            folded = evaluate(theta)
            cols[c] = folded
            term = u[c:c + 1, ...] * folded
            m = term if m is None else m + term
            for k, p in enumerate(comp.model.parameters):
                if p.name not in comp.slots:
                    continue
                tangent = xp.stack([xp.ones_like(u[0]) if j == k else xp.zeros_like(u[0])
                                    for j in range(len(comp.model.parameters))], axis=0)
                d = u[c:c + 1, ...] * jvp(theta, tangent)
                i = n_amp + comp.slots[p.name]
                cols[i] = d if cols[i] is None else cols[i] + d
        if background is not None:
            m = m + background
        return m, xp.stack(cols, axis=0)

    def _folding(self, comp: ResolvedComponent, fold):
        """(θ ↦ folded spectra, (θ, tangent) ↦ folded tangent spectra) of a component, both
        (n_chan, npix). A low-rank model S = W·h(θ) (``basis`` and ``coefficients``, e.g.
        ``xhsi.problems.spectral_table``) has its basis folded once: the response then
        acts on k coefficients per pixel instead of n_e bins."""
        model = comp.model
        if getattr(model, "basis", None) is None or not hasattr(model, "coefficients"):
            return (lambda theta: fold(model.evaluate(theta)),
                    lambda theta, tangent: fold(model.jvp(theta, tangent)))
        xp = self.backend.xp
        if id(model) not in self._folded_bases:
            self._folded_bases[id(model)] = (model, fold(model.basis))  # (n_chan, k); the model held
        folded = self._folded_bases[id(model)][1]
        return (lambda theta: xp.matmul(folded, model.coefficients(theta)),
                lambda theta, tangent: xp.matmul(folded, model.coefficients_jvp(theta, tangent)))

    def _wstat(self):
        if self.wstat is None:
            return None
        b, alpha = self.wstat
        return self._binned(b), self.backend.xp.reshape(alpha, (-1, 1))

    def _evaluate(self, u, background, y, wstat):
        """(m, J, ½ deviance per pixel, Fisher weight per channel and pixel): Poisson with the
        fixed ``background``, or W-stat (``wstat`` = binned background counts, α) with the
        background profiled out (``xhsi.likelihoods.wstat_value``), m then holding it."""
        xp = self.backend.xp
        if wstat is None:
            m, jac = self._model_and_jacobian(u, background)
            return m, jac, self._nll(xp, m, y), 1.0 / xp.clip(m, min=1e-10)
        mu, jac = self._model_and_jacobian(u, None)
        b, alpha = wstat
        value, beta = wstat_value(mu, y, b, alpha)
        m = mu + alpha * beta
        return m, jac, xp.sum(value, axis=0), 1.0 / xp.clip(m + alpha * alpha * beta, min=1e-10)

    @staticmethod
    def _nll(xp, m, y):
        """½ Poisson deviance per pixel: Σ_c m − y + y log(y/m) (0 for a perfect fit)."""
        mf = xp.clip(m, min=1e-10)
        ylogy = xp.where(y > 0, y * xp.log(xp.clip(y, min=1e-30)), xp.zeros_like(y))
        return xp.sum(mf - y + ylogy - y * xp.log(mf), axis=0)

    def _bounds(self):
        lo = [0.0] * len(self.components) + [b.bounds[0] for b in self.map_blocks]
        hi = [np.inf] * len(self.components) + [b.bounds[1] for b in self.map_blocks]
        return np.asarray(lo), np.asarray(hi)

    def _fisher(self, info, jac):
        """Fisher information per pixel, Jᵀ diag(info) J: (npix, P, P); info = 1/m for Poisson
        (``_evaluate``)."""
        xp = self.backend.xp
        jt = xp.permute_dims(jac, (2, 0, 1))  # (npix, P, n_chan)
        inv_m = xp.permute_dims(info, (1, 0))
        return xp.matmul(jt * inv_m[:, None, :], xp.permute_dims(jt, (0, 2, 1)))

    # -- fitting ---------------------------------------------------------------------------
    def _gradient_test(self, u, m, jac, y, lo, hi, info):
        """Per pixel, max over the free variables of |projected ∇| / √F_ii: the likelihood's
        slope in units of each variable's 1-σ error (0 at a minimum; a variable at a bound
        whose gradient points out of the box counts as 0). Also returns (gradient, F)."""
        xp = self.backend.xp
        fisher = self._fisher(info, jac)
        grad = xp.sum(jac * (1.0 - y / xp.clip(m, min=1e-10))[None, ...], axis=1)  # (P, npix)
        outward = ((u <= lo) & (grad > 0)) | ((u >= hi) & (grad < 0))
        projected = xp.where(outward, xp.zeros_like(grad), grad)
        curvature = xp.permute_dims(xp.sum(fisher * xp.eye(u.shape[0], dtype=u.dtype), axis=-1), (1, 0))  # (P, npix)
        slope = xp.where(curvature > 0, xp.abs(projected) / xp.sqrt(xp.clip(curvature, min=1e-300)),
                         xp.where(projected == 0, xp.zeros_like(grad), xp.full_like(grad, xp.inf)))
        return xp.max(slope, axis=0), grad, fisher

    def fit(self, max_iter: int, gtol: float = GTOL, damping: float = DAMPING, callback: Callable | None = None,
            report_every: int = 1):
        """Levenberg–Marquardt fits of every pixel from damping λ = ``damping``.

        Each iteration solves (F + λ diag F) δ = −∇ per pixel, projects the step on the
        bounds and keeps it where it lowers that pixel's likelihood (λ ÷ 3); where it does
        not, λ × 10 and the pixel retries (Marquardt 1963; Madsen, Nielsen & Tingleff 2004).
        A pixel is **converged** when its projected gradient is below ``gtol`` per 1-σ error
        (``_gradient_test``) and then left alone; **stalled** when λ exceeds
        ``LAMBDA_MAX`` without that (no step lowers its cost: rounding, or a kink). Stops
        when no pixel is left, after ``max_iter`` iterations, or when ``callback(iteration,
        cost, mean λ, None)`` returns True. The total cost is computed (one host sync) and
        reported to ``callback`` and the history at the start, every ``report_every``
        iterations and at the last one. Returns a :class:`Fit`."""
        xp, dtype = self.backend.xp, self.backend.dtype
        y = self._binned(self.counts)
        background = None if self.background is None else self._binned(self.background)
        wstat = self._wstat()
        npix = y.shape[1]
        # Start: the counts of each pixel shared equally between the components, at the
        # parameters' initial values; amplitudes then rescaled to the pixel's total counts.
        u0 = [xp.ones((npix,), dtype=dtype) for _ in self.components]
        u0 += [xp.full((npix,), float(to_numpy(b.init)[0, 0]), dtype=dtype) for b in self.map_blocks]
        u = xp.stack(u0, axis=0)
        m, _ = self._model_and_jacobian(u, None)
        ratio = xp.sum(y, axis=0) / xp.clip(xp.sum(m, axis=0), min=1e-30)
        u = xp.concat([u[:len(self.components)] * ratio[None, :] / len(self.components), u[len(self.components):]])
        lo_np, hi_np = self._bounds()
        lo = xp.asarray(lo_np[:, None], dtype=dtype)
        hi = xp.asarray(np.minimum(hi_np, 1e300)[:, None], dtype=dtype)
        lam = xp.full((npix,), damping, dtype=dtype)
        eye = xp.eye(u.shape[0], dtype=dtype)
        history = []
        t0 = time.perf_counter()

        def report(iteration: int) -> None:
            """Append the total cost (one host sync) and mean λ to the history."""
            history.append({"iteration": iteration, "cost": float(xp.sum(nll)), "step": float(xp.mean(lam)),
                            "time_s": time.perf_counter() - t0})
        m, jac, nll, info = self._evaluate(u, background, y, wstat)
        converged = xp.zeros((npix,), dtype=xp.bool)
        stalled = xp.zeros((npix,), dtype=xp.bool)
        it = 0
        stop = "max_iter"
        report(0)  # the start, as the solvers report iteration 0
        for it in range(1, max_iter + 1):
            slope, grad, fisher = self._gradient_test(u, m, jac, y, lo, hi, info)
            converged = converged | (~stalled & (slope <= gtol))
            stalled = stalled | (~converged & (lam > LAMBDA_MAX))
            active = ~(converged | stalled)
            if not bool(xp.any(active)):
                it -= 1
                stop = "converged" if bool(xp.all(converged)) else "stalled"
                break
            diag = xp.sum(fisher * eye, axis=-1)
            # Marquardt's scaling, per pixel and per variable: λ·diag(F) (+1e-12·diag(F) so a
            # pixel at λ → 0 stays regular, and 1 where a variable has no curvature at all).
            # A ridge shared by the whole field (e.g. 1e-12·max F) mixes units: one near-empty
            # pixel's amplitude curvature (∝ 1/a²) then froze kT and Γ in every pixel.
            ridge = (lam[:, None] + 1e-12) * diag + xp.where(diag > 0, xp.zeros_like(diag), xp.ones_like(diag))
            system = fisher + ridge[:, :, None] * eye
            delta = xp.linalg.solve(system, -xp.permute_dims(grad, (1, 0))[..., None])[..., 0]
            trial = xp.clip(u + xp.permute_dims(delta, (1, 0)), min=lo, max=hi)
            m_t, jac_t, nll_t, info_t = self._evaluate(trial, background, y, wstat)
            better = active & (nll_t < nll)
            u = xp.where(better[None, :], trial, u)
            m = xp.where(better[None, :], m_t, m)
            jac = xp.where(better[None, None, :], jac_t, jac)
            nll = xp.where(better, nll_t, nll)
            info = xp.where(better[None, :], info_t, info)
            lam = xp.where(better, lam / 3.0, xp.where(active, lam * 10.0, lam))
            if it % report_every == 0:
                report(it)
                if callback is not None and callback(it, history[-1]["cost"], history[-1]["step"], None):
                    stop = "stopped by callback"
                    break
        else:  # max_iter: the last step may have brought pixels below gtol
            slope, _, _ = self._gradient_test(u, m, jac, y, lo, hi, info)
            converged = converged | (~stalled & (slope <= gtol))
        if it > 0 and (not history or history[-1]["iteration"] != it):
            report(it)  # the last iteration is always in the history
        converged_host = np.asarray(to_numpy(converged), dtype=bool)
        stalled_host = np.asarray(to_numpy(stalled), dtype=bool) & ~converged_host
        return Fit(u, self._fisher(info, jac), history, it, converged_host, stalled_host,
                   "converged" if converged_host.all() else stop)

    # -- at given maps ---------------------------------------------------------------------
    def errors(self, fisher):
        """1-σ errors √diag(F⁻¹), (npix, P)."""
        xp = self.backend.xp
        p = fisher.shape[-1]
        eye = xp.eye(p, dtype=fisher.dtype)
        cov = xp.linalg.inv(fisher + 1e-30 * eye)
        return xp.sqrt(xp.clip(xp.sum(cov * eye, axis=-1), min=0.0))

    def fisher_at_maps(self, maps: dict):
        """Fisher information of each fitted block of detector pixels at the model-grid
        maps ``maps`` (named as ``map_names``): amplitudes summed, parameters averaged over
        the model pixels of a block. Returns (u, F)."""
        background = None if self.background is None else self._binned(self.background)
        factor = self.factor
        rows = []
        for name in map_names(self.components, self.map_blocks):
            image = np.asarray(maps[name], dtype=np.float64)
            ny, nx = image.shape[0] // factor, image.shape[1] // factor
            blocks = image.reshape(ny, factor, nx, factor)
            reduced = blocks.sum(axis=(1, 3)) if name.endswith(".amplitude") else blocks.mean(axis=(1, 3))
            rows.append(reduced.ravel())
        u = self.backend.asarray(np.stack(rows))
        _, jac, _, info = self._evaluate(u, background, self._binned(self.counts), self._wstat())
        return u, self._fisher(info, jac)

    def error_maps(self, maps: dict) -> dict:
        """1-σ error maps (model grid) of a per-pixel fit at the model-grid ``maps``, from
        the Fisher information there (``fisher_at_maps``)."""
        u, fisher = self.fisher_at_maps(maps)
        return self.maps_from(u, self.errors(fisher))[1]

    def maps_from(self, u, sigma=None) -> tuple[dict, dict]:
        """Fitted variables (P, npix) (and 1-σ errors (npix, P)) as maps on the model grid: a
        fitted block covers (bin·rebin)² model pixels; amplitudes (photon flux of the block)
        are shared equally between them, parameters repeated."""
        factor = self.factor
        ny, nx = self.model_shape[0] // factor, self.model_shape[1] // factor
        ones = np.ones((factor, factor))
        maps, errors = {}, {}
        for i, name in enumerate(map_names(self.components, self.map_blocks)):
            per = 1.0 / factor ** 2 if name.endswith(".amplitude") else 1.0
            maps[name] = np.kron(np.reshape(to_numpy(u[i]), (ny, nx)) * per, ones)
            if sigma is not None:
                errors[name] = np.kron(np.reshape(to_numpy(sigma[:, i]), (ny, nx)) * per, ones)
        return maps, errors
