"""Contract every registered linear operator must honour, built-in or third-party.

Each class registered in the ``operator`` registry is checked through its
``example(xp, dtype)`` classmethod (a small instance); a class without one is skipped with
the reason. Checks: the dot test ⟨Ax, y⟩ = ⟨x, A*y⟩ (Claerbout 1992, *Earth Soundings
Analysis*, §1.5), norm() against the largest singular value of the dense matrix, namespace /
dtype / shape of results, and composition (the real forward model of one observation).
"""
from __future__ import annotations

import numpy as np
import pytest
from array_api_compat import array_namespace

import xhsi
from xhsi.backend import Backend, to_numpy
from xhsi.errors import ShapeError
from xhsi.operators import LinearOperator
from xhsi.testing import dot_test

OPERATOR_NAMES = xhsi.available("operator")


def _example(name: str, xp, dtype) -> LinearOperator:
    cls = xhsi.get("operator", name)
    if not callable(getattr(cls, "example", None)):
        pytest.skip(f"operator `{name}` ({cls.__module__}.{cls.__qualname__}) defines no example(xp, dtype) "
                    "classmethod, so the contract tests cannot build one; add it to have it checked.")
    op = cls.example(xp, dtype)
    assert isinstance(op, LinearOperator), f"{cls.__qualname__}.example returned {type(op).__name__}"
    return op


def _random(be: Backend, shape, seed: int):
    return be.asarray(np.random.default_rng(seed).standard_normal(tuple(shape)))


def assert_dot_test(op: LinearOperator, be: Backend, seed: int = 0) -> None:
    """|⟨Ax, y⟩ − ⟨x, A*y⟩| ≤ tol · ‖Ax‖ ‖y‖ for random x, y on the backend, tol per dtype
    (``xhsi.testing.dot_test``, the helper third-party plugins use too)."""
    dot_test(op, xp=be.xp, dtype=be.dtype, seed=seed)


def dense_matrix(op: LinearOperator) -> np.ndarray:
    """The matrix of ``op`` (numpy float64 instance), column k = A e_k."""
    n = int(np.prod(op.shape_in))
    cols = []
    for k in range(n):
        e = np.zeros(n)
        e[k] = 1.0
        cols.append(np.asarray(to_numpy(op.apply(e.reshape(op.shape_in)))).ravel())
    return np.stack(cols, axis=1)


@pytest.mark.parametrize("name", OPERATOR_NAMES)
def test_dot_test(name, backend):
    op = _example(name, backend.xp, backend.dtype)
    assert_dot_test(op, backend)


@pytest.mark.parametrize("name", OPERATOR_NAMES)
def test_results_keep_namespace_dtype_and_shape(name, backend):
    op = _example(name, backend.xp, backend.dtype)
    x = _random(backend, op.shape_in, 2)
    y = _random(backend, op.shape_out, 3)
    for out, shape, what in ((op.apply(x), op.shape_out, "apply"), (op.adjoint(y), op.shape_in, "adjoint")):
        assert array_namespace(out) == backend.xp, f"{op!r}.{what} left the namespace: {type(out)}"
        assert out.dtype == backend.dtype, f"{op!r}.{what} returned {out.dtype}, not {backend.dtype}"
        assert tuple(out.shape) == shape, f"{op!r}.{what} returned shape {tuple(out.shape)}, not {shape}"


@pytest.mark.parametrize("name", OPERATOR_NAMES)
def test_wrong_input_shape_is_a_shape_error_naming_both(name):
    be = Backend("numpy", "float64")
    op = _example(name, be.xp, be.dtype)
    bad = tuple(s + 1 for s in op.shape_in)
    with pytest.raises(ShapeError) as err:
        op.apply(be.zeros(bad))
    assert str(op.shape_in) in str(err.value) and str(bad) in str(err.value)
    with pytest.raises(ShapeError):
        op.adjoint(be.zeros(tuple(s + 1 for s in op.shape_out)))


@pytest.fixture(scope="module")
def singular_values() -> dict:
    """Largest singular value of each example's dense matrix (numpy, float64), built once."""
    be = Backend("numpy", "float64")
    out = {}
    for name in OPERATOR_NAMES:
        cls = xhsi.get("operator", name)
        if callable(getattr(cls, "example", None)):
            out[name] = float(np.linalg.svd(dense_matrix(cls.example(be.xp, be.dtype)), compute_uv=False)[0])
    return out


@pytest.mark.parametrize("name", OPERATOR_NAMES)
def test_norm_matches_dense_svd(name, backend, singular_values):
    op = _example(name, backend.xp, backend.dtype)
    norm = op.norm()
    assert isinstance(norm, float)
    assert norm == pytest.approx(singular_values[name], rel=1e-3)


@pytest.mark.parametrize("name", OPERATOR_NAMES)
def test_gram_composition(name, backend):
    """A*A is square on the input shape and symmetric: ⟨A*A x, z⟩ = ⟨x, A*A z⟩."""
    op = _example(name, backend.xp, backend.dtype)
    gram = op.H @ op
    assert gram.shape_in == gram.shape_out == op.shape_in
    assert op.H.shape_in == op.shape_out and op.H.shape_out == op.shape_in
    assert_dot_test(gram, backend, seed=5)


# -- the forward model of one observation, from registered parts ---------------------------
N_E, N_CHAN, NY, NX = 6, 4, 8, 10


def forward_model(be: Backend):
    """exposure × ARF → PSF blur (one per energy) → RMF → 2 × 2 detector pixels."""
    get = lambda name: xhsi.get("operator", name)  # noqa: E731
    rng = np.random.default_rng(7)
    cube = (N_E, NY, NX)
    arf = get("diagonal")(be.asarray(rng.uniform(100.0, 400.0, (N_E, 1, 1))), cube)
    psf = get("spatial_convolution")(be.asarray(rng.uniform(0.0, 1.0, (N_E, 5, 3))), cube)
    rmf = get("spectral_response")(be.asarray(rng.uniform(0.0, 1.0, (N_E, N_CHAN))), cube)
    rebin = get("spatial_rebin")((N_CHAN, NY, NX), 2)
    return rebin @ rmf @ psf @ arf


def test_forward_model_composition(backend):
    model = forward_model(backend)
    assert model.shape_in == (N_E, NY, NX)
    assert model.shape_out == (N_CHAN, NY // 2, NX // 2)
    assert_dot_test(model, backend)
    out = model.apply(_random(backend, model.shape_in, 9))
    assert array_namespace(out) == backend.xp and out.dtype == backend.dtype


def test_forward_model_norm_matches_dense_svd():
    be = Backend("numpy", "float64")
    model = forward_model(be)
    sigma = np.linalg.svd(dense_matrix(model), compute_uv=False)[0]
    assert model.norm() == pytest.approx(sigma, rel=1e-3)


def test_composition_of_mismatched_shapes_is_a_shape_error():
    rebin = xhsi.get("operator", "spatial_rebin")((N_CHAN, NY, NX), 2)
    crop = xhsi.get("operator", "crop")((N_E, NY, NX), ((0, N_E), (0, NY), (0, NX)))
    with pytest.raises(ShapeError):
        rebin @ crop
