"""Projected L-BFGS over blocks (``name = "lbfgs"``): a quasi-Newton method for
min_{x_1..x_N} f(x_1, …, x_N) + Σ_i h_i(x_i) subject to box bounds, f smooth (the Poisson
NLL of a mixture), each h_i a smooth penalty.

It takes the same problem as PALM (``setup(x0, value, blocks)``, one :class:`Block` per
array), with each block's prox terms read as follows:

* a projection (``NonNegative``, ``Box``: a term with ``bounds = (lo, hi)``) becomes a
  bound on the block's variables;
* a term with ``smooth(x, smoothing) -> (value, gradient)`` (the starlet ℓ1 priors of
  unmixing, ``xhsi.problems.unmixing_prior.FisherStarlet``) is replaced by that smooth
  version: for an ℓ1 penalty Σ λ|c| the pseudo-Huber Σ λ(√(c² + ε²) − ε), ε = ``smoothing``
  × the coefficient's threshold, which equals λ|c| − λε to within λε where |c| ≫ ε and is
  quadratic, λc²/2ε, below ε;
* ``Zero`` is nothing; any other term is refused (ConfigError naming the block): use PALM.

The objective minimised, and the cost the run logs, is therefore F = f + Σ h_i with the
smoothed penalties; it decreases at every iteration (Armijo line search).

Iteration (a projected quasi-Newton step in the way of Kim, Sra & Dhillon 2010, "Tackling
box-constrained optimization via a new projected quasi-Newton approach", SIAM J. Sci.
Comput. 32, 3548): with g = ∇F at x, the variables held at a bound by their gradient
(x_k = lo and g_k > 0, or x_k = hi and g_k < 0) are fixed for the step; on the others the
direction is d = −H g, H the L-BFGS inverse-Hessian model (two-loop recursion over the
last ``memory`` pairs s = Δx, y = Δg; Nocedal & Wright 2006, Algorithm 7.4) whose initial
matrix is γ·D⁻¹, D the blocks' metrics (``Block.metric``, e.g. the per-pixel Fisher
curvature; 1 where None) and γ = sᵀy / yᵀD⁻¹y of the newest pair. Then the projected
path x(t) = P(x + t·d) is searched from t = 1, t ← t/2, until Armijo's condition
F(x(t)) ≤ F(x) + c₁·⟨g, x(t) − x⟩ holds (c₁ = ``armijo``). The first step, and a step whose
quasi-Newton direction does not descend, use d = −D⁻¹g (a scoring step in a Fisher metric).
A pair with sᵀy ≤ 0 is not stored. When no step of either direction passes after
``max_backtracks`` halvings, the iterate stays (the run then stops on ``tol``: nothing
moves).

Where it beats PALM (measured, docs/solvers.md): block-coordinate steps crawl where the
maps are correlated within and across pixels (kT, z and the amplitudes of a mixture seen
through a PSF); one L-BFGS iteration costs one forward model and one adjoint, as a PALM
block update does, and moves every map at once along the curvature the memory has learnt.

Host syncs: the cost and ⟨g, Δx⟩ per trial, and two inner products per stored pair per
iteration (each one float).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from ..backend import array_namespace
from ..errors import ConfigError, RunStopped
from ..schema import option
from .base import Solver
from .fista import _SLACK_EPS, _machine_eps
from .palm import Block
from .prox import ProxChain, Zero

__all__ = ["BlockLBFGS", "LbfgsState"]


@dataclass
class LbfgsState:
    iteration: int
    x: list         # the blocks
    grad: list      # ∇F at x, per block
    cost: float     # F at x
    step: float     # the last accepted t (0.0 before the first iteration, or when none passed)
    s: list         # memory, oldest first: `pairs` × len(x) arrays, pair-major
    y: list
    pairs: int


def _tighter(a, b, lower: bool, xp):
    """The tighter of two bounds (None: none), each a number or an array of the block's shape
    (``LowerBound`` of an array): the larger of two lower bounds, the smaller of two upper
    ones, elementwise where either is an array."""
    if a is None or b is None:
        return b if a is None else a
    if not hasattr(a, "shape") and not hasattr(b, "shape"):
        return max(a, b) if lower else min(a, b)
    like = a if hasattr(a, "shape") else b
    a, b = (v if hasattr(v, "shape") else xp.full_like(like, v) for v in (a, b))
    return xp.maximum(a, b) if lower else xp.minimum(a, b)


class BlockLBFGS(Solver):
    """Projected L-BFGS over blocks (module docstring). ``setup(x0, value, blocks)`` as
    PALM's: ``value`` the smooth part f (an object with ``value``, or a callable), one
    :class:`~xhsi.solvers.palm.Block` per array of ``x0`` (its ``gradient``, ``prox`` and
    ``metric``; ``lipschitz`` and ``max_step`` are not used)."""

    name = "lbfgs"
    State = LbfgsState
    unknowns = "blocks"
    smooths_penalties = True

    @dataclass
    class Options:
        memory: int = option(10, min=1, doc="pairs (Δx, Δ∇F) kept for the inverse-Hessian model")
        smoothing: float = option(0.1, min=0.0, exclusive_min=True,
                                  doc="ε of the pseudo-Huber that replaces an ℓ1 penalty, as a fraction of "
                                      "each coefficient's threshold")
        armijo: float = option(1e-4, min=0.0, max=0.5, exclusive_min=True,
                               doc="sufficient-decrease constant c₁ of the line search")
        max_backtracks: int = option(30, min=1, doc="step halvings tried per direction")

    def setup(self, x0: Sequence, value, blocks: Sequence[Block]) -> None:
        x0 = list(x0)
        if len(x0) != len(blocks):
            raise ValueError(f"lbfgs: {len(x0)} initial blocks but {len(blocks)} Block descriptions")
        self.xp = array_namespace(*x0)
        self.value = value.value if hasattr(value, "value") else value
        self.blocks = list(blocks)
        self.eps = _machine_eps(x0[0].dtype)
        self.bounds, self.penalties = [], []
        for i, block in enumerate(self.blocks):
            lo, hi, smooth = None, None, []
            terms = block.prox.terms if isinstance(block.prox, ProxChain) else [block.prox]
            for term in terms:
                if term is None or isinstance(term, Zero):
                    continue
                if getattr(term, "bounds", None) is not None:
                    t_lo, t_hi = term.bounds
                    lo, hi = _tighter(lo, t_lo, True, self.xp), _tighter(hi, t_hi, False, self.xp)
                elif hasattr(term, "smooth"):
                    smooth.append(term)
                else:
                    raise ConfigError(f"[solver] name = \"lbfgs\" needs every penalty of block "
                                      f"`{block.name or i}` to be a bound or to have a smooth version; "
                                      f"`{type(term).__name__}` has neither: use [solver] name = \"palm\".")
            self.bounds.append((lo, hi))
            self.penalties.append(smooth)
        x0 = [self._project(i, x) for i, x in enumerate(x0)]
        cost, grad = self._evaluate(x0)
        if not math.isfinite(cost):
            raise RunStopped(f"lbfgs: the cost at the start is {cost}: check the start and the data.")
        self.state = LbfgsState(0, x0, grad, cost, 0.0, [], [], 0)
        self.history, self._time_offset = [], 0.0

    # -- F and its gradient ---------------------------------------------------------------
    def _cost(self, xs) -> float:
        total = float(self.value(xs))
        for x, terms in zip(xs, self.penalties):
            for term in terms:
                total += float(term.smooth(x, self.options.smoothing)[0])
        return total

    def _evaluate(self, xs) -> tuple[float, list]:
        """(F, ∇F per block) at ``xs``."""
        cost = float(self.value(xs))
        grads = []
        for block, x, terms in zip(self.blocks, xs, self.penalties):
            g = block.gradient(xs)
            for term in terms:
                v, gt = term.smooth(x, self.options.smoothing)
                cost += float(v)
                g = g + gt
            grads.append(g)
        return cost, grads

    def _project(self, i: int, x):
        lo, hi = self.bounds[i]
        if lo is None and hi is None:
            return x
        return self.xp.clip(x, min=lo, max=hi)

    def _free(self, i: int, x, g):
        """1 where variable k of block i may move this step, 0 where its bound holds it."""
        xp = self.xp
        lo, hi = self.bounds[i]
        held = xp.zeros(x.shape, dtype=xp.bool)
        if lo is not None:
            held = held | ((x <= lo) & (g > 0))
        if hi is not None:
            held = held | ((x >= hi) & (g < 0))
        return xp.astype(~held, x.dtype)

    # -- the direction ------------------------------------------------------------------------
    def _dot(self, a: list, b: list) -> float:
        """Σ over blocks of ⟨a_i, b_i⟩ (one host sync)."""
        xp = self.xp
        total = None
        for u, v in zip(a, b):
            term = xp.sum(u * v, dtype=xp.float64)
            total = term if total is None else total + term
        return float(total)

    def _scaled(self, q: list) -> list:
        """D⁻¹q (the blocks' metrics)."""
        return [v if b.metric is None else v / b.metric for b, v in zip(self.blocks, q)]

    def _direction(self, grad: list, free: list) -> list:
        """−H·g on the free variables (two-loop recursion), 0 on the held ones."""
        s = self.state
        n = len(self.blocks)
        q = [g * f for g, f in zip(grad, free)]
        pairs = [(s.s[k * n:(k + 1) * n], s.y[k * n:(k + 1) * n]) for k in range(s.pairs)]
        pairs = [([u * f for u, f in zip(sk, free)], [v * f for v, f in zip(yk, free)]) for sk, yk in pairs]
        alphas = []
        rhos = []
        for sk, yk in reversed(pairs):
            sy = self._dot(sk, yk)
            rho = 1.0 / sy if sy > 0 else 0.0
            a = rho * self._dot(sk, q)
            q = [u - a * v for u, v in zip(q, yk)]
            alphas.append(a)
            rhos.append(rho)
        gamma = 1.0
        if pairs:
            sk, yk = pairs[-1]
            yhy = self._dot(yk, self._scaled(yk))
            sy = self._dot(sk, yk)
            gamma = sy / yhy if sy > 0 and yhy > 0 else 1.0
        r = [gamma * v for v in self._scaled(q)]
        for (sk, yk), a, rho in zip(pairs, reversed(alphas), reversed(rhos)):
            b = rho * self._dot(yk, r)
            r = [u + (a - b) * v for u, v in zip(r, sk)]
        return [-u * f for u, f in zip(r, free)]

    def _search(self, xs, cost, grad, direction):
        """(x(t), F, t) of the first t = 1, ½, ¼, … that passes Armijo's test, or None."""
        o = self.options
        t = 1.0
        for _ in range(o.max_backtracks):
            trial = [self._project(i, x + t * d) for i, (x, d) in enumerate(zip(xs, direction))]
            decrease = self._dot(grad, [u - x for u, x in zip(trial, xs)])
            if decrease < 0:
                f_new = self._cost(trial)
                slack = _SLACK_EPS * self.eps * (abs(cost) + abs(f_new)) if math.isfinite(f_new) else 0.0
                if math.isfinite(f_new) and f_new <= cost + o.armijo * decrease + slack:
                    return trial, f_new, t
            t *= 0.5
        return None

    def step(self) -> None:
        s, o = self.state, self.options
        xs, grad = s.x, s.grad
        free = [self._free(i, x, g) for i, (x, g) in enumerate(zip(xs, grad))]
        found = None
        if s.pairs:
            d = self._direction(grad, free)
            if self._dot(grad, d) < 0:
                found = self._search(xs, s.cost, grad, d)
        memory_s, memory_y, pairs = list(s.s), list(s.y), s.pairs
        if found is None:  # the scaled gradient; the memory restarts
            memory_s, memory_y, pairs = [], [], 0
            found = self._search(xs, s.cost, grad, [-u * f for u, f in zip(self._scaled(grad), free)])
        if found is None:  # nothing descends: the iterate stays and the run stops on tol
            self.state = LbfgsState(s.iteration + 1, xs, grad, s.cost, 0.0, memory_s, memory_y, pairs)
            return
        x_new, _, t = found
        cost, g_new = self._evaluate(x_new)
        step_s = [u - x for u, x in zip(x_new, xs)]
        step_y = [u - g for u, g in zip(g_new, grad)]
        if self._dot(step_s, step_y) > 0:
            memory_s, memory_y = memory_s + step_s, memory_y + step_y
            pairs += 1
            if pairs > o.memory:
                n = len(self.blocks)
                memory_s, memory_y, pairs = memory_s[n:], memory_y[n:], pairs - 1
        self.state = LbfgsState(s.iteration + 1, x_new, g_new, cost, t, memory_s, memory_y, pairs)

    def objective(self) -> float:
        return float(self.state.cost)

    def current_step(self) -> float:
        return float(self.state.step)

    @property
    def x(self) -> list:
        return self.state.x
