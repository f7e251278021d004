"""The exact prox of a weighted analysis ℓ1 term plus non-negativity, by FISTA on its dual.

    prox(z) = argmin_{x ≥ 0} ½‖x − z‖² + Σ_b ‖τ_b ⊙ (Φx)_b‖₁

for a linear analysis operator Φ (e.g. a starlet: redundant, not a tight frame, so the prox
has no closed form, unlike soft-thresholding in an orthonormal basis). Fenchel duality
(Beck & Teboulle 2009, IEEE TIP 18, 2419, "FGP", for total variation; Combettes & Pesquet
2011, *Proximal splitting methods*, §10): with x(u) = max(z − Φᵀu, 0),

    min over |u| ≤ τ of  h(u) = ½‖x(u)‖²,   ∇h(u) = −Φ x(u),   Lipschitz ≤ ‖Φ‖²,

and the primal solution is x(u*). Each iteration costs one Φ and one Φᵀ. The duality gap
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

from .backend import array_namespace

__all__ = ["analysis_l1_prox_nonnegative"]


def analysis_l1_prox_nonnegative(z, analysis: Callable, adjoint: Callable, tau, norm_sq: float, dual=None,
                                 max_iter: int = 50, tol: float = 1e-4):
    """(x, u, gap): the prox above at ``z``, the dual variable u (coefficient shape, for a
    warm start) and the duality gap of that pair (≥ P(x) − min P; ½‖x − x*‖² ≤ gap). It stops
    when gap ≤ ``tol`` · Σ τ|Φz| (the penalty at z, the scale of what the prox changes; a
    scale relative to ‖z‖ would accept x = z when τ is small), or after ``max_iter`` ≥ 1
    pairs. ``analysis``: x → Φx; ``adjoint``: coefficients → Φᵀ(coefficients); ``tau`` ≥ 0
    broadcasts against Φx (0 leaves a band free); ``norm_sq`` ≥ ‖Φ‖²; ``dual``: a start
    for u."""
    xp = array_namespace(z)
    step = 1.0 / norm_sq
    cz = analysis(z)
    target = tol * float(xp.sum(tau * xp.abs(cz)))
    u = xp.zeros_like(cz) if dual is None else xp.clip(dual, min=-tau, max=tau)
    del cz
    v, t = u, 1.0
    for i in range(max_iter):
        x = xp.clip(z - adjoint(v), min=0.0)
        c = analysis(x)
        gap = float(xp.sum(tau * xp.abs(c) - v * c))
        if gap <= target or i == max_iter - 1:
            return x, v, gap
        u_next = xp.clip(v + step * c, min=-tau, max=tau)
        t_next = 0.5 * (1.0 + (1.0 + 4.0 * t * t) ** 0.5)
        # the extrapolated point is projected back into the box, so that every evaluated
        # (x(v), v) is a feasible primal-dual pair and its gap a certificate
        v = xp.clip(u_next + ((t - 1.0) / t_next) * (u_next - u), min=-tau, max=tau)
        u, t = u_next, t_next
