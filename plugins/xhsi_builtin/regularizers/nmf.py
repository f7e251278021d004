"""Non-negative matrix factorisation of a cube's spectra, for a low-rank parametrisation
Z = W·H whose cube is non-negative whenever the rank maps are (W ≥ 0, H ≥ 0).

The initialisation is NNDSVD (Boutsidis & Gallopoulos 2008, Pattern Recognition 41, 1350:
each singular pair split into its positive and negative parts, the larger kept), so the
factorisation is deterministic and starts from the leading principal subspace; the
updates are hierarchical alternating least squares (HALS: Cichocki & Phan 2009, IEICE
Trans. Fundamentals E92-A, 708), exact non-negative least-squares updates of one row of H
or column of W at a time for the Frobenius norm, which converge far faster than Lee &
Seung's multiplicative updates. Rank-sized loops and matrix products only: runs on any
array-API namespace.
"""
from __future__ import annotations

from xhsi.backend import array_namespace

__all__ = ["nndsvd", "nmf"]


def nndsvd(m, rank: int):
    """NNDSVD initial factors (W (n, rank), H (rank, p)) of a non-negative matrix m (n, p)."""
    xp = array_namespace(m)
    u, s, vt = xp.linalg.svd(m, full_matrices=False)
    ws, hs = [], []
    for j in range(rank):
        uj, vj = u[:, j], vt[j, :]
        up, un = xp.clip(uj, min=0.0), xp.clip(-uj, min=0.0)
        vp, vn = xp.clip(vj, min=0.0), xp.clip(-vj, min=0.0)
        np_, nn = (float(xp.linalg.vector_norm(up)) * float(xp.linalg.vector_norm(vp)),
                   float(xp.linalg.vector_norm(un)) * float(xp.linalg.vector_norm(vn)))
        a, b, norm = (up, vp, np_) if np_ >= nn else (un, vn, nn)
        if norm == 0.0:  # a singular pair with one sign only: nothing to keep
            a, b, norm = xp.ones_like(uj), xp.zeros_like(vj), 1.0
        scale = (float(s[j]) * norm) ** 0.5
        ws.append(a * (scale / max(float(xp.linalg.vector_norm(a)), 1e-30)))
        hs.append(b * (scale / max(float(xp.linalg.vector_norm(b)), 1e-30)))
    w, h = xp.stack(ws, axis=1), xp.stack(hs, axis=0)
    # zeros are fixed points of multiplicative updates: lift them a little (Boutsidis &
    # Gallopoulos's NNDSVDa fills them with the mean of m)
    fill = float(xp.mean(m)) * 1e-2 + 1e-30
    return xp.where(w > 0, w, xp.full_like(w, fill)), xp.where(h > 0, h, xp.full_like(h, fill))


def _hals_sweep(r, a, g, floor: float, xp):
    """One HALS pass over the rows r_j of R (k, p), in place, for min ‖M − F·R‖ with
    A = FᵀM, G = FᵀF: r_j ← max(floor, r_j + (A_j − G_j·R) / G_jj), in order, each row
    using the rows already updated (one matrix-vector product per row)."""
    for j in range(r.shape[0]):
        step = (a[j, :] - g[j, :] @ r) / max(float(g[j, j]), 1e-30)
        r[j, :] = xp.clip(r[j, :] + step, min=floor)
    return r


def nmf(m, rank: int, n_iter: int = 100):
    """W (n, rank) ≥ 0 with unit-ℓ2 columns and H (rank, p) ≥ 0 that approximately minimise
    ‖m − W·H‖_F (m ≥ 0): ``n_iter`` HALS sweeps (each updates H then W) from NNDSVD."""
    xp = array_namespace(m)
    w, h = nndsvd(m, rank)
    floor = float(xp.max(m)) * 1e-12  # > 0 keeps a row that HALS zeroes from dividing by 0 later
    mt = xp.matrix_transpose(m)
    for _ in range(n_iter):
        wt = xp.matrix_transpose(w)
        h = _hals_sweep(h, wt @ m, wt @ w, floor, xp)
        ht = xp.matrix_transpose(h)
        w = xp.matrix_transpose(_hals_sweep(xp.asarray(xp.matrix_transpose(w), copy=True), h @ mt, h @ ht, floor, xp))
    norms = xp.linalg.vector_norm(w, axis=0)
    norms = xp.where(norms > 0, norms, xp.ones_like(norms))
    return w / norms, h * norms[:, None]
