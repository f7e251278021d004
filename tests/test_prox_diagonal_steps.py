"""Per-coefficient dual steps of the exact 2D-1D starlet prox in a diagonal metric
(``xhsi.sparsity.dual_steps``, the ``step`` argument of ``analysis_l1_prox_nonnegative``):
the bound ‖Φ‖²·diag(m) majorises ΦD²Φᵀ (dense eigenvalues on a tiny cube), the prox it
drives is the prox (its duality gap recomputed from the definitions; the uniform-step loop's
answer), and it needs fewer dual iterations where d varies."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.ndimage

import xhsi
from xhsi.operators import Starlet2d1d
from xhsi.schema import Context, from_dict
from xhsi.sparsity.analysis_prox import analysis_l1_prox_nonnegative
from xhsi.sparsity.dual_steps import band_reach, local_max, metric_dual_steps, support_max
from xhsi.sparsity.wavelets import starlet1d, starlet2d
from xhsi.testing import assert_close

RNG = np.random.default_rng(25)


@functools.cache
def _frame(shape, J, L):
    """(the 2D-1D starlet operator, a bound of ‖Φ‖²)."""
    frame = Starlet2d1d(shape, J, L)
    return frame, 1.01 * frame.norm(rtol=1e-8, n_iter=300) ** 2


def _dense(frame, shape, d):
    """K = Φ∘diag(d) as a dense (coefficients × voxels) matrix."""
    n = int(np.prod(shape))
    return np.stack([frame.apply(d * e.reshape(shape)).ravel() for e in np.eye(n)], axis=1)


def _varying_metric(shape):
    """d² over three decades and a bright corner 25× above them, as the EM metric's
    √(x / sensitivity) with ``precondition_max`` = 25."""
    d2 = np.exp(RNG.uniform(np.log(1e-3), np.log(1.0), shape))
    d2[:2, :1, :1] = 25.0
    return np.sqrt(d2)


def test_band_reach_is_the_support_of_the_impulse_responses():
    """r(l) of every 1-D band, and of every 2-D band along y and x, is the half-width of the
    nonzero part of its impulse response (a Dirac far from the borders)."""
    for n_scales in (1, 2, 3):
        reach = band_reach(n_scales)
        half = reach[-1] + 4
        dirac = np.zeros(2 * half + 1)
        dirac[half] = 1.0
        for r, band in zip(reach, starlet1d(dirac, n_scales, axis=0)):
            assert np.max(np.abs(np.flatnonzero(np.abs(band) > 1e-15) - half)) == r
        image = np.zeros((2 * half + 1,) * 2)
        image[half, half] = 1.0
        for r, band in zip(reach, starlet2d(image, n_scales)):
            rows, cols = np.nonzero(np.abs(band) > 1e-15)
            assert max(np.max(np.abs(rows - half)), np.max(np.abs(cols - half))) == r


@pytest.mark.parametrize("n, reach", [(9, 0), (9, 1), (9, 3), (9, 8), (9, 20), (1, 3), (40, 5), (40, 14)])
def test_local_max_is_the_clipped_max_filter(xp, n, reach):
    a = RNG.standard_normal((3, n, 4))
    out = local_max(xp.asarray(a), reach, axis=1)
    assert_close(out, xp.asarray(scipy.ndimage.maximum_filter1d(a, 2 * reach + 1, axis=1, mode="nearest")), xp=xp)


def test_support_max_is_the_max_over_each_band_box(xp):
    """Band (l, j): the max of d² over the box of half-widths r₁(l) × r₂(j) × r₂(j), clipped."""
    J, L, shape = 2, 2, (30, 16, 17)
    d2 = RNG.uniform(0.0, 1.0, shape)
    m = support_max(xp.asarray(d2), J, L)
    assert m.shape == (L + 1, J + 1) + shape
    for ell, r1 in enumerate(band_reach(L)):
        for j, r2 in enumerate(band_reach(J)):
            want = scipy.ndimage.maximum_filter(d2, size=(2 * r1 + 1, 2 * r2 + 1, 2 * r2 + 1), mode="nearest")
            assert_close(m[ell, j, ...], xp.asarray(want), xp=xp)


@pytest.mark.parametrize("J, L, shape", [(1, 2, (8, 5, 5)), (2, 1, (5, 7, 7))])
def test_the_local_bound_majorises_the_metric_frame(J, L, shape):
    """λ_max(S^½ ΦD²Φᵀ S^½) ≤ 1 with S = 1/(‖Φ‖²·m), exactly (dense eigenvalues), for d² over
    three decades with a bright corner, on cubes that are mostly mirror border; random u as
    well. The pointwise d² in place of its max over the supports is no majoriser."""
    frame, norm_sq = _frame(shape, J, L)
    d = _varying_metric(shape)
    K = _dense(frame, shape, d)
    bound = 1.0 / metric_dual_steps(d, norm_sq, J, L).ravel()
    s = 1.0 / np.sqrt(bound)
    lam = np.linalg.eigvalsh((K.T * s) @ (K.T * s).T)[-1]
    assert lam <= 1.0
    u = RNG.standard_normal((50, K.shape[0]))
    assert np.all(np.sum((u @ K) ** 2, axis=1) <= np.sum(u * u * bound, axis=1))

    pointwise = norm_sq * np.broadcast_to(d * d, (L + 1, J + 1) + shape).ravel()
    t = 1.0 / np.sqrt(pointwise)
    assert np.linalg.eigvalsh((K.T * t) @ (K.T * t).T)[-1] > 1.5


def test_the_local_bound_is_below_the_uniform_one():
    """Never above ‖Φ‖²·max d², equal to it where d is constant, far below it on average
    where d² spans three decades (the shipped recipe's 3 × 4 bands)."""
    J, L, shape = 2, 3, (48, 16, 16)
    d = _varying_metric(shape)
    bound = 1.0 / metric_dual_steps(d, 1.0, J, L)
    uniform = float(np.max(d)) ** 2
    assert np.max(bound) <= uniform * (1 + 1e-12) and np.mean(bound) < 0.1 * uniform
    assert np.allclose(1.0 / metric_dual_steps(np.full(shape, 3.0), 1.0, J, L), 9.0)


@pytest.mark.slow  # a whole run or many fits: `pytest -m slow` (CI runs both)
def test_the_classic_diagonal_preconditioner_is_looser_for_the_starlet():
    """Pock & Chambolle's α = 1 bound, Σ_j |K_ij| Σ_k |K_kj|, is also a majoriser, but with d
    constant it is 10–31·d² in the interior against ‖Φ‖²·d² = 1.34·d² here (the reason
    ``dual_steps`` does not use it; 4 × 3 bands, as the shipped recipe)."""
    _, norm_sq = _frame((32, 12, 12), 2, 3)
    J, L = 2, 3
    assert 1.3 < norm_sq < 1.5
    # |K| 1 then |K|ᵀ… on an interior voxel: the kernels' ℓ1 norms are the interior row sums
    half = 30
    dirac = np.zeros(2 * half + 1)
    dirac[half] = 1.0
    a = np.abs(starlet1d(dirac, L, axis=0)).sum(axis=1)
    image = np.zeros((2 * half + 1,) * 2)
    image[half, half] = 1.0
    b = np.abs(starlet2d(image, J)).reshape(J + 1, -1).sum(axis=1)
    classic = a.sum() * b.sum() * np.outer(a, b)  # α = 1 bound per band, d = 1, interior
    assert classic.min() > 6 * norm_sq


def test_per_coefficient_steps_give_the_prox_certified_by_weak_duality():
    """The prox of u ↦ Σ τ|Φ(d·u)| + [u ≥ 0] by the dual loop with the local steps, d² over
    three decades with a bright corner: the pair (x, u) it returns has, recomputed here from
    the definitions, P(x) − D(u) ≤ the tolerance (P the prox objective, D its Fenchel dual,
    weak duality: P(x) − min P ≤ P(x) − D(u); P is 1-strongly convex, so ½‖x − x*‖² ≤ the
    gap). The uniform-step loop's answer: the tests below."""
    J, L, shape = 1, 1, (8, 6, 6)
    frame, norm_sq = _frame(shape, J, L)
    d = _varying_metric(shape)
    analysis, adjoint = (lambda u: frame.apply(d * u)), (lambda c: d * frame.adjoint(c))
    z = RNG.standard_normal(shape)
    tau = np.array([[0.3, 0.2], [0.25, 0.0]]).reshape(2, 2, 1, 1, 1)
    steps = metric_dual_steps(d, norm_sq, J, L)
    uniform_step = 1.0 / (norm_sq * float(np.max(d)) ** 2)
    assert np.max(steps) > 10 * uniform_step  # the local steps are not the uniform one
    tol = 1e-8
    x, u, gap = analysis_l1_prox_nonnegative(z, analysis, adjoint, tau, None, step=steps, max_iter=20000, tol=tol)

    primal = 0.5 * np.sum((x - z) ** 2) + np.sum(tau * np.abs(analysis(x)))
    dual = 0.5 * np.sum(z * z) - 0.5 * np.sum(np.maximum(z - adjoint(u), 0.0) ** 2)
    assert np.all(np.abs(u) <= tau * (1 + 1e-12)) and float(x.min()) >= 0.0
    penalty = np.sum(tau * np.abs(analysis(z)))
    assert primal - dual <= 1.01 * tol * penalty and abs(primal - dual - gap) <= 1e-9 * primal


def _counting(f):
    def g(a):
        g.calls += 1
        return f(a)
    g.calls = 0
    return g


def test_per_coefficient_steps_need_fewer_dual_iterations():
    """Same prox to the same duality gap, in several times fewer dual iterations, where d²
    spans three decades and a bright corner (the generic loop: the bits test below)."""
    xp = np
    J, L, shape = 1, 1, (12, 8, 8)
    frame, norm_sq = _frame(shape, J, L)
    d = xp.asarray(_varying_metric(shape))
    z = xp.asarray(RNG.standard_normal(shape))
    tau = np.full((L + 1, J + 1, 1, 1, 1), 0.3)
    tau[-1, -1] = 0.0
    tau = xp.asarray(tau)
    runs = {}
    for kind in ("local", "uniform"):
        analysis = _counting(lambda u: frame.apply(d * u))
        step = metric_dual_steps(d, norm_sq, J, L) if kind == "local" else None
        x, _, gap = analysis_l1_prox_nonnegative(z, analysis, lambda c: d * frame.adjoint(c), tau,
                                                 norm_sq * float(xp.max(d)) ** 2, step=step, max_iter=5000, tol=1e-4)
        assert gap <= 1e-4 * float(xp.sum(tau * xp.abs(frame.apply(d * z))))
        runs[kind] = (x, gap, analysis.calls)
    (x, gap, calls), (x_u, gap_u, calls_u) = runs["local"], runs["uniform"]
    assert calls_u < 5000 and calls * 2 < calls_u
    assert float(xp.max(xp.abs(x - x_u))) <= float(np.sqrt(2 * gap) + np.sqrt(2 * gap_u))


def test_per_coefficient_steps_on_the_in_place_path_give_the_generic_bits(monkeypatch):
    import xhsi.sparsity.analysis_prox as module

    J, L, shape = 2, 2, (12, 9, 8)
    frame, norm_sq = _frame(shape, J, L)
    d = _varying_metric(shape).astype(np.float32)
    analysis, adjoint = (lambda u: frame.apply(d * u)), (lambda c: d * frame.adjoint(c))
    z = RNG.standard_normal(shape).astype(np.float32)
    tau = RNG.uniform(0.05, 0.3, (L + 1, J + 1, 1) + shape[1:]).astype(np.float32)
    tau[-1, -1] = 0.0
    steps = metric_dual_steps(d, norm_sq, J, L)
    assert steps.dtype == np.float32
    runs = []
    for generic in (False, True):
        if generic:
            monkeypatch.setattr(module, "native_numpy", lambda xp: None)
        runs.append(analysis_l1_prox_nonnegative(z, analysis, adjoint, tau, None, step=steps, max_iter=6, tol=0.0))
    (x, u, gap), (xg, ug, gapg) = runs
    assert np.array_equal(x, xg) and np.array_equal(u, ug) and gap == gapg


def test_a_prox_without_a_step_is_refused():
    frame, _ = _frame((4, 4, 4), 1, 1)
    with pytest.raises(ValueError, match="norm_sq"):
        analysis_l1_prox_nonnegative(np.ones((4, 4, 4)), frame.apply, frame.adjoint, 0.1, None)


def test_the_regulariser_in_a_metric_gives_the_uniform_step_prox_in_fewer_iterations(monkeypatch):
    """``starlet2d1d_l1`` with ``prox = "exact"`` in a metric: the local steps (the default)
    and ``metric_steps = "uniform"`` give the same prox to its tolerance, the local ones in
    fewer dual iterations."""
    import xhsi_builtin.regularizers.starlet as module

    shape = (12, 8, 8)
    d = _varying_metric(shape)
    z = np.abs(RNG.standard_normal(shape))
    calls, inner = [], module.analysis_l1_prox_nonnegative

    def counted(z, analysis, *args, **kwargs):
        counter = _counting(analysis)
        out = inner(z, counter, *args, **kwargs)
        calls.append(counter.calls)
        return out

    monkeypatch.setattr(module, "analysis_l1_prox_nonnegative", counted)
    out = {}
    for kind in ("local", "uniform"):
        cls = xhsi.get("regularizer", "starlet2d1d_l1")
        options = {"scales_2d": 1, "scales_1d": 1, "thresholds": [[0.3, 0.3], [0.3, 0.0]], "prox": "exact",
                   "prox_iter": 5000, "prox_tol": 1e-5}
        reg = cls(from_dict(cls.Options, options, Context(file="<test>")), weight=1.0)
        reg.metric_steps = kind
        reg.setup(shape, np, np.float64)
        reg.use_metric(d)
        out[kind] = reg.prox(z, 1.0)
    # each within √(2·gap) of the prox, gap ≤ prox_tol·(the penalty at z) = prox_tol·value(z)·step
    np.testing.assert_allclose(out["local"], out["uniform"], atol=2 * np.sqrt(2 * 1e-5 * reg.value(z)))
    assert calls[1] < 5000 and 2 * calls[0] < calls[1]
