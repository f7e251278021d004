"""A component's spectral model as a low-rank basis and a table of its coefficients,
interpolated in the fitted parameters: the dimension reduction of ``fusion_unmixing``.

For one component with fitted parameters θ (P ≤ 3 of them, the others fixed),

    S(E; θ) ≈ W · h(θ),   W: (n_e, k) orthonormal,   h(θ) = Σ_nodes w_nodes(θ) · C[:, node],

with C = Wᵀ T the coefficients of the exact spectra T at the nodes of a uniform tensor grid
over the parameters' bounds, W the leading left singular vectors of T, and w the
tensor-product Catmull–Rom weights (cubic, C¹, interpolating; Catmull & Rom 1974, in
*Computer Aided Geometric Design*, Academic Press, 317; ghost nodes beyond each end by
linear extrapolation). The grid is refined (intervals doubled per axis) until the relative
L2 error of the interpolated spectra at the cell mid-points is ≤ ``tol`` on every axis,
and the rank k is the smallest whose projection error at every node is ≤ tol / 4.

Why: the exact thermal model at the published fusion size (2400 bins × 45 × 45 pixels)
costs ~2 s per evaluation and ~3 s per vector–Jacobian product on 2 cores, far more than
the forward operators; on the table an evaluation is k × 4^P gathers per pixel, and the
operators act on the k coefficient maps (``xhsi.operators.lowrank``) instead of n_e slices.

``TabulatedModel`` is a spectral model (``evaluate``, ``vjp``, ``jvp`` of full spectra W·h,
for the per-pixel fits) that also gives the coefficients h (``coefficients``,
``coefficients_vjp``) for the folded mixture (``CoefficientView``).
"""
from __future__ import annotations

import hashlib
import itertools
from collections import OrderedDict

import numpy as np

from ..backend import to_numpy
from ..errors import ConfigError

#: Most fitted parameters a table is built for (4^P gathers per pixel, n^P nodes).
MAX_TABLE_PARAMETERS = 3
#: Most nodes of one table (exact spectra evaluated to build it).
MAX_NODES = 20000
#: Tables kept in memory for reuse (``TabulatedModel``): a run's components, its selection
#: candidates and folds, the sweeps of one process.
TABLE_CACHE_SIZE = 16
_TABLES: OrderedDict = OrderedDict()


def clear_table_cache() -> None:
    """Forget every table kept for reuse (``TABLE_CACHE_SIZE``)."""
    _TABLES.clear()


def _catmull_rom(t):
    """Weights of the nodes i−1, i, i+1, i+2 at t ∈ [0, 1] in cell [i, i+1], and their
    derivatives in t (numpy, any shape; last axis the 4 nodes)."""
    t2, t3 = t * t, t * t * t
    w = np.stack([(-t3 + 2 * t2 - t) / 2, (3 * t3 - 5 * t2 + 2) / 2, (-3 * t3 + 4 * t2 + t) / 2, (t3 - t2) / 2],
                 axis=-1)
    dw = np.stack([(-3 * t2 + 4 * t - 1) / 2, (9 * t2 - 10 * t) / 2, (-9 * t2 + 8 * t + 1) / 2, (3 * t2 - 2 * t) / 2],
                  axis=-1)
    return w, dw


class _Grid:
    """A uniform tensor grid: per axis (lo, hi, intervals); nodes with one ghost node
    beyond each end."""

    def __init__(self, bounds: list[tuple[float, float]], intervals: list[int]):
        self.bounds, self.intervals = bounds, list(intervals)
        self.steps = [(hi - lo) / n for (lo, hi), n in zip(bounds, intervals)]

    def axis_nodes(self, a: int) -> np.ndarray:
        lo, hi = self.bounds[a]
        return np.linspace(lo, hi, self.intervals[a] + 1)

    def points(self) -> np.ndarray:
        """(P, n_nodes) parameter values of the real nodes, C order."""
        mesh = np.meshgrid(*[self.axis_nodes(a) for a in range(len(self.bounds))], indexing="ij")
        return np.stack([m.ravel() for m in mesh]) if mesh else np.zeros((0, 1))

    def with_ghosts(self, values: np.ndarray) -> np.ndarray:
        """(k, n_1+1, ..., n_P+1) → (k, n_1+3, ...): a ghost node beyond each end of every
        axis, 2·end − next (linear extrapolation)."""
        for a in range(1, values.ndim):
            first = 2 * np.take(values, [0], axis=a) - np.take(values, [1], axis=a)
            last = 2 * np.take(values, [-1], axis=a) - np.take(values, [-2], axis=a)
            values = np.concatenate([first, values, last], axis=a)
        return values

    def weights(self, theta: np.ndarray):
        """Per axis: (flat index offset of node i−1 with ghosts, weights (4, n), derivative
        weights (4, n) in parameter units) at the points θ (P, n)."""
        out = []
        for a, (lo, _) in enumerate(self.bounds):
            n = self.intervals[a]
            u = (theta[a] - lo) / self.steps[a]
            i = np.clip(np.floor(u), 0, n - 1)
            w, dw = _catmull_rom(np.clip(u - i, 0.0, 1.0))
            out.append((i.astype(np.int64), w.T, dw.T / self.steps[a]))
        return out


def _basis(table: np.ndarray, tol: float, max_rank: int = 512) -> np.ndarray:
    """The smallest orthonormal basis W (n_e, k) of leading left singular vectors of
    ``table`` (n_e, n) that leaves every column's relative projection error ≤ ``tol``.
    Randomised range finder with two power iterations (Halko, Martinsson & Tropp 2011,
    SIAM Rev. 53, 217), its sketch doubled until the rank fits inside it: a full SVD of the
    2400 × 4000 tables of the published size takes minutes on 2 cores."""
    rng = np.random.default_rng(0x62617369)  # "basi"
    norms2 = np.maximum(np.sum(table * table, axis=0), 1e-300)
    width = 64
    while True:
        width = min(width, *table.shape)
        q, _ = np.linalg.qr(table @ rng.standard_normal((table.shape[1], width)))
        for _ in range(2):
            q, _ = np.linalg.qr(table @ (table.T @ q))
        u_small, _, _ = np.linalg.svd(q.T @ table, full_matrices=False)
        u = q @ u_small
        coeffs = u.T @ table
        captured = np.cumsum(coeffs * coeffs, axis=0)  # (rank, n)
        resid = np.sqrt(np.clip(1.0 - captured / norms2, 0.0, None))
        ok = np.nonzero(np.max(resid, axis=1) <= tol)[0]
        if ok.size and (ok[0] + 1 < width - 8 or width == min(table.shape)):
            return u[:, :ok[0] + 1]
        if width >= min(max_rank, *table.shape):
            return u[:, :width]
        width *= 2


class TabulatedModel:
    """See the module docstring. ``model``: the exact spectral model (set up); ``fitted``:
    {parameter name: (lower, upper)} of the parameters the table spans; ``constants``:
    {name: value} of the others."""

    additive = True
    response = None

    def __init__(self, model, fitted: dict[str, tuple[float, float]], constants: dict[str, float], xp, dtype,
                 tol: float = 1e-3, where: str = "component"):
        if len(fitted) > MAX_TABLE_PARAMETERS:
            raise ConfigError(f"{where}: a table of {len(fitted)} fitted parameters is too large (at most "
                              f"{MAX_TABLE_PARAMETERS}); set [problem] reduce = \"none\".")
        self.exact, self.parameters, self.xp, self.dtype, self.tol = model, model.parameters, xp, dtype, tol
        self.names = [p.name for p in model.parameters]
        self.fitted = list(fitted)
        self.index = [self.names.index(n) for n in self.fitted]
        self.constants = dict(constants)
        bounds = [tuple(float(b) for b in fitted[n]) for n in self.fitted]
        key = self._key(bounds)
        built = _TABLES.pop(key, None) or self._build(bounds)
        _TABLES[key] = built  # the most recently used last
        while len(_TABLES) > TABLE_CACHE_SIZE:
            _TABLES.popitem(last=False)
        self.grid, self.table_error, basis, coeffs = built
        self.rank = int(basis.shape[1])
        self.basis_host = basis  # (n_e, k) float64
        self.basis = xp.asarray(basis, dtype=dtype)
        self._coeffs = xp.asarray(coeffs, dtype=dtype)  # (k, n_nodes with ghosts)
        self._shape = tuple(n + 3 for n in self.grid.intervals)

    # -- building ------------------------------------------------------------------------
    def _key(self, bounds) -> tuple:
        """What a table depends on: the model's class, the fitted parameters' bounds, the
        constants, ``tol``, the backend and dtype it is evaluated with, and a digest of the
        exact spectra at three points of the box (its lower corner, centre and a fixed
        interior point), which tells apart the same model on another energy grid, with other
        options or another trained file. A selection's candidates and folds and a sweep's
        fits build their problems anew from one model: they share one table (the published
        fusion_unmixing size takes ~9 s to tabulate on 2 cores)."""
        lo = np.asarray([b[0] for b in bounds])
        hi = np.asarray([b[1] for b in bounds])
        points = np.stack([lo, (lo + hi) / 2, lo + np.asarray([0.3819660, 0.7236068, 0.1458980])[:len(bounds)]
                           * (hi - lo)], axis=1) if bounds else np.zeros((0, 1))
        digest = hashlib.sha256(np.ascontiguousarray(self._spectra(points)).tobytes()).hexdigest()
        model = type(self.exact)
        return (f"{model.__module__}.{model.__qualname__}", tuple(self.names), tuple(self.fitted), tuple(bounds),
                tuple(sorted((k, float(v)) for k, v in self.constants.items())), float(self.tol),
                getattr(self.xp, "__name__", str(self.xp)), str(self.dtype), digest)

    def _spectra(self, points: np.ndarray) -> np.ndarray:
        """Exact spectra (n_e, n) at the fitted-parameter values ``points`` (P, n), float64."""
        n = points.shape[1]
        rows = []
        for name in self.names:
            if name in self.fitted:
                rows.append(points[self.fitted.index(name)])
            else:
                rows.append(np.full(n, self.constants[name]))
        theta = self.xp.asarray(np.stack(rows), dtype=self.dtype)
        return np.asarray(to_numpy(self.exact.evaluate(theta)), dtype=np.float64)

    def _build(self, bounds):
        p = len(bounds)
        intervals = [8] * p
        rng = np.random.default_rng(0x7461626C)  # "tabl": the test points of the refinement
        while True:
            grid = _Grid(bounds, intervals)
            table = self._spectra(grid.points())  # (n_e, n_nodes)
            values = grid.with_ghosts(table.reshape((table.shape[0],) + tuple(n + 1 for n in intervals)))
            errors = []
            for a in range(p):  # mid-points along axis a, random elsewhere
                test = np.stack([rng.uniform(lo, hi, 64) for lo, hi in bounds]) if p else np.zeros((0, 64))
                cells = rng.integers(0, intervals[a], 64)
                test[a] = bounds[a][0] + (cells + 0.5) * grid.steps[a]
                exact = self._spectra(test)
                approx = self._interpolate_host(grid, values, test)
                errors.append(float(np.max(np.linalg.norm(approx - exact, axis=0)
                                           / np.maximum(np.linalg.norm(exact, axis=0), 1e-300))))
            worse = [a for a in range(p) if errors[a] > self.tol]
            total = int(np.prod([n * 2 + 1 if a in worse else n + 1 for a, n in enumerate(intervals)]))
            if not worse or total > MAX_NODES:
                break
            intervals = [n * 2 if a in worse else n for a, n in enumerate(intervals)]
        basis = _basis(table, self.tol / 4)
        flat = values.reshape(values.shape[0], -1)
        coeffs = basis.T @ flat
        for a in (basis, coeffs):  # shared between the problems that reuse the table (_TABLES)
            a.setflags(write=False)
        return grid, max(errors) if errors else 0.0, basis, coeffs

    @staticmethod
    def _interpolate_host(grid: _Grid, values: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Interpolated rows of ``values`` (m, n_1+3, ...) at θ (P, n), numpy float64."""
        flat = values.reshape(values.shape[0], -1)
        shape = values.shape[1:]
        out = 0.0
        axes = grid.weights(theta)
        for offs in itertools.product(range(4), repeat=len(axes)):
            idx = np.zeros(theta.shape[1], dtype=np.int64)
            w = np.ones(theta.shape[1])
            for a, (i, wa, _) in enumerate(axes):
                idx = idx * shape[a] + i + offs[a]
                w = w * wa[offs[a]]
            out = out + flat[:, idx] * w
        return out if len(axes) else np.repeat(flat, theta.shape[1], axis=1)

    # -- the coefficients h(θ) -------------------------------------------------------------
    def _gathers(self, theta):
        """(flat node indices, weights, derivative weights per axis) of the 4^P nodes at
        the pixels of θ (n_params, *S): backend arrays of shape (4^P, npix)."""
        xp = self.xp
        fitted = to_numpy(xp.stack([xp.reshape(theta[i, ...], (-1,)) for i in self.index])) if self.index \
            else np.zeros((0, int(np.prod(tuple(theta.shape[1:])))))
        axes = self.grid.weights(np.asarray(fitted, dtype=np.float64))
        npix = fitted.shape[1]
        idx, w, dws = [], [], [[] for _ in axes]
        for offs in itertools.product(range(4), repeat=len(axes)):
            flat = np.zeros(npix, dtype=np.int64)
            weight = np.ones(npix)
            for a, (i, wa, _) in enumerate(axes):
                flat = flat * self._shape[a] + i + offs[a]
                weight = weight * wa[offs[a]]
            for a in range(len(axes)):
                d = np.ones(npix)
                for b, (_, wb, dwb) in enumerate(axes):
                    d = d * (dwb[offs[b]] if b == a else wb[offs[b]])
                dws[a].append(d)
            idx.append(flat)
            w.append(weight)
        if not axes:
            idx, w = [np.zeros(npix, dtype=np.int64)], [np.ones(npix)]
        as_xp = lambda a: xp.asarray(np.stack(a), dtype=self.dtype)  # noqa: E731
        return xp.asarray(np.stack(idx)), as_xp(w), [as_xp(d) for d in dws]

    def _combine(self, idx, weights):
        """Σ_nodes weights · C[:, node]: (k, npix)."""
        xp = self.xp
        out = None
        for j in range(idx.shape[0]):
            term = xp.take(self._coeffs, idx[j, ...], axis=1) * weights[j, ...][None, :]
            out = term if out is None else out + term
        return out

    def coefficients(self, theta):
        """h(θ): (k, *S) for θ (n_params, *S)."""
        idx, w, _ = self._gathers(theta)
        return self.xp.reshape(self._combine(idx, w), (self.rank,) + tuple(theta.shape[1:]))

    def coefficients_vjp(self, theta, cotangent):
        """Σ_r cotangent[r] ∂h_r/∂θ: (n_params, *S) (0 for the parameters the table holds
        constant), for a cotangent (k, *S)."""
        xp = self.xp
        idx, _, dws = self._gathers(theta)
        cot = xp.reshape(cotangent, (self.rank, -1))
        rows = [xp.zeros(cot.shape[1:], dtype=cot.dtype) for _ in self.names]
        for j in range(idx.shape[0]):
            proj = xp.sum(xp.take(self._coeffs, idx[j, ...], axis=1) * cot, axis=0)
            for a, k in enumerate(self.index):
                rows[k] = rows[k] + dws[a][j, ...] * proj
        return xp.reshape(xp.stack(rows), tuple(theta.shape))

    def coefficients_jvp(self, theta, tangent):
        """Σ_p ∂h/∂θ_p tangent[p]: (k, *S)."""
        xp = self.xp
        idx, _, dws = self._gathers(theta)
        tan = xp.reshape(tangent, (tangent.shape[0], -1))
        weights = None
        for a, k in enumerate(self.index):
            term = dws[a] * tan[k, ...][None, :]
            weights = term if weights is None else weights + term
        if weights is None:
            return xp.zeros((self.rank,) + tuple(theta.shape[1:]), dtype=self.dtype)
        return xp.reshape(self._combine(idx, weights), (self.rank,) + tuple(theta.shape[1:]))

    # -- full spectra W·h(θ): a spectral model for the per-pixel fits ------------------------
    def _full(self, h):
        xp = self.xp
        flat = xp.reshape(h, (self.rank, -1))
        return xp.reshape(xp.matmul(self.basis, flat), (int(self.basis.shape[0]),) + tuple(h.shape[1:]))

    def evaluate(self, theta):
        return self._full(self.coefficients(theta))

    def vjp(self, theta, cotangent):
        xp = self.xp
        flat = xp.reshape(cotangent, (cotangent.shape[0], -1))
        projected = xp.reshape(xp.matmul(xp.matrix_transpose(self.basis), flat), (self.rank,) + tuple(theta.shape[1:]))
        return self.coefficients_vjp(theta, projected)

    def jvp(self, theta, tangent):
        return self._full(self.coefficients_jvp(theta, tangent))


class CoefficientView:
    """A tabulated model seen as a spectral model whose output is its coefficients placed
    at rows ``offset``…``offset + k`` of ``total`` (the stacked bases of all components,
    ``W = [W_1 | W_2 | …]``): the cube of the mixture then holds the rank maps H, and the
    forward operators act on them (``xhsi.operators.lowrank.spectral_basis_forward``)."""

    def __init__(self, model: TabulatedModel, offset: int, total: int):
        self.model, self.offset, self.total = model, offset, total
        self.parameters = model.parameters

    def evaluate(self, theta):
        xp, m = self.model.xp, self.model
        h = m.coefficients(theta)
        rest = tuple(theta.shape[1:])
        parts = []
        if self.offset:
            parts.append(xp.zeros((self.offset,) + rest, dtype=h.dtype))
        parts.append(h)
        if self.total - self.offset - m.rank:
            parts.append(xp.zeros((self.total - self.offset - m.rank,) + rest, dtype=h.dtype))
        return xp.concat(parts, axis=0) if len(parts) > 1 else h

    def vjp(self, theta, cotangent):
        return self.model.coefficients_vjp(theta, cotangent[self.offset:self.offset + self.model.rank, ...])


def stacked_basis(models: list[TabulatedModel], xp, dtype):
    """W = [W_1 | W_2 | …] (n_e, Σ k_c) and the row offset of each model's coefficients."""
    offsets, total = [], 0
    for m in models:
        offsets.append(total)
        total += m.rank
    return xp.asarray(np.concatenate([m.basis_host for m in models], axis=1), dtype=dtype), offsets, total
