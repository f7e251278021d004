"""xhsi used as a library (notebooks, pipelines): every public entry point that takes an
array namespace accepts plain ``numpy`` (and ``cupy``) as well as the array-API namespaces,
and gives the same results; each package exports what its docstring lists."""
from __future__ import annotations

import importlib
import importlib.util
import re

import numpy as np
import pytest

import xhsi
from xhsi.backend import Backend, compat_namespace, float_dtype, to_numpy
from xhsi.errors import ShapeError, XhsiError
from xhsi.spectral.models import build_spectral_model
from xhsi.testing import assert_close

COMPAT = compat_namespace("numpy")
EDGES = np.linspace(0.5, 8.0, 31)
SPECTRAL_CASES = xhsi.available("spectral_model") + ["absorption * thermal"]


def _gpu() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def test_compat_namespace_and_float_dtype():
    import array_api_strict

    assert compat_namespace(np) is COMPAT
    assert compat_namespace(COMPAT) is COMPAT
    assert compat_namespace(array_api_strict) is array_api_strict
    assert compat_namespace("array_api_strict") is array_api_strict
    assert compat_namespace(None) is None
    for dtype in (None, "float64", np.float64, np.dtype("float64")):
        assert float_dtype(COMPAT, dtype) == np.float64
    assert float_dtype(array_api_strict, "float32") == array_api_strict.float32
    assert float_dtype(array_api_strict, np.float32) == array_api_strict.float32
    with pytest.raises(XhsiError, match="float32 or float64"):
        float_dtype(COMPAT, "int64")


@pytest.mark.skipif(not _gpu(), reason="no CUDA GPU / cupy")
def test_compat_namespace_of_cupy():
    import cupy

    import array_api_compat.cupy as compat_cupy

    assert compat_namespace(cupy) is compat_cupy
    x = cupy.linspace(1.0, 2.0, 3)
    from array_api_compat import array_namespace

    assert array_namespace(x) is compat_namespace(cupy)


def _model(case: str, xp, dtype):
    if case == "absorption * thermal":
        return build_spectral_model(case).setup(EDGES, xp, dtype)
    return xhsi.get("spectral_model", case).example(xp, dtype)


@pytest.mark.parametrize("case", SPECTRAL_CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_spectral_model_set_up_with_plain_numpy(case, dtype):
    """``model.setup(edges, np, np.float64)`` then evaluate / vjp / jvp on numpy arrays: the
    values of a model set up with the array-API namespace."""
    plain = _model(case, np, getattr(np, dtype))
    compat = _model(case, COMPAT, getattr(COMPAT, dtype))
    assert plain.xp is COMPAT
    rng = np.random.default_rng(0)
    lo = np.array([p.bounds[0] for p in plain.parameters])[:, None, None]
    hi = np.array([p.bounds[1] for p in plain.parameters])[:, None, None]
    theta = (lo + (hi - lo) * rng.uniform(0.2, 0.8, (plain.n_params, 2, 3))).astype(dtype)
    c = rng.standard_normal((plain.n_out, 2, 3)).astype(dtype)
    s = plain.evaluate(theta)
    assert isinstance(s, np.ndarray) and s.dtype == np.dtype(dtype)
    assert_close(s, compat.evaluate(COMPAT.asarray(theta)), xp=np, dtype=np.dtype(dtype))
    assert_close(plain.vjp(theta, c), compat.vjp(COMPAT.asarray(theta), COMPAT.asarray(c)), xp=np)
    assert_close(plain.jvp(theta, theta), compat.jvp(COMPAT.asarray(theta), COMPAT.asarray(theta)), xp=np)
    assert_close(plain.clip(theta), theta, xp=np)


@pytest.mark.parametrize("name", ["thermal", "powerlaw", "absorption"])
def test_spectral_model_setup_takes_names_and_defaults(name):
    model = xhsi.get("spectral_model", name)()
    model.setup(EDGES, "numpy", "float32")
    theta = model.default_theta((4,))
    assert isinstance(theta, np.ndarray) and theta.dtype == np.float32
    assert model.evaluate(theta).shape == (EDGES.size - 1, 4)
    assert xhsi.get("spectral_model", name)().setup(EDGES).dtype == np.float64  # numpy float64 by default


def test_spectral_model_mismatch_message_names_namespace_and_dtype():
    model = xhsi.get("spectral_model", "powerlaw")().setup(EDGES, np, np.float64)
    with pytest.raises(ShapeError) as info:
        model.evaluate(np.full((1, 3), 2.0, dtype=np.float32))
    message = str(info.value)
    assert "set up for array_api_compat.numpy float64; theta is array_api_compat.numpy float32" in message
    assert "<class" not in message


@pytest.mark.skipif(not _gpu(), reason="no CUDA GPU / cupy")
@pytest.mark.parametrize("case", ["thermal", "absorption * thermal"])
def test_spectral_model_set_up_with_plain_cupy(case):
    import cupy

    plain = _model(case, cupy, cupy.float64)
    ref = _model(case, np, np.float64)
    theta = ref.default_theta((2, 2))
    out = plain.evaluate(cupy.asarray(theta))
    assert isinstance(out, cupy.ndarray)
    assert_close(out, ref.evaluate(theta), rtol=1e-9)


def test_regularizer_setup_with_plain_numpy():
    reg = xhsi.get("regularizer", "l2")()
    reg.setup((3, 4), np, np.float64)
    assert reg.xp is COMPAT
    x = np.random.default_rng(1).standard_normal((3, 4))
    assert_close(reg.gradient(x), reg.gradient(COMPAT.asarray(x)), xp=np)


def test_operator_entry_points_with_plain_numpy():
    from xhsi.operators import SpectralResponse
    from xhsi.testing import DenseOperator

    matrix = np.random.default_rng(2).uniform(0.0, 1.0, (5, 3))
    op = SpectralResponse(matrix, (5, 2, 2), xp=np)
    assert op.xp is COMPAT
    assert op.norm(xp=np) == pytest.approx(np.linalg.svd(matrix, compute_uv=False)[0], rel=1e-5)
    dense = DenseOperator(matrix, (3,), (5,))
    assert dense.norm(xp=np, dtype=np.float32) == pytest.approx(np.linalg.norm(matrix, 2), rel=1e-4)


def test_solver_state_from_dict_with_plain_numpy():
    from xhsi.solvers import FistaState
    from xhsi.solvers.base import state_from_dict
    import dataclasses

    values = {f.name: np.zeros(3) if f.name in ("x", "y") else 0 for f in dataclasses.fields(FistaState)}
    state = state_from_dict(FistaState, values, np)
    assert isinstance(state, FistaState)


# -- what each package exports ---------------------------------------------------------------
PACKAGES = ["xhsi", "xhsi.instruments", "xhsi.io", "xhsi.operators", "xhsi.solvers", "xhsi.spectral",
            "xhsi.sparsity", "xhsi.testing", "xhsi.grid", "xhsi.problems", "xhsi.backend", "xhsi.simulate"]


@pytest.mark.parametrize("name", PACKAGES)
def test_each_package_has_a_docstring_and_exports_what_it_lists(name):
    module = importlib.import_module(name)
    assert module.__doc__ and len(module.__doc__.split()) > 8, f"{name} needs a docstring saying what it holds"
    exported = getattr(module, "__all__", None)
    assert exported, f"{name} has no __all__"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ lists names it does not define: {missing}"
    if name != "xhsi":
        return
    shown = set(re.findall(r"\bxhsi\.([A-Za-z_]\w*)", module.__doc__))
    for attr in shown:  # every xhsi.NAME the docstring shows is an attribute or a submodule
        assert hasattr(xhsi, attr) or importlib.util.find_spec(f"xhsi.{attr}"), f"the xhsi docstring shows xhsi.{attr}"
    unlisted = set(exported) - shown
    assert not unlisted, f"xhsi exports {sorted(unlisted)} but its docstring does not list them"
