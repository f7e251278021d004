"""The exact prox of an analysis ℓ1 term plus x ≥ 0 by FISTA on its dual
(``xhsi.sparsity.analysis_prox``): against a closed form, against an independent constrained solver,
and its duality gap as a certificate."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize

from xhsi.sparsity.analysis_prox import analysis_l1_prox_nonnegative
from xhsi.operators import Starlet2d1d
from xhsi.testing import assert_close, rtol_for

RNG = np.random.default_rng(11)


def _starlet2d1d(shape, J, L):
    """(Φ, Φᵀ, a bound of ‖Φ‖²) of the 2D-1D starlet of cubes of ``shape``."""
    frame = Starlet2d1d(shape, J, L)
    return frame.apply, frame.adjoint, 1.01 * frame.norm(rtol=1e-10, n_iter=1000) ** 2


def test_identity_analysis_gives_the_clipped_soft_threshold(xp, dtype_name):
    """Φ = I: argmin_{x≥0} ½‖x − z‖² + τ‖x‖₁ = max(z − τ, 0), reached to the tolerance."""
    dtype = getattr(xp, dtype_name)
    a = RNG.standard_normal((3, 5, 6))
    z = xp.asarray(a, dtype=dtype)
    tau = xp.asarray(np.full((1, 1, 1, 1), 0.4), dtype=dtype)
    x, u, gap = analysis_l1_prox_nonnegative(z, lambda v: v[None, ...], lambda c: c[0, ...], tau, 1.0,
                                             max_iter=200, tol=1e-6)
    assert_close(x, xp.asarray(np.maximum(a - 0.4, 0.0), dtype=dtype), atol=10 * rtol_for(dtype_name), xp=xp)
    # the gap to the tolerance, up to the rounding of its sums (float32)
    assert gap <= 1e-6 * 0.4 * np.sum(np.abs(a)) + 10 * rtol_for(dtype_name) * np.sum(a * a)
    assert u.shape == (1, 3, 5, 6)


def test_starlet_prox_matches_an_independent_constrained_solver():
    """On a tiny cube, the 2D-1D starlet prox (per-band τ, coarse × coarse free) equals the
    solution of the same problem written as a smooth program with slacks, min ½‖x − z‖² + Σ τs,
    −s ≤ Φx ≤ s, x ≥ 0, solved by SLSQP; the duality gap certifies it."""
    J, L, shape = 1, 1, (4, 3, 3)  # 36 voxels: SLSQP on 36 + 108 variables
    analysis, adjoint, norm_sq = _starlet2d1d(shape, J, L)
    z = RNG.standard_normal(shape)
    tau = np.array([[0.3, 0.2], [0.25, 0.0]]).reshape(2, 2, 1, 1, 1)
    x, _, gap = analysis_l1_prox_nonnegative(z, analysis, adjoint, tau, norm_sq, max_iter=5000, tol=1e-10)
    assert gap <= 1e-10 * np.sum(tau * np.abs(analysis(z))) and float(x.min()) >= 0.0

    n = z.size
    A = np.stack([analysis(e.reshape(shape)).ravel() for e in np.eye(n)], axis=1)
    w = np.broadcast_to(tau, (2, 2) + shape).ravel()
    A, w = A[w > 0], w[w > 0]
    m = len(w)

    def f(v):
        return 0.5 * np.sum((v[:n] - z.ravel()) ** 2) + w @ v[n:]

    cons = [{"type": "ineq", "fun": lambda v: v[n:] - A @ v[:n], "jac": lambda v: np.hstack([-A, np.eye(m)])},
            {"type": "ineq", "fun": lambda v: v[n:] + A @ v[:n], "jac": lambda v: np.hstack([A, np.eye(m)])}]
    start = np.maximum(z.ravel(), 0.0)
    res = scipy.optimize.minimize(f, np.concatenate([start, np.abs(A @ start)]),
                                  jac=lambda v: np.concatenate([v[:n] - z.ravel(), w]), constraints=cons,
                                  bounds=[(0, None)] * n + [(None, None)] * m, method="SLSQP",
                                  options={"maxiter": 2000, "ftol": 1e-14})
    # the objective is 1-strongly convex: ½‖x − x*‖² ≤ P(x) − P(x*) ≤ gap
    bound = np.sqrt(2.0 * gap)
    assert np.max(np.abs(x.ravel() - res.x[:n])) <= bound + 1e-6 < 1e-3


def test_the_gap_bounds_the_suboptimality_and_a_warm_start_needs_no_iteration():
    """Stopped early, P(x) − P(x*) ≤ gap; restarted from its own dual, the converged
    solution is certified at the first evaluation. The stopping rule is relative to the
    penalty at z: a tiny τ (a small solver step) still gets a prox, not x = z."""
    J, L, shape = 1, 1, (4, 4, 4)
    analysis, adjoint, norm_sq = _starlet2d1d(shape, J, L)
    z = RNG.standard_normal(shape)
    tau = np.full((L + 1, J + 1, 1, 1, 1), 0.3)
    tau[-1, -1] = 0.0

    def primal(x):
        return 0.5 * np.sum((x - z) ** 2) + np.sum(tau * np.abs(analysis(x)))

    best, u, gap = analysis_l1_prox_nonnegative(z, analysis, adjoint, tau, norm_sq, max_iter=5000, tol=1e-9)
    assert gap <= 1e-9 * np.sum(tau * np.abs(analysis(z)))
    early, _, early_gap = analysis_l1_prox_nonnegative(z, analysis, adjoint, tau, norm_sq, max_iter=3, tol=0.0)
    assert early_gap > 1e-6
    assert 0.0 <= primal(early) - primal(best) <= early_gap + 1e-9
    again, _, again_gap = analysis_l1_prox_nonnegative(z, analysis, adjoint, tau, norm_sq, dual=u, max_iter=1,
                                                       tol=1e-9)
    assert again_gap == gap
    np.testing.assert_allclose(again, best, atol=1e-12)
    small = tau * 1e-6
    x, _, _ = analysis_l1_prox_nonnegative(np.abs(z), analysis, adjoint, small, norm_sq, max_iter=5000, tol=1e-3)
    assert 0.0 < np.max(np.abs(x - np.abs(z)))


def test_the_numpy_in_place_path_gives_the_generic_bits(monkeypatch):
    """On numpy the dual loop writes into the arrays Φ and Φᵀ return (``_InPlace``); with the
    same operations in the same order it gives the generic path's bits, and the warm-start
    dual it is given is left as it was."""
    import xhsi.sparsity.analysis_prox as module

    shape, J, L = (12, 9, 8), 2, 2
    analysis, adjoint, norm_sq = _starlet2d1d(shape, J, L)
    z = RNG.standard_normal(shape).astype(np.float32)
    tau = RNG.uniform(0.05, 0.3, (L + 1, J + 1, 1) + shape[1:]).astype(np.float32)
    tau[-1, -1] = 0.0
    _, dual, _ = analysis_l1_prox_nonnegative(z, analysis, adjoint, tau, norm_sq, max_iter=3, tol=0.0)
    kept = dual.copy()
    runs = []
    for generic in (False, True):
        if generic:
            monkeypatch.setattr(module, "native_numpy", lambda xp: None)
        runs.append([analysis_l1_prox_nonnegative(z, analysis, adjoint, tau, norm_sq, dual=d, max_iter=6, tol=0.0)
                     for d in (None, dual)])
    assert np.array_equal(dual, kept)
    for (x, u, gap), (xg, ug, gapg) in zip(*runs):
        assert np.array_equal(x, xg) and np.array_equal(u, ug) and gap == gapg
