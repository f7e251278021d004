"""Contract every registered likelihood must honour, built-in or third-party.

Each class of the ``likelihood`` registry is built with its default options and checked for:
the gradient against central finite differences (float64), value ≥ 0 with deviance = 2·value
and 0 at model == data, safety at zero counts and zero model (finite, no warnings), data
validation, and namespace/dtype/shape of results — on numpy and array_api_strict (and cupy).
Plus checks specific to the built-in Poisson and Gaussian likelihoods and DataTerm.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from array_api_compat import array_namespace

import xhsi
from xhsi.backend import Backend, to_numpy
from xhsi.errors import DataError, ShapeError
from xhsi.likelihoods import DataTerm, Gaussian, Poisson, check_data
from xhsi.testing import DenseOperator, assert_close, check_gradient

LIKELIHOOD_NAMES = xhsi.available("likelihood")
SHAPE = (3, 4, 5)  # (energy, y, x)


def _data(be: Backend, seed: int = 0):
    """Counts with zeros, and a positive model near them (a fit in progress)."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(2.0, SHAPE).astype(np.float64)
    counts[0, 0, :] = 0.0
    model = rng.uniform(0.5, 4.0, SHAPE)
    return be.asarray(model), be.asarray(counts)


@pytest.fixture(params=LIKELIHOOD_NAMES)
def likelihood(request):
    return xhsi.get("likelihood", request.param)()


def test_registered():
    assert {"poisson", "gaussian"} <= set(LIKELIHOOD_NAMES)


def test_gradient_matches_central_differences(likelihood, backend_name):
    """Along three random directions, float64 (``xhsi.testing.check_gradient``)."""
    be = Backend(backend_name, "float64")
    model, data = _data(be)
    check_gradient(lambda m: likelihood.value(m, data), lambda m: likelihood.gradient(m, data), model,
                   directions=3, seed=1)


def test_value_and_gradient_agree_with_separate_calls(likelihood, backend):
    model, data = _data(backend)
    v, g = likelihood.value_and_gradient(model, data)
    assert math.isclose(float(v), likelihood.value(model, data), rel_tol=1e-5 if backend.dtype_name == "float32" else 1e-12)
    assert_close(g, likelihood.gradient(model, data), xp=backend.xp)


def test_value_nonnegative_zero_at_perfect_fit(likelihood, backend):
    model, data = _data(backend)
    value = likelihood.value(model, data)
    assert isinstance(value, float)
    assert value > 0
    assert likelihood.deviance(model, data) == pytest.approx(2 * value)
    assert abs(likelihood.value(data, data)) <= 1e-6 * value


def test_results_keep_namespace_dtype_shape(likelihood, backend):
    model, data = _data(backend)
    g = likelihood.gradient(model, data)
    assert array_namespace(g) is backend.xp
    assert g.dtype == backend.dtype
    assert tuple(g.shape) == SHAPE


def test_zero_counts_and_zero_model_are_safe(likelihood, backend):
    """Zero counts everywhere and a model that is 0 (or slightly negative) in places give
    finite values and gradients; RuntimeWarnings are errors in this test suite."""
    model, data = _data(backend)
    xp = backend.xp
    mask = backend.asarray(np.arange(np.prod(SHAPE)).reshape(SHAPE) % 3 == 0, dtype=xp.bool)
    model0 = xp.where(mask, xp.zeros_like(model), model)
    for m in (model0, model0 - 0.1 * xp.astype(mask, model.dtype), xp.zeros_like(model)):
        for y in (data, xp.zeros_like(data)):
            assert math.isfinite(likelihood.value(m, y))
            g = to_numpy(likelihood.gradient(m, y))
            assert np.all(np.isfinite(g))


@pytest.mark.parametrize("bad, expected", [(float("nan"), "1 non-finite"), (float("inf"), "1 non-finite"), (-1.0, "1 negative")])
def test_check_data_rejects_bad_voxels(backend_name, bad, expected):
    be = Backend(backend_name, "float64")
    counts = np.ones(SHAPE)
    counts[1, 2, 3] = bad
    with pytest.raises(DataError, match=expected) as info:
        Poisson().check_data(be.asarray(counts))
    assert "out of 60" in str(info.value)
    if bad < 0:
        Gaussian().check_data(be.asarray(counts))  # Gaussian data may be negative
    else:
        with pytest.raises(DataError, match="non-finite"):
            Gaussian().check_data(be.asarray(counts))


def test_check_data_counts_every_bad_voxel(xp):
    counts = np.ones(SHAPE)
    counts[0, 0, :2] = np.nan
    counts[2, 3, :3] = -2.0
    with pytest.raises(DataError, match="2 non-finite .* and 3 negative"):
        check_data(xp.asarray(counts))
    check_data(xp.asarray(np.ones(SHAPE)))  # clean data pass


# -- Poisson ----------------------------------------------------------------------------
def test_poisson_matches_its_formula():
    from scipy.special import xlogy

    be = Backend("numpy", "float64")
    model, data = _data(be)
    m, y = to_numpy(model), to_numpy(data)
    expected = np.sum(m - y + xlogy(y, y) - xlogy(y, m))
    assert Poisson().value(model, data) == pytest.approx(expected, rel=1e-12)
    assert_close(Poisson().gradient(model, data), 1 - y / m)


def test_poisson_below_floor_is_the_tangent_continuation(xp):
    """Below the floor f: value linear in m with slope 1 − y/f, continuous at f."""
    floor = 1e-3
    lik = Poisson(Poisson.Options(model_floor=floor))
    y = xp.asarray([5.0])
    at_floor = lik.value(xp.asarray([floor]), y)
    below = lik.value(xp.asarray([floor / 2]), y)
    slope = 1.0 - 5.0 / floor
    assert below == pytest.approx(at_floor - slope * floor / 2, rel=1e-12)
    assert float(lik.gradient(xp.asarray([0.0]), y)[0]) == pytest.approx(slope)
    assert float(lik.gradient(xp.asarray([-3.0]), y)[0]) == pytest.approx(slope)
    # Just above the floor it is the exact Poisson NLL.
    m = 2 * floor
    assert lik.value(xp.asarray([m]), y) == pytest.approx(m - 5 + 5 * math.log(5 / m), rel=1e-12)


def test_poisson_zero_counts_term_is_the_model(xp):
    m = xp.asarray([0.0, 0.5, 3.0])
    assert Poisson().value(m, xp.zeros_like(m)) == pytest.approx(3.5)
    assert_close(Poisson().gradient(m, xp.zeros_like(m)), xp.ones_like(m), xp=xp)


def test_poisson_float32_large_counts_stay_finite():
    be = Backend("numpy", "float32")
    y = be.asarray(np.full(SHAPE, 1e5))
    g = Poisson().gradient(be.zeros(SHAPE), y)  # -1e5 / 1e-10 = -1e15 < float32 max
    assert g.dtype == be.dtype and np.all(np.isfinite(to_numpy(g)))


# -- Gaussian ---------------------------------------------------------------------------
def test_gaussian_with_variance_array(xp):
    rng = np.random.default_rng(3)
    m, y, var = rng.normal(size=SHAPE), rng.normal(size=SHAPE), rng.uniform(0.5, 2.0, SHAPE)
    lik = Gaussian(variance=xp.asarray(var))
    assert lik.value(xp.asarray(m), xp.asarray(y)) == pytest.approx(0.5 * np.sum((m - y) ** 2 / var), rel=1e-12)
    assert_close(lik.gradient(xp.asarray(m), xp.asarray(y)), xp.asarray((m - y) / var), xp=xp)
    assert lik.curvature_bound(None) == pytest.approx(1 / var.min())
    sigma = Gaussian(Gaussian.Options(sigma=2.0))
    assert sigma.value(xp.asarray(m), xp.asarray(y)) == pytest.approx(0.5 * np.sum((m - y) ** 2) / 4, rel=1e-12)
    with pytest.raises(DataError, match="variance"):
        Gaussian(variance=xp.asarray(-var)).check_data(xp.asarray(y))


# -- several observations and the smooth term of the solvers ------------------------------
Dense = DenseOperator  # a dense matrix as a LinearOperator


@pytest.mark.parametrize("name", ["poisson", "gaussian"])
def test_data_term_gradient_and_lipschitz(backend_name, name):
    be = Backend(backend_name, "float64")
    rng = np.random.default_rng(4)
    a = rng.uniform(0.0, 1.0, (12, 6))
    op = Dense(be.asarray(a), (6,), (12,))
    x = be.asarray(rng.uniform(0.5, 2.0, 6))
    counts = be.asarray(rng.poisson(3.0, 12).astype(float))
    term = DataTerm(xhsi.get("likelihood", name)(), op, counts, background=be.asarray(np.full(12, 0.3)))
    v, g = term.value_and_gradient(x)
    assert v == pytest.approx(term.value(x))
    assert_close(g, term.gradient(x), xp=be.xp)
    check_gradient(term.value, term.gradient, x, directions=[rng.standard_normal(6)])
    if name == "gaussian":
        assert term.lipschitz() == pytest.approx(np.linalg.norm(a, 2) ** 2, rel=1e-5)
    else:
        assert term.lipschitz() is None
    with pytest.raises(ShapeError):
        DataTerm(Poisson(), op, be.asarray(np.ones(11)))
    with pytest.raises(DataError, match="negative"):
        DataTerm(Poisson(), op, -counts - 1.0)


def test_likelihoods_built_for_counts(xp):
    counts = xp.asarray([0.0, 1.0, 4.0, 9.0])
    assert isinstance(Poisson.for_counts(counts), Poisson)
    g = Gaussian.for_counts(counts)  # Neyman chi²: variance max(counts, 1)
    model = xp.asarray([1.0, 1.0, 2.0, 3.0])
    assert g.value(model, counts) == pytest.approx(0.5 * (1.0 + 0.0 + 4.0 / 4.0 + 36.0 / 9.0))
