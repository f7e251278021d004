"""Contract every registered spectral model must honour, built-in or third-party.

Each class registered in the ``spectral_model`` registry is checked through its
``example(xp, dtype)`` classmethod (a small instance, already set up); a class without one
is skipped with the reason. A product (``absorption * thermal``) is checked as well.
Checks: declared parameters (unique names, defaults inside bounds), namespace / dtype /
shape of ``evaluate``, ``vjp`` and ``jvp``, and the gradient: the dot test
⟨J δθ, c⟩ = ⟨δθ, Jᵀ c⟩ with J δθ from fourth-order central finite differences of
``evaluate`` in float64, and ⟨jvp(δθ), c⟩ = ⟨δθ, vjp(c)⟩ in every dtype (``jvp`` and
``vjp`` at θ as a linear operator and its adjoint, through ``xhsi.testing.dot_test``).
"""
from __future__ import annotations

import numpy as np
import pytest
from array_api_compat import array_namespace

import xhsi
from xhsi.backend import Backend, to_numpy
from xhsi.errors import ShapeError
from xhsi.operators import LinearOperator
from xhsi.spectral.models import Parameter, SpectralModel, build_spectral_model
from xhsi.testing import dot_test

MODEL_NAMES = xhsi.available("spectral_model")
PRODUCT = "absorption * thermal"
CASES = MODEL_NAMES + [PRODUCT]
MAP_SHAPE = (3, 4)


def _example(case: str, xp, dtype) -> SpectralModel:
    if case == PRODUCT:
        return build_spectral_model(PRODUCT).setup(np.linspace(0.5, 8.0, 31), xp, dtype)
    cls = xhsi.get("spectral_model", case)
    if not callable(getattr(cls, "example", None)):
        pytest.skip(f"spectral model `{case}` defines no example(xp, dtype) classmethod")
    model = cls.example(xp, dtype)
    assert isinstance(model, SpectralModel), f"{cls.__qualname__}.example returned {type(model).__name__}"
    return model


def _interior(model: SpectralModel, shape, seed: int) -> np.ndarray:
    """Host float64 parameters drawn inside the middle 60 % of each parameter's bounds."""
    rng = np.random.default_rng(seed)
    lo = np.array([p.bounds[0] for p in model.parameters])
    hi = np.array([p.bounds[1] for p in model.parameters])
    extra = (1,) * len(shape)
    return lo.reshape(-1, *extra) + (hi - lo).reshape(-1, *extra) * rng.uniform(0.2, 0.8, (model.n_params, *shape))


def _ranges(model: SpectralModel, ndim: int) -> np.ndarray:
    return np.array([p.bounds[1] - p.bounds[0] for p in model.parameters]).reshape(-1, *(1,) * ndim)


@pytest.mark.parametrize("case", CASES)
def test_parameters_are_declared(case):
    be = Backend("numpy", "float64")
    model = _example(case, be.xp, be.dtype)
    assert model.n_params >= 1
    names = model.parameter_names
    assert len(set(names)) == len(names), f"repeated parameter names: {names}"
    for p in model.parameters:
        assert isinstance(p, Parameter)
        assert p.name and isinstance(p.unit, str) and isinstance(p.doc, str)
        lo, hi = p.bounds
        assert lo < hi and lo <= p.default <= hi, p
        assert isinstance(p.linkable, bool) and isinstance(p.fixable, bool)
    assert isinstance(model.name, str) and model.name
    assert isinstance(model.additive, bool)


@pytest.mark.parametrize("case", CASES)
def test_evaluate_keeps_namespace_dtype_and_shape(case, backend):
    model = _example(case, backend.xp, backend.dtype)
    theta = backend.asarray(_interior(model, MAP_SHAPE, 0))
    out = model.evaluate(theta)
    assert array_namespace(out) == backend.xp, f"{model!r}.evaluate left the namespace: {type(out)}"
    assert out.dtype == backend.dtype
    assert tuple(out.shape) == (model.n_out, *MAP_SHAPE)
    host = to_numpy(out)
    assert np.all(np.isfinite(host))
    if model.additive:
        assert np.all(host >= -1e-6 * np.abs(host).max()), "an emission model returned negative photons"


@pytest.mark.parametrize("case", CASES)
def test_defaults_evaluate_and_clip_respects_bounds(case, xp):
    model = _example(case, xp, xp.float64)
    theta = model.default_theta((2, 2))
    assert tuple(theta.shape) == (model.n_params, 2, 2)
    assert np.all(np.isfinite(to_numpy(model.evaluate(theta))))
    lo = np.array([p.bounds[0] for p in model.parameters])[:, None]
    hi = np.array([p.bounds[1] for p in model.parameters])[:, None]
    wild = np.concatenate([lo - 1.0 - np.abs(lo), hi + 1.0 + np.abs(hi)], axis=1)
    clipped = to_numpy(model.clip(xp.asarray(wild)))
    assert np.all(clipped >= lo) and np.all(clipped <= hi)
    np.testing.assert_allclose(clipped, np.concatenate([lo, hi], axis=1))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("backend_name", ["numpy", "array_api_strict"])
def test_vjp_matches_finite_differences(case, backend_name):
    """⟨(S(θ + h δ) - S(θ - h δ)) / 2h, c⟩ (fourth order) == ⟨δ, vjp(θ, c)⟩ in float64."""
    be = Backend(backend_name, "float64")
    model = _example(case, be.xp, be.dtype)
    rng = np.random.default_rng(11)
    theta = _interior(model, MAP_SHAPE, 1)
    delta = rng.standard_normal(theta.shape) * _ranges(model, len(MAP_SHAPE))
    c = rng.standard_normal((model.n_out, *MAP_SHAPE))
    h = 1e-5

    def f(step):
        return to_numpy(model.evaluate(be.asarray(theta + step * h * delta)))

    # Fourth-order central difference: narrow lines (thermal, z) make the third derivative large.
    jd = (8.0 * (f(1) - f(-1)) - (f(2) - f(-2))) / (12.0 * h)
    lhs = float(np.sum(jd * c))
    g = model.vjp(be.asarray(theta), be.asarray(c))
    assert array_namespace(g) == be.xp and g.dtype == be.dtype and tuple(g.shape) == theta.shape
    rhs = float(np.sum(delta * to_numpy(g)))
    scale = float(np.sum(np.abs(jd * c)))
    assert scale > 0, f"{model!r}: evaluate does not depend on its parameters"
    assert abs(lhs - rhs) <= 1e-6 * scale, f"{model!r}: <J d, c> = {lhs!r} (finite differences), <d, J^T c> = {rhs!r}"


class _Linearisation(LinearOperator):
    """δ ↦ J(θ) D δ (``jvp``) and its adjoint c ↦ D J(θ)ᵀ c (``vjp``), D the parameters'
    ranges, so that every parameter weighs in the dot test whatever its unit."""

    def __init__(self, model: SpectralModel, theta, ranges):
        super().__init__(tuple(theta.shape), (model.n_out, *theta.shape[1:]))
        self.model, self.theta, self.xp, self.dtype = model, theta, model.xp, model.dtype
        self.ranges = model.xp.asarray(ranges, dtype=model.dtype)

    def _apply(self, tangent):
        return self.model.jvp(self.theta, tangent * self.ranges)

    def _adjoint(self, cotangent):
        return self.model.vjp(self.theta, cotangent) * self.ranges


@pytest.mark.parametrize("case", CASES)
def test_jvp_is_the_transpose_of_vjp(case, backend):
    model = _example(case, backend.xp, backend.dtype)
    theta = backend.asarray(_interior(model, MAP_SHAPE, 2))
    tangent = backend.asarray(np.random.default_rng(5).standard_normal((model.n_params, *MAP_SHAPE)))
    try:
        jt = model.jvp(theta, tangent)
    except NotImplementedError:
        pytest.skip(f"{model!r} has no jvp")
    assert array_namespace(jt) == backend.xp and jt.dtype == backend.dtype
    assert tuple(jt.shape) == (model.n_out, *MAP_SHAPE)
    dot_test(_Linearisation(model, theta, _ranges(model, len(MAP_SHAPE))), seed=5)


@pytest.mark.parametrize("case", CASES)
def test_float32_agrees_with_float64(case, xp):
    m64, m32 = _example(case, xp, xp.float64), _example(case, xp, xp.float32)
    theta = _interior(m64, MAP_SHAPE, 3)
    c = np.random.default_rng(4).standard_normal((m64.n_out, *MAP_SHAPE))
    s64 = to_numpy(m64.evaluate(xp.asarray(theta)))
    s32 = to_numpy(m32.evaluate(xp.asarray(theta, dtype=xp.float32)))
    np.testing.assert_allclose(s32, s64, rtol=1e-3, atol=1e-4 * np.abs(s64).max())
    g64 = to_numpy(m64.vjp(xp.asarray(theta), xp.asarray(c)))
    g32 = to_numpy(m32.vjp(xp.asarray(theta, dtype=xp.float32), xp.asarray(c, dtype=xp.float32)))
    np.testing.assert_allclose(g32, g64, rtol=1e-2, atol=1e-3 * np.abs(g64).max())


@pytest.mark.parametrize("case", CASES)
def test_wrong_shapes_and_dtypes_are_shape_errors(case):
    be = Backend("numpy", "float64")
    model = _example(case, be.xp, be.dtype)
    theta = be.asarray(_interior(model, MAP_SHAPE, 0))
    with pytest.raises(ShapeError, match="n_params"):
        model.evaluate(be.zeros((model.n_params + 1, *MAP_SHAPE)))
    with pytest.raises(ShapeError, match="cotangent"):
        model.vjp(theta, be.zeros((model.n_out + 1, *MAP_SHAPE)))
    with pytest.raises(ShapeError, match="float32"):
        model.evaluate(be.asarray(_interior(model, MAP_SHAPE, 0), dtype=be.xp.float32))
