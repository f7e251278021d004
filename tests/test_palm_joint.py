"""PALM's joint steps (``xhsi.solvers.palm``, "Joint steps"; ``xhsi.problems.joint_metric``):
a step over every block at once along a curvature model, kept where the objective falls.
On a per-pixel quadratic whose two blocks are strongly correlated, block-coordinate PALM
crawls and the joint step goes to the minimiser; and the unmixing curvature model is the
per-pixel Fisher information of the problem's own fits."""
from __future__ import annotations

import numpy as np
import pytest

from xhsi.solvers import PALM, Block, NonNegative

# f(x, y) = ½ Σ_p [x_p − a_p, y_p − b_p] Q_p [x_p − a_p, y_p − b_p]ᵀ, Q_p = s_p [[1, ρ], [ρ, 1]]:
# the minimiser (a, b) (≥ 0, so that x, y ≥ 0 do not bind), every pixel its own curvature
N, RHO = 30, 0.995
RNG = np.random.default_rng(27)
S = np.logspace(-1, 1, N)
A, B = RNG.uniform(0.5, 2.0, N), RNG.uniform(0.5, 2.0, N)


def _grads(xs):
    dx, dy = xs[0] - A, xs[1] - B
    return S * (dx + RHO * dy), S * (RHO * dx + dy)


class _Smooth:
    def __init__(self, joint):
        self.joint = joint

    def value(self, xs):
        dx, dy = xs[0] - A, xs[1] - B
        return float(0.5 * np.sum(S * (dx * dx + 2 * RHO * dx * dy + dy * dy)))


class _Exact:
    """The quadratic's own Newton direction Q_p⁻¹ g_p."""

    def direction(self, xs, gradients):
        gx, gy = gradients
        det = S * (1.0 - RHO ** 2)
        return [(gx - RHO * gy) / det, (gy - RHO * gx) / det]


def _run(joint, max_iter, **options):
    blocks = [Block(gradient=lambda xs, i=i: _grads(xs)[i], prox=NonNegative(), metric=S, name=n)
              for i, n in enumerate("xy")]
    solver = PALM(PALM.Options(**options), max_iter=max_iter, report_every=1, tol=0.0)
    solver.setup([np.full(N, 3.0), np.full(N, 0.1)], _Smooth(joint), blocks)
    return solver, solver.run()


def _error(out):
    return max(float(np.max(np.abs(out.x[0] - A))), float(np.max(np.abs(out.x[1] - B))))


def test_the_joint_step_reaches_the_minimiser_where_block_steps_crawl():
    plain_solver, plain = _run(None, 20)
    joint_solver, joint = _run(_Exact(), 20)
    assert _error(plain) > 0.1  # along the valley: ~(1 − (1 − ρ²))^k per sweep
    assert _error(joint) < 1e-8
    assert joint_solver.joint_steps["accepted"] >= 1 and "joint_steps" in joint_solver.notes()
    assert "joint_steps" not in plain_solver.notes()
    costs = np.array([row[1] for row in joint.history])
    assert np.all(np.diff(costs) <= 1e-12 * np.abs(costs[:-1]))  # monotone


def test_a_direction_that_raises_the_objective_is_never_kept():
    class Uphill:
        def direction(self, xs, gradients):
            return [-g for g in gradients]

    solver, out = _run(Uphill(), 10)
    _, plain = _run(None, 10)
    # tried after sweeps 1, 2, 4 and 8 (backing off 1, 2, 4 iterations), 3 step sizes each
    assert solver.joint_steps == {"tried": 12, "accepted": 0}
    np.testing.assert_array_equal(out.x[0], plain.x[0])  # the sweeps alone, bit for bit


def test_joint_trials_zero_turns_the_joint_step_off():
    solver, out = _run(_Exact(), 5, joint_trials=0)
    _, plain = _run(None, 5)
    assert solver.joint_steps["tried"] == 0
    np.testing.assert_array_equal(out.x[1], plain.x[1])


def test_the_unmixing_curvature_model_is_the_fits_fisher_information(tmp_path):
    """M_p of ``JointPixelMetric`` is the per-pixel fit's Fisher matrix in the solver's
    variables (amplitudes / scale), floored on its diagonal by the blocks' metrics, and the
    direction solves M_p d_p = g_p."""
    from test_unmixing import tiny

    from xhsi import plugins
    from xhsi.config import load_config
    from xhsi.runner import prepare

    cfg = load_config(tiny(tmp_path))
    prep = prepare(cfg)
    problem = plugins.get("problem", "unmixing")(cfg, prep.backend, prep.grid, prep.observations, [],
                                                 plugins.get("likelihood", "poisson"), options=cfg.problem)
    x0, data, blocks, mixture = problem.build()
    joint = data.joint
    assert joint is not None
    m = joint.matrix(x0)
    _, fisher = problem._fisher_fitters()[0].fisher_at_maps(problem._maps(mixture, x0))
    fisher = np.asarray(fisher)
    scale = np.broadcast_to(np.asarray(mixture.scale), x0[0].shape).reshape(-1)
    p = 40  # a pixel of the remnant
    t = np.array([scale[p], scale[p], 1.0, 1.0, 1.0])
    expected = fisher[p] * t[:, None] * t[None, :]
    off = ~np.eye(5, dtype=bool)
    np.testing.assert_allclose(m[p][off], expected[off], rtol=1e-10)
    floors = np.array([np.asarray(b.metric).reshape(-1)[p] for b in blocks])
    assert np.all(np.diag(m[p]) >= floors) and np.all(np.diag(m[p]) >= np.diag(expected))
    grads = [b.gradient(x0) for b in blocks]
    d = joint.direction(x0, grads)
    g = np.array([np.asarray(gi).reshape(-1)[p] for gi in grads])
    np.testing.assert_allclose(m[p] @ np.array([np.asarray(di).reshape(-1)[p] for di in d]), g, rtol=1e-8)
    assert load_config(tiny(tmp_path)).problem.joint_metric  # the default
    off = load_config(tiny(tmp_path), ["problem.joint_metric=false"])
    plain = plugins.get("problem", "unmixing")(off, prep.backend, prep.grid, prep.observations, [],
                                               plugins.get("likelihood", "poisson"), options=off.problem)
    assert plain.build()[1].joint is None


def test_the_joint_direction_solves_each_pixels_system_on_every_backend(xp):
    """``JointPixelMetric.direction`` with its matrix given: d_p = M_p⁻¹ g_p per pixel, on
    the blocks' namespace."""
    from xhsi.backend import to_numpy
    from xhsi.problems.joint_metric import JointPixelMetric

    rng = np.random.default_rng(3)
    a = rng.standard_normal((12, 3, 3))
    m = a @ np.swapaxes(a, 1, 2) + 3.0 * np.eye(3)  # symmetric positive definite, one per pixel
    grads = [rng.standard_normal((3, 4)) for _ in range(3)]
    joint = JointPixelMetric.__new__(JointPixelMetric)
    joint.refresh, joint._calls, joint._matrix = 10, 1, xp.asarray(m)  # not due for a refresh
    d = joint.direction([xp.asarray(np.zeros((3, 4))) for _ in range(3)], [xp.asarray(g) for g in grads])
    expected = np.linalg.solve(m, np.stack([g.reshape(-1) for g in grads], axis=1)[..., None])[..., 0]
    for i in range(3):
        np.testing.assert_allclose(to_numpy(d[i]), expected[:, i].reshape(3, 4), rtol=1e-6, atol=1e-9)
