"""Per-coefficient dual steps for the exact 2D-1D starlet prox in a diagonal metric.

The dual loop of ``xhsi.sparsity.analysis_prox`` with the frame K = Φ∘diag(d) (a prox in the
metric x = d·u) needs steps s > 0 with diag(1/s) ≽ KKᵀ = ΦD²Φᵀ. The uniform bound
‖Φ‖²·max d² is set by the largest d of the whole cube: in the EM metric (d² of mean 1,
up to ``precondition_max`` = 25) that is 25× the step a coefficient over a typical voxel
could take. The bound used here is local:

    ΦD²Φᵀ ≼ ‖Φ‖² · diag(m),   m_i = max { d_j² : Φ_ij ≠ 0 }   (max of d² over row i's support).

Proof (layer cake). D² = ∫₀^∞ P_t dt with P_t = diag(1[d_j² > t]) a projector, so
ΦD²Φᵀ = ∫ (ΦP_t)(ΦP_t)ᵀ dt. The columns of ΦP_t live on the coefficients
Π_t = {i : Φ_ij ≠ 0 for some j with d_j² > t}, and BBᵀ ≼ ‖B‖²·Π for any B whose range
lies in the coordinate subspace Π; ‖ΦP_t‖ ≤ ‖Φ‖. Hence ΦD²Φᵀ ≼ ‖Φ‖² ∫ Π_t dt =
‖Φ‖² diag(m), since i ∈ Π_t exactly when t < m_i. (A majoriser for any d ≥ 0, never above
the uniform bound, and equal to it, ‖Φ‖²·d², where d is constant over a row's support.)

Why not the classic diagonal preconditioner (Pock & Chambolle 2011, ICCV, α = 1:
S_i⁻¹ = Σ_j |Φ_ij| d_j² Σ_k |Φ_kj|)? It bounds through |Φ|, and the starlet's bands cancel
(they sum to the identity): for the 4 × 3 bands of the shipped recipe (scales_1d = 3,
scales_2d = 2) it is 10–31·d² where d is constant, against ‖Φ‖²·d² = 1.34·d² here, so it
loses to the uniform step wherever d is near its maximum (tests/test_prox_diagonal_steps.py).

The support of band (l, j) of the 2D-1D frame (Starck et al. 2009, A&A 504, 641; the
starlet of Starck, Fadili & Murtagh 2007 with the B3 kernel) is inside a box of half-width
r₁(l) samples along energy and r₂(j) pixels along y and x: a detail band w_l = P_l − P_{l+1}
(P_l the product of the first l smoothings, dilations 1, 2, …, 2^{l−1}, each reaching
2·dilation) reaches 2(2^{l+1} − 1), the coarse band P_L 2(2^L − 1). The whole-sample mirror
boundary folds positions back into the axis without moving them away from the output sample,
so m is bounded by the max of d² over that box clipped to the cube: a separable max filter,
computed once per metric in any array namespace.
"""
from __future__ import annotations

from ..backend import array_namespace
from .wavelets import _check_scales, _slice

__all__ = ["band_reach", "local_max", "metric_dual_steps", "support_max"]


def band_reach(n_scales: int) -> list[int]:
    """Half-width, in samples, of the support of each starlet band (details, then coarse;
    non-decreasing: the coarse band reaches as far as the last detail band)."""
    n_scales = _check_scales(n_scales)
    return [2 * (2 ** (k + 1) - 1) for k in range(n_scales)] + [2 * (2 ** n_scales - 1)]


def local_max(a, reach: int, axis: int):
    """max of ``a`` over [k − reach, k + reach] ∩ [0, n − 1] along ``axis``, for every k (a max
    filter clipped to the array). The axis is padded with ``reach`` copies of its end samples
    (which changes no window's max), then maxima over windows of 1, 2, 4, … samples
    (M_2w[i] = max(M_w[i], M_w[i + w])), and a window of 2·reach + 1 as two overlapping ones
    of the largest power of two that fits: ~log₂(reach) passes, not 2·reach."""
    xp, n = array_namespace(a), a.shape[axis]
    if reach <= 0 or n == 1:
        return a
    if reach >= n - 1:
        return xp.broadcast_to(xp.max(a, axis=axis, keepdims=True), a.shape)
    m = xp.concat([_slice(a, axis, 0, 1)] * reach + [a] + [_slice(a, axis, n - 1, n)] * reach, axis=axis)
    width, w = 2 * reach + 1, 1
    while 2 * w <= width:
        size = m.shape[axis]
        m, w = xp.maximum(_slice(m, axis, 0, size - w), _slice(m, axis, w, size)), 2 * w
    return xp.maximum(_slice(m, axis, 0, n), _slice(m, axis, width - w, width - w + n))


def support_max(d2, scales_2d: int, scales_1d: int):
    """m of the module docstring, (L+1, J+1, *d2.shape): for band (l, j), the max of ``d2``
    (..., n_e, ny, nx; axes of length 1 broadcast) over the box of half-widths r₁(l) along
    energy (axis −3) and r₂(j) along y and x. Filters compose (a clipped max filter of reach
    a after one of reach b is one of reach a + b), so each axis is filtered incrementally."""
    xp = array_namespace(d2)
    rows = []
    sky, done_sky = d2, 0
    for r2 in band_reach(scales_2d):
        if r2 > done_sky:
            sky = local_max(local_max(sky, r2 - done_sky, -1), r2 - done_sky, -2)
            done_sky = r2
        rows.append(sky)
    columns = [[None] * len(rows) for _ in range(scales_1d + 1)]
    for j, band in enumerate(rows):
        energy, done = band, 0
        for ell, r1 in enumerate(band_reach(scales_1d)):
            energy, done = local_max(energy, r1 - done, -3), r1  # reaches never decrease
            columns[ell][j] = energy
    return xp.stack([xp.stack(row, axis=0) for row in columns], axis=0)


def metric_dual_steps(d, norm_sq: float, scales_2d: int, scales_1d: int):
    """Per-coefficient dual steps 1/(‖Φ‖²·m) for the frame Φ∘diag(d) (module docstring),
    (L+1, J+1, *d.shape) in d's dtype and namespace; ``norm_sq`` ≥ ‖Φ‖²."""
    return 1.0 / (norm_sq * support_max(d * d, scales_2d, scales_1d))
