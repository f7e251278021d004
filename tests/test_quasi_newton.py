"""The projected L-BFGS over blocks (``xhsi.solvers.quasi_newton``): convergence where
block-coordinate steps crawl, bounds that bind, the smoothed starlet ℓ1 (its gradient, its
limit, its minimiser), a monotone logged cost, checkpoints resumed bit for bit, and the
terms it refuses."""
from __future__ import annotations

import numpy as np
import pytest

from xhsi.backend import to_numpy
from xhsi.errors import ConfigError
from xhsi.problems.unmixing_prior import FisherStarlet
from xhsi.solvers import PALM, Block, BlockLBFGS, Box, LowerBound, NonNegative, ProxChain, load_checkpoint

# f(x, y) = ½ Σ_p [x_p − a_p, y_p − b_p] Q_p [·]ᵀ, Q_p = s_p [[1, ρ], [ρ, 1]]: two blocks
# correlated within each pixel, curvatures over two decades (as tests/test_palm_joint.py)
N, RHO = 30, 0.995
RNG = np.random.default_rng(31)
S = np.logspace(-1, 1, N)
A, B = RNG.uniform(0.5, 2.0, N), RNG.uniform(0.5, 2.0, N)


class _Coupled:
    def __init__(self, xp, a=A, b=B, rho=RHO):
        self.xp, self.s, self.a, self.b, self.rho = xp, xp.asarray(S), xp.asarray(a), xp.asarray(b), rho

    def value(self, xs):
        dx, dy = xs[0] - self.a, xs[1] - self.b
        return float(0.5 * self.xp.sum(self.s * (dx * dx + 2 * self.rho * dx * dy + dy * dy)))

    def grads(self, xs):
        dx, dy = xs[0] - self.a, xs[1] - self.b
        return self.s * (dx + self.rho * dy), self.s * (self.rho * dx + dy)


def _blocks(f, prox=None, metric=None):
    return [Block(gradient=lambda xs, i=i: f.grads(xs)[i], prox=NonNegative() if prox is None else prox,
                  metric=metric, name=n) for i, n in enumerate("xy")]


def _lbfgs(f, blocks, x0, max_iter, **options):
    solver = BlockLBFGS(BlockLBFGS.Options(**options), max_iter=max_iter, report_every=1, tol=0.0)
    solver.setup(x0, f, blocks)
    return solver, solver.run()


def test_lbfgs_reaches_the_minimiser_where_palm_crawls(xp):
    f = _Coupled(xp)
    x0 = [xp.full((N,), 3.0, dtype=xp.float64), xp.full((N,), 0.1, dtype=xp.float64)]
    metric = xp.asarray(S)
    palm = PALM(PALM.Options(), max_iter=100, report_every=1, tol=0.0)
    palm.setup(x0, f, _blocks(f, metric=metric))
    crawl = palm.run()
    # y starts next to its bound (0.1): the first steps hold it there, and free it again
    _, out = _lbfgs(f, _blocks(f, metric=metric), x0, 100)
    err = lambda x: max(float(np.max(np.abs(to_numpy(x[0]) - A))), float(np.max(np.abs(to_numpy(x[1]) - B))))
    assert err(crawl.x) > 0.05
    assert err(out.x) < 1e-5  # the cost is then ~1e-16: the valley's curvature is 5e-4
    costs = [row[1] for row in out.history]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(costs, costs[1:]))  # Armijo: F never rises


def test_a_lower_bound_per_variable_combines_with_a_box(xp):
    """``LowerBound`` of an array (the imaging problems' start_floor) chained with a Box:
    each variable is held by the tighter of its two bounds; uncoupled pixels (ρ = 0), so
    the minimiser is a, b clipped to them."""
    rng = np.random.default_rng(8)
    a, b = rng.uniform(-1.0, 2.0, N), rng.uniform(-1.0, 2.0, N)
    f = _Coupled(xp, a, b, 0.0)
    floor = rng.uniform(0.0, 1.0, N)
    prox = ProxChain([Box(-0.5, 1.5), LowerBound(xp.asarray(floor))])
    x0 = [xp.full((N,), 1.0, dtype=xp.float64), xp.full((N,), 1.0, dtype=xp.float64)]
    _, out = _lbfgs(f, _blocks(f, prox=prox), x0, 100)
    for x, target in zip(out.x, (a, b)):
        np.testing.assert_allclose(to_numpy(x), np.clip(target, np.maximum(floor, -0.5), 1.5), atol=1e-6)


def test_bounds_that_bind_are_met_exactly(xp):
    # coupled pixels (ρ = 0.8) whose unconstrained minimisers lie in and out of the box: the
    # constrained minimiser of each pixel's 2 × 2 quadratic, by its KKT conditions
    rng, rho = np.random.default_rng(5), 0.8
    a, b = rng.uniform(-2.0, 2.0, N), rng.uniform(-2.0, 2.0, N)
    f = _Coupled(xp, a, b, rho)
    lo, hi = 0.0, 1.5
    x0 = [xp.full((N,), 0.5, dtype=xp.float64), xp.full((N,), 0.5, dtype=xp.float64)]
    _, out = _lbfgs(f, _blocks(f, prox=Box(lo, hi)), x0, 100)
    expected = np.empty((2, N))
    for p in range(N):  # every candidate active set of the pixel; the feasible best
        best = None
        for fx in (None, lo, hi):
            for fy in (None, lo, hi):
                if fx is None and fy is None:
                    x, y = a[p], b[p]
                elif fx is None:
                    y = fy
                    x = a[p] - rho * (y - b[p])
                elif fy is None:
                    x = fx
                    y = b[p] - rho * (x - a[p])
                else:
                    x, y = fx, fy
                if not (lo <= x <= hi and lo <= y <= hi):
                    continue
                dx, dy = x - a[p], y - b[p]
                v = dx * dx + 2 * rho * dx * dy + dy * dy
                if best is None or v < best[0]:
                    best = (v, x, y)
        expected[:, p] = best[1:]
    assert np.any(expected == lo) and np.any(expected == hi)  # the bounds do bind
    got = np.stack([to_numpy(out.x[0]), to_numpy(out.x[1])])
    np.testing.assert_allclose(got, expected, atol=1e-6)


def _starlet_arrays(n=16, seed=0):
    """Thresholds (3 bands, the coarse one free) and a metric for a FisherStarlet."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.5, 1.5, (3, n, n))
    t[-1] = 0.0
    return t, rng.uniform(0.5, 2.0, (n, n))


def _starlet_term(n=16, seed=0):
    return FisherStarlet(*_starlet_arrays(n, seed)[:1], 2, _starlet_arrays(n, seed)[1])


def test_smoothed_starlet_l1_gradient_matches_finite_differences():
    term = _starlet_term()
    x = np.random.default_rng(1).standard_normal((16, 16))
    v, g = term.smooth(x, 0.3)
    d = np.random.default_rng(2).standard_normal((16, 16))
    h = 1e-6
    fd = (term.smooth(x + h * d, 0.3)[0] - term.smooth(x - h * d, 0.3)[0]) / (2 * h)
    assert fd == pytest.approx(float(np.sum(g * d)), rel=1e-6)


def test_smoothed_starlet_l1_tends_to_the_l1_from_below():
    term = _starlet_term()
    x = np.random.default_rng(3).standard_normal((16, 16))
    l1 = term.value(x)
    gaps = [l1 - term.smooth(x, s)[0] for s in (0.3, 0.1, 0.01)]
    bound = float(np.sum(term.weights * term.thresholds))  # Σ λε at smoothing 1
    assert all(0 <= gap <= s * bound for gap, s in zip(gaps, (0.3, 0.1, 0.01)))
    assert gaps[0] > gaps[1] > gaps[2]


def test_the_smoothed_prior_problem_is_solved_to_stationarity(xp):
    # ½‖x − b‖² + Σ λ(√(c² + ε²) − ε), c = W x (starlet): at the minimiser the gradient,
    # (x − b) + Wᵀ(λ c/√(c² + ε²)), vanishes
    n = 16
    t, m = _starlet_arrays(n)
    b_host = np.random.default_rng(4).standard_normal((n, n))
    b = xp.asarray(b_host)

    class _Data:
        def value(self, xs):
            return float(0.5 * xp.sum((xs[0] - b) ** 2))

    prior = FisherStarlet(xp.asarray(t), 2, xp.asarray(m))
    block = Block(gradient=lambda xs: xs[0] - b, prox=ProxChain([prior]), name="map")
    _, out = _lbfgs(_Data(), [block], [xp.zeros((n, n), dtype=xp.float64)], 80)
    x = to_numpy(out.x[0])
    grad = (x - b_host) + FisherStarlet(t, 2, m).smooth(x, 0.1)[1]
    assert float(np.max(np.abs(grad))) < 1e-6
    assert float(np.max(np.abs(x - b_host))) > 0.05  # the prior does act


def test_a_term_without_a_smooth_version_is_refused():
    class _Other:
        def prox(self, x, step):
            return x

        def value(self, x):
            return 0.0

    f = _Coupled(np)
    blocks = [Block(gradient=lambda xs: f.grads(xs)[0], prox=ProxChain([_Other(), NonNegative()]), name="kT"),
              Block(gradient=lambda xs: f.grads(xs)[1], prox=NonNegative(), name="z")]
    solver = BlockLBFGS(max_iter=5)
    with pytest.raises(ConfigError, match=r"block `kT`.*_Other.*name = \"palm\""):
        solver.setup([np.ones(N), np.ones(N)], f, blocks)


def test_checkpoint_resume_is_bit_for_bit(tmp_path):
    f = _Coupled(np)
    x0 = [np.full(N, 3.0), np.full(N, 0.1)]
    _, whole = _lbfgs(f, _blocks(f, metric=S), x0, 12, memory=3)
    path = tmp_path / "ckpt.npz"
    first = BlockLBFGS(BlockLBFGS.Options(memory=3), max_iter=7, report_every=1, tol=0.0)
    first.setup(x0, f, _blocks(f, metric=S))
    first.run(checkpoint_path=path, checkpoint_every=7)
    second = BlockLBFGS(BlockLBFGS.Options(memory=3), max_iter=12, report_every=1, tol=0.0)
    second.setup(x0, f, _blocks(f, metric=S))
    resumed = second.run(resume_from=load_checkpoint(path))
    for a, b in zip(whole.x, resumed.x):
        assert np.array_equal(a, b)
    assert [r[1] for r in whole.history] == [r[1] for r in resumed.history]
