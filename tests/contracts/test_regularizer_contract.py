"""The contract every registered regulariser must pass, built-in or third-party.

A regulariser class opts in by providing ``example(xp, dtype)``: a classmethod returning an
instance already ``setup`` on a small shape (a fitted one for parametrisations); classes
without it are skipped with that reason. Checks, on every backend and dtype:

* declaration: ``name`` matches the registry, ``Options`` is a documented schema;
* prox (when the class implements one): namespace, dtype and shape kept; for exact proxes
  the definition ½‖p−x‖² + step·φ(p) ≤ ½‖u−x‖² + step·φ(u) for many random
  perturbations u of p and for p with single entries set to 0 or x (float64,
  ``xhsi.testing.check_prox``); non-expansiveness ‖prox x − prox y‖ ≤ ‖x − y‖ for
  every prox — for the approximate starlet proxes this is an observed property of their
  examples, not a theorem (docs/regularizers.md); Moreau's identity
  x = prox(x) + prox_conjugate(x) where the class gives ``prox_conjugate``;
* smooth ones: gradient against central finite differences (float64,
  ``xhsi.testing.check_gradient``) and
  ‖∇f(x) − ∇f(y)‖ ≤ L‖x − y‖;
* parametrisations: dot test of ``to_cube``/``to_cube_adjoint``.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from array_api_compat import array_namespace

import xhsi
from xhsi.backend import to_numpy
from xhsi.regularizers import Parametrisation, Regularizer
from xhsi.schema import Context, describe_fields, from_dict
from xhsi.testing import check_gradient, check_prox

STEPS = (0.3, 2.0)


def _cls(name):
    return xhsi.get("regularizer", name)


NAMES = xhsi.available("regularizer")
# Collection-time selections, so that each check lists only the classes it applies to.
PROXIMABLE = [n for n in NAMES if _cls(n).prox is not Regularizer.prox]
EXACT = [n for n in PROXIMABLE if _cls(n).exact_prox]
SMOOTH = [n for n in NAMES if _cls(n).smooth]
CONJUGATE = [n for n in PROXIMABLE if hasattr(_cls(n), "prox_conjugate")]
PARAMETRISATIONS = [n for n in NAMES if issubclass(_cls(n), Parametrisation)]


def _example(name, xp, dtype_name):
    cls = _cls(name)
    if not hasattr(cls, "example"):
        pytest.skip(f"regularizer `{name}` has no example(xp, dtype) classmethod to build a test instance")
    return cls.example(xp, getattr(xp, dtype_name))


def _variable_shape(reg) -> tuple[int, ...]:
    return tuple(reg.variable_shape) if isinstance(reg, Parametrisation) else tuple(reg.shape)


def _random(reg, xp, dtype_name, seed, scale=1.0):
    a = scale * np.random.default_rng(seed).standard_normal(_variable_shape(reg))
    return xp.asarray(a, dtype=getattr(xp, dtype_name))


def _norm(a) -> float:
    return float(np.linalg.norm(to_numpy(a).astype(np.float64)))


def _check_array(out, like, xp):
    assert array_namespace(out) == xp, f"result left the namespace: {type(out)}"
    assert out.dtype == like.dtype, f"dtype {out.dtype} != {like.dtype}"
    assert tuple(out.shape) == tuple(like.shape), f"shape {tuple(out.shape)} != {tuple(like.shape)}"


# ------------------------------------------------------------------------------- declaration
@pytest.mark.parametrize("name", NAMES)
def test_declares_name_and_documented_options(name):
    cls = _cls(name)
    assert cls.name == name
    assert isinstance(cls.smooth, bool) and isinstance(cls.exact_prox, bool)
    assert dataclasses.is_dataclass(cls.Options)
    defaults = from_dict(cls.Options, {}, Context(file="<contract>"))  # every option has a default
    assert defaults == cls.Options()
    for f in describe_fields(cls.Options):
        assert f["doc"], f"option `{f['name']}` of `{name}` has no doc"


@pytest.mark.parametrize("name", NAMES)
def test_value_is_a_python_float(name, xp, dtype_name):
    reg = _example(name, xp, dtype_name)
    x = _random(reg, xp, dtype_name, 0)
    v = reg.value(x)
    assert isinstance(v, float)
    assert not math.isnan(v)


# ---------------------------------------------------------------------------------------- prox
@pytest.mark.parametrize("name", PROXIMABLE)
def test_prox_keeps_namespace_dtype_shape(name, xp, dtype_name):
    reg = _example(name, xp, dtype_name)
    x = _random(reg, xp, dtype_name, 1)
    for step in STEPS:
        _check_array(reg.prox(x, step), x, xp)


@pytest.mark.parametrize("name", EXACT)
def test_exact_prox_minimises_its_definition(name, xp):
    """½‖p−x‖² + step·weight·φ(p) ≤ the same at u = p + ε·r, r dense or sparse random,
    ε from 0.1 to 0.001 × rms(x), and at p with one entry set to 0 or to x (float64,
    ``xhsi.testing.check_prox``). A wrong threshold or scaling leaves a first-order
    decrease in some direction, which these perturbations find."""
    reg = _example(name, xp, "float64")
    for step in STEPS:
        x = _random(reg, xp, "float64", 3, scale=2.0)
        check_prox(reg.prox, reg.value, x, step, seed=2)


@pytest.mark.parametrize("name", PROXIMABLE)
def test_prox_float32_agrees_with_float64(name, xp):
    reg64 = _example(name, xp, "float64")
    reg32 = _example(name, xp, "float32")
    x64 = _random(reg64, xp, "float64", 4)
    x32 = xp.astype(x64, xp.float32)
    p32, p64 = reg32.prox(x32, 0.7), reg64.prox(x64, 0.7)
    assert p32.dtype == xp.float32
    np.testing.assert_allclose(to_numpy(p32), to_numpy(p64), rtol=1e-4, atol=1e-4 * _norm(x64) / math.sqrt(x64.size))


@pytest.mark.parametrize("name", PROXIMABLE)
def test_prox_is_nonexpansive(name, xp, dtype_name):
    """Exact proxes are firmly non-expansive (Moreau 1965). The approximate starlet proxes are
    checked too: on their examples they are non-expansive in practice (docs/regularizers.md)."""
    reg = _example(name, xp, dtype_name)
    tol = 1e-4 if dtype_name == "float32" else 1e-10
    for seed in range(6):
        x = _random(reg, xp, dtype_name, 10 + seed)
        y = x + _random(reg, xp, dtype_name, 20 + seed, scale=10.0 ** (seed % 3 - 2))
        for step in STEPS:
            ratio = _norm(reg.prox(x, step) - reg.prox(y, step)) / _norm(x - y)
            assert ratio <= 1.0 + tol, f"{name}: ‖prox x − prox y‖ / ‖x − y‖ = {ratio}"


@pytest.mark.parametrize("name", CONJUGATE)
def test_moreau_decomposition(name, xp, dtype_name):
    reg = _example(name, xp, dtype_name)
    x = _random(reg, xp, dtype_name, 5, scale=2.0)
    tol = 1e-5 if dtype_name == "float32" else 1e-12
    for step in STEPS:
        total = reg.prox(x, step) + reg.prox_conjugate(x, step)
        _check_array(total, x, xp)
        np.testing.assert_allclose(to_numpy(total), to_numpy(x), rtol=tol, atol=tol * _norm(x))


# ------------------------------------------------------------------------------------ smooth
@pytest.mark.parametrize("name", SMOOTH)
def test_gradient_matches_central_differences(name, xp):
    """Fourth-order central differences of ``value`` along a random direction and the unit
    vectors of two corners and the centre, where boundary handling shows (float64,
    ``xhsi.testing.check_gradient``)."""
    reg = _example(name, xp, "float64")
    shape = _variable_shape(reg)
    x = _random(reg, xp, "float64", 6)
    _check_array(reg.gradient(x), x, xp)
    directions = [np.random.default_rng(7).standard_normal(shape)]
    for index in [(0,) * len(shape), tuple(s - 1 for s in shape), tuple(s // 2 for s in shape)]:
        e = np.zeros(shape)
        e[index] = 1.0
        directions.append(e)
    check_gradient(reg.value, reg.gradient, x, directions=directions)


@pytest.mark.parametrize("name", SMOOTH)
def test_gradient_lipschitz_bound(name, xp, dtype_name):
    reg = _example(name, xp, dtype_name)
    L = reg.lipschitz()
    assert isinstance(L, float) and L >= 0
    x = _random(reg, xp, dtype_name, 8)
    _check_array(reg.gradient(x), x, xp)
    tol = 1e-4 if dtype_name == "float32" else 1e-10
    for seed in range(5):
        y = x + _random(reg, xp, dtype_name, 30 + seed, scale=10.0 ** (seed % 3 - 1))
        lhs = _norm(reg.gradient(x) - reg.gradient(y))
        assert lhs <= L * _norm(x - y) * (1 + tol), f"{name}: gradient Lipschitz bound {L} violated"


# --------------------------------------------------------------------------- parametrisation
@pytest.mark.parametrize("name", PARAMETRISATIONS)
def test_parametrisation_maps_are_adjoint(name, xp, dtype_name):
    reg = _example(name, xp, dtype_name)
    h = _random(reg, xp, dtype_name, 9)
    z = xp.asarray(np.random.default_rng(10).standard_normal(tuple(reg.shape)), dtype=getattr(xp, dtype_name))
    zc, ha = reg.to_cube(h), reg.to_cube_adjoint(z)
    _check_array(zc, z, xp)
    _check_array(ha, h, xp)
    _check_array(reg.from_cube(z), h, xp)
    lhs = float(np.vdot(to_numpy(zc).astype(np.float64), to_numpy(z).astype(np.float64)))
    rhs = float(np.vdot(to_numpy(h).astype(np.float64), to_numpy(ha).astype(np.float64)))
    tol = 1e-4 if dtype_name == "float32" else 1e-12
    assert abs(lhs - rhs) <= tol * (_norm(zc) * _norm(z) + _norm(h) * _norm(ha))
