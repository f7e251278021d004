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
does not increase; H itself need not be monotone (the safeguard is not applied; with an
inexact prox nothing guarantees the Lyapunov decrease either). α = β = 0 gives PALM.
Defaults α = β = 0.2 cost a factor 1.13 on the step for the inertia.

Block metric: a block may carry a fixed positive array ``metric`` D_i (same shape as x_i):
the step then is x_i ← prox^{D_i}(x_i − ∇_i f / (τ_i D_i)), prox^D_{g/τ}(v) = argmin_u
τ/2 ‖u − v‖²_D + g(u), and the descent inequality uses the norm ‖·‖²_{D_i} (variable-metric
PALM with a fixed diagonal metric, i.e. PALM on u_i = D_i^{1/2} x_i). It lets pixels of very
different curvature take steps of their own size. A prox term that has
``prox_metric(v, step, metric)`` (the prox in that metric: soft thresholding at
step·λ/D per element for a weighted ℓ1) is called with D_i; the projection proxes (box,
x ≥ 0) are exact in any diagonal metric; any other prox is applied as for D = 1, which is
not the prox of g_i in the metric, and nothing but the safeguard below keeps H from rising.

Monotone safeguard (``monotone = true``, PALM only): a block update that passes the descent
test but raises f + g_i beyond float slack (an inexact prox: a redundant-frame ℓ1 by
thresholding its coefficients, a chain of proxes that is not the prox of the sum, a prox
not in the block's metric) is retried with a smaller step (L_i /= eta, at most
``monotone_backtracks`` times) and, failing that, rejected: x_i keeps its value for this
iteration. Rejections are counted per block (``rejected_updates``, in the run's metadata).
With exact proxes the test never fires (the descent test implies the decrease). H = f + Σ
g_i, with each g_i's ``value``, is what ``objective()`` returns and the run logs: it then
never increases from one iteration to the next. A step cap ``Block.max_step`` (τ_i ≥
1/max_step) bounds the step of a block whose metric is a curvature model (in a Fisher
metric, 1 is a scoring step).

Joint steps (PALM only): when the smooth part ``value`` carries a ``joint`` curvature model
(an object with ``direction(xs, gradients)`` returning one array per block, e.g. a per-pixel
Newton or scoring direction M⁻¹g over every block at once: ``xhsi.problems.joint_metric``),
each iteration ends with one joint step after the block sweep: with d that direction at the
swept point, the trial x_i⁺ = prox_i^{D_i}(x_i − t·d_i) at step t (each block's prox in its
own metric, as a block update at τ = 1/t), t = 1, eta, eta², … (``joint_trials`` of them);
the first trial that lowers H = f + Σ g_i beyond float slack is kept, else the swept point
(counted in ``joint_steps``, in the run's metadata); after a joint step none of whose trials
was kept the next is tried 1, 2, 4, … (at most 32) iterations later, so that where they
fail (measured: 2 kept of 898 tried on the SUSHI toy) they cost little. Block-coordinate steps crawl along
directions where the blocks are correlated (a valley tilted across the block axes); the
joint step moves along them, and since it is kept only where H decreases, H stays monotone.

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
from .prox import ProxChain, Zero

__all__ = ["PALM", "Block", "PalmState"]


@dataclass
class Block:
    """One block of variables: ``gradient(xs)`` is ∂f/∂x_i at the list of all blocks ``xs``;
    ``prox`` its ProxTerm (None: g_i = 0); ``lipschitz(xs)`` a Lipschitz constant of that
    partial gradient with the other blocks fixed at ``xs`` (None: backtracking), in the
    metric ``metric`` (a fixed positive array like x_i, None: the identity); ``max_step`` an
    upper bound of the step 1/τ_i in that metric (None: none)."""

    gradient: Callable[[list], Any]
    prox: Any = None
    lipschitz: Callable[[list], float] | None = None
    name: str = ""
    metric: Any = None
    max_step: float | None = None


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
        monotone: bool = option(True, doc="PALM: retry with smaller steps, then reject, a block update that raises "
                                          "f + g_i (an inexact prox); iPALM ignores it")
        monotone_backtracks: int = option(4, min=0, doc="smaller steps tried before a block update that raises "
                                                        "f + g_i is rejected")
        joint_trials: int = option(3, min=0, doc="step sizes 1, eta, eta², … of the joint step tried after each "
                                                 "sweep when the problem gives a joint curvature model (0: none)")

    def setup(self, x0: Sequence, value, blocks: Sequence[Block]) -> None:
        x0 = list(x0)
        if len(x0) != len(blocks):
            raise ValueError(f"PALM: {len(x0)} initial blocks but {len(blocks)} Block descriptions")
        self.xp = array_namespace(*x0)
        self.value = value.value if hasattr(value, "value") else value
        self.joint = getattr(value, "joint", None) if not self.options.inertial else None
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
        self._safeguarded = o.monotone and not o.inertial
        #: Block updates the monotone safeguard rejected, per block name, in this run.
        self.rejected_updates = {self._name(i): 0 for i in range(len(self.blocks))}
        #: Joint steps tried and kept in this run (module docstring, "Joint steps").
        self.joint_steps = {"tried": 0, "accepted": 0}
        self._joint_next, self._joint_wait = 1, 1  # the next sweep to try one after; back-off

    def _name(self, i: int) -> str:
        return self.blocks[i].name or f"block {i}"

    def notes(self) -> dict:
        """What the run's metadata reports beyond the history: the safeguard's rejections."""
        out = {"rejected_block_updates": dict(self.rejected_updates)} if self._safeguarded else {}
        if self.joint is not None and self.options.joint_trials > 0:
            out["joint_steps"] = dict(self.joint_steps)
        return out

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
                L = self._capped(float(block.lipschitz(zs)), block)
                x_new = self._prox_step(i, y_i, g, L)
                if self._safeguarded:
                    x_new, L = self._monotone(i, xs, g, x_new, L, float(self.value(xs)), None)
            else:
                L_known = float(block.lipschitz(zs)) if block.lipschitz is not None else None
                x_new, L = self._backtrack(i, k, xs, zs, y_i, z_i, g, lipschitz[i] / o.grow, L_known)
            lipschitz[i] = L
            xs[i] = x_new
        if self.joint is not None and o.joint_trials > 0 and k >= self._joint_next:
            xs = self._joint_step(k, xs)
        self.state = PalmState(k, xs, list(s.x), lipschitz)

    def _joint_step(self, k: int, xs: list) -> list:
        """The joint step after sweep ``k`` (module docstring): the first trial that lowers
        H, else ``xs``; after a step none of whose trials was kept the next is tried 1, 2,
        4, … (at most 32) iterations later, at the next sweep again after one that was."""
        o = self.options
        direction = self.joint.direction(xs, [block.gradient(xs) for block in self.blocks])
        h_old = float(self.value(xs)) + sum(float(p.value(x)) for p, x in zip(self.proxes, xs))
        t = 1.0
        for _ in range(o.joint_trials):
            self.joint_steps["tried"] += 1
            trial = [_apply_prox(self.proxes[i], x - t * d, t, block.metric)
                     for i, (block, x, d) in enumerate(zip(self.blocks, xs, direction))]
            h_new = float(self.value(trial)) + sum(float(p.value(x)) for p, x in zip(self.proxes, trial))
            slack = _SLACK_EPS * self.eps * (abs(h_old) + abs(h_new)) if math.isfinite(h_new) else 0.0
            if math.isfinite(h_new) and h_new < h_old - slack:
                self.joint_steps["accepted"] += 1
                self._joint_wait, self._joint_next = 1, k + 1
                return trial
            t *= o.eta
        self._joint_next = k + self._joint_wait
        self._joint_wait = min(2 * self._joint_wait, 32)
        return xs

    def _capped(self, L: float, block: Block) -> float:
        """L_i raised so that the step 1/τ_i stays ≤ ``block.max_step``."""
        return L if block.max_step is None else max(L, 1.0 / (self._tau_factor * block.max_step))

    def _prox_step(self, i: int, y_i, g, L: float):
        """prox^{D_i}_{g_i/τ}(y_i − g/(τ D_i)), τ = τ_factor·L."""
        block = self.blocks[i]
        tau = self._tau_factor * L
        scaled = tau if block.metric is None else tau * block.metric
        return _apply_prox(self.proxes[i], y_i - g / scaled, 1.0 / tau, block.metric)

    def _backtrack(self, i, k, xs, zs, y_i, z_i, g, L, L_known):
        xp, o = self.xp, self.options
        f_z = float(self.value(zs))
        if not math.isfinite(f_z):
            raise RunStopped(f"PALM: the smooth cost is {f_z} at block {i} of iteration {k}.")
        if L_known is not None:
            L = min(L, L_known)  # a known constant caps the search from above
        L = self._capped(L, self.blocks[i])
        metric = self.blocks[i].metric
        for _ in range(o.max_backtracks):
            x_new = self._prox_step(i, y_i, g, L)
            d = x_new - z_i
            trial = xs[:i] + [x_new] + xs[i + 1:]
            f_new = float(self.value(trial))
            curvature = 0.5 * L if metric is None else (0.5 * L) * metric
            gap = float(xp.sum(d * (g + curvature * d), dtype=xp.float64))
            slack = _SLACK_EPS * self.eps * (abs(f_z) + abs(f_new)) if math.isfinite(f_new) else 0.0
            descent = math.isfinite(f_new) and f_new <= f_z + gap + slack
            # with L ≥ a known constant the inequality is guaranteed up to rounding
            if descent or (L_known is not None and L >= L_known):
                if self._safeguarded:
                    return self._monotone(i, xs, g, x_new, L, f_z, f_new)
                return x_new, L
            L /= o.eta
            if L_known is not None:
                L = min(L, L_known)
        raise RunStopped(f"PALM: backtracking found no step for block {i} at iteration {k} after "
                         f"{o.max_backtracks} trials (L = {L:.3g}).")

    def _monotone(self, i, xs, g, x_new, L, f_x, f_new):
        """The monotone safeguard (module docstring) on PALM's update ``x_new`` of block i
        (``f_x`` = f at ``xs``, ``f_new`` = f at the update or None): (update, L) as accepted,
        or (x_i, L) and a rejection counted."""
        o, prox, x_i = self.options, self.proxes[i], xs[i]
        h_old = f_x + float(prox.value(x_i))
        L_try = L
        for trial in range(o.monotone_backtracks + 1):
            if trial:
                L_try /= o.eta
                x_new, f_new = self._prox_step(i, x_i, g, L_try), None
            if f_new is None:
                f_new = float(self.value(xs[:i] + [x_new] + xs[i + 1:]))
            h_new = f_new + float(prox.value(x_new))
            slack = _SLACK_EPS * self.eps * (abs(h_old) + abs(h_new))
            if math.isfinite(h_new) and h_new <= h_old + slack:
                return x_new, L_try
        # rejected: the next iteration starts again from the descent test's L, not from a
        # step the safeguard shrank (a block rejected every iteration would freeze it)
        self.rejected_updates[self._name(i)] += 1
        return x_i, L

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


def _apply_prox(prox, v, step: float, metric):
    """prox_{step·g}(v) in the diagonal metric ``metric`` (None: the identity): a term's
    ``prox_metric`` where it has one, a chain term by term, else its Euclidean prox (exact
    for the projections, an approximation otherwise)."""
    if metric is None:
        return prox.prox(v, step)
    if hasattr(prox, "prox_metric"):
        return prox.prox_metric(v, step, metric)
    if isinstance(prox, ProxChain):
        for term in prox.terms:
            v = _apply_prox(term, v, step, metric)
        return v
    return prox.prox(v, step)
