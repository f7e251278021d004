"""Proximable terms g a problem hands a solver (``ProxTerm``: ``prox(x, step)`` =
argmin_u ½‖u − x‖² + step·g(u), and ``value(x)``): :class:`NonNegative`, :class:`LowerBound`
and :class:`Box` (projections), :class:`Zero` (g = 0) and :class:`ProxChain` (several proxes in turn).
Regularisers (``xhsi.regularizers``) are prox terms too."""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

from ..backend import array_namespace

__all__ = ["ProxTerm", "ProxChain", "NonNegative", "LowerBound", "Box", "Zero"]


@runtime_checkable
class ProxTerm(Protocol):
    def prox(self, x, step: float): ...

    def value(self, x) -> float: ...


class ProxChain:
    """g = Σ_i g_i, with prox_g approximated by prox_{g_n} ∘ … ∘ prox_{g_1} (the first term
    applied first). value = Σ value_i.

    The composition is the exact prox of the sum in some cases (Yu 2013, "On decomposing
    the proximal map", NeurIPS): e.g. a separable L1 norm followed by the projection on
    x ≥ 0, or any prox followed by the projection on a box when the first prox commutes
    with it coordinate-wise. For a redundant-frame L1 (starlet) followed by x ≥ 0 it is the
    usual approximation of the sparse-recovery literature (e.g. Starck et al. 2010): the
    cost may then rise, which monotone FISTA and PALM's ``monotone`` safeguard (a block
    update that raises the objective is retried with smaller steps, then rejected) keep
    from showing in the run; order the terms projection last.
    """

    def __init__(self, terms: Sequence):
        self.terms = list(terms)

    def prox(self, x, step: float):
        for t in self.terms:
            x = t.prox(x, step)
        return x

    def value(self, x) -> float:
        return sum(float(t.value(x)) for t in self.terms)


class LowerBound:
    """Indicator of x ≥ lo, with ``lo`` an array of x's shape (each entry its own bound) or
    a number: prox is the projection max(x, lo); value is 0 (iterates are feasible after
    every prox, so the indicator's +inf is never met)."""

    name = "lower_bound"

    def __init__(self, lo):
        self.lo = lo
        self.bounds = (lo, None)  # (lower, upper): what a solver that takes bounds reads

    def prox(self, x, step: float):
        xp = array_namespace(x)
        return xp.maximum(x, self.lo) if hasattr(self.lo, "shape") else xp.clip(x, min=float(self.lo))

    def value(self, x) -> float:
        return 0.0


class NonNegative(LowerBound):
    """Indicator of x ≥ 0: prox is the projection max(x, 0)."""

    name = "nonnegative"

    def __init__(self):
        super().__init__(0.0)


class Zero:
    """g = 0: prox is the identity (a smooth-only problem)."""

    def prox(self, x, step: float):
        return x

    def value(self, x) -> float:
        return 0.0


class Box:
    """Projection onto lo ≤ x ≤ hi (exact prox of the box indicator)."""

    def __init__(self, lo: float, hi: float):
        self.lo, self.hi = float(lo), float(hi)
        self.bounds = (self.lo, self.hi)  # what a solver that takes bounds reads

    def prox(self, x, step: float):
        return array_namespace(x).clip(x, min=self.lo, max=self.hi)

    def value(self, x) -> float:
        return 0.0
