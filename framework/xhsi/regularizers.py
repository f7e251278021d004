"""Base classes of regularisers. The regularisers themselves are built-in plugins
(``plugins/xhsi_builtin/regularizers/``) registered like third-party ones.

A regulariser φ enters the objective as ``weight · φ(x)``. It is either

* *proximable*: ``prox(x, step)`` returns argmin_u ½‖u − x‖² + step·weight·φ(u)
  (exactly, or the documented usual approximation; see each class's ``exact_prox``), or
* *smooth*: ``gradient(x)`` returns ∇(weight·φ)(x) and ``lipschitz()`` its Lipschitz
  constant, so solvers add it to the data term's gradient.

A *parametrisation* (low rank) also changes the unknown: the solver works on a variable
``h`` and the cube is ``to_cube(h)``.
"""
from __future__ import annotations

from typing import Any

from .backend import compat_namespace
from .schema import NoOptions


class Regularizer:
    """Base class. Subclasses set ``name``, an ``Options`` schema (dataclass built with
    ``xhsi.schema.option``), ``smooth`` and ``exact_prox``."""

    name: str = ""
    Options: type = NoOptions
    #: True when the term is differentiable and used through ``gradient``.
    smooth: bool = False
    #: True when ``prox`` is the exact proximal operator; False for the documented
    #: approximation (e.g. thresholding in a redundant frame).
    exact_prox: bool = True
    #: The diagonal metrics (changes of variable x = d·u, d > 0) in which the prox still
    #: solves the same problem, so that a problem may iterate in them ([problem]
    #: precondition): "voxels" (any d: a separable penalty or constraint), "slices" (d
    #: constant over each slice along the first axis: penalties set per slice in units of
    #: the calibrated noise, which scale with the slice), "weighted" (any d, handed to the
    #: regulariser by ``use_metric``: it solves its prox in the new variable itself), or
    #: None (the Euclidean metric only; the safe default for third-party plugins). Smooth
    #: terms need none: the problem composes them with the change of variable.
    diagonal_metric: str | None = None
    #: The candidates the data-driven selection (``xhsi.selection``, docs/selection.md) tries
    #: when a config names this regulariser without options: {key below its
    #: [[regularizers]] table ("weight", "options.NAME"): values}, their product. Prefer
    #: noise-relative parameters (thresholds in σ of the noise, a rank), which keep their
    #: meaning from thinned counts to the full ones; empty: nothing to choose.
    selection_grid: dict[str, tuple] = {}

    @classmethod
    def selection_grid_for(cls, shape: tuple[int, ...]) -> dict[str, tuple]:
        """``selection_grid`` for a run whose sky cube has ``shape`` (n_e, ny, nx), without the
        values that cannot run on it (a plugin overrides this to leave them out); by default
        the whole grid."""
        return dict(cls.selection_grid)

    def __init__(self, options: Any = None, weight: float = 1.0):
        self.options = options if options is not None else self.Options()
        self.weight = float(weight)

    def setup(self, shape: tuple[int, ...], xp, dtype) -> None:
        """Called once by the problem with the shape, namespace and dtype of the variable
        the regulariser acts on, before the first ``prox``/``gradient`` (``xp`` may be plain
        numpy or cupy: ``xhsi.backend.compat_namespace``)."""
        self.shape, self.xp, self.dtype = tuple(shape), compat_namespace(xp), dtype

    def calibrate_noise(self, noise) -> None:
        """Called once by problems, before solving, with one realisation of the counting
        noise of the data term's gradient (``xhsi.problems.imaging.gradient_noise``), in the
        units of the variable. A gradient step x − τ∇f adds τ times that noise, so a
        regulariser whose strength is set in noise units (starlet: λ_j = k·σ_j) takes σ_j
        from it; the prox threshold τ·weight·λ_j is then k noise σ of the gradient step,
        whatever the step size. Default: nothing to calibrate."""

    def use_metric(self, d) -> None:
        """Called by imaging problems on regularisers whose ``diagonal_metric`` is
        "weighted", after ``setup`` and before ``calibrate_noise``, when they iterate in a
        diagonal metric: from then on the variable handed to ``value`` and ``prox`` is u with
        x = d·u (d > 0, an array on the run's device that broadcasts against the variable),
        so that value(u) = weight·φ(d·u) and prox(u, step) = argmin_w ½‖w − u‖² +
        step·weight·φ(d·w); the noise given to ``calibrate_noise`` is then that of the
        gradient in u (d times the one in x). The penalty φ of x, and so the objective, stays
        what it is without the metric."""
        raise NotImplementedError(f"{self.name} does not solve its prox in a diagonal metric.")

    def calibrate_sky(self, image) -> None:
        """Called once by imaging problems, before solving, with the broad-band image of
        the start cube (summed over energy; host float64, (ny, nx), in the problem's units),
        whatever variable the regulariser acts on (the cube, the cube over the brightness b
        with ``regularize = "relative"``, rank maps). A regulariser whose strength follows the
        sky's brightness (starlet2d1d_l1 ``k_faint``) takes it from here. Default: nothing."""

    def value(self, x) -> float:
        """weight · φ(x), as a Python float."""
        raise NotImplementedError

    def prox(self, x, step: float):
        """argmin_u ½‖u − x‖² + step · weight · φ(u)."""
        raise NotImplementedError(f"{self.name} is smooth; use gradient()")

    def gradient(self, x):
        """∇(weight · φ)(x), for smooth regularisers."""
        raise NotImplementedError(f"{self.name} is not smooth; use prox()")

    def lipschitz(self) -> float:
        """Lipschitz constant of ``gradient`` (smooth regularisers)."""
        raise NotImplementedError

    def spatial_reach(self) -> int | None:
        """Model pixels over which the penalty couples a pixel to its neighbours (its spatial
        filters' half-support), from the options; ``xhsi tiles`` grows each tile by it.
        None: not declared (a third-party plugin), and tiles then need an explicit --overlap."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(weight={self.weight}, options={self.options})"


class Parametrisation(Regularizer):
    """A change of variable Z = to_cube(H) (e.g. low rank Z = W·H). ``fit`` learns it from
    an initial estimate of the cube; ``to_cube``/``to_cube_adjoint`` are linear maps
    between the variable and the cube; ``prox`` defaults to the identity (no penalty).
    ``nonnegative``: the variable is constrained to ≥ 0 (the problem adds the projection),
    e.g. when to_cube maps non-negative variables to non-negative cubes."""

    nonnegative: bool = False

    def fit(self, cube) -> None:
        raise NotImplementedError

    @property
    def variable_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def to_cube(self, h):
        raise NotImplementedError

    def to_cube_adjoint(self, z):
        raise NotImplementedError

    def from_cube(self, z):
        """A variable whose cube is closest to ``z`` (used for initialisation)."""
        return self.to_cube_adjoint(z)

    def value(self, x) -> float:
        return 0.0

    def prox(self, x, step: float):
        return x
