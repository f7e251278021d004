"""Unit tests of the solver machinery: options, stopping rules, callbacks, failures, adapters."""
from __future__ import annotations

import numpy as np
import pytest
from array_api_compat import array_namespace

from xhsi.backend import to_numpy
from xhsi.errors import ConfigError, RunStopped
from xhsi.likelihoods import DataTerm, Poisson
from xhsi.operators import Identity
from xhsi.solvers import FISTA, ISTA, PALM, Block, Composite, LowerBound, NonNegative, ProxChain, Zero
from xhsi.testing import assert_close


class Quadratic:
    """f(x) = ½ Σ c_j (x_j − a_j)², L = max c_j; optionally non-finite after ``bad_after``
    gradient calls (to simulate a diverging model)."""

    def __init__(self, xp, c, a, bad_after=None):
        self.c, self.a, self.xp = xp.asarray(c), xp.asarray(a), xp
        self.calls, self.bad_after = 0, bad_after

    def value(self, x) -> float:
        if self.bad_after is not None and self.calls > self.bad_after:
            return float("nan")
        d = x - self.a
        return 0.5 * float(self.xp.sum(self.c * d * d))

    def gradient(self, x):
        self.calls += 1
        return self.c * (x - self.a)

    def lipschitz(self):
        return float(self.xp.max(self.c))


def quadratic(xp, n=20, dtype=None, decades=2.0, **kw):
    rng = np.random.default_rng(0)
    c = np.logspace(0, -decades, n)
    a = rng.standard_normal(n)
    q = Quadratic(xp, c, a, **kw)
    x0 = xp.zeros((n,), dtype=q.c.dtype if dtype is None else dtype)
    return q, x0, a


def test_fista_keeps_float32_and_namespace(xp):
    q, x0, _ = quadratic(xp)
    q.c, q.a = xp.astype(q.c, xp.float32), xp.astype(q.a, xp.float32)
    solver = FISTA(max_iter=5)
    solver.setup(xp.astype(x0, xp.float32), q)
    result = solver.run()
    assert result.x.dtype == xp.float32 and array_namespace(result.x) is xp
    assert result.state.t.dtype == xp.float32


@pytest.mark.parametrize("restart", ["adaptive", "none"])
@pytest.mark.parametrize("monotone", [False, True])
def test_fista_variants_converge(xp, restart, monotone):
    q, x0, a = quadratic(xp, decades=1.0)
    solver = FISTA(FISTA.Options(restart=restart, monotone=monotone), max_iter=600, tol=1e-14, report_every=5)
    solver.setup(x0, q, None)
    result = solver.run()
    np.testing.assert_allclose(to_numpy(result.x), a, atol=1e-5)
    costs = [row[1] for row in result.history]
    if monotone:
        assert all(b <= a_ for a_, b in zip(costs, costs[1:]))


def test_monotone_variant_never_increases_each_iteration(xp):
    q, x0, _ = quadratic(xp)
    solver = FISTA(FISTA.Options(restart="none", monotone=True, backtracking=False), max_iter=200, report_every=1)
    solver.setup(x0, q, NonNegative())
    costs = [row[1] for row in solver.run().history]
    assert all(b <= a for a, b in zip(costs, costs[1:]))


def test_monotone_variant_is_not_stopped_by_its_rejected_steps(xp):
    """A rejected MFISTA step keeps x_{k−1}: cost and iterate do not change although the
    run is far from converged. The stop rule must not take that for convergence (it stopped
    at iteration 41, 0.17 from the minimiser, before it looked at the rejected step's move)."""
    q, x0, a = quadratic(xp, n=50, decades=2.0)
    solver = FISTA(FISTA.Options(restart="none", monotone=True, backtracking=False), max_iter=5000, tol=1e-12,
                   report_every=1)
    solver.setup(x0, q, None)
    result = solver.run()
    assert result.converged and result.n_iter > 1000, result.stop_reason
    np.testing.assert_allclose(to_numpy(result.x), a, atol=1e-8)


def test_adaptive_restart_beats_plain_fista_on_strongly_convex(xp):
    q, x0, a = quadratic(xp)
    results = {}
    for restart in ("adaptive", "none"):
        solver = FISTA(FISTA.Options(restart=restart, backtracking=False), max_iter=300, report_every=300)
        solver.setup(x0, q)
        results[restart] = np.linalg.norm(to_numpy(solver.run().x) - a)
    assert results["adaptive"] < 0.1 * results["none"]


def test_tol_stops_and_reports_converged(xp):
    q, x0, _ = quadratic(xp)
    solver = ISTA(max_iter=100000, tol=1e-6, report_every=10)
    solver.setup(x0, q)
    result = solver.run()
    assert result.converged and result.stop_reason.startswith("converged: relative")
    assert result.n_iter < 100000 and result.n_iter % 10 == 0


def test_callback_called_every_report_and_can_stop(xp):
    q, x0, _ = quadratic(xp)
    seen = []

    def callback(iteration, cost, step, state):
        seen.append((iteration, cost, step, state.iteration))
        return iteration >= 30

    solver = FISTA(max_iter=100, report_every=10)
    solver.setup(x0, q)
    result = solver.run(callback=callback)
    assert [s[0] for s in seen] == [10, 20, 30]
    assert all(isinstance(s[1], float) and s[0] == s[3] for s in seen)
    assert result.stop_reason == "stopped by callback" and result.n_iter == 30 and not result.converged
    assert [row[0] for row in result.history] == [0, 10, 20, 30]


def test_time_budget_stops(xp):
    q, x0, _ = quadratic(xp)
    solver = FISTA(max_iter=10 ** 7, max_time_s=0.05, report_every=10 ** 6)
    solver.setup(x0, q)
    result = solver.run()
    assert result.stop_reason.startswith("time budget") and 0 < result.n_iter < 10 ** 7
    assert result.history[-1][0] == result.n_iter


def test_non_finite_cost_stops_with_last_good_state(xp):
    q, x0, _ = quadratic(xp, bad_after=25)
    solver = FISTA(FISTA.Options(backtracking=False), max_iter=100, report_every=10)
    solver.setup(x0, q)
    with pytest.raises(RunStopped, match="iteration 30") as info:
        solver.run()
    assert "last good one (iteration 20)" in str(info.value)
    assert solver.state.iteration == 20
    assert np.all(np.isfinite(to_numpy(solver.state.x)))


def test_non_finite_during_backtracking_stops(xp):
    q, x0, _ = quadratic(xp, bad_after=5)
    solver = FISTA(max_iter=100, report_every=50)
    solver.setup(x0, q)
    with pytest.raises(RunStopped, match="(backtracking found no step|the smooth cost is .*) at (the point of )?iteration 6"):
        solver.run()
    assert solver.state.iteration == 0  # no report passed yet: the initial state is the good one


def test_poisson_without_backtracking_or_step_is_a_config_error(xp):
    term = DataTerm(Poisson(), Identity((4,)), xp.asarray([1.0, 0.0, 2.0, 3.0]))
    with pytest.raises(ConfigError, match="backtracking = true"):
        FISTA(FISTA.Options(backtracking=False)).setup(xp.ones((4,)), term)
    solver = FISTA(FISTA.Options(backtracking=False, step=0.1), max_iter=3)
    solver.setup(xp.ones((4,)), term)  # an explicit step is the user's choice


def test_default_step_is_inverse_lipschitz(xp):
    q, x0, _ = quadratic(xp)
    solver = FISTA(FISTA.Options(backtracking=False))
    solver.setup(x0, q)
    assert solver.state.step == pytest.approx(1.0)
    term = DataTerm(Poisson(), Identity((4,)), xp.asarray([1.0, 0.0, 2.0, 3.0]))
    solver = FISTA()
    solver.setup(xp.ones((4,)), term)
    assert solver.state.step == 1.0  # no Lipschitz constant: backtracking from 1.0


def test_step_grows_back_after_shrinking(xp):
    """A quadratic with L = 1 started from a step of 10: backtracking shrinks it, never
    below ½/L (eta = 0.5), and the per-iteration growth lets it increase again."""
    q, x0, _ = quadratic(xp)
    solver = FISTA(FISTA.Options(step=10.0), max_iter=40, report_every=1)
    solver.setup(x0, q)
    steps = [row[2] for row in solver.run().history]
    assert steps[0] == 10.0 and steps[1] < 10.0
    assert min(steps[1:]) >= 0.5
    assert any(b > a for a, b in zip(steps[1:], steps[2:]))


class CountingProx:
    """A prox that counts its calls."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def prox(self, x, step):
        self.calls += 1
        return self.inner.prox(x, step)

    def value(self, x):
        return self.inner.value(x)


def test_grow_every_spares_the_proxes_of_failed_growths(xp):
    """A step held at its limit (a quadratic, L = 1, started at 1/L): growing at every
    iteration fails about every other time and pays a second prox; growing again only 10
    iterations after a failure pays about 1.1 proxes per iteration. Both reach the same
    minimiser; from a step far below its limit both grow at every iteration."""
    q, x0, a = quadratic(xp, decades=1.0)
    per_iteration, solutions = {}, {}
    for n in (1, 10):
        prox = CountingProx(NonNegative())
        solver = FISTA(FISTA.Options(grow=1.5, grow_every=n), max_iter=400, tol=0.0, report_every=400)
        solver.setup(x0, q, prox)
        out = solver.run()
        per_iteration[n], solutions[n] = prox.calls / out.n_iter, to_numpy(out.x)
        np.testing.assert_allclose(solutions[n], np.maximum(a, 0.0), atol=1e-6)
    assert per_iteration[1] > 1.4 and per_iteration[10] < 1.15, per_iteration
    ramps = {}
    for n in (1, 10):
        solver = FISTA(FISTA.Options(step=1e-3, grow=1.5, grow_every=n), max_iter=12, tol=0.0, report_every=1)
        solver.setup(x0, q, NonNegative())
        ramps[n] = [row[2] for row in solver.run().history]
    assert ramps[1] == ramps[10] and ramps[10][-1] > 0.1  # 1e-3 × 1.5^12 ≈ 0.13: no trial failed yet


@pytest.mark.parametrize("solver_cls", [ISTA, FISTA])
def test_the_accelerating_shrink_finds_a_collapsed_step_in_fewer_trials(xp, solver_cls):
    """A first step 2^20 times too large (a quadratic, L = 1): halving at every failed trial
    takes ~20 trials, shrinking by eta^n at the n-th takes ~6 (1 + 2 + … + 6 ≥ 20), and the
    step it accepts passes the same sufficient-decrease test. (With halving, FISTA's momentum
    safeguard first gives up on the extrapolated point after 10 trials and starts again from
    x: 10 + 21 trials.) Both reach the minimiser."""
    q, x0, a = quadratic(xp, decades=1.0)
    first, solutions = {}, {}
    for shrink in ("constant", "accelerating"):
        prox = CountingProx(NonNegative())
        solver = solver_cls(solver_cls.Options(step=2.0 ** 20, shrink=shrink), max_iter=1, tol=0.0, report_every=1)
        solver.setup(x0, q, prox)
        step = solver.run().history[-1][2]
        first[shrink] = (prox.calls, step)
        solver = solver_cls(solver_cls.Options(step=2.0 ** 20, shrink=shrink), max_iter=3000, tol=0.0,
                            report_every=3000)
        solver.setup(x0, q, NonNegative())
        solutions[shrink] = to_numpy(solver.run().x)
        np.testing.assert_allclose(solutions[shrink], np.maximum(a, 0.0), atol=1e-5)
    (n_const, step_const), (n_acc, step_acc) = first["constant"], first["accelerating"]
    assert n_const >= 20 and n_acc <= 0.4 * n_const, first
    assert step_acc <= step_const <= 2.2  # accepted: no larger than halving accepts, within 2 of 1/L (grow 1.1)


class Stuck(Quadratic):
    """A quadratic that is finite only at ``at`` (+inf anywhere else): no step leaves it."""

    def __init__(self, xp, c, a, at):
        super().__init__(xp, c, a)
        self.at = at

    def value(self, x) -> float:
        return super().value(x) if bool(self.xp.all(x == self.at)) else float("inf")


@pytest.mark.parametrize("shrink, trials", [("constant", "60"), ("accelerating", "4[0-9]")])
def test_backtracking_that_finds_no_step_stops_with_a_message(xp, shrink, trials):
    """Every trial fails: the run stops after ``max_backtracks`` trials, or, accelerating,
    once the step has underflowed to 0 (eta^(n(n+1)/2), n ≈ 46), not after dividing by it."""
    _, x0, a = quadratic(xp)
    q = Stuck(xp, np.ones(x0.shape[0]), a, x0)
    solver = ISTA(ISTA.Options(shrink=shrink), max_iter=5, report_every=5)
    solver.setup(x0, q)
    with pytest.raises(RunStopped, match=f"backtracking found no step at iteration 1 after {trials} trials"):
        solver.run()


def test_a_checkpoint_written_before_a_state_field_existed_loads_with_its_default(xp):
    from xhsi.solvers.base import state_from_dict, state_to_dict
    from xhsi.solvers.fista import FistaState

    q, x0, _ = quadratic(xp)
    solver = FISTA(FISTA.Options(grow_every=3), max_iter=5)
    solver.setup(x0, q)
    solver.run()
    values = {k: (to_numpy(v) if hasattr(v, "shape") else v) for k, v in state_to_dict(solver.state).items()}
    assert state_from_dict(FistaState, values, xp).since_shrink == solver.state.since_shrink
    del values["since_shrink"]  # a checkpoint of an earlier version
    assert state_from_dict(FistaState, values, xp).since_shrink is None
    del values["step"]
    with pytest.raises(ConfigError, match="lacks state field"):
        state_from_dict(FistaState, values, xp)


def test_options_from_dict_are_validated():
    solver = FISTA({"restart": "none", "eta": 0.3}, max_iter=3)
    assert solver.options.restart == "none" and solver.options.eta == 0.3
    with pytest.raises(ConfigError, match="did you mean `restart`"):
        FISTA({"restrat": "none"})
    with pytest.raises(ConfigError, match="restart"):
        FISTA({"restart": "always"})


def test_state_is_replaced_not_modified(xp):
    q, x0, _ = quadratic(xp)
    solver = FISTA(max_iter=3)
    solver.setup(x0, q)
    first = solver.state
    snapshot = to_numpy(first.x).copy()
    solver.step()
    assert solver.state is not first and first.iteration == 0
    np.testing.assert_array_equal(to_numpy(first.x), snapshot)


# -- adapters ---------------------------------------------------------------------------
def test_composite_sums_values_gradients_and_lipschitz(xp):
    q1, x0, _ = quadratic(xp)
    q2 = Quadratic(xp, np.full(20, 2.0), np.ones(20))
    both = Composite([q1, q2])
    x = xp.asarray(np.linspace(-1, 1, 20))
    assert both.value(x) == pytest.approx(q1.value(x) + q2.value(x))
    assert_close(both.gradient(x), q1.gradient(x) + q2.gradient(x), xp=xp)
    v, g = both.value_and_gradient(x)
    assert v == pytest.approx(both.value(x))
    assert both.lipschitz() == pytest.approx(3.0)
    poisson = DataTerm(Poisson(), Identity((20,)), xp.ones((20,)))
    assert Composite([q1, poisson]).lipschitz() is None


def test_prox_chain_l1_then_nonnegative_is_exact(xp):
    """Soft thresholding then projection = prox of λ‖x‖₁ + ι(x ≥ 0) = max(x − λ, 0)."""

    class L1:
        def prox(self, x, step):
            return xp.sign(x) * xp.clip(xp.abs(x) - step, min=0.0)

        def value(self, x):
            return float(xp.sum(xp.abs(x)))

    x = xp.asarray(np.linspace(-3, 3, 13))
    chain = ProxChain([L1(), NonNegative()])
    assert_close(chain.prox(x, 0.5), xp.clip(x - 0.5, min=0.0), xp=xp)
    assert chain.value(x) == pytest.approx(float(xp.sum(xp.abs(x))))
    assert_close(Zero().prox(x, 1.0), x, xp=xp)


def test_lower_bound_prox_is_the_projection_of_its_definition(xp):
    """LowerBound(lo): prox = argmin_{u >= lo} ½‖u − x‖², whatever the step: feasible, x
    itself where x is feasible, and no feasible point sampled is closer to x; a number as lo
    is NonNegative's projection shifted."""
    rng = np.random.default_rng(3)
    x_np, lo_np = rng.standard_normal(50), 0.5 * rng.standard_normal(50)
    x, lo = xp.asarray(x_np), xp.asarray(lo_np)
    u = to_numpy(LowerBound(lo).prox(x, 0.7))
    assert np.all(u >= lo_np) and np.array_equal(u[x_np >= lo_np], x_np[x_np >= lo_np])
    for _ in range(200):
        v = lo_np + np.abs(rng.standard_normal(50))  # a feasible point
        assert np.sum((u - x_np) ** 2) <= np.sum((v - x_np) ** 2)
    assert_close(LowerBound(0.0).prox(x, 1.0), NonNegative().prox(x, 1.0), xp=xp)
    assert LowerBound(lo).value(xp.asarray(u)) == 0.0 and LowerBound(lo).bounds[1] is None


def test_palm_rejects_missing_lipschitz_without_backtracking(xp):
    block = Block(gradient=lambda xs: xs[0])
    solver = PALM(PALM.Options(backtracking=False))
    with pytest.raises(ConfigError, match="backtracking = true"):
        solver.setup([xp.ones((3,))], lambda xs: 0.0, [block])


def test_palm_block_prox_and_steps(xp):
    """Two decoupled quadratic blocks: PALM converges to each block's minimiser."""
    q1 = Quadratic(xp, np.ones(5), np.full(5, 2.0))
    q2 = Quadratic(xp, np.full(3, 4.0), -np.ones(3))
    blocks = [Block(gradient=lambda xs: q1.gradient(xs[0]), lipschitz=lambda xs: 1.0, prox=NonNegative()),
              Block(gradient=lambda xs: q2.gradient(xs[1]), prox=NonNegative())]
    solver = PALM(max_iter=200, report_every=50)
    solver.setup([xp.zeros((5,)), xp.ones((3,))], lambda xs: q1.value(xs[0]) + q2.value(xs[1]), blocks)
    result = solver.run()
    assert_close(result.x[0], xp.full((5,), 2.0), rtol=1e-6, xp=xp)
    assert_close(result.x[1], xp.zeros((3,)), atol=1e-12, xp=xp)  # projected on x ≥ 0
    assert result.history[-1][2] == pytest.approx(min(1 / (1.1 * L) for L in solver.state.lipschitz))


class _Wall:
    """½‖D(x − a)‖² plus a stiff wall M/2·‖min(x, 0)‖² (M = 1e10): like a Poisson term
    whose curvature explodes where the model leaves the positive domain. The minimiser over
    x ≥ 0 is a (entries 0 or positive), so FISTA's extrapolation overshoots into the wall."""

    def __init__(self, xp, n=50):
        self.xp = xp
        self.d2 = xp.asarray(np.linspace(1e-3, 1.0, n) ** 2)
        self.a = xp.asarray(np.where(np.arange(n) % 2 == 0, 0.0, 1.0))

    def value(self, x):
        xp = self.xp
        neg = xp.clip(x, max=0.0)
        return float(0.5 * xp.sum(self.d2 * (x - self.a) ** 2) + 0.5e10 * xp.sum(neg * neg))

    def gradient(self, x):
        return self.d2 * (x - self.a) + 1e10 * self.xp.clip(x, max=0.0)


@pytest.mark.parametrize("restart_after, collapses", [(10, False), (60, True)])
def test_momentum_reset_keeps_the_step_when_extrapolation_hits_a_wall(xp, restart_after, collapses):
    term = _Wall(xp)
    solver = FISTA(FISTA.Options(restart_after=restart_after, restart="none", grow=1.05), max_iter=300,
                   report_every=1, tol=0.0)
    solver.setup(xp.ones((50,)), term, NonNegative())
    solver.run()
    assert (min(row[2] for row in solver.history) < 1e-6) is collapses


def test_palm_block_metric_evens_out_curvatures(xp):
    # f(x) = ½ Σ c_j (x_j − a_j)² with c spanning six decades: one scalar step is set by the
    # stiffest coordinate, a diagonal metric D = c gives every coordinate its own step.
    c = xp.asarray(np.logspace(-3, 3, 40))
    a = xp.asarray(np.linspace(1.0, 2.0, 40))

    def value(xs):
        return float(0.5 * xp.sum(c * (xs[0] - a) ** 2))

    def run(metric):
        block = Block(gradient=lambda xs: c * (xs[0] - a), metric=metric, name="x")
        solver = PALM(max_iter=20, report_every=20, tol=0.0)
        solver.setup([xp.zeros((40,))], value, [block])
        solver.run()
        return float(xp.max(xp.abs(solver.x[0] - a)))

    assert run(c) < 1e-6
    assert run(None) > 0.1


def test_precomposed_is_the_change_of_variable(xp):
    """u ↦ f(L u): value f(L u), gradient Lᵀ∇f(L u) (finite differences), Lipschitz L_f‖L‖²;
    with the diagonal metric d² = 1/c the ill-conditioned quadratic becomes the identity's
    and FISTA on u reaches the minimiser a/d in a few iterations, where it needs hundreds on x."""
    from xhsi.operators import Diagonal
    from xhsi.solvers import Precomposed

    q, x0, a = quadratic(xp, decades=3.0)
    rng = np.random.default_rng(1)
    d = 1.0 / np.sqrt(to_numpy(q.c))
    term = Precomposed(q, Diagonal(xp.asarray(d), (20,)))
    u, v = (xp.asarray(rng.standard_normal(20)) for _ in range(2))
    assert term.value(u) == pytest.approx(q.value(xp.asarray(d) * u))
    eps = 1e-6
    slope = (term.value(u + eps * v) - term.value(u - eps * v)) / (2 * eps)
    assert float(xp.sum(term.gradient(u) * v)) == pytest.approx(slope, rel=1e-6)
    value, grad = term.value_and_gradient(u)
    assert value == pytest.approx(term.value(u))
    assert_close(grad, term.gradient(u), xp=xp)
    assert term.lipschitz() == pytest.approx(q.lipschitz() * float(np.max(d)) ** 2)
    errors = {}
    for name, (f, start, answer) in {"x": (q, x0, a), "u": (term, x0, a / d)}.items():
        solver = FISTA(FISTA.Options(step=1.0), max_iter=20, report_every=20)  # backtracking from 1
        solver.setup(start, f)
        errors[name] = float(np.linalg.norm(to_numpy(solver.run().x) - answer) / np.linalg.norm(answer))
    assert errors["u"] < 1e-6 < 1e-2 < errors["x"]
