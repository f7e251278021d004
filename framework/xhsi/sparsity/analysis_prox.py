"""The exact prox of a weighted analysis ℓ1 term plus non-negativity, by FISTA on its dual.

    prox(z) = argmin_{x ≥ 0} ½‖x − z‖² + Σ_b ‖τ_b ⊙ (Φx)_b‖₁

for a linear analysis operator Φ (e.g. a starlet: redundant, not a tight frame, so the prox
has no closed form, unlike soft-thresholding in an orthonormal basis). Fenchel duality
(Beck & Teboulle 2009, IEEE TIP 18, 2419, "FGP", for total variation; Combettes & Pesquet
2011, *Proximal splitting methods*, §10): with x(u) = max(z − Φᵀu, 0),

    min over |u| ≤ τ of  h(u) = ½‖x(u)‖²,   ∇h(u) = −Φ x(u),   Lipschitz ≤ ‖Φ‖²,

and the primal solution is x(u*). Each iteration costs one Φ and one Φᵀ. The step may also
be one per coefficient, s with diag(1/s) ≽ ΦΦᵀ: FISTA in the metric diag(1/s), whose
projection onto the box is still a clip (Beck & Teboulle 2009's analysis holds in any fixed
Euclidean metric); ``xhsi.sparsity.dual_steps`` gives such s for the 2D-1D starlet in a
diagonal metric, where one step for all coefficients is set by the largest d. The duality gap
P(x(u)) − D(u) = ½‖x − z‖² + Σ τ|Φx| − ½‖z‖² + ½‖x‖² comes free with the gradient: since
x − z = −Φᵀu where x > 0, it equals Σ (τ|c| − u·c) with c = Φx, a sum of terms ≥ 0
(|u| ≤ τ) that rounds well where the first form cancels (float32 sums of ~10⁷ terms). It
is the stopping rule; the extrapolated dual point is projected back into the box, so that
every evaluated pair is feasible and its gap a certificate. A warm start (the dual of the
previous call, clipped to the new box) makes the few iterations a proximal-gradient solver
can afford per step enough.
"""
from __future__ import annotations

from typing import Callable

from ..backend import array_namespace, native_numpy

__all__ = ["analysis_l1_prox_nonnegative"]


def analysis_l1_prox_nonnegative(z, analysis: Callable, adjoint: Callable, tau, norm_sq: float | None, dual=None,
                                 max_iter: int = 50, tol: float = 1e-4, step=None):
    """(x, u, gap): the prox above at ``z``, the dual variable u (coefficient shape, for a
    warm start) and the duality gap of that pair (≥ P(x) − min P; ½‖x − x*‖² ≤ gap). It stops
    when gap ≤ ``tol`` · Σ τ|Φz| (the penalty at z, the scale of what the prox changes; a
    scale relative to ‖z‖ would accept x = z when τ is small), or after ``max_iter`` ≥ 1
    pairs. ``analysis``: x → Φx; ``adjoint``: coefficients → Φᵀ(coefficients); ``tau`` ≥ 0
    broadcasts against Φx (0 leaves a band free); ``norm_sq`` ≥ ‖Φ‖² (dual step 1/norm_sq);
    ``step``: instead, per-coefficient dual steps s > 0 broadcasting against Φx, with
    diag(1/s) ≽ ΦΦᵀ (then ``norm_sq`` may be None); ``dual``: a start for u (not
    modified). On numpy the coefficient-sized arrays are updated in place (``_InPlace``),
    with the same operations in the same order, so both paths give the same bits; the arrays ``analysis`` and ``adjoint`` return are written to unless they share
    memory with their input (then copied)."""
    xp = array_namespace(z)
    ops = _InPlace(native_numpy(xp)) if native_numpy(xp) is not None else _Generic(xp)
    if step is None:
        if norm_sq is None:
            raise ValueError("analysis_l1_prox_nonnegative needs norm_sq (a bound of ‖Φ‖²) or per-coefficient "
                             "steps.")
        step = 1.0 / norm_sq
    target = tol * ops.penalty(tau, analysis(z))
    u = xp.clip(dual, min=-tau, max=tau) if dual is not None else None  # None: 0
    v, t = u, 1.0
    for i in range(max_iter):
        x = ops.primal(z, ops.owned(adjoint(v), v) if v is not None else None)
        c = ops.owned(analysis(x), x)
        gap = ops.gap(tau, c, v)
        if gap <= target or i == max_iter - 1:
            return x, (v if v is not None else xp.zeros_like(c)), gap
        u_next = ops.ascent(v, c, step, tau)  # takes c over
        t_next = 0.5 * (1.0 + (1.0 + 4.0 * t * t) ** 0.5)
        # the extrapolated point is projected back into the box, so that every evaluated
        # (x(v), v) is a feasible primal-dual pair and its gap a certificate
        v = ops.extrapolate(u_next, u, (t - 1.0) / t_next, tau)  # takes u over (not v: v may be u)
        u, t = u_next, t_next


class _Generic:
    """The dual iteration's array expressions in any namespace; ``None`` stands for 0."""

    def __init__(self, xp):
        self.xp = xp

    def owned(self, result, source):
        """``result`` of Φ or Φᵀ applied to ``source``, as an array this loop may write to."""
        return result

    def penalty(self, tau, c) -> float:
        return float(self.xp.sum(tau * self.xp.abs(c)))

    def primal(self, z, back):
        """x(v) = max(z − Φᵀv, 0)."""
        return self.xp.clip(z if back is None else z - back, min=0.0)

    def gap(self, tau, c, v) -> float:
        """Σ (τ|c| − v·c), terms ≥ 0 (module docstring)."""
        xp = self.xp
        return self.penalty(tau, c) if v is None else float(xp.sum(tau * xp.abs(c) - v * c))

    def ascent(self, v, c, step, tau):
        """clip(v + step·c) onto |u| ≤ τ; ``step`` a number or an array broadcasting against c."""
        return self.xp.clip(c * step if v is None else v + step * c, min=-tau, max=tau)

    def extrapolate(self, u_next, u, beta: float, tau):
        if u is None:
            return self.xp.clip(u_next + beta * u_next, min=-tau, max=tau)
        return self.xp.clip(u_next + beta * (u_next - u), min=-tau, max=tau)


class _InPlace(_Generic):
    """The same on numpy, into the arrays it takes over (the coefficient arrays are
    (L+1)(J+1) cubes: at 2400 × 45 × 45 a fresh one per operation cost more than Φ and Φᵀ)."""

    def __init__(self, np):
        super().__init__(np)
        self._scratch = [None, None]

    def _buffer(self, like, i: int = 0):
        """Scratch array ``i`` (0 or 1) of ``like``'s shape and dtype, allocated once."""
        b = self._scratch[i]
        if b is None or b.shape != like.shape or b.dtype != like.dtype:
            b = self._scratch[i] = self.xp.empty_like(like)
        return b

    def owned(self, result, source):
        return result.copy() if self.xp.may_share_memory(result, source) else result

    def _tau_abs(self, tau, c):
        """τ·|c| into scratch array 0."""
        w = self._buffer(c)
        self.xp.abs(c, out=w)
        return self.xp.multiply(tau, w, out=w)

    def penalty(self, tau, c) -> float:
        return float(self.xp.sum(self._tau_abs(tau, c)))

    def primal(self, z, back):
        np = self.xp
        if back is None:
            return np.clip(z, 0.0, None)
        np.subtract(z, back, out=back)
        return np.clip(back, 0.0, None, out=back)

    def gap(self, tau, c, v) -> float:
        if v is None:
            return self.penalty(tau, c)
        np, w = self.xp, self._tau_abs(tau, c)
        vc = np.multiply(v, c, out=self._buffer(c, 1))
        np.subtract(w, vc, out=w)
        return float(np.sum(w))

    def ascent(self, v, c, step, tau):
        np = self.xp
        np.multiply(c, step, out=c)
        if v is not None:
            np.add(v, c, out=c)
        return np.clip(c, -tau, tau, out=c)

    def extrapolate(self, u_next, u, beta: float, tau):
        np = self.xp
        if u is None:
            u = np.multiply(u_next, beta)
        else:
            np.subtract(u_next, u, out=u)
            np.multiply(u, beta, out=u)
        np.add(u_next, u, out=u)
        return np.clip(u, -tau, tau, out=u)
