"""Data likelihoods: how well a model of expected counts explains observed counts.

A likelihood compares ``model`` (expected counts per voxel, *background included*: the
caller forms ``A(Z) + B``; :class:`DataTerm` does it for a linear forward operator) with
``data`` (observed counts) and returns

* ``value(model, data)``: the negative log-likelihood minus its value at the saturated
  model ``model == data``, so that it is ≥ 0 and 0 at a perfect fit (a Python float);
* ``gradient(model, data)``: ∂value/∂model (an array like ``model``);
* ``deviance(model, data)``: 2·value, the goodness-of-fit statistic (Poisson deviance,
  Gaussian χ²) that is ≈ the number of voxels at a good fit.

The objective solvers minimise uses ``value`` (the NLL convention of Lascar et al. 2024,
2025, so regularisation weights keep their published meaning); reports can show
``deviance``.

Background is the caller's business because the gradient w.r.t. the model is the same with
or without it (B is constant), and because the operator engineer knows where B lives
(counts per detector voxel, same grid as the data).

Memory: on numpy the per-voxel terms and the gradient are formed in place in at most
four (Poisson: the floored model, y/m, the terms and one scratch; the gradient is written
over y/m) or two (Gaussian) arrays of the data's size, with the same operations in
the same order as the generic array-API expressions (same bits); ``model`` and ``data``
are never written to.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .backend import array_namespace, native_numpy
from .errors import DataError, ShapeError
from .schema import NoOptions, option

__all__ = ["Likelihood", "Poisson", "Gaussian", "DataTerm", "check_data", "wstat_background", "wstat_value"]


def check_data(data, *, nonnegative: bool = True, what: str = "counts") -> None:
    """Raise DataError when ``data`` has NaN/inf voxels (or negative ones, when
    ``nonnegative``), saying how many. One device→host transfer of two integers; call it
    once per observation, before the iterations."""
    xp = array_namespace(data)
    n_total = 1
    for s in data.shape:
        n_total *= int(s)
    finite = xp.isfinite(data)
    n_nonfinite = int(xp.count_nonzero(xp.logical_not(finite)))
    # Compare only finite voxels so NaN does not count twice.
    n_negative = int(xp.count_nonzero(xp.logical_and(finite, data < 0))) if nonnegative else 0
    if n_nonfinite or n_negative:
        parts = []
        if n_nonfinite:
            parts.append(f"{n_nonfinite} non-finite (NaN or inf)")
        if n_negative:
            parts.append(f"{n_negative} negative")
        need = "finite and ≥ 0" if nonnegative else "finite"
        raise DataError(
            f"the {what} hold {' and '.join(parts)} voxel(s) out of {n_total}; {what} must be {need}. "
            "Mask or replace those voxels (e.g. set them to 0 and exclude them with a zero exposure) "
            "before the run."
        )


class Likelihood:
    """Base class. Subclasses set ``name`` (the config name), ``Options`` and
    ``nonnegative_data``, and implement ``_terms`` and ``gradient``."""

    name: str = ""
    Options: type = NoOptions
    #: whether data must be ≥ 0 (counts) — checked by ``check_data``.
    nonnegative_data: bool = True

    def __init__(self, options: Any = None):
        self.options = options if options is not None else self.Options()

    @classmethod
    def for_counts(cls, counts) -> "Likelihood":
        """The likelihood of one observation's counts cube, as problems build it."""
        return cls()

    def check_data(self, data, what: str = "counts") -> None:
        """Raise DataError for NaN/inf (and, for counts, negative) voxels."""
        check_data(data, nonnegative=self.nonnegative_data, what=what)

    def value_device(self, model, data):
        """``value`` as a 0-d array on the model's device (no host transfer). Summed in
        float64 whatever the data dtype: costs of ~1e6 summed over ~1e7 float32 voxels would
        otherwise carry errors larger than the differences backtracking compares."""
        xp = array_namespace(model, data)
        return xp.sum(self._terms(model, data), dtype=xp.float64)

    def value(self, model, data) -> float:
        """Σ over voxels of the per-voxel NLL minus its saturated value (≥ 0), a float."""
        _check_shapes(model, data)
        return float(self.value_device(model, data))

    def deviance(self, model, data) -> float:
        """2·value: Poisson deviance or Gaussian χ² (≈ number of voxels at a good fit)."""
        return 2.0 * self.value(model, data)

    def gradient(self, model, data):
        raise NotImplementedError

    def value_and_gradient(self, model, data):
        """(value as a 0-d device array, gradient); subclasses share intermediate arrays."""
        return self.value_device(model, data), self.gradient(model, data)

    def curvature_bound(self, data) -> float | None:
        """An upper bound of the second derivative ∂²value/∂model² over all models, or None
        when there is none (Poisson: the NLL is not Lipschitz-smooth near model = 0)."""
        return None

    def _terms(self, model, data):
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options})"


def _native_numpy(xp, model, data):
    """``backend.native_numpy`` when ``model`` and ``data`` also share dtype and shape, so
    that scratch arrays made from either can hold every intermediate; else None."""
    if model.dtype != data.dtype or tuple(model.shape) != tuple(data.shape):
        return None
    return native_numpy(xp)


def _writable_result(np_, out, other) -> bool:
    """Whether ``out op other`` can be written into ``out`` (an array allocated by the
    caller) without changing the result's dtype or shape."""
    return (np_.result_type(out, other) == out.dtype
            and np_.broadcast_shapes(out.shape, np_.shape(other)) == out.shape)


def _check_shapes(model, data) -> None:
    if tuple(model.shape) != tuple(data.shape):
        raise ShapeError(f"model has shape {tuple(model.shape)} but the data have {tuple(data.shape)}.")


class Poisson(Likelihood):
    """Poisson likelihood of counts ``y`` given expected counts ``m`` (background included):

        value(m, y) = Σ [ m − y + y·log(y/m) ]          (y·log y := 0 at y = 0)
                    = −log L(m | y) + log L(y | y),  i.e. ½ · deviance
        gradient    = 1 − y / m

    Zero or negative model: below the floor ``f = options.model_floor`` (counts per voxel)
    the term −y·log m is replaced by its tangent at f, −y·[log f + (m − f)/f]. The value is
    then finite and continuously differentiable for every m, convex, and its gradient is the
    constant 1 − y/f there (large and negative where y > 0: it pushes the model up, which is
    the right direction). With m ≥ f everything is the exact Poisson NLL. Where y = 0 the
    term is just m, with gradient 1, at any m.

    The Poisson NLL has no global Lipschitz constant (its curvature y/m² is unbounded as
    m → 0), so FISTA uses backtracking with it; ``curvature_bound`` returns None.
    """

    name = "poisson"

    @dataclass
    class Options:
        model_floor: float = option(
            1e-3, unit="counts", min=0.0, exclusive_min=True,
            doc="expected counts per voxel below which log(m) is linearised. A voxel holding counts "
                "whose model is below 1e-3 counts is a 1-in-1000 event, so no physical fit sits there; "
                "the floor bounds the curvature y/m² by y·1e6, which keeps backtracking (FISTA, PALM) "
                "finite when a step drives a model to zero (1e-10 needed steps of 1e-20)",
        )

    def _floored(self, model, xp):
        return xp.clip(model, min=self.options.model_floor)

    def _terms_and_ratio(self, model, data):
        """(per-voxel terms of ``value``, y / max(m, floor)): the ratio is the gradient's
        ingredient, so ``value_and_gradient`` reuses it, and ``value`` uses the same terms
        (the same bits from either)."""
        xp = array_namespace(model, data)
        m_f = self._floored(model, xp)
        ratio = data / m_f
        y_pos = xp.where(data > 0, data, xp.ones_like(data))  # log argument safe at y = 0
        # y·log(y/m_f) is 0 where y = 0 because data is 0 there; the last term is the
        # tangent continuation below the floor (0 where model >= floor).
        np_ = _native_numpy(xp, model, data)
        if np_ is None:
            return model - data + data * xp.log(y_pos / m_f) - ratio * (model - m_f), ratio
        terms = np_.subtract(model, data)
        np_.divide(y_pos, m_f, out=y_pos)
        np_.log(y_pos, out=y_pos)
        np_.multiply(data, y_pos, out=y_pos)
        np_.add(terms, y_pos, out=terms)
        np_.subtract(model, m_f, out=y_pos)
        np_.multiply(ratio, y_pos, out=y_pos)
        return np_.subtract(terms, y_pos, out=terms), ratio

    def _terms(self, model, data):
        return self._terms_and_ratio(model, data)[0]

    def gradient(self, model, data):
        """1 − y / max(m, floor): the exact gradient of ``value`` (see the class docstring)."""
        xp = array_namespace(model, data)
        return 1.0 - data / self._floored(model, xp)

    def value_and_gradient(self, model, data):
        xp = array_namespace(model, data)
        terms, ratio = self._terms_and_ratio(model, data)
        value = xp.sum(terms, dtype=xp.float64)
        del terms
        np_ = _native_numpy(xp, model, data)
        return value, (1.0 - ratio if np_ is None else np_.subtract(1.0, ratio, out=ratio))


class Gaussian(Likelihood):
    """Gaussian likelihood: value = ½ Σ (m − y)² / σ², gradient = (m − y) / σ².

    σ² is ``variance`` (an array broadcastable to the data, e.g. per voxel, in counts²)
    when given, else ``options.sigma``². Data may be negative (e.g. background-subtracted);
    only NaN/inf are rejected. ``curvature_bound`` is 1/min σ², so ½‖A x − y‖²/σ² has the
    Lipschitz constant ‖A‖²/min σ².
    """

    name = "gaussian"
    nonnegative_data = False

    @dataclass
    class Options:
        sigma: float = option(1.0, unit="counts", min=0.0, exclusive_min=True,
                              doc="noise standard deviation per voxel, when no variance array is given")

    def __init__(self, options: Any = None, variance=None):
        super().__init__(options)
        self.variance = variance

    @classmethod
    def for_counts(cls, counts) -> "Gaussian":
        """Neyman's χ² for counts: σ² = max(counts, 1) per voxel (the Poisson variance
        estimated by the data, floored at one count so empty voxels keep a finite weight)."""
        xp = array_namespace(counts)
        return cls(variance=xp.clip(counts, min=1.0))

    def _inv_var(self):
        if self.variance is None:
            return 1.0 / self.options.sigma ** 2
        return 1.0 / self.variance

    def _terms(self, model, data):
        r = model - data
        inv_var = self._inv_var()
        np_ = _native_numpy(array_namespace(model, data), model, data)
        if np_ is None or not _writable_result(np_, r, inv_var):
            return 0.5 * (r * r) * inv_var
        np_.multiply(r, r, out=r)
        np_.multiply(r, 0.5, out=r)
        return np_.multiply(r, inv_var, out=r)

    def gradient(self, model, data):
        return (model - data) * self._inv_var()

    def value_and_gradient(self, model, data):
        xp = array_namespace(model, data)
        r = model - data
        g = r * self._inv_var()
        np_ = _native_numpy(xp, model, data)
        if np_ is None or not _writable_result(np_, r, g):
            return 0.5 * xp.sum(g * r, dtype=xp.float64), g
        return 0.5 * xp.sum(np_.multiply(g, r, out=r), dtype=xp.float64), g

    def check_data(self, data, what: str = "data") -> None:
        super().check_data(data, what)
        if self.variance is not None:
            xp = array_namespace(self.variance)
            n_bad = int(xp.count_nonzero(xp.logical_not(self.variance > 0)))
            if n_bad:
                raise DataError(f"the Gaussian variance has {n_bad} voxel(s) that are not > 0 (or NaN); "
                                "give a positive variance (counts²) for every voxel.")

    def curvature_bound(self, data) -> float | None:
        if self.variance is None:
            return 1.0 / self.options.sigma ** 2
        xp = array_namespace(self.variance)
        return float(1.0 / xp.min(self.variance))


class DataTerm:
    """The smooth term x ↦ L(A x + B, y) of one observation, for the solvers
    (a ``SmoothTerm``: ``value``, ``gradient``, ``value_and_gradient``, ``lipschitz``).

    ``operator`` is an ``xhsi.operators.LinearOperator`` from the unknown to the data grid,
    ``background`` (counts per data voxel, same shape as the data, or None) is added to
    A x. The gradient is Aᴴ ∇L. ``data`` is validated once here. For several observations
    sum DataTerms with ``xhsi.solvers.Composite``.
    """

    def __init__(self, likelihood: Likelihood, operator, data, background=None, what: str = "counts"):
        if tuple(operator.shape_out) != tuple(data.shape):
            raise ShapeError(f"the operator {operator!r} gives arrays of shape {tuple(operator.shape_out)} "
                             f"but the {what} have shape {tuple(data.shape)}.")
        if background is not None and tuple(background.shape) != tuple(data.shape):
            raise ShapeError(f"the background has shape {tuple(background.shape)}, the {what} {tuple(data.shape)}.")
        likelihood.check_data(data, what=what)
        if background is not None:
            check_data(background, nonnegative=likelihood.nonnegative_data, what=f"background of the {what}")
        self.likelihood, self.operator, self.data, self.background = likelihood, operator, data, background

    def model(self, x):
        """Expected counts A x + B."""
        m = self.operator.apply(x)
        return m if self.background is None else m + self.background

    def value(self, x) -> float:
        return float(self.likelihood.value_device(self.model(x), self.data))

    def gradient(self, x):
        return self.operator.adjoint(self.likelihood.gradient(self.model(x), self.data))

    def value_and_gradient(self, x):
        v, g = self.likelihood.value_and_gradient(self.model(x), self.data)
        return float(v), self.operator.adjoint(g)

    def lipschitz(self) -> float | None:
        """‖A‖² · sup L'' when the likelihood has a curvature bound (Gaussian), else None."""
        c = self.likelihood.curvature_bound(self.data)
        return None if c is None else self.operator.norm() ** 2 * c

    def deviance(self, x) -> float:
        return self.likelihood.deviance(self.model(x), self.data)


# -- W-stat: Poisson source and background spectra, background profiled out ------------------
def wstat_background(source, counts, background_counts, alpha):
    """The background β̂ ≥ 0 (expected counts of the background spectrum) that maximises
    Poisson(n | μ + α β) · Poisson(b | β) for source model counts μ = ``source``, source
    counts n, background counts b and α = (BACKSCAL · AREASCAL · EXPOSURE)_src /
    (…)_bkg: the positive root of α(α+1) β² − (α(n + b) − (α+1) μ) β − b μ = 0 (Cash 1979;
    Wachter, Leach & Kellogg 1979; the W-stat of XSPEC, Arnaud 1996). Written without
    cancellation on both signs of the linear coefficient."""
    xp = array_namespace(source)
    a = alpha * (alpha + 1.0)
    lin = alpha * (counts + background_counts) - (alpha + 1.0) * source
    root = xp.sqrt(lin * lin + 4.0 * a * background_counts * source)
    small = 2.0 * background_counts * source / xp.clip(root - lin, min=1e-300)
    return xp.where(lin > 0, (lin + root) / (2.0 * a), xp.where(root - lin > 0, small, xp.zeros_like(source)))


def wstat_value(source, counts, background_counts, alpha):
    """½ W-stat per channel: the Poisson deviance halves of the source spectrum (model
    μ + α β̂) and the background spectrum (model β̂) at the profiled β̂, each ≥ 0 and 0 at a
    saturated fit. Its derivative with respect to μ is 1 − n / (μ + α β̂) (β̂ is a maximum:
    the envelope theorem), and the information about μ with β profiled out is
    1 / (μ + α β̂ + α² β̂)."""
    xp = array_namespace(source)
    beta = wstat_background(source, counts, background_counts, alpha)
    m = xp.clip(source + alpha * beta, min=1e-10)

    def half_deviance(model, data):
        log_ratio = xp.where(data > 0, xp.log(xp.clip(data, min=1e-30) / xp.clip(model, min=1e-300)),
                             xp.zeros_like(data))
        return model - data + data * log_ratio

    return half_deviance(m, counts) + half_deviance(beta, background_counts), beta
