"""The public test helpers of ``xhsi.testing`` (dot test, finite-difference gradient, prox
against its definition): each passes on a correct operator / gradient / prox, on every
backend and dtype, and fails with a clear AssertionError on a wrong one."""
from __future__ import annotations

import math

import numpy as np
import pytest

import xhsi.testing
from xhsi.backend import Backend, compat_namespace, to_numpy
from xhsi.operators import LinearOperator
from xhsi.testing import DenseOperator, check_gradient, check_prox, dot_test


def test_exports():
    assert {"dot_test", "check_gradient", "check_prox", "assert_close", "DenseOperator", "rtol_for"} <= set(
        xhsi.testing.__all__)
    for name in xhsi.testing.__all__:
        assert getattr(xhsi.testing, name).__doc__, f"xhsi.testing.{name} has no docstring"


# -- dot test --------------------------------------------------------------------------------
class _WrongAdjoint(DenseOperator):
    """A matrix whose adjoint is off by ``factor`` (a typical scaling slip)."""

    def __init__(self, matrix, shape_in, shape_out, factor):
        super().__init__(matrix, shape_in, shape_out)
        self.factor = factor

    def _adjoint(self, y):
        return self.factor * super()._adjoint(y)


class _Untransposed(DenseOperator):
    """A square matrix whose 'adjoint' forgets to transpose."""

    def _adjoint(self, y):
        return self.xp.reshape(self.xp.matmul(self.matrix, self.xp.reshape(y, (-1,))), self.shape_in)


def _matrix(backend: Backend, rows: int, cols: int, seed: int = 0):
    return backend.asarray(np.random.default_rng(seed).standard_normal((rows, cols)))


def test_dot_test_passes_on_a_true_adjoint(backend):
    op = DenseOperator(_matrix(backend, 6, 4), (2, 2), (3, 2))
    lhs, rhs = dot_test(op)  # namespace and dtype taken from the operator
    assert isinstance(lhs, float) and lhs == pytest.approx(rhs, rel=1e-3)
    dot_test(op, xp=backend.xp, dtype=backend.dtype_name, seed=4)


@pytest.mark.parametrize("factor", [1.01, -1.0, 0.0])
def test_dot_test_fails_on_a_scaled_adjoint(backend, factor):
    op = _WrongAdjoint(_matrix(backend, 6, 4), (4,), (6,), factor)
    with pytest.raises(AssertionError, match=r"dot test failed .*<Ax, y> = .*<x, A\*y> = .*not the transpose"):
        dot_test(op)


def test_dot_test_fails_on_an_untransposed_adjoint(backend):
    with pytest.raises(AssertionError, match="dot test failed"):
        dot_test(_Untransposed(_matrix(backend, 5, 5), (5,), (5,)))


def test_dot_test_fails_on_wrong_shapes_and_on_a_zero_operator():
    class WrongShape(LinearOperator):
        def _apply(self, x):
            return x[:2]

        def _adjoint(self, y):
            return y

    with pytest.raises(AssertionError, match=r"apply returned shape \(2,\), expected \(3,\)"):
        dot_test(WrongShape((3,), (3,)))
    zero = DenseOperator(np.zeros((3, 2)), (2,), (3,))
    with pytest.raises(AssertionError, match="maps a random input to zero"):
        dot_test(zero)


def test_dot_test_accepts_plain_numpy_as_namespace():
    op = DenseOperator(np.random.default_rng(1).standard_normal((3, 4)), (4,), (3,))
    dot_test(op, xp=np, dtype=np.float32)
    with pytest.raises(AssertionError):
        dot_test(_WrongAdjoint(op.matrix, (4,), (3,), 1.01), xp=np, dtype="float32")


# -- finite-difference gradient ---------------------------------------------------------------
def _poisson(y):
    """f(m) = Σ m − y log m and its gradient 1 − y/m (smooth for m > 0)."""
    from array_api_compat import array_namespace

    def f(m):
        xp = array_namespace(m)
        return float(xp.sum(m - y * xp.log(m)))

    def grad(m):
        return 1.0 - y / m

    return f, grad


def _point(backend: Backend):
    rng = np.random.default_rng(3)
    return backend.asarray(rng.uniform(0.5, 4.0, (3, 4, 5))), backend.asarray(rng.poisson(3.0, (3, 4, 5)).astype(float))


def test_check_gradient_passes_on_a_true_gradient(backend):
    m, y = _point(backend)
    f, grad = _poisson(y)
    pairs = check_gradient(f, grad, m, directions=4)
    assert len(pairs) == 4
    for fd, an in pairs:
        assert fd == pytest.approx(an, rel=1e-1)


def test_check_gradient_fails_on_a_slightly_scaled_gradient(backend):
    """1e-4 relative is caught in float64; float32 differences resolve ~1e-3, so 5 % there."""
    m, y = _point(backend)
    f, grad = _poisson(y)
    factor = 1.05 if backend.dtype_name == "float32" else 1.0 + 1e-4
    with pytest.raises(AssertionError, match="gradient check failed along direction 0: finite difference"):
        check_gradient(f, lambda u: factor * grad(u), m)


def test_check_gradient_fails_on_one_wrong_entry(xp):
    be = Backend("numpy", "float64")
    m, y = _point(be)
    m, y = xp.asarray(np.asarray(m)), xp.asarray(np.asarray(y))
    f, grad = _poisson(y)
    bump = np.zeros((3, 4, 5))
    bump[2, 3, 4] = 1e-3  # a boundary slip on the last voxel

    def wrong(u):
        return grad(u) + xp.asarray(bump)

    with pytest.raises(AssertionError, match="gradient check failed"):
        check_gradient(f, wrong, m)
    corner = np.zeros((3, 4, 5))
    corner[2, 3, 4] = 1.0  # explicit directions: the unit vector of that voxel
    with pytest.raises(AssertionError, match="along direction 0"):
        check_gradient(f, wrong, m, directions=[corner])
    check_gradient(f, grad, m, directions=[corner])


def test_check_gradient_refuses_a_wrong_shape_and_a_zero_direction(xp):
    x = xp.asarray(np.linspace(1.0, 2.0, 6))
    with pytest.raises(AssertionError, match=r"gradient has shape \(5,\)"):
        check_gradient(lambda u: float(xp.sum(u * u)), lambda u: 2 * u[:5], x)
    with pytest.raises(AssertionError, match="direction 0 is zero"):
        check_gradient(lambda u: float(xp.sum(u * u)), lambda u: 2 * u, x, directions=[np.zeros(6)])


# -- prox against its definition -------------------------------------------------------------
LAM = 0.7


def _l1(xp):
    def value(u):
        return LAM * float(xp.sum(xp.abs(u)))

    def prox(x, step, threshold=None):
        t = step * LAM if threshold is None else threshold
        return xp.sign(x) * xp.maximum(xp.abs(x) - t, xp.zeros_like(x))

    return value, prox


def _x(backend: Backend, n: int = 30, seed: int = 5):
    return backend.asarray(2.0 * np.random.default_rng(seed).standard_normal(n))


@pytest.mark.parametrize("step", [0.3, 2.0])
def test_check_prox_passes_on_soft_thresholding(backend, step):
    value, prox = _l1(backend.xp)
    for n in (3, 30):  # small: the brute-force search runs as well
        f = check_prox(prox, value, _x(backend, n), step)
        assert isinstance(f, float) and math.isfinite(f)


@pytest.mark.parametrize("threshold", ["ten percent high", "step ignored", "twice"])
def test_check_prox_fails_on_a_wrong_threshold(backend, threshold):
    value, prox = _l1(backend.xp)
    step = 2.0
    wrong = {"ten percent high": 1.1 * step * LAM, "step ignored": LAM, "twice": 2 * step * LAM}[threshold]
    with pytest.raises(AssertionError, match=r"is not the minimiser of ½‖u − x‖² \+ step·g\(u\)"):
        check_prox(lambda x, s: prox(x, s, threshold=wrong), value, _x(backend), step)


def test_check_prox_with_an_indicator(backend):
    """g = indicator of u ≥ 0: the prox is the projection; a projection onto u ≥ 0.1 is not."""
    xp = backend.xp

    def value(u):
        return math.inf if bool(xp.any(u < 0)) else 0.0

    check_prox(lambda x, s: xp.maximum(x, xp.zeros_like(x)), value, _x(backend), 1.0)
    with pytest.raises(AssertionError, match="not the minimiser"):
        check_prox(lambda x, s: xp.maximum(x, xp.full_like(x, 0.1)), value, _x(backend), 1.0)
    with pytest.raises(AssertionError, match="left the domain"):
        check_prox(lambda x, s: x, value, _x(backend), 1.0)


def test_an_l0_prox_that_keeps_an_entry_is_caught(xp):
    """Hard thresholding is the prox of step·λ·‖u‖₀ at threshold √(2·step·λ). At threshold
    step·λ it keeps entries that should be zeroed: a local minimiser that no continuous
    perturbation reveals (Φ jumps at exact zeros); setting the entry to 0 does."""
    def value(u):
        return LAM * float(xp.sum(xp.astype(u != 0, xp.float64)))

    def hard(threshold):
        return lambda x, step: xp.where(xp.abs(x) > threshold(step), x, xp.zeros_like(x))

    x = xp.asarray(2.0 * np.random.default_rng(8).standard_normal(50))  # a few entries in (λ, √(2λ))
    check_prox(hard(lambda s: math.sqrt(2 * s * LAM)), value, x, 1.0)
    with pytest.raises(AssertionError, match=r"prox\(x\) with entry \(\d+,\) set to 0"):
        check_prox(hard(lambda s: s * LAM), value, x, 1.0)


WELL = 5.0  # a barrier high enough that neither 0 nor x beats either well


def _double_well(xp, wrong_well: bool):
    """g(u) = λ Σ (u² − 1)² (λ = WELL), non-convex: for each entry the prox is the lower of the two
    wells' minimisers (roots of u − x + 4sλ u (u² − 1) = 0); ``wrong_well`` returns the
    other well's minimiser, a strict local minimiser of Φ."""
    def value(u):
        return WELL * float(xp.sum((u * u - 1.0) ** 2))

    def prox(x, step):
        a = 4.0 * step * WELL
        out = []
        for xi in np.asarray(to_numpy(x), dtype=np.float64):
            roots = np.roots([a, 0.0, 1.0 - a, -xi])
            real = roots[np.abs(roots.imag) < 1e-9].real
            minima = real[1.0 + a * (3.0 * real ** 2 - 1.0) > 0]
            phi = 0.5 * (minima - xi) ** 2 + step * WELL * (minima ** 2 - 1.0) ** 2
            order = np.argsort(phi)
            out.append(minima[order[-1] if wrong_well else order[0]])
        return xp.asarray(np.asarray(out), dtype=x.dtype)

    return prox, value


def test_the_brute_force_search_catches_a_local_minimiser(xp):
    """In the wrong well, Φ rises in every nearby direction and at 0 and x: only the
    derivative-free minimisation on a small input finds the lower well."""
    x = xp.asarray([0.2, -0.3, 0.1])
    prox, value = _double_well(xp, wrong_well=False)
    check_prox(prox, value, x, 1.0)
    wrong, value = _double_well(xp, wrong_well=True)
    check_prox(wrong, value, x, 1.0, brute_force_size=0)  # the local checks alone pass it
    with pytest.raises(AssertionError, match="found by a derivative-free search"):
        check_prox(wrong, value, x, 1.0)


def test_check_prox_refuses_a_changed_shape_or_dtype(xp):
    value, prox = _l1(xp)
    x = xp.asarray(np.linspace(-1.0, 1.0, 5), dtype=xp.float32)
    with pytest.raises(AssertionError, match="returned float64 for a float32 input"):
        check_prox(lambda u, s: xp.astype(prox(u, s), xp.float64), value, x, 1.0)
    with pytest.raises(AssertionError, match=r"returned shape \(4,\)"):
        check_prox(lambda u, s: prox(u, s)[:4], value, x, 1.0)


def test_helpers_accept_plain_numpy_namespace_arguments():
    from xhsi.testing import assert_close

    x = np.arange(3.0)
    assert_close(x, x, xp=np)
    assert_close(x, x, xp=compat_namespace(np))
