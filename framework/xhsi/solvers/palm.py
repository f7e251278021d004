"""PALM and iPALM: block-coordinate proximal gradient for
min_{x_1..x_N} f(x_1, …, x_N) + Σ_i g_i(x_i), f smooth (possibly non-convex, e.g. the
Poisson NLL of a mixture Σ_c a_c S_c(θ_c)), each g_i proximable.

PALM (Bolte, Sabach & Teboulle 2014, Math. Program. 146, 459, "Proximal alternating
linearized minimization for nonconvex and nonsmooth problems"): for i = 1..N in turn,

    x_i ← prox_{g_i / τ_i}( x_i − ∇_i f(x_1^{new}, …, x_{i−1}^{new}, x_i, …, x_N) / τ_i ),
    τ_i = γ · L_i,  γ > 1 (``gamma``),

where L_i is a Lipschitz constant of ∇_i f in block i with the other blocks fixed. H = f + Σ g_i
then decreases monotonically (by (γ−1)L_i/2 ‖Δx_i‖² per block update).

iPALM (Pock & Sabach 2016, SIAM J. Imaging Sci. 9(4), 1756, "Inertial proximal alternating
linearized minimization (iPALM) for nonconvex and nonsmooth problems"), ``inertial = true``:

    y_i = x_i + α (x_i − x_i^{prev}),   z_i = x_i + β (x_i − x_i^{prev}),
    x_i ← prox_{g_i / τ_i}( y_i − ∇_i f(…, z_i, …) / τ_i ).

Step rule (derived in docs/solvers.md in the way of Pock & Sabach 2016, Sec. 4, for a block
gradient L_i-Lipschitz): with 0 ≤ α < ½,

    τ_i = γ · L_i · max( (1 − 2β + 2β²)/(1 − 2α), (1 + 2β + 2β²)/(1 + 2α) ),

the Lyapunov function H(x) + Σ_i δ_i/2 ‖x_i − x_i^{prev}‖², δ_i = 2L_iβ² + |L_iβ − τ_iα|,
does not increase; H itself need not be monotone. α = β = 0 gives PALM. Defaults
α = β = 0.2 cost a factor 1.13 on the step for the inertia.

Block metric: a block may carry a fixed positive array ``metric`` D_i (same shape as x_i):
the step then is x_i ← prox(x_i − ∇_i f / (τ_i D_i)) and the descent inequality uses the
norm ‖·‖²_{D_i} (variable-metric PALM with a fixed diagonal metric, i.e. PALM on
u_i = D_i^{1/2} x_i). It lets pixels of very different curvature take steps of their own
size. The projection proxes (box, x ≥ 0) are exact in any diagonal metric; for a
thresholding prox the threshold is applied as for D = 1 (the usual approximation).

L_i comes from ``Block.lipschitz(xs)`` when given, else by backtracking on the descent
inequality f(x⁺) ≤ f(z) + ⟨∇_i f(z), x_i⁺ − z_i⟩ + L_i/2 ‖x_i⁺ − z_i‖² (+ float slack): L_i
starts at the previous iteration's value divided by ``grow`` and is multiplied by 1/eta until
the inequality holds. Backtracking costs two host syncs per trial; with known L_i and
``backtracking = false`` an iteration has none.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..backend import array_namespace
from ..errors import ConfigError, RunStopped
from ..schema import option
from .base import Solver, tree_norm
from .fista import _SLACK_EPS, _machine_eps
from .prox import Zero

__all__ = ["PALM", "Block", "PalmState"]


@dataclass
class Block:
    """One block of variables: ``gradient(xs)`` is ∂f/∂x_i at the list of all blocks ``xs``;
    ``prox`` its ProxTerm (None: g_i = 0); ``lipschitz(xs)`` a Lipschitz constant of that
    partial gradient with the other blocks fixed at ``xs`` (None: backtracking), in the
    metric ``metric`` (a fixed positive array like x_i, None: the identity)."""

    gradient: Callable[[list], Any]
    prox: Any = None
    lipschitz: Callable[[list], float] | None = None
    name: str = ""
    metric: Any = None


@dataclass
class PalmState:
    iteration: int
    x: list            # current blocks x_i^k
    x_prev: list       # x_i^{k−1}
    lipschitz: list    # current L_i estimate per block (Python floats)


class PALM(Solver):
    """PALM over N blocks, or iPALM with ``inertial = true`` (see the module docstring).

    ``setup(x0, value, blocks)``: ``x0`` the list of initial blocks, ``value(xs) -> float``
    the smooth part f (an object with ``value`` or a callable), ``blocks`` one
    :class:`Block` per array of ``x0``.
    """

    name = "palm"
    State = PalmState
    unknowns = "blocks"

    @dataclass
    class Options:
        inertial: bool = option(False, doc="iPALM (Pock & Sabach 2016) instead of PALM")
        alpha: float = option(0.2, min=0.0, max=0.49, doc="iPALM inertia of the prox point (< 1/2)")
        beta: float = option(0.2, min=0.0, max=1.0, doc="iPALM inertia of the gradient point")
        gamma: float = option(1.1, min=1.0, exclusive_min=True,
                              doc="step safety factor γ > 1 of Bolte et al. 2014: τ_i = γ·L_i (times the iPALM factor)")
        backtracking: bool = option(True, doc="estimate L_i by backtracking when a block does not give it")
        lipschitz_init: float = option(1.0, min=0.0, exclusive_min=True,
                                       doc="first L_i guess of a backtracked block (cost per unit² of x_i)")
        eta: float = option(0.5, min=0.01, max=0.99, doc="a failed trial divides the step by 1/eta (L_i /= eta)")
        grow: float = option(1.1, min=1.0, max=10.0, doc="L_i is divided by grow at each iteration, so steps can grow")
        max_backtracks: int = option(60, min=1, doc="trials per block update before the run stops")

    def setup(self, x0: Sequence, value, blocks: Sequence[Block]) -> None:
        x0 = list(x0)
        if len(x0) != len(blocks):
            raise ValueError(f"PALM: {len(x0)} initial blocks but {len(blocks)} Block descriptions")
        self.xp = array_namespace(*x0)
        self.value = value.value if hasattr(value, "value") else value
        self.blocks = list(blocks)
        self.proxes = [b.prox if b.prox is not None else Zero() for b in self.blocks]
        self.eps = _machine_eps(x0[0].dtype)
        for b in self.blocks:
            if b.lipschitz is None and not self.options.backtracking:
                raise ConfigError(f"PALM: block `{b.name or '?'}` gives no Lipschitz constant, so set "
                                  "[solver.options] backtracking = true.")
        o = self.options
        if o.inertial:
            a, b = o.alpha, o.beta
            self._tau_factor = o.gamma * max((1 - 2 * b + 2 * b * b) / (1 - 2 * a), (1 + 2 * b + 2 * b * b) / (1 + 2 * a))
        else:
            self._tau_factor = o.gamma
        self.state = PalmState(0, x0, list(x0), [float(o.lipschitz_init)] * len(x0))
        self.history, self._time_offset = [], 0.0

    def step(self) -> None:
        s, o = self.state, self.options
        k = s.iteration + 1
        xs = list(s.x)
        lipschitz = list(s.lipschitz)
        for i, block in enumerate(self.blocks):
            x_i, dx = s.x[i], s.x[i] - s.x_prev[i]
            y_i = x_i + o.alpha * dx if o.inertial else x_i
            z_i = x_i + o.beta * dx if o.inertial else x_i
            zs = xs[:i] + [z_i] + xs[i + 1:]
            g = block.gradient(zs)
            if block.lipschitz is not None and not o.backtracking:
                L = float(block.lipschitz(zs))
                tau = self._tau_factor * L
                x_new = self.proxes[i].prox(y_i - g / self._scaled(tau, block), 1.0 / tau)
            else:
                L_known = float(block.lipschitz(zs)) if block.lipschitz is not None else None
                x_new, L = self._backtrack(i, k, xs, zs, y_i, z_i, g, lipschitz[i] / o.grow, L_known)
            lipschitz[i] = L
            xs[i] = x_new
        self.state = PalmState(k, xs, list(s.x), lipschitz)

    @staticmethod
    def _scaled(tau: float, block: Block):
        return tau if block.metric is None else tau * block.metric

    def _backtrack(self, i, k, xs, zs, y_i, z_i, g, L, L_known):
        xp, o = self.xp, self.options
        f_z = float(self.value(zs))
        if not math.isfinite(f_z):
            raise RunStopped(f"PALM: the smooth cost is {f_z} at block {i} of iteration {k}.")
        if L_known is not None:
            L = min(L, L_known)  # a known constant caps the search from above
        metric = self.blocks[i].metric
        for _ in range(o.max_backtracks):
            tau = self._tau_factor * L
            x_new = self.proxes[i].prox(y_i - g / self._scaled(tau, self.blocks[i]), 1.0 / tau)
            d = x_new - z_i
            trial = xs[:i] + [x_new] + xs[i + 1:]
            f_new = float(self.value(trial))
            curvature = 0.5 * L if metric is None else (0.5 * L) * metric
            gap = float(xp.sum(d * (g + curvature * d), dtype=xp.float64))
            slack = _SLACK_EPS * self.eps * (abs(f_z) + abs(f_new)) if math.isfinite(f_new) else 0.0
            if math.isfinite(f_new) and f_new <= f_z + gap + slack:
                return x_new, L
            if L_known is not None and L >= L_known:
                return x_new, L  # the known constant guarantees the inequality up to rounding
            L /= o.eta
            if L_known is not None:
                L = min(L, L_known)
        raise RunStopped(f"PALM: backtracking found no step for block {i} at iteration {k} after "
                         f"{o.max_backtracks} trials (L = {L:.3g}).")

    def objective(self) -> float:
        xs = self.state.x
        return float(self.value(xs)) + sum(float(p.value(x)) for p, x in zip(self.proxes, xs))

    def lyapunov(self) -> float:
        """H(x) + Σ δ_i/2 ‖x_i − x_i^{prev}‖² with the current L_i (iPALM's decreasing
        quantity; equals H for PALM)."""
        o, s = self.options, self.state
        total = self.objective()
        if not o.inertial:
            return total
        for x, xp_, L in zip(s.x, s.x_prev, s.lipschitz):
            tau = self._tau_factor * L
            delta = 2 * L * o.beta ** 2 + abs(L * o.beta - tau * o.alpha)
            total += 0.5 * delta * tree_norm(x - xp_) ** 2
        return total

    def current_step(self) -> float:
        """The smallest block step 1/τ_i (history reports one number)."""
        return min(1.0 / (self._tau_factor * L) for L in self.state.lipschitz)

    @property
    def x(self) -> list:
        return self.state.x
