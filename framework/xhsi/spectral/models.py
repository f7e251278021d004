"""Spectral models (plugins of kind ``spectral_model``): the spectrum S(E; θ) of one
component of semi-blind unmixing, Z = Σ_c a_c(y, x) · S_c(E; θ_c(y, x)) (Lascar et al. 2024,
A&A 686, A259), evaluated for whole parameter maps at once.

A model is built in two steps, like a regulariser: ``model = cls(options)`` (options
validated against the class's ``Options`` schema), then ``model.setup(energy_edges_kev, xp,
dtype)`` with the true-energy grid of the sky cube (bin edges in keV) and the run's array
namespace and float dtype. Then, for a parameter array ``theta`` of shape
``(n_params, *S)`` (``S`` = ``(ny, nx)`` for maps, ``(n,)`` for a batch):

- ``evaluate(theta)`` → ``(n_out, *S)``: the spectrum of every pixel (``n_out`` = ``n_e``,
  the true-energy bins, except for models folded through an instrument response, see
  ``response``); no Python loop over pixels or energies;
- ``vjp(theta, cotangent)`` → ``(n_params, *S)``: Σ_e cotangent[e] ∂S[e]/∂θ per pixel, what a
  gradient method needs (the chain rule of the data term through the model);
- ``jvp(theta, tangent)`` → ``(n_out, *S)``: Σ_k ∂S/∂θ_k tangent[k] (optional).

Additive (emission) models return **photons per bin normalised to unit photon flux over the
grid**, so the amplitude map a_c carries the photon flux (photons / s / cm² in the band).
Multiplicative models (``additive = False``, e.g. absorption) return a dimensionless
transmission per bin.

Combination: :class:`Product` multiplies one additive model by any number of
multiplicative ones (XSPEC's ``phabs*powerlaw``); :func:`build_spectral_model` builds one
from the expression ``"absorption * thermal"``. The amplitude of an absorbed model is then
the *unabsorbed* photon flux (the emission factor is normalised, the transmission is not).

Each parameter is declared by a :class:`Parameter` (name, unit, default, bounds, whether a
problem may link it across components or hold it fixed). Every registered model passes the
contract tests of ``tests/contracts/test_spectral_model_contract.py``: shapes, dtype and
namespace, defaults inside bounds, and ``vjp`` against central finite differences of
``evaluate`` (dot test ⟨J δθ, c⟩ = ⟨δθ, Jᵀ c⟩).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from pathlib import Path

import numpy as np

from ..backend import array_namespace, compat_namespace, dtype_name, float_dtype, to_numpy
from ..errors import ConfigError, DataError, PluginError, ShapeError
from ..schema import Context, NoOptions, from_dict

__all__ = ["Parameter", "SpectralModel", "Product", "build_spectral_model", "check_energy_edges",
           "edges_digest"]


@dataclass(frozen=True)
class Parameter:
    """One parameter of a spectral model.

    ``unit`` is a plain string ("keV", "1e22 cm^-2", "" for dimensionless); ``bounds``
    (lower, upper) is the range where the model is defined (and where a surrogate is
    trained); ``linkable``: a problem may tie it across components (e.g. one N_H for
    all); ``fixable``: a problem may hold it at a value instead of fitting a map."""

    name: str
    unit: str
    default: float
    bounds: tuple[float, float]
    linkable: bool = True
    fixable: bool = True
    doc: str = ""

    def __post_init__(self):
        lo, hi = (float(b) for b in self.bounds)
        object.__setattr__(self, "bounds", (lo, hi))
        object.__setattr__(self, "default", float(self.default))
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise DataError(f"parameter `{self.name}`: bounds must be two finite numbers, lower < upper; got {self.bounds}.")
        if not lo <= self.default <= hi:
            raise DataError(f"parameter `{self.name}`: default {self.default} is outside its bounds {self.bounds}.")

    def to_dict(self) -> dict:
        return {"name": self.name, "unit": self.unit, "default": self.default, "bounds": list(self.bounds),
                "linkable": self.linkable, "fixable": self.fixable, "doc": self.doc}

    @classmethod
    def from_dict(cls, data: dict) -> "Parameter":
        return cls(str(data["name"]), str(data.get("unit", "")), float(data["default"]),
                   (float(data["bounds"][0]), float(data["bounds"][1])), bool(data.get("linkable", True)),
                   bool(data.get("fixable", True)), str(data.get("doc", "")))


def check_energy_edges(energy_edges_kev) -> np.ndarray:
    """The grid as numpy float64 bin edges (keV), or a DataError saying what is wrong."""
    edges = np.asarray(to_numpy(energy_edges_kev) if hasattr(energy_edges_kev, "shape") else energy_edges_kev,
                       dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2:
        raise DataError(f"energy edges must be a 1-D array of at least 2 values in keV, got shape {edges.shape}.")
    if not (np.all(np.isfinite(edges)) and edges[0] > 0 and np.all(np.diff(edges) > 0)):
        raise DataError("energy edges must be positive, finite and strictly increasing (keV).")
    return edges


def edges_digest(energy_edges_kev) -> str:
    """A short hash of an energy grid (float64 bytes of the edges), stored with surrogates."""
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(check_energy_edges(energy_edges_kev)).tobytes()).hexdigest()[:16]


class SpectralModel:
    """Base class of spectral models. Subclasses set ``name``, ``Options``, ``parameters``
    (a tuple of :class:`Parameter`, a class attribute or set in ``__init__`` when it depends
    on a file), ``additive``, and implement either ``_derivatives(theta)`` (spectrum and
    the list of ∂S/∂θ_k, from which ``evaluate``/``vjp``/``jvp`` follow) or ``_evaluate``
    and ``_vjp`` (and optionally ``_jvp``) directly. ``_setup()`` is called at the end of
    ``setup`` to move what the model needs to the namespace."""

    name: str = ""
    Options: type = NoOptions
    parameters: tuple[Parameter, ...] = ()
    #: True for emission (photons per bin, unit flux); False for multiplicative factors.
    additive: bool = True
    #: Identity of the instrument response the output is folded through (surrogates
    #: trained after a response), or None when the output is on the true-energy grid.
    response: dict | None = None

    def __init__(self, options: Any = None):
        self.options = options if options is not None else self.Options()
        self.xp = None
        self.dtype = None
        self.energy_edges_kev: np.ndarray | None = None

    # -- set-up ----------------------------------------------------------------------------
    def setup(self, energy_edges_kev, xp=None, dtype=None) -> "SpectralModel":
        """Fix the true-energy grid (``(n_e + 1,)`` edges, keV) and the array namespace and
        float dtype of every later call (numpy float64 by default). ``xp`` may be plain
        ``numpy``/``cupy``, an array-API namespace or a backend name; ``dtype`` a dtype or
        "float32"/"float64" (``xhsi.backend.compat_namespace``, ``float_dtype``). Returns
        ``self``."""
        xp = compat_namespace("numpy" if xp is None else xp)
        self.xp = xp
        self.dtype = float_dtype(xp, dtype)
        self.energy_edges_kev = check_energy_edges(energy_edges_kev)
        self.edges = self._to_xp(self.energy_edges_kev)
        self._setup()
        return self

    def _setup(self) -> None:
        """Hook: precompute constants on ``self.xp`` (e.g. a table on the model grid)."""

    def _to_xp(self, array: np.ndarray):
        """A host (numpy) array on the model's namespace and dtype."""
        return self.xp.asarray(np.asarray(array, dtype=np.float64), dtype=self.dtype)

    # -- description ---------------------------------------------------------------------
    @property
    def n_params(self) -> int:
        return len(self.parameters)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    @property
    def n_e(self) -> int:
        self._require_setup()
        return int(self.energy_edges_kev.size - 1)

    @property
    def n_out(self) -> int:
        """Length of the spectral axis of ``evaluate``: ``n_e`` unless folded."""
        return self.n_e

    def parameter(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        from ..errors import did_you_mean

        raise ConfigError(f"spectral model `{self.name}` has no parameter `{name}`"
                          f"{did_you_mean(name, self.parameter_names)}; its parameters are: "
                          f"{', '.join(self.parameter_names)}.")

    def default_theta(self, shape: Sequence[int] = ()):
        """Parameters at their defaults, ``(n_params, *shape)``."""
        self._require_setup()
        xp = self.xp
        values = xp.asarray([p.default for p in self.parameters], dtype=self.dtype)
        values = xp.reshape(values, (self.n_params,) + (1,) * len(shape))
        return values * xp.ones((self.n_params, *shape), dtype=self.dtype)

    def _bound_arrays(self, ndim: int):
        xp = self.xp
        shape = (self.n_params,) + (1,) * ndim
        lo = xp.reshape(xp.asarray([p.bounds[0] for p in self.parameters], dtype=self.dtype), shape)
        hi = xp.reshape(xp.asarray([p.bounds[1] for p in self.parameters], dtype=self.dtype), shape)
        return lo, hi

    def clip(self, theta):
        """Project ``theta`` onto the bounds (what a projected-gradient step needs)."""
        self._check_theta(theta)
        lo, hi = self._bound_arrays(theta.ndim - 1)
        return self.xp.minimum(self.xp.maximum(theta, lo), hi)

    def __repr__(self) -> str:
        grid = "" if self.energy_edges_kev is None else f", {self.n_e} bins"
        return f"{type(self).__name__}({self.name!r}, parameters={list(self.parameter_names)}{grid})"

    # -- evaluation ----------------------------------------------------------------------
    def evaluate(self, theta):
        """The spectrum of each pixel, ``(n_out, *S)``, from ``theta`` ``(n_params, *S)``."""
        self._check_theta(theta)
        return self._evaluate(theta)

    def vjp(self, theta, cotangent):
        """Σ_e cotangent[e] ∂S[e]/∂θ, ``(n_params, *S)``: the gradient of ⟨cotangent, S(θ)⟩."""
        self._check_theta(theta)
        self._check_spectral(cotangent, theta, "cotangent")
        return self._vjp(theta, cotangent)

    def jvp(self, theta, tangent):
        """Σ_k ∂S/∂θ_k tangent[k], ``(n_out, *S)``: the change of S along ``tangent``."""
        self._check_theta(theta)
        if tuple(tangent.shape) != tuple(theta.shape):
            raise ShapeError(f"{self.name}: tangent has shape {tuple(tangent.shape)}, expected the shape of theta "
                             f"{tuple(theta.shape)}.")
        return self._jvp(theta, tangent)

    def _evaluate(self, theta):
        return self._derivatives(theta)[0]

    def _vjp(self, theta, cotangent):
        xp = self.xp
        _, partials = self._derivatives(theta)
        return xp.stack([xp.sum(cotangent * d, axis=0) for d in partials], axis=0)

    def _jvp(self, theta, tangent):
        _, partials = self._derivatives(theta)
        out = partials[0] * tangent[0:1, ...]
        for k in range(1, len(partials)):
            out = out + partials[k] * tangent[k:k + 1, ...]
        return out

    def _derivatives(self, theta):
        """(spectrum, [∂S/∂θ_k for each parameter]) — implement this or _evaluate/_vjp."""
        raise NotImplementedError(f"{type(self).__name__} implements neither _derivatives nor _evaluate/_vjp")

    # -- checks ----------------------------------------------------------------------------
    def _require_setup(self) -> None:
        assert self.xp is not None, f"{type(self).__name__}.setup(energy_edges_kev, xp, dtype) was not called"

    def _check_theta(self, theta) -> None:
        self._require_setup()
        if not hasattr(theta, "shape") or theta.ndim < 1 or theta.shape[0] != self.n_params:
            shape = tuple(getattr(theta, "shape", ()))
            raise ShapeError(f"spectral model `{self.name}` takes theta of shape (n_params={self.n_params}, ...) with "
                             f"parameters {list(self.parameter_names)} along axis 0; got shape {shape}.")
        if array_namespace(theta) != self.xp or theta.dtype != self.dtype:
            raise ShapeError(f"spectral model `{self.name}` was set up for {self.xp.__name__} {dtype_name(self.dtype)}; "
                             f"theta is {array_namespace(theta).__name__} {dtype_name(theta.dtype)}. Build theta in the "
                             "namespace and dtype given to setup (the run's backend).")

    def _check_spectral(self, array, theta, what: str) -> None:
        expected = (self.n_out,) + tuple(theta.shape[1:])
        if tuple(array.shape) != expected:
            raise ShapeError(f"spectral model `{self.name}`: {what} has shape {tuple(array.shape)}, expected {expected} "
                             "(spectral axis first, then the shape of the parameter maps).")

    # -- response ----------------------------------------------------------------------------
    def check_response(self, identity: dict | None) -> None:
        """Refuse to be used with an instrument response other than the one the model's
        output is folded through (a no-op for models on the true-energy grid)."""
        if self.response is None:
            return
        if identity is None or any(identity.get(k) != v for k, v in self.response.items()):
            raise DataError(f"spectral model `{self.name}` is folded through the instrument response {self.response}, "
                            f"but the problem uses {identity}. Retrain it (xhsi train-model) for this response.")

    # -- contract tests --------------------------------------------------------------------
    @classmethod
    def example(cls, xp, dtype) -> "SpectralModel":
        """A small instance, set up on a short grid, for the contract tests."""
        return cls().setup(np.linspace(0.5, 8.0, 31), xp, dtype)


class Product(SpectralModel):
    """The product of one additive model and any number of multiplicative ones (or of
    multiplicative ones only): S(E; θ) = Π_f S_f(E; θ_f), θ the concatenation of the
    factors' parameters in order (names must not repeat). vjp by the product rule:
    Jᵀc = [J_fᵀ (c · Π_{g≠f} S_g)]_f."""

    def __init__(self, factors: Sequence[SpectralModel]):
        super().__init__(NoOptions())
        factors = list(factors)
        if not factors:
            raise ConfigError("a product of spectral models needs at least one model.")
        additive = [f.name for f in factors if f.additive]
        if len(additive) > 1:
            raise ConfigError(f"a product may hold at most one additive (emission) model; got {', '.join(additive)}. "
                              "Use one component per emission model instead.")
        if len(factors) > 1 and any(f.response is not None for f in factors):
            raise ConfigError("a model folded through an instrument response (a surrogate trained after the response) "
                              "cannot be multiplied by another model: fold the product instead (train the surrogate "
                              "of the product).")
        names = [p.name for f in factors for p in f.parameters]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"the models {' * '.join(f.name for f in factors)} share the parameter name(s) "
                              f"{', '.join(dup)}; a product needs distinct names.")
        self.factors = factors
        self.name = " * ".join(f.name for f in factors)
        self.parameters = tuple(p for f in factors for p in f.parameters)
        self.additive = bool(additive)
        self.response = factors[0].response if len(factors) == 1 else None
        starts = np.cumsum([0] + [f.n_params for f in factors])
        self._slices = [(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])]

    def _setup(self) -> None:
        for f in self.factors:
            f.setup(self.energy_edges_kev, self.xp, self.dtype)

    @property
    def n_out(self) -> int:
        return self.factors[0].n_out if len(self.factors) == 1 else self.n_e

    def _split(self, theta):
        return [theta[a:b, ...] for a, b in self._slices]

    def _values(self, theta):
        return [f.evaluate(t) for f, t in zip(self.factors, self._split(theta))]

    def _others(self, values, k):
        out = None
        for j, v in enumerate(values):
            if j != k:
                out = v if out is None else out * v
        return out

    def _evaluate(self, theta):
        values = self._values(theta)
        out = values[0]
        for v in values[1:]:
            out = out * v
        return out

    def _vjp(self, theta, cotangent):
        values = self._values(theta)
        parts = []
        for k, (f, t) in enumerate(zip(self.factors, self._split(theta))):
            if f.n_params == 0:
                continue
            others = self._others(values, k)
            parts.append(f.vjp(t, cotangent if others is None else cotangent * others))
        return self.xp.concat(parts, axis=0)

    def _jvp(self, theta, tangent):
        values = self._values(theta)
        out = None
        for k, (f, t, dt) in enumerate(zip(self.factors, self._split(theta), self._split(tangent))):
            if f.n_params == 0:
                continue
            others = self._others(values, k)
            term = f.jvp(t, dt)
            term = term if others is None else term * others
            out = term if out is None else out + term
        return out if out is not None else self.xp.zeros_like(values[0])

    @classmethod
    def example(cls, xp, dtype) -> "Product":
        return build_spectral_model("absorption * powerlaw").setup(np.linspace(0.5, 8.0, 31), xp, dtype)


def latent_factors(model: SpectralModel) -> list[SpectralModel]:
    """The factors of ``model`` (``model`` itself when it is not a :class:`Product`) whose
    parameters are latent variables read out as physical ones (``physical_parameters``: an
    IAE), in order."""
    return [f for f in getattr(model, "factors", [model]) if hasattr(f, "physical_parameters")]


def _options_for(cls: type, table: Any, where: str, base_dir: Path):
    schema = getattr(cls, "Options", NoOptions)
    if table is None:
        return schema()
    if isinstance(table, dict):
        return from_dict(schema, table, Context(file=where, base_dir=base_dir), "options")
    return table


def build_spectral_model(expression: str, options: dict | None = None, *, where: str = "<spectral model>",
                         base_dir: str | Path = ".") -> SpectralModel:
    """A model from a registered name (``"thermal"``) or a product of names
    (``"absorption * thermal"``, factors separated by ``*``).

    ``options``: for one name, that model's options table (a dict validated against its
    ``Options`` schema, or an ``Options`` instance); for a product, a dict keyed by model
    name, e.g. ``{"thermal": {"fit_abundance": false}}``. ``where`` names the config key
    in error messages; relative file options resolve against ``base_dir`` (the config's
    folder). The model still needs ``setup(energy_edges_kev, xp, dtype)``."""
    base_dir = Path(base_dir)
    from .. import plugins

    names = [part.strip() for part in str(expression).split("*")]
    if not names or any(not n for n in names):
        raise ConfigError(f"{where}: `{expression}` is not a spectral model expression; write one registered name or "
                          "names joined by `*`, e.g. \"absorption * thermal\".")
    try:
        classes = [plugins.get("spectral_model", n) for n in names]
    except PluginError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if len(names) == 1:
        return classes[0](_options_for(classes[0], options, where, base_dir))
    options = dict(options or {})
    unknown = [k for k in options if k not in names]
    if unknown:
        from ..errors import did_you_mean

        raise ConfigError(f"{where}: options for `{unknown[0]}`, which is not a factor of `{expression}`"
                          f"{did_you_mean(unknown[0], names)}; key the options of a product by model name.")
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: `{expression}` repeats a model; each factor may appear once.")
    return Product([cls(_options_for(cls, options.get(n), where, base_dir)) for n, cls in zip(names, classes)])
