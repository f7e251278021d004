"""PALM's logged cost is the objective it minimises, and it does not increase: the prox of a
block in its diagonal metric (``prox_metric``), the monotone safeguard for a prox that is
not exact in the metric, and the unmixing run's cost in the units of its penalty."""
from __future__ import annotations

import numpy as np
import pytest

from xhsi.config import load_config
from xhsi.runner import run
from xhsi.solvers import PALM, Block, NonNegative
from xhsi.solvers.prox import ProxChain
from xhsi.testing import assert_close

from test_unmixing import tiny

# f(x) = ½ Σ D (x − b)², D over six decades: the metric PALM is given is f's own curvature.
N = 40
RNG = np.random.default_rng(26)
D = np.logspace(-3, 3, N)
B = RNG.uniform(-2.0, 2.0, N)
LAM = 0.5 * np.sqrt(D)  # λ (cost per unit of x): λ/D straddles |b| from above and below


class WeightedL1:
    """g(x) = Σ λ|x|: Euclidean prox at step·λ, prox in a diagonal metric at step·λ/D."""

    def __init__(self, lam):
        self.lam = lam

    def prox(self, x, step):
        return _soft(x, step * self.lam)

    def value(self, x):
        return float(np.sum(self.lam * np.abs(x)))


class MetricWeightedL1(WeightedL1):
    def prox_metric(self, x, step, metric):
        return _soft(x, step * self.lam / metric)


def _soft(x, t):
    return np.sign(x) * np.clip(np.abs(x) - t, 0.0, None)


def _f(xs):
    return float(0.5 * np.sum(D * (xs[0] - B) ** 2))


def _palm(prox, x0, max_iter=40, **options):
    block = Block(gradient=lambda xs: D * (xs[0] - B), prox=prox, metric=D, name="x")
    solver = PALM(PALM.Options(**options), max_iter=max_iter, report_every=1, tol=0.0)
    solver.setup([np.asarray(x0, dtype=np.float64)], _f, [block])
    return solver, solver.run()


def _costs(result):
    return np.array([row[1] for row in result.history])


def _non_increasing(costs, rtol=1e-12):
    return bool(np.all(np.diff(costs) <= rtol * np.abs(costs[:-1])))


def test_metric_prox_decreases_and_reaches_the_minimiser():
    """min ½ Σ D(x − b)² + Σ λ|x| = soft(b, λ/D) per element. The prox applied as for D = 1
    converges to soft(b, λ) instead, and from x = b its objective rises (old PALM: the cost
    went up at the first step); the metric prox reaches the minimiser monotonically, and the
    logged cost is f + g recomputed at the iterate."""
    answer = _soft(B, LAM / D)
    seen = []
    block = Block(gradient=lambda xs: D * (xs[0] - B), prox=MetricWeightedL1(LAM), metric=D, name="x")
    solver = PALM(max_iter=100, report_every=1, tol=0.0)
    solver.setup([B.copy()], _f, [block])
    result = solver.run(lambda k, cost, step, state: seen.append(
        (cost, _f(state.x) + float(np.sum(LAM * np.abs(state.x[0]))))) and False)
    assert len(seen) == 100 and all(c == pytest.approx(h, rel=1e-14) for c, h in seen)  # f + g, recomputed
    # to √eps: near the minimum the backtracking's float slack lets L drift below the curvature
    assert_close(result.x[0], answer, rtol=1e-7, atol=1e-9)
    costs = _costs(result)
    assert _non_increasing(costs) and costs[-1] < costs[0]
    assert costs[-1] == pytest.approx(_f([answer]) + float(np.sum(LAM * np.abs(answer))), rel=1e-12)
    assert solver.rejected_updates == {"x": 0}  # an exact prox never trips the safeguard


def test_safeguard_keeps_an_inexact_prox_from_raising_the_cost():
    """The Euclidean prox on a metric block (the old approximation): without the safeguard
    the objective rises from the exact minimiser; with it no update that raises f + g is
    taken, the cost stays at the minimum and the rejections are reported."""
    answer = _soft(B, LAM / D)
    h_min = _f([answer]) + float(np.sum(LAM * np.abs(answer)))
    _, loose = _palm(WeightedL1(LAM), answer, max_iter=10, monotone=False)
    assert _costs(loose)[-1] > h_min * (1 + 1e-3)  # the approximation leaves the minimiser
    solver, result = _palm(WeightedL1(LAM), answer, max_iter=10)
    costs = _costs(result)
    assert _non_increasing(costs)
    assert costs[-1] == pytest.approx(h_min, rel=1e-12)
    assert solver.rejected_updates["x"] > 0 and solver.notes() == {"rejected_block_updates": solver.rejected_updates}


def test_safeguard_backtracks_a_chain_to_a_decrease_from_a_far_start():
    """From far (x = 10·b, with x ≥ 0) the inexact Euclidean ℓ1 + projection chain still
    makes progress under the safeguard: the cost never rises and ends well below its start."""
    prox = ProxChain([WeightedL1(LAM), NonNegative()])
    _, result = _palm(prox, np.abs(10.0 * B), max_iter=30)
    costs = _costs(result)
    assert _non_increasing(costs) and costs[-1] < 1e-2 * costs[0]


def test_block_step_cap():
    """``Block.max_step`` bounds the step 1/τ (L raised to 1/(γ·max_step))."""
    block = Block(gradient=lambda xs: 1e-3 * xs[0], name="x", max_step=1.0)
    solver = PALM(max_iter=5, report_every=1, tol=0.0)
    solver.setup([np.ones(3)], lambda xs: float(0.5e-3 * np.sum(xs[0] ** 2)), [block])
    result = solver.run()
    assert max(row[2] for row in result.history[1:]) <= 1.0 + 1e-12


def test_fisher_starlet_is_a_penalty_in_cost_units():
    """λ = D·T: the value scales with the metric, the metric prox does not (it thresholds at
    step·T), and with D = 1 both proxes agree."""
    from xhsi.problems.unmixing_prior import FisherStarlet

    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 8))
    t = np.abs(rng.standard_normal((3, 8, 8))) * np.array([1.0, 1.0, 0.0])[:, None, None]
    d = np.exp(rng.standard_normal((8, 8)))
    unit, heavy = FisherStarlet(t, 2, np.ones((8, 8))), FisherStarlet(t, 2, 5.0 * d)
    assert heavy.value(x) > unit.value(x) > 0
    assert FisherStarlet(t, 2, 5.0 * d).value(x) == pytest.approx(5.0 * FisherStarlet(t, 2, d).value(x))
    assert_close(heavy.prox_metric(x, 0.3, 5.0 * d), unit.prox_metric(x, 0.3, np.ones((8, 8))))
    assert_close(unit.prox(x, 0.3), unit.prox_metric(x, 0.3, np.ones((8, 8))))


def test_unmixing_history_cost_does_not_increase(tmp_path):
    """The tiny CasA-like unmixing started from per-pixel fits, with starlet priors on every
    map: the cost logged at every iteration never rises (the old logged cost, the Poisson
    term plus a penalty in map units², went 462 → 490 → 515 over these iterations while PALM
    lowered f + Σ D·T|Wx|), and the run reports the safeguard's rejections per block."""
    prior = "parameter_k = 1.0\namplitude_k = 1.0\nscales = 2"
    path = tiny(tmp_path, max_iter=6, thermal_extra=prior, sync_extra=prior)
    result = run(load_config(path, ["solver.report_every=1", "problem.init_bin=1"]), quiet=True)
    costs = np.array([row["cost"] for row in result.history])
    assert len(costs) == 7 and _non_increasing(costs) and costs[-1] < costs[0]
    assert set(result.metadata["rejected_block_updates"]) == {"thermal", "synchrotron", "thermal.kT", "thermal.z",
                                                              "synchrotron.index"}
