"""Assertions for tests of xhsi and of third-party plugins (like ``numpy.testing``).

A plugin author imports them into a pytest file; each raises ``AssertionError`` with a
message that says what was compared, and passes on numpy, array_api_strict and cupy arrays:

- :func:`dot_test` — the adjoint of a linear operator (⟨Ax, y⟩ = ⟨x, A*y⟩);
- :func:`check_gradient` — a gradient against fourth-order central finite differences of
  the function, along several directions;
- :func:`check_prox` — a proximal operator against its definition, prox(x) = argmin_u
  ½‖u − x‖² + step·g(u): no random nearby point and (on small inputs) no point found by a
  derivative-free minimiser has a lower objective;
- :func:`assert_close` — values, shape and optionally namespace and dtype of an array;
- :class:`DenseOperator` — a dense matrix as a LinearOperator (small reference problems).

Tolerances are set per dtype (:func:`rtol_for`, :func:`gradient_rtol_for`,
:func:`prox_rtol_for`) from the round-off of each check, never loosened to make a test
pass; every helper takes ``rtol`` to override them. Run gradient and prox checks in float64
where you can: float32 finite differences resolve only about three digits.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from .backend import array_namespace, compat_namespace, dtype_name, float_dtype, to_numpy
from .operators import LinearOperator

__all__ = [
    "dot_test", "check_gradient", "check_prox", "assert_close", "DenseOperator",
    "rtol_for", "gradient_rtol_for", "prox_rtol_for",
]


def rtol_for(dtype) -> float:
    """Comparison tolerance per dtype (never loosened to make a test pass): about 2000 ε of
    float32 and 5e5 ε of float64, room for sums over a few thousand terms."""
    name = str(dtype)
    return 2e-4 if "float32" in name else 1e-10


def gradient_rtol_for(dtype) -> float:
    """Tolerance of :func:`check_gradient`. Fourth-order central differences with the step
    h ∝ ε^(1/5) leave an error of order ε^(4/5) of the derivative's scale (3e-13 in float64,
    3e-6 in float32), times what the function's higher derivatives and the round-off of its
    sums add: 1e-6 in float64 (as the contract tests always used), 1e-2 in float32."""
    return 1e-2 if "float32" in str(dtype) else 1e-6


def prox_rtol_for(dtype) -> float:
    """Tolerance of :func:`check_prox`, relative to the objective's size ½‖p − x‖² +
    step·|g(p)|, well above the round-off of evaluating it: about 80 ε of float32 and 5e4 ε of
    float64."""
    return 1e-5 if "float32" in str(dtype) else 1e-11


# -- helpers ---------------------------------------------------------------------------------
def _random(xp, dtype, shape, rng):
    """A standard normal array of ``shape`` on namespace ``xp``."""
    return xp.asarray(rng.standard_normal(tuple(int(s) for s in shape)), dtype=dtype)


def _host(a) -> np.ndarray:
    """A float64 host copy of an array of any namespace."""
    return np.asarray(to_numpy(a), dtype=np.float64)


def _rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(a * a))) if a.size else 0.0


def _fail(message: str):
    raise AssertionError(message)


# -- dot test --------------------------------------------------------------------------------
def dot_test(op, *, xp=None, dtype=None, seed: int = 0, rtol: float | None = None) -> tuple[float, float]:
    """The adjoint (dot) test of a linear operator (Claerbout 1992, *Earth Soundings
    Analysis*, §1.5): for random x of ``op.shape_in`` and y of ``op.shape_out``,
    |⟨Ax, y⟩ − ⟨x, A*y⟩| ≤ rtol · ‖Ax‖ ‖y‖ (inner products in float64 on the host).

    ``op``: an :class:`xhsi.operators.LinearOperator` (or anything with ``shape_in``,
    ``shape_out``, ``apply`` and ``adjoint``). ``xp``, ``dtype``: namespace (plain numpy
    accepted) and float dtype of the random arrays; default the operator's own
    (``op.namespace()``, ``op.dtype``), else numpy float64. ``rtol``: default
    :func:`rtol_for` the dtype.
    Returns ``(⟨Ax, y⟩, ⟨x, A*y⟩)``; raises AssertionError when they differ, when a result
    has the wrong shape, or when A maps the random input to zero (nothing to compare).
    """
    xp = compat_namespace(xp)
    if xp is None:
        held = op.namespace() if hasattr(op, "namespace") else None
        xp = held if held is not None else compat_namespace("numpy")
    dtype = float_dtype(xp, dtype if dtype is not None else getattr(op, "dtype", None))
    rtol = rtol_for(dtype_name(dtype)) if rtol is None else float(rtol)
    rng = np.random.default_rng(seed)
    x = _random(xp, dtype, op.shape_in, rng)
    y = _random(xp, dtype, op.shape_out, rng)
    ax, aty = op.apply(x), op.adjoint(y)
    for what, out, shape in (("apply", ax, op.shape_out), ("adjoint", aty, op.shape_in)):
        if tuple(out.shape) != tuple(shape):
            _fail(f"dot test of {op!r}: {what} returned shape {tuple(out.shape)}, expected {tuple(shape)}.")
    ax, y, x, aty = _host(ax), _host(y), _host(x), _host(aty)
    lhs, rhs = float(np.vdot(ax, y)), float(np.vdot(x, aty))
    scale = float(np.linalg.norm(ax)) * float(np.linalg.norm(y))
    if not scale > 0:
        _fail(f"dot test of {op!r}: A maps a random input to zero, so the test cannot check the adjoint; "
              "give the operator a non-trivial example.")
    if not abs(lhs - rhs) <= rtol * scale:
        _fail(f"dot test failed for {op!r} ({xp.__name__} {dtype_name(dtype)}): <Ax, y> = {lhs!r}, "
              f"<x, A*y> = {rhs!r}, |difference| = {abs(lhs - rhs):.3g} > rtol·‖Ax‖‖y‖ = {rtol * scale:.3g} "
              f"(rtol = {rtol:g}): the adjoint is not the transpose of apply.")
    return lhs, rhs


# -- finite-difference gradient --------------------------------------------------------------
def check_gradient(f: Callable, grad: Callable, x, *, directions: int | Sequence = 3, h: float | None = None,
                   rtol: float | None = None, seed: int = 0) -> list[tuple[float, float]]:
    """Check ``grad(x)`` against fourth-order central finite differences of the scalar
    function ``f`` along each direction v:

        (8(f(x + hv) − f(x − hv)) − (f(x + 2hv) − f(x − 2hv))) / 12h  vs  ⟨grad(x), v⟩,

    passing when they differ by at most rtol · max(|⟨grad(x), v⟩|, ‖grad(x)‖ ‖v‖ / √n)
    (n = x.size: the second term is the typical size of a directional derivative along a
    random direction, a floor for directions where the derivative vanishes).

    ``f(x)``: a float (or 0-d array); ``grad(x)``: an array of x's shape. ``x``: the point,
    an array of any namespace; choose it inside the function's domain and away from kinks.
    ``directions``: a number of random standard normal directions, or a sequence of arrays
    (numpy or x's namespace) of x's shape, e.g. unit vectors at the edges of an image where
    boundary handling shows. ``h``: step along each direction; default 0.1 · ε^(1/5) ·
    rms(x) / rms(v) for the dtype's ε (rms(x) taken as 1 when x = 0): a tenth of the
    round-off optimum, so that a function with a singularity near x (a Poisson likelihood
    near a zero model) is not stepped across it; give ``h`` and ``directions`` scaled to
    each parameter's range when the entries of x have different units. ``rtol``: default
    :func:`gradient_rtol_for` x's dtype. Returns ``[(finite difference, ⟨grad, v⟩), ...]``.
    """
    xp = array_namespace(x)
    dtype = x.dtype
    rtol = gradient_rtol_for(dtype_name(dtype)) if rtol is None else float(rtol)
    g = grad(x)
    if tuple(g.shape) != tuple(x.shape):
        _fail(f"gradient has shape {tuple(g.shape)}, expected the shape of x {tuple(x.shape)}.")
    g_host, x_host = _host(g), _host(x)
    if not np.all(np.isfinite(g_host)):
        _fail(f"gradient is not finite at x ({int(np.sum(~np.isfinite(g_host)))} non-finite values).")
    n = max(int(x_host.size), 1)
    rng = np.random.default_rng(seed)
    if isinstance(directions, (int, np.integer)):
        directions = [rng.standard_normal(x_host.shape) for _ in range(int(directions))]
    eps = float(np.finfo(dtype_name(dtype)).eps)
    rms_x = _rms(x_host)
    results = []
    for k, v in enumerate(directions):
        v_host = _host(v) if hasattr(v, "shape") else np.asarray(v, dtype=np.float64)
        if v_host.shape != x_host.shape:
            _fail(f"direction {k} has shape {v_host.shape}, expected the shape of x {x_host.shape}.")
        rms_v = _rms(v_host)
        if rms_v == 0.0:
            _fail(f"direction {k} is zero.")
        step = h if h is not None else 0.1 * eps ** 0.2 * (rms_x or 1.0) / rms_v

        def at(t):
            return float(f(x + xp.asarray(t * step * v_host, dtype=dtype)))

        fd = (8.0 * (at(1) - at(-1)) - (at(2) - at(-2))) / (12.0 * step)
        an = float(np.vdot(g_host, v_host))
        tol = rtol * max(abs(an), float(np.linalg.norm(g_host)) * float(np.linalg.norm(v_host)) / math.sqrt(n))
        if not abs(fd - an) <= tol:  # also catches NaN
            _fail(f"gradient check failed along direction {k}: finite difference {fd!r} vs <grad(x), v> = {an!r}, "
                  f"|difference| = {abs(fd - an):.3g} > {tol:.3g} (rtol = {rtol:g}, h = {step:.3g}, "
                  f"{dtype_name(dtype)}): the gradient does not match the function.")
        results.append((fd, an))
    return results


# -- prox against its definition -------------------------------------------------------------
def check_prox(prox: Callable, value: Callable, x, step: float, *, trials: int = 40, brute_force_size: int = 8,
               rtol: float | None = None, seed: int = 0) -> float:
    """Check that p = ``prox(x, step)`` minimises Φ(u) = ½‖u − x‖² + step · ``value(u)``:

    1. p keeps x's shape and dtype, and Φ(p) is finite (p lies in the penalty's domain);
    2. Φ(p) ≤ Φ(p + ε r) + tol for ``trials`` random perturbations r: dense standard normal,
       and (every other trial) sparse, on 2 % of the entries (at least one), so that
       constraints and indicator terms stay finite; ε cycles over 0.1, 0.01, 0.001 × rms(x).
       A wrong threshold or scaling leaves a first-order decrease in some direction;
    3. Φ(p) ≤ Φ(u) + tol where u is p with one entry (up to 32 of them, drawn at random)
       set to 0 or to x's value, and at u = 0 and u = x: the candidates of thresholding and
       projections, exact zeros that no continuous perturbation reaches (an ℓ0 prox that
       keeps an entry it should zero);
    4. when x has at most ``brute_force_size`` entries, Φ(p) ≤ Φ(u*) + tol for the points u*
       a derivative-free minimiser (Nelder–Mead, scipy.optimize) reaches from p, x, 0 and
       two random starts: a brute-force minimisation, which catches a non-convex penalty's
       prox that returns a local minimiser only.

    ``prox(x, step)`` and ``value(u)`` are what a regulariser gives: for
    :class:`xhsi.regularizers.Regularizer`, ``check_prox(reg.prox, reg.value, x, step)``
    (``value`` includes the weight). ``value`` may return ``inf`` outside the domain
    (indicators). tol = rtol · (½‖p − x‖² + step · |value(p)|), ``rtol`` by default
    :func:`prox_rtol_for` x's dtype. Only exact proxes pass; approximate ones (thresholding
    in a redundant frame) are not minimisers. Returns Φ(p).
    """
    xp = array_namespace(x)
    dtype = x.dtype
    rtol = prox_rtol_for(dtype_name(dtype)) if rtol is None else float(rtol)
    step = float(step)
    p = prox(x, step)
    if tuple(p.shape) != tuple(x.shape):
        _fail(f"prox returned shape {tuple(p.shape)}, expected the shape of x {tuple(x.shape)}.")
    if p.dtype != dtype:
        _fail(f"prox returned {dtype_name(p.dtype)} for a {dtype_name(dtype)} input.")
    x_host, p_host = _host(x), _host(p)
    shape, n = x_host.shape, x_host.size

    def objective(u) -> float:
        d = _host(u) - x_host
        return 0.5 * float(np.vdot(d, d)) + step * float(value(u))

    g_p = float(value(p))
    f_p = objective(p)
    if not math.isfinite(f_p):
        _fail(f"prox(x, step={step}) left the domain of the penalty: value(prox(x)) = {g_p!r}.")
    d_p = p_host - x_host
    tol = rtol * (0.5 * float(np.vdot(d_p, d_p)) + step * abs(g_p))

    def compare(f_u: float, where: str) -> None:
        if f_u < f_p - tol:
            _fail(f"prox(x, step={step}) is not the minimiser of ½‖u − x‖² + step·g(u): at {where} the objective "
                  f"is {f_u!r} < {f_p!r} at the prox (tolerance {tol:.3g}, {dtype_name(dtype)}).")

    scale = _rms(x_host) or 1.0
    rng = np.random.default_rng(seed)
    for trial in range(trials):
        eps = scale * 10.0 ** -(1 + trial % 3)
        r = rng.standard_normal(shape)
        kind = "dense"
        if trial % 2:
            mask = np.zeros(n, dtype=bool)
            mask[rng.choice(n, size=max(1, int(math.ceil(0.02 * n))), replace=False)] = True
            r = r * mask.reshape(shape)
            kind = "sparse"
        compare(objective(p + xp.asarray(eps * r, dtype=dtype)),
                f"u = prox(x) + ε·r (ε = {eps:.3g}, {kind} r, trial {trial})")
    p_flat, x_flat = p_host.ravel(), x_host.ravel()
    for i in rng.choice(n, size=min(n, 32), replace=False) if n else ():
        for target in (0.0, x_flat[i]):
            if p_flat[i] != target:
                u = p_flat.copy()
                u[i] = target
                compare(objective(xp.asarray(u.reshape(shape), dtype=dtype)),
                        f"u = prox(x) with entry {tuple(int(k) for k in np.unravel_index(int(i), shape))} set to "
                        f"{float(target):.6g}")
    compare(objective(xp.zeros(shape, dtype=dtype)), "u = 0")
    compare(objective(x), "u = x")
    if 0 < n <= brute_force_size:
        _brute_force(objective, xp, dtype, x_host, p_host, f_p, compare, rng)
    return f_p


def _brute_force(objective, xp, dtype, x_host, p_host, f_p, compare, rng) -> None:
    """Nelder–Mead (Nelder & Mead 1965) on Φ from several starts: derivative-free, so it
    takes non-smooth and infinite values; each point it reaches must not beat the prox."""
    from scipy.optimize import minimize

    shape = x_host.shape

    def fun(flat):
        with np.errstate(all="ignore"):
            v = objective(xp.asarray(flat.reshape(shape), dtype=dtype))
        return v if math.isfinite(v) else np.inf

    scale = _rms(x_host) or 1.0
    starts = [p_host, x_host, np.zeros(shape), x_host + scale * rng.standard_normal(shape),
              scale * rng.standard_normal(shape)]
    for k, start in enumerate(starts):
        with np.errstate(all="ignore"):
            res = minimize(fun, start.ravel(), method="Nelder-Mead",
                           options={"xatol": 1e-8 * scale, "fatol": 1e-13 * (abs(f_p) + 1.0),
                                    "maxiter": 200 * start.size, "maxfev": 400 * start.size})
        if math.isfinite(res.fun):
            compare(float(res.fun), f"u = {np.round(res.x, 6).reshape(shape).tolist()}, found by a derivative-free "
                                    f"search from start {k}")


# -- arrays ----------------------------------------------------------------------------------
def assert_close(actual, expected, *, rtol=None, atol=0.0, xp=None, dtype=None):
    """Compare shape and values (tolerance per dtype of ``actual`` unless ``rtol`` is given)
    and, when given, the namespace ``xp`` (plain numpy accepted) and ``dtype`` of
    ``actual``: catches silent transfers to numpy and dtype promotion."""
    if xp is not None:
        assert array_namespace(actual) == compat_namespace(xp), f"result left the namespace: {type(actual)}"
    if dtype is not None:
        assert actual.dtype == dtype, f"dtype {actual.dtype} != {dtype}"
    a, e = to_numpy(actual), to_numpy(expected) if hasattr(expected, "shape") else np.asarray(expected)
    assert a.shape == e.shape, f"shape {a.shape} != {e.shape}"
    tol = rtol if rtol is not None else rtol_for(getattr(actual, "dtype", "float64"))
    np.testing.assert_allclose(a, e, rtol=tol, atol=atol)


class DenseOperator(LinearOperator):
    """A dense matrix acting on flattened arrays of ``shape_in`` (for small test problems)."""

    def __init__(self, matrix, shape_in, shape_out):
        super().__init__(shape_in, shape_out)
        self.matrix, self.xp, self.dtype = matrix, array_namespace(matrix), matrix.dtype

    def _apply(self, x):
        return self.xp.reshape(self.xp.matmul(self.matrix, self.xp.reshape(x, (-1,))), self.shape_out)

    def _adjoint(self, y):
        return self.xp.reshape(self.xp.matmul(self.matrix.T, self.xp.reshape(y, (-1,))), self.shape_in)
