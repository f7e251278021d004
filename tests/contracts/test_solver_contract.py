"""Contract of the registered solvers, on small problems with known answers.

* LASSO with a design of orthogonal columns of different norms: the optimum has a closed
  form (coordinate-wise soft thresholding), every solver (PALM as one block) reaches its
  cost to 1e-6 relative (float64; float32 to its rounding).
* Non-negative deconvolution by a dense blur matrix, noise-free: FISTA recovers the truth.
* Ill-conditioned least squares: FISTA needs ≤ 1/5 of ISTA's iterations for ISTA's cost
  (Beck & Teboulle 2009: O(1/k²) against O(1/k)).
* Non-negative matrix factorisation (2 blocks): PALM's objective never increases; iPALM's
  Lyapunov function never increases (its objective need not be monotone).
* Poisson deconvolution with backtracking converges to the constrained maximum likelihood
  (KKT conditions).
Every check runs on numpy and array_api_strict (cupy with a GPU), float32 and float64.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from array_api_compat import array_namespace

import xhsi
from xhsi.backend import Backend, to_numpy
from xhsi.config import SolverSection
from xhsi.likelihoods import DataTerm, Gaussian, Poisson
from xhsi.testing import DenseOperator
from xhsi.solvers import PALM, Block, NonNegative, Solver, SolverResult

SOLVER_NAMES = xhsi.available("solver")


Dense = DenseOperator  # a dense matrix as a LinearOperator


class L1:
    """λ‖x‖₁ with its prox (soft thresholding)."""

    def __init__(self, lam: float):
        self.lam = lam

    def prox(self, x, step):
        xp = array_namespace(x)
        return xp.sign(x) * xp.clip(xp.abs(x) - step * self.lam, min=0.0)

    def value(self, x) -> float:
        return self.lam * float(array_namespace(x).sum(array_namespace(x).abs(x)))


def make_solver(name: str, max_iter: int, tol: float = 0.0, report_every: int = 10, **options) -> Solver:
    cls = xhsi.get("solver", name)
    return cls(cls.Options(**options), max_iter=max_iter, tol=tol, report_every=report_every)


class SmoothableL1(L1):
    """L1 with a smooth version, for the solvers that minimise one (``smooths_penalties``):
    λ Σ (√(x² + ε²) − ε), ε = smoothing × 1e-3."""

    def smooth(self, x, smoothing):
        xp = array_namespace(x)
        eps = smoothing * 1e-3
        r = xp.sqrt(x * x + eps * eps)
        return self.lam * float(xp.sum(r - eps)), self.lam * x / r


def solve(name, x0, smooth, prox, max_iter, **kw) -> SolverResult:
    """Run a registered solver on min f + g; PALM and the other block solvers see it as a
    problem of one block."""
    solver = make_solver(name, max_iter, **kw)
    if solver.unknowns == "blocks":
        lipschitz = getattr(smooth, "lipschitz", None)
        block = Block(gradient=lambda xs: smooth.gradient(xs[0]), prox=prox,
                      lipschitz=(lambda xs: lipschitz()) if lipschitz and lipschitz() else None)
        solver.setup([x0], lambda xs: smooth.value(xs[0]), [block])
        result = solver.run()
        result.x = result.x[0]
        return result
    solver.setup(x0, smooth, prox)
    return solver.run()


def cost_rtol(dtype_name: str) -> float:
    # float32: the cost itself is summed in float32 (relative rounding ~1e-7 per term).
    return 1e-6 if dtype_name == "float64" else 2e-5


# -- interface ------------------------------------------------------------------------
@pytest.mark.parametrize("name", SOLVER_NAMES)
def test_solver_class_interface(name):
    cls = xhsi.get("solver", name)
    assert issubclass(cls, Solver) and cls.name == name
    assert dataclasses.is_dataclass(cls.Options)
    cls.Options()  # every option has a default
    section = SolverSection(name=name, max_iter=7, tol=1e-3, report_every=2, max_time_s=5.0)
    solver = cls.from_config(section)
    assert (solver.max_iter, solver.tol, solver.report_every, solver.max_time_s) == (7, 1e-3, 2, 5.0)
    assert dataclasses.is_dataclass(solver.Options())


# -- LASSO with a closed-form optimum -----------------------------------------------------
def lasso(be: Backend, n: int = 12, lam: float = 0.3, seed: int = 0):
    """½‖A x − b‖² + λ‖x‖₁ with A = Q·diag(s): AᵀA = diag(s²), so
    x*_j = soft(s_j (Qᵀb)_j, λ) / s_j²."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    s = np.linspace(0.4, 1.0, n)
    a = q * s
    b = rng.standard_normal(n)
    c = s * (q.T @ b)
    x_opt = np.sign(c) * np.maximum(np.abs(c) - lam, 0) / s ** 2
    f_opt = 0.5 * np.sum((a @ x_opt - b) ** 2) + lam * np.sum(np.abs(x_opt))
    op = Dense(be.asarray(a), (n,), (n,))
    smooth = DataTerm(Gaussian(), op, be.asarray(b), what="data")
    return smooth, L1(lam), x_opt, f_opt


@pytest.mark.parametrize("name", SOLVER_NAMES)
def test_lasso_reaches_closed_form_optimum(name, backend):
    smooth, l1, x_opt, f_opt = lasso(backend)
    if xhsi.get("solver", name).smooths_penalties:
        # a solver of the smoothed objective refuses a penalty without a smooth version, and
        # with one reaches the ℓ1 optimum to within the smoothing: F_ε ≤ F ≤ F_ε + nλε, so
        # F(x_ε) − F(x*) ≤ nλε (ε = 1e-4 at the default smoothing 0.1)
        with pytest.raises(xhsi.ConfigError, match="smooth version"):
            solve(name, backend.zeros(x_opt.shape), smooth, l1, max_iter=3)
        result = solve(name, backend.zeros(x_opt.shape), smooth, SmoothableL1(l1.lam), max_iter=300)
        cost = smooth.value(result.x) + l1.value(result.x)
        bound = x_opt.size * l1.lam * 1e-4
        assert -cost_rtol(backend.dtype_name) * f_opt <= cost - f_opt <= bound + cost_rtol(backend.dtype_name) * f_opt
        np.testing.assert_allclose(to_numpy(result.x), x_opt, atol=1e-3 if backend.dtype_name == "float64" else 3e-3)
        return
    result = solve(name, backend.zeros(x_opt.shape), smooth, l1, max_iter=300)
    cost = smooth.value(result.x) + l1.value(result.x)
    assert abs(cost - f_opt) <= cost_rtol(backend.dtype_name) * f_opt, (cost, f_opt)
    assert result.x.dtype == backend.dtype and array_namespace(result.x) is backend.xp
    atol = 1e-5 if backend.dtype_name == "float64" else 2e-3
    np.testing.assert_allclose(to_numpy(result.x), x_opt, atol=atol)
    assert result.n_iter == 300 and result.stop_reason == "max_iter" and not result.converged
    assert result.history[-1][0] == 300 and result.history[0][0] == 0


# -- non-negative deconvolution with a known solution --------------------------------------
def blur_matrix(n: int, sigma_px: float) -> np.ndarray:
    i = np.arange(n)
    k = np.exp(-0.5 * ((i[:, None] - i[None, :]) / sigma_px) ** 2)
    return k / k.sum(axis=0, keepdims=True)  # each source keeps its flux


def deconvolution(be: Backend, n: int = 24, seed: int = 1):
    rng = np.random.default_rng(seed)
    x_true = np.zeros(n)
    x_true[rng.choice(n, 5, replace=False)] = rng.uniform(1.0, 3.0, 5)
    a = blur_matrix(n, 0.8)
    op = Dense(be.asarray(a), (n,), (n,))
    return op, a, x_true


def test_fista_recovers_noise_free_deconvolution(backend):
    op, a, x_true = deconvolution(backend)
    smooth = DataTerm(Gaussian(), op, backend.asarray(a @ x_true), what="blurred signal")
    result = solve("fista", backend.zeros(x_true.shape), smooth, NonNegative(), max_iter=400)
    error = np.linalg.norm(to_numpy(result.x) - x_true) / np.linalg.norm(x_true)
    assert error < (1e-5 if backend.dtype_name == "float64" else 1e-3), error


# -- acceleration --------------------------------------------------------------------------
def test_fista_needs_a_fifth_of_ista_iterations(backend):
    rng = np.random.default_rng(2)
    n = 30
    u, _ = np.linalg.qr(rng.standard_normal((n, n)))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = (u * np.logspace(0, -1.5, n)) @ v.T  # condition number ≈ 32
    b = a @ rng.standard_normal(n)
    smooth = DataTerm(Gaussian(), Dense(backend.asarray(a), (n,), (n,)), backend.asarray(b), what="data")
    n_ista = 500
    kw = dict(report_every=1, backtracking=False)
    ista = solve("ista", backend.zeros((n,)), smooth, None, max_iter=n_ista, **kw)
    target = ista.history[-1][1]
    fista = solve("fista", backend.zeros((n,)), smooth, None, max_iter=n_ista // 5, **kw)
    reached = [it for it, cost, _, _ in fista.history if cost <= target]
    assert reached, f"FISTA did not reach ISTA's cost {target:.3g} in {n_ista // 5} iterations"
    assert reached[0] <= n_ista // 5


# -- PALM on a two-block problem ----------------------------------------------------------
def nmf(be: Backend, m=8, n=10, r=3, seed=3):
    """½‖W H − Y‖² over W ≥ 0 (m×r) and H ≥ 0 (r×n), Y = W₀H₀ exactly."""
    rng = np.random.default_rng(seed)
    y = be.asarray(rng.uniform(0, 1, (m, r)) @ rng.uniform(0, 1, (r, n)))
    xp = be.xp

    def value(xs):
        res = xp.matmul(xs[0], xs[1]) - y
        return 0.5 * float(xp.sum(res * res))

    def grad_w(xs):
        return xp.matmul(xp.matmul(xs[0], xs[1]) - y, xs[1].T)

    def grad_h(xs):
        return xp.matmul(xs[0].T, xp.matmul(xs[0], xs[1]) - y)

    def lip_w(xs):  # ‖H Hᵀ‖_F ≥ ‖H Hᵀ‖₂
        return float(xp.linalg.vector_norm(xp.matmul(xs[1], xs[1].T)))

    def lip_h(xs):
        return float(xp.linalg.vector_norm(xp.matmul(xs[0].T, xs[0])))

    x0 = [be.asarray(rng.uniform(0, 1, (m, r))), be.asarray(rng.uniform(0, 1, (r, n)))]
    return value, (grad_w, grad_h), (lip_w, lip_h), x0


@pytest.mark.parametrize("inertial", [False, True], ids=["palm", "ipalm"])
@pytest.mark.parametrize("known_lipschitz", [True, False], ids=["lipschitz", "backtracking"])
def test_palm_decreases_monotonically(backend, inertial, known_lipschitz):
    value, grads, lips, x0 = nmf(backend)
    blocks = [Block(gradient=g, prox=NonNegative(), lipschitz=lip if known_lipschitz else None, name=nm)
              for g, lip, nm in zip(grads, lips, ("W", "H"))]
    solver = make_solver("palm", max_iter=60, report_every=1, inertial=inertial,
                         backtracking=not known_lipschitz)
    solver.setup(x0, value, blocks)
    tracked = [solver.lyapunov()]
    result = solver.run(callback=lambda it, cost, step, state: tracked.append(solver.lyapunov()) and False)
    costs = [row[1] for row in result.history]
    slack = 1e-12 if backend.dtype_name == "float64" else 1e-5
    decreasing = tracked if inertial else costs  # iPALM: the Lyapunov function; PALM: H itself
    rises = [(k, a, b) for k, (a, b) in enumerate(zip(decreasing, decreasing[1:])) if b > a * (1 + slack) + slack]
    assert not rises, rises[:3]
    assert costs[-1] < 0.05 * costs[0]
    for x in result.x:
        assert float(backend.xp.min(x)) >= 0 and x.dtype == backend.dtype


# -- Poisson deconvolution with backtracking ------------------------------------------------
def test_poisson_deconvolution_with_backtracking_converges(backend):
    op, a, x_true = deconvolution(backend, seed=4)
    x_true = 20.0 * x_true + 2.0  # a bright source on a faint extended one, counts per pixel
    background = np.full(x_true.shape, 0.5)
    counts = np.random.default_rng(5).poisson(a @ x_true + background).astype(np.float64)
    term = DataTerm(Poisson(), op, backend.asarray(counts), background=backend.asarray(background))
    x0 = backend.asarray(np.full(x_true.shape, counts.mean()))
    result = solve("fista", x0, term, NonNegative(), max_iter=400)
    x = to_numpy(result.x).astype(np.float64)
    # KKT of min f(x) s.t. x ≥ 0: ∇f ≥ 0 where x = 0, ∇f = 0 where x > 0.
    grad = a.T @ (1 - counts / (a @ x + background))
    kkt = np.linalg.norm(x - np.maximum(x - grad, 0.0))
    kkt0 = np.linalg.norm(to_numpy(x0) - np.maximum(to_numpy(x0) - a.T @ (1 - counts / (a @ to_numpy(x0) + background)), 0))
    assert kkt <= (1e-6 if backend.dtype_name == "float64" else 1e-3) * kkt0, (kkt, kkt0)
    costs = [row[1] for row in result.history]
    assert costs[-1] <= min(costs) * (1 + cost_rtol(backend.dtype_name)) and math.isfinite(costs[-1])
