"""Proximal gradient descent (ISTA) and its accelerated form (FISTA) for min_x f(x) + g(x),
f smooth (``SmoothTerm``), g proximable (``ProxTerm``).

ISTA:   x_{k+1} = prox_{τ g}(x_k − τ ∇f(x_k))
FISTA:  x_{k+1} = prox_{τ g}(y_k − τ ∇f(y_k)),
        t_{k+1} = (1 + √(1 + 4 t_k²)) / 2,
        y_{k+1} = x_{k+1} + (t_k − 1)/t_{k+1} · (x_{k+1} − x_k)
(Beck & Teboulle 2009, SIAM J. Imaging Sci. 2(1) 183, "A fast iterative
shrinkage-thresholding algorithm for linear inverse problems").

* Step τ: 1/L when the smooth term knows its Lipschitz constant L, else 1.0, unless
  ``step`` is given. With ``backtracking`` (Beck & Teboulle 2009, Sec. 4) each iteration
  first multiplies the step by ``grow`` (so it can grow back after a shrink: the local
  curvature of a Poisson term changes a lot), then shrinks it by ``eta`` until
  f(z) ≤ f(y) + ⟨∇f(y), z − y⟩ + ‖z − y‖²/(2τ) + s, with z the prox step and s a slack of
  10·eps·(|f(y)| + |f(z)|) that absorbs float rounding in the two costs (without it the
  test fails at random near the optimum in float32 and the step collapses). The Poisson
  NLL has no Lipschitz constant, so backtracking is required with it. Growing at every
  iteration costs a prox per failed growth (a step held near its limit fails about every
  other time: 1.5–3.3 proxes per iteration measured with the 2D-1D starlet,
  bench/published_speed.py); with ``grow_every = n`` the step grows at every iteration until
  a trial first fails, and after a failed trial only once n iterations have passed without
  one (the state's ``since_shrink``), so that a step at its limit costs about 1 + 1/n proxes
  per iteration, where the prox is the costly part (an exact starlet prox). With ``shrink =
  "accelerating"`` the n-th failed trial of an iteration multiplies the step by eta^n instead
  of eta (the exponents add up as 1 + 2 + … + n), so that a step that must collapse — a
  Poisson term whose curvature y/μ² explodes where a trial drives μ near 0, by 2^-10 to
  2^-35 on the 2D-1D set-ups of bench/published_speed.py — costs ~√(2·35) trials instead of
  35; the accepted step is then within eta^n of the largest that passes, and ``grow`` brings
  it back.
* ``restart = "adaptive"``: the gradient scheme of O'Donoghue & Candès 2015 (Found. Comput.
  Math. 15, 715, "Adaptive restart for accelerated gradient schemes"): when
  ⟨y_k − x_{k+1}, x_{k+1} − x_k⟩ > 0 the momentum is reset (t_k = 1). It is evaluated
  on the device (``where`` on a 0-d array), so it costs no host sync.
* Momentum safeguard: when the extrapolated point y_k is much worse than x_k (backtracking
  from y_k fails ``restart_after`` trials, as happens when y_k
  leaves the domain where a Poisson model is positive and its curvature explodes), the
  momentum is reset (y_k = x_k, t_k = 1) and the iteration backtracks from x_k with the
  previous step. Without it one bad extrapolation collapses the step by ~1e10, and the
  ``grow`` factor needs hundreds of iterations to recover.
* ``monotone``: MFISTA (Beck & Teboulle 2009, IEEE Trans. Image Process. 18(11) 2419,
  "Fast gradient-based algorithms for constrained total variation image denoising and
  deblurring problems"): x_{k+1} is the better of z_{k+1} and x_k, and
  y_{k+1} = x_{k+1} + t_k/t_{k+1}·(z_{k+1} − x_{k+1}) + (t_k − 1)/t_{k+1}·(x_{k+1} − x_k).

Host syncs per iteration: none without backtracking and monotone (the cost is computed
only every ``report_every`` iterations by the run loop); backtracking needs f(y) once and
two scalars (f(z) and one fused reduction) per trial; monotone needs F(z) (f(z) and g(z)).

Memory (in iterate-sized arrays, "cubes"): between iterations the state holds x_k and y_k
(2; MFISTA also z_k). During an iteration the floor of backtracking FISTA is 4: x_k (the
momentum needs it after the step is accepted), y_k, ∇f(y_k) (reused by every trial) and
the trial point z; the step y − τ∇f, the model gap and the momentum need up to 2 more
short-lived scratch arrays, released before f(z) is evaluated, so that the peak is 4 cubes
plus what the smooth term's evaluation itself needs. On numpy those scratch arrays are
updated in place (``out=``) with the same operations in the same order as the generic
array-API expressions, so both paths give the same bits. Arrays of the state, the
caller's x0 and whatever the smooth and prox terms return are never modified: only arrays
this module allocated are written to (the run loop keeps earlier states for its rollback
and stopping rule, and checkpoints resume bit for bit).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..backend import array_namespace, native_numpy
from ..errors import ConfigError, RunStopped
from ..schema import option
from .base import Solver, lipschitz_of, tree_norm, value_and_gradient
from .prox import Zero

__all__ = ["ISTA", "FISTA", "FistaState"]

#: relative slack of the backtracking test, in units of the dtype's machine epsilon.
_SLACK_EPS = 10.0


@dataclass
class FistaState:
    """Everything an iteration needs; arrays on the run's device, scalars as Python values.
    (x_{k−1} is not kept: the momentum is folded into y_k when x_k is formed.)"""

    iteration: int
    x: Any            # x_k
    y: Any            # point of the next gradient step (= x for ISTA)
    t: Any            # momentum t_k, a 0-d array of the iterate's dtype (1 for ISTA)
    step: float       # last accepted step size τ
    cost_x: float | None = None   # F(x_k) when known (monotone variant), else None
    z: Any = None     # monotone variant: the prox-gradient point z_k (x_k may equal x_{k−1})
    since_shrink: int | None = None   # iterations since a trial last failed (None: none has yet; ``grow_every``)


def _common_options():
    return dict(
        step=option(None, min=0.0, exclusive_min=True, unit=None,
                    doc="initial step size (x²/cost); default 1/L when the smooth part knows its Lipschitz constant L, else 1.0"),
        backtracking=option(True, doc="adapt the step by backtracking (needed for Poisson likelihoods)"),
        eta=option(0.5, min=0.01, max=0.99, doc="step shrink factor of a failed backtracking trial"),
        grow=option(1.1, min=1.0, max=10.0, doc="step growth factor at the start of each iteration (1 = never grow)"),
        grow_every=option(1, min=1, unit="iterations",
                          doc="after a failed trial, grow the step again only once that many iterations have passed "
                              "without one (1: at every iteration); each growth that fails costs one more prox"),
        max_backtracks=option(60, min=1, doc="trials per iteration before the run stops"),
        shrink=option("constant", choices=("constant", "accelerating"),
                      doc="constant: every failed trial multiplies the step by eta; accelerating: the n-th failed "
                          "trial of an iteration by eta^n, so that a step that must fall by 2^-35 takes 8 trials, "
                          "not 35 (the accepted step is then within eta^n of the largest that passes)"),
    )


class _ProximalGradient(Solver):
    """ISTA and FISTA share everything but the momentum."""

    accelerated: bool = False
    State = FistaState

    def setup(self, x0, smooth, prox=None) -> None:
        """``x0``: initial iterate (its namespace and dtype are the run's); ``smooth``: a
        SmoothTerm; ``prox``: a ProxTerm (None: g = 0)."""
        self.xp = array_namespace(x0)
        self._np = native_numpy(self.xp)
        self.smooth, self.prox = smooth, (prox if prox is not None else Zero())
        self.eps = _machine_eps(x0.dtype)
        lipschitz = lipschitz_of(smooth)
        step = self.options.step
        if step is None:
            if lipschitz is None and not self.options.backtracking:
                raise ConfigError(
                    f"{self.name}: the smooth part has no known Lipschitz constant (e.g. a Poisson likelihood), "
                    "so the step cannot be chosen: set [solver.options] backtracking = true, or give step."
                )
            step = 1.0 / lipschitz if lipschitz else 1.0
        t = self.xp.asarray(1.0, dtype=x0.dtype)
        self.state = FistaState(iteration=0, x=x0, y=x0, t=t, step=float(step))
        self.history, self._time_offset = [], 0.0

    # -- one iteration ------------------------------------------------------------------
    def step(self) -> None:
        s, xp, opts = self.state, self.xp, self.options
        k = s.iteration + 1
        monotone = self.accelerated and getattr(opts, "monotone", False)
        if opts.backtracking:
            z, f_z, step = self._backtrack(s, k, s.y, self.accelerated)
            if z is None:  # the extrapolated point is bad: reset the momentum (see the module)
                s = FistaState(s.iteration, s.x, s.x, self.xp.ones_like(s.t), s.step, s.cost_x, s.z, 0)
                z, f_z, step = self._backtrack(s, k, s.x, False)
            since = 0 if step < self._first_trial(s) else (None if s.since_shrink is None else s.since_shrink + 1)
        else:
            step, since = s.step, None
            g = self.smooth.gradient(s.y)
            z = self.prox.prox(self._gradient_step(s.y, g, step), step)
            del g  # not needed by the momentum: one cube less at its peak
            f_z = None
        cost_x = None
        if monotone:
            f_z = float(self.smooth.value(z)) if f_z is None else f_z
            cost_z = f_z + float(self.prox.value(z))
            cost_old = s.cost_x if s.cost_x is not None else self._cost(s.x)
            if cost_z <= cost_old or not math.isfinite(cost_old):
                x_new, cost_x = z, cost_z
            else:
                x_new, cost_x = s.x, cost_old
        else:
            x_new = z
        if not self.accelerated:
            self.state = FistaState(k, x_new, x_new, s.t, step, None, since_shrink=since)
            return
        t = s.t
        if getattr(opts, "restart", "none") == "adaptive":
            # O'Donoghue & Candès 2015, gradient scheme, with the prox-gradient mapping y − z.
            restart = xp.sum(self._product_of_differences(s.y, z, z, s.x)) > 0
            t = xp.where(restart, xp.ones_like(t), t)
        t_next = (1.0 + xp.sqrt(1.0 + 4.0 * t * t)) / 2.0
        y = self._extrapolate(x_new, (t - 1.0) / t_next, x_new, s.x)
        if monotone:
            y = self._extrapolate(y, t / t_next, z, x_new, owned=True)
        self.state = FistaState(k, x_new, y, t_next, step, cost_x, z if monotone else None, since)

    def _first_trial(self, s: FistaState) -> float:
        """The step an iteration tries first: the last one × ``grow``, unless a trial failed
        fewer than ``grow_every`` iterations ago."""
        grow = s.since_shrink is None or s.since_shrink + 1 >= self.options.grow_every
        return s.step * self.options.grow if grow else s.step

    def _backtrack(self, s: FistaState, k: int, y, limited: bool):
        """(z, f(z), step) of an accepted step from ``y`` within ``max_backtracks`` trials.
        ``limited`` (from an extrapolated point): (None, None, None) after ``restart_after``
        failed trials (the caller then restarts from x); RunStopped when the trials run out."""
        opts = self.options
        f_y, g = value_and_gradient(self.smooth, y)
        if not math.isfinite(f_y):
            if limited:
                return None, None, None
            raise RunStopped(f"{self.name}: the smooth cost is {f_y} at the point of iteration {k}.")
        step = self._first_trial(s)
        for failed in range(opts.max_backtracks):
            z = self.prox.prox(self._gradient_step(y, g, step), step)
            # The model gap first, so that its scratch arrays are gone while f(z) runs.
            model_gap = self._model_gap(z, y, g, step)
            f_z = float(self.smooth.value(z))
            slack = _SLACK_EPS * self.eps * (abs(f_y) + abs(f_z)) if math.isfinite(f_z) else 0.0
            if math.isfinite(f_z) and f_z <= f_y + model_gap + slack:
                return z, f_z, step
            step *= opts.eta ** (failed + 1) if opts.shrink == "accelerating" else opts.eta
            if limited and failed + 1 >= opts.restart_after:
                return None, None, None
            if not step > 0.0:  # underflow (accelerating: eta^(n(n+1)/2) after n trials)
                break
        raise RunStopped(
            f"{self.name}: backtracking found no step at iteration {k} after {failed + 1} trials "
            f"(last step {step:.3g}); the smooth term may be non-finite or its gradient wrong."
        )

    # -- element-wise work: in place on numpy, generic expressions elsewhere -------------
    # Each helper writes only to arrays it allocates itself, and performs the same
    # operations in the same order as the generic expression (float addition and
    # multiplication commute exactly), so both paths give the same bits.
    def _gradient_step(self, y, g, step: float):
        """y − τ·g, a new array."""
        np_ = self._np
        if np_ is None:
            return y - step * g
        w = np_.multiply(g, step)
        return np_.subtract(y, w, out=w)

    def _model_gap(self, z, y, g, step: float) -> float:
        """⟨g, d⟩ + ‖d‖²/(2τ) with d = z − y, summed in float64 in one reduction (one host
        sync): Σ d·(g + d/(2τ))."""
        xp, np_ = self.xp, self._np
        if np_ is None:
            d = z - y
            return float(xp.sum(d * (g + d / (2.0 * step)), dtype=xp.float64))
        d = np_.subtract(z, y)
        v = np_.divide(d, 2.0 * step)
        np_.add(g, v, out=v)
        np_.multiply(d, v, out=v)
        del d
        return float(np_.sum(v, dtype=np_.float64))

    def _product_of_differences(self, a, b, c, d):
        """(a − b)·(c − d), a new array."""
        np_ = self._np
        if np_ is None:
            return (a - b) * (c - d)
        u = np_.subtract(a, b)
        v = np_.subtract(c, d)
        np_.multiply(u, v, out=u)
        return u

    def _extrapolate(self, base, beta, a, b, owned: bool = False):
        """base + β·(a − b); ``owned``: ``base`` was allocated here and may be overwritten."""
        np_ = self._np
        if np_ is None:
            return base + beta * (a - b)
        u = np_.subtract(a, b)
        np_.multiply(u, beta, out=u)
        if owned:
            return np_.add(base, u, out=base)
        return np_.add(base, u, out=u)

    # -- reporting ----------------------------------------------------------------------
    def _stop_rule(self, cost: float, previous_cost: float | None, x_report) -> str | None:
        """The base rule, except after a step the monotone variant rejected (it kept x_{k−1}):
        a run of rejections leaves cost and iterate unchanged while the extrapolated point
        still moves, which is not convergence (without restarts, MFISTA stopped after 41
        iterations 0.17 from the minimiser of an ill-conditioned quadratic it reaches to 6e-11
        in ~2900; tests/test_solvers.py). Then the move the step proposed, ‖z_k − x_k‖ / ‖x_k‖,
        must itself be below ``tol``."""
        s = self.state
        if s.z is None or s.z is s.x:
            return super()._stop_rule(cost, previous_cost, x_report)
        if self.tol <= 0:
            return None
        norm = tree_norm(s.x)
        change = tree_norm(s.z - s.x) / (norm if norm > 0 else 1.0)
        if change <= self.tol:
            return f"relative move of the rejected step {change:.3g} <= tol {self.tol:g}"
        return None

    def _cost(self, x) -> float:
        return float(self.smooth.value(x)) + float(self.prox.value(x))

    def objective(self) -> float:
        s = self.state
        return s.cost_x if s.cost_x is not None else self._cost(s.x)

    def current_step(self) -> float:
        return float(self.state.step)

    @property
    def x(self):
        return self.state.x


def _machine_eps(dtype) -> float:
    return 1.1920929e-07 if "float32" in str(dtype) else 2.220446049250313e-16


class ISTA(_ProximalGradient):
    """Proximal gradient descent (ISTA; Beck & Teboulle 2009), O(1/k) in cost. Options:
    ``step``, ``backtracking``, ``eta``, ``grow``, ``grow_every``, ``max_backtracks``, ``shrink`` (see the
    module)."""

    name = "ista"
    accelerated = False

    @dataclass
    class Options:
        step: float | None = _common_options()["step"]
        backtracking: bool = _common_options()["backtracking"]
        eta: float = _common_options()["eta"]
        grow: float = _common_options()["grow"]
        grow_every: int = _common_options()["grow_every"]
        max_backtracks: int = _common_options()["max_backtracks"]
        shrink: str = _common_options()["shrink"]


class FISTA(_ProximalGradient):
    """Accelerated proximal gradient (FISTA; Beck & Teboulle 2009), O(1/k²) in cost, with
    backtracking, adaptive restart (O'Donoghue & Candès 2015) and the monotone variant
    MFISTA (Beck & Teboulle 2009b). See the module docstring for the formulas.

    With ``grow`` > 1 the step may increase between iterations; the O(1/k²) proof assumes
    non-increasing steps, but with adaptive restart the method stays robust in practice
    (set ``grow = 1`` for the textbook algorithm)."""

    name = "fista"
    accelerated = True

    @dataclass
    class Options(ISTA.Options):
        restart_after: int = option(10, min=1, doc="failed trials from the extrapolated point after which the "
                                    "momentum is reset and the iteration starts again from x_k")
        restart: str = option("adaptive", choices=("adaptive", "none"),
                              doc="adaptive: gradient restart of O'Donoghue & Candès 2015; none: plain FISTA")
        monotone: bool = option(False, doc="MFISTA: keep the better of the new and the old iterate")
