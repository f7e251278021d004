"""The spatial prior of the unmixing parameter maps in the per-pixel Fisher metric: the
weighted starlet ℓ1 (``FisherStarlet``) with thresholds in the units of each map, the noise
level those thresholds are taken from (``metric_noise``, ``coefficient_sigma``), and the
scale of each map that floors its metric (``start_spread``). See ``xhsi.problems.unmixing``
and docs/unmixing.md ("Measured")."""
from __future__ import annotations

import numpy as np

from ..backend import array_namespace
from ..sparsity.wavelets import mad_sigma, soft_threshold, starlet2d

#: Floor of a block's Fisher metric, relative to its median over the pixels. The Fisher
#: information is a local model of the curvature; where it is near zero (a faint pixel, or a
#: redshift whose lines sit mid-way in a model energy bin, where the likelihood is flat in z
#: and jumps at the bin edges) an unfloored metric gives steps across the whole box.
#: Measured on the CasA-like toy (docs/unmixing.md): 1e-3 sends z to its bounds in a
#: quarter of the pixels; 0.1 keeps the steps within the noise.
METRIC_FLOOR = 0.1


class FisherStarlet:
    """Weighted starlet ℓ1 of one map in the cost's units,
    g(x) = Σ_j Σ_p λ_j(p) |(W x)_j(p)|,  λ_j(p) = D(p)·T_j(p),
    with thresholds T_j(p) = k·σ_j(p) in the units of the map and D the map's PALM metric
    (cost per unit² of the map; None: 1), so that λ is a cost per unit of the map (2-D
    starlet, Starck et al. 2007; the coarse scale is not penalised). σ_j(p) is the standard
    deviation of the scale-j coefficient at p when the map carries independent noise of
    standard deviation σ(p) per pixel (``coefficient_sigma``): thresholds follow the local
    noise, so bright pixels keep their detail and faint, noisy ones are smoothed.

    ``prox_metric(x, step, D)`` soft-thresholds the coefficients at step·λ/D (= step·T in the
    metric the weights were built with) and sums them back: for an elementwise penalty this
    is the exact prox in the metric D; for the starlet, a redundant frame, it is the usual
    synthesis approximation of the analysis prox (as ``starlet2d_l1``), with D read at each
    coefficient's pixel. ``value`` is g itself, so PALM's logged cost f + Σ g_i is the
    objective, and its monotone safeguard catches the steps where the approximation would
    raise it. ``prox(x, step)`` is the same in the identity metric (threshold step·λ)."""

    def __init__(self, thresholds, scales: int, metric=None):
        self.scales = int(scales)
        self.weights = thresholds if metric is None else thresholds * metric[None, ...]

    def _shrink(self, x, t):
        xp = array_namespace(x)
        return xp.sum(soft_threshold(starlet2d(x, self.scales), t), axis=0)

    def prox(self, x, step: float):
        return self._shrink(x, float(step) * self.weights)

    def prox_metric(self, x, step: float, metric):
        return self._shrink(x, (float(step) * self.weights) / metric[None, ...])

    def value(self, x) -> float:
        xp = array_namespace(x)
        return float(xp.sum(self.weights * xp.abs(starlet2d(x, self.scales)), dtype=xp.float64))


def metric_noise(sigma, metric):
    """The noise level s = 1 / (σ·D) whose thresholds k·s, applied by a prox in the metric
    D, penalise a map as a threshold k·σ would on the map alone (``FisherStarlet``).

    σ is a pixel's marginal 1-σ error √(F⁻¹)_ii and D its metric, the conditional curvature
    F_ii ≥ 1/σ²: in the metric D a threshold T (map units) is the penalty λ = D·T (cost per
    unit of the map); the penalised joint fit, profiled over the pixel's other variables,
    sees a curvature 1/σ², so the penalty that shrinks by k·σ there is λ = k/σ, i.e.
    T = k/(σ·D) = k·σ·(σ_cond/σ)², σ_cond = D^(−1/2). Thresholding at k·σ itself penalises
    correlated variables (kT and the amplitude, Γ and the thermal continuum: σ/σ_cond of
    2-5 on the CasA toy) by (σ/σ_cond)² too much (measured: kT 0.062 against 0.024).
    ``sigma`` ≤ 0 (no information) gives 0: no thresholding."""
    sigma, metric = np.asarray(sigma, dtype=np.float64), np.asarray(metric, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 1.0 / (sigma * metric)
    return np.where((sigma > 0) & (metric > 0) & np.isfinite(out), out, 0.0)


def start_spread(start, init, bounds) -> float:
    """Robust scatter 1.4826·MAD of a start map (``(ny, nx)``, host array) over the pixels the
    start fit moved away from the config init ``init`` (by more than 1e-6 of the bounds'
    width); at most that width, and 1.0 (or the width) when it is 0 or no pixel moved.
    Pixels the fit left at the init carry no information (no counts, or a component with
    zero amplitude): counted in, they made the MAD ~1e-8 when they were half of the field
    (the tiny scene's empty sky), which froze the maps and switched the thresholds off."""
    start = np.asarray(start, dtype=np.float64)
    width = float(bounds[1] - bounds[0])
    moved = np.abs(start - np.asarray(init, dtype=np.float64)) > 1e-6 * width
    vals = start[moved]
    spread = float(mad_sigma(vals, 0)) if vals.size >= 2 else 0.0
    return min(width, spread or 1.0)


def coefficient_sigma(sigma, scales: int, seed: int = 0, draws: int = 64):
    """Standard deviation σ_j(p) of the 2-D starlet coefficients (``(scales + 1, ny, nx)``,
    finest first, coarse last) of a map whose pixels carry independent Gaussian noise of
    standard deviation ``sigma`` (``(ny, nx)``, in the map's units), estimated from ``draws``
    seeded realisations at once (relative accuracy ≈ 1/√(2·draws), 9 % for 64). Exact
    propagation, Σ_q ψ_j(p − q)² σ(q)², would need the kernels explicitly; the draws need
    only the transform, on any backend."""
    xp = array_namespace(sigma)
    rng = np.random.default_rng([int(seed), 0x7369676D])  # a stream of its own ("sigm")
    eps = xp.asarray(rng.standard_normal((draws,) + tuple(sigma.shape)), dtype=sigma.dtype)
    coeffs = starlet2d(eps * sigma[None, ...], scales)  # (J + 1, draws, ny, nx)
    return xp.sqrt(xp.mean(coeffs * coeffs, axis=1))


def block_transfer(scales: int, factor: int, seed: int = 0, draws: int = 16, side: int | None = None) -> np.ndarray:
    """ρ_j (j = 0 … ``scales``, finest first, coarse last): the fraction of the energy of the
    scale-j band of the 2-D starlet of white noise that survives averaging over blocks of
    ``factor × factor`` pixels (each block's mean repeated over it). A measurement of block
    means (a detector pixel covering factor² model pixels) carries that fraction of its
    information about a scale-j pattern: ρ → 0 for scales finer than the block, → 1 for
    coarser ones; exactly 1 for ``factor`` 1. Estimated from ``draws`` seeded white-noise
    fields of ``side`` pixels (default: a multiple of ``factor``, at least 64 and 4·2^scales;
    host, float64)."""
    if factor == 1:
        return np.ones(scales + 1)
    side = side or factor * -(-max(64, 4 * 2 ** scales) // factor)
    rng = np.random.default_rng([int(seed), 0x72686F])  # a stream of its own ("rho")
    bands = np.asarray(starlet2d(rng.standard_normal((draws, side, side)), scales))  # (J + 1, draws, side, side)
    n = side // factor
    means = bands.reshape(scales + 1, draws, n, factor, n, factor).mean(axis=(3, 5))
    kept = np.sum(means ** 2, axis=(1, 2, 3)) * factor ** 2  # each mean repeated over factor² pixels
    return kept / np.sum(bands ** 2, axis=(1, 2, 3))


def shared_coefficient_sigma(sigma, shares: list, scales: int, seed: int = 0, draws: int = 64):
    """``coefficient_sigma`` of the noise level ``sigma`` (s = 1/(σ·D), ``metric_noise``) of
    a map informed by independent pieces of information, each about block means of its own
    size: ``shares`` = [(w_k, f_k)], w_k (``(ny, nx)``, host; Σ_k w_k = 1) the fraction of
    pixel p's information that piece k holds and f_k its block size in model pixels per
    axis (the detector pixel of the observation it comes from).

    The penalty of a coefficient is λ = k·s·D = k·√I (I its information: the threshold k·σ
    of a noise σ = I^(−1/2) at the solution, whatever the metric), so at a fixed metric s²
    grows with the information, and a piece of block size f carries the fraction ρ_j(f)
    (``block_transfer``) of its information about a scale-j pattern, relative to the
    finest piece's:

        s_j(p) = c_j(p) · √(Σ_k w_k(p) · ρ_j(f_k) / ρ_j(f_min)),   c = coefficient_sigma(sigma).

    A coarse observation's information then weighs on the scales its pixels resolve, and
    not on the finer ones, where only the fine observation measures the map (their
    penalties stay those of its information alone). One piece, or pieces of one block
    size, give ``coefficient_sigma(sigma)`` itself."""
    c = coefficient_sigma(sigma, scales, seed, draws)
    sizes = sorted({int(f) for _, f in shares})
    if len(sizes) == 1:
        return c
    xp = array_namespace(c)
    finest = block_transfer(scales, sizes[0], seed)
    kept = sum(np.clip(np.asarray(w, dtype=np.float64), 0.0, 1.0)[None, :, :]
               * (block_transfer(scales, f, seed) / finest)[:, None, None] for w, f in shares)
    return c * xp.asarray(np.sqrt(np.clip(kept, 0.0, 1.0)), dtype=c.dtype)


def information_shares(parts: list) -> list:
    """[(w_k, f_k)] for ``shared_coefficient_sigma`` from [(σ_k, f_k)]: the 1-σ errors (host
    maps; inf / NaN: no information) of independent pieces of information about a map and
    their block sizes; w_k = σ_k⁻² / Σ σ⁻², and where no piece informs a pixel, the finest
    piece holds it all."""
    with np.errstate(divide="ignore", invalid="ignore"):
        infos = [np.where(np.isfinite(s) & (np.asarray(s) > 0), 1.0 / np.square(np.asarray(s, dtype=np.float64)), 0.0)
                 for s, _ in parts]
    total = sum(infos)
    finest = min(range(len(parts)), key=lambda k: parts[k][1])
    out = []
    for k, ((_, f), info) in enumerate(zip(parts, infos)):
        w = np.where(total > 0, info / np.where(total > 0, total, 1.0), 1.0 if k == finest else 0.0)
        out.append((w, int(f)))
    return out
