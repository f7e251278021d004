"""The spatial prior of the unmixing parameter maps in the per-pixel Fisher metric: the
weighted starlet ℓ1 (``FisherStarlet``) with thresholds in the units of each map, the noise
level those thresholds are taken from (``metric_noise``, ``coefficient_sigma``), and the
scale of each map that floors its metric (``start_spread``). See ``xhsi.problems.unmixing``
and docs/unmixing.md ("Measured")."""
from __future__ import annotations

import numpy as np

from ..backend import array_namespace
from ..sparsity.wavelets import mad_sigma, soft_threshold, starlet2d, starlet2d_adjoint

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
    raise it. ``prox(x, step)`` is the same in the identity metric (threshold step·λ).

    ``smooth(x, smoothing)``: the pseudo-Huber version Σ λ(√(c² + ε²) − ε), ε = smoothing·T,
    and its gradient (what ``xhsi.solvers.quasi_newton`` minimises instead of the ℓ1)."""

    def __init__(self, thresholds, scales: int, metric=None):
        self.scales = int(scales)
        self.thresholds = thresholds
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

    def smooth(self, x, smoothing: float):
        """(Σ λ(√(c² + ε²) − ε), its gradient in x), c = W x, ε = smoothing·T."""
        xp = array_namespace(x)
        c = starlet2d(x, self.scales)
        eps = smoothing * self.thresholds
        r = xp.sqrt(c * c + eps * eps)
        value = xp.sum(self.weights * (r - eps), dtype=xp.float64)
        slope = xp.where(r > 0, c / xp.where(r > 0, r, 1.0), 0.0)
        return float(value), starlet2d_adjoint(self.weights * slope)


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


def band_energy(scales: int) -> np.ndarray:
    """‖ψ_j‖² (j = 0 … ``scales``, finest first, coarse last): the energy of each band of the
    2-D starlet of a unit impulse (host, float64; exact, on a grid wide enough for the
    coarsest kernel)."""
    side = 8 * 2 ** scales + 1
    impulse = np.zeros((side, side))
    impulse[side // 2, side // 2] = 1.0
    return np.sum(np.asarray(starlet2d(impulse, scales)) ** 2, axis=(1, 2))


def local_thresholds(sig, s, scales: int):
    """Thresholds (map units, ``(scales + 1, ny, nx)``) of a map whose noise level s(p)
    (``metric_noise``) changes sharply from pixel to pixel, such as an amplitude map across
    a remnant's edge: T_j(p) = ‖ψ_j‖²·s(p)²/c_j(p), c_j = ``sig`` the starlet propagation
    of s. Where s is locally uniform c_j = ‖ψ_j‖·s and T_j = c_j, the k = 1 threshold;
    where a pixel's coefficient takes most of its noise from noisier neighbours
    (c_j ≫ ‖ψ_j‖·s(p)) its threshold falls with the ratio instead of rising with it, so
    that the penalty λ = T·D stays ≤ ‖ψ_j‖²·(s²D)/c_j ≤ ‖ψ_j‖²/c_j (s²D = (σ_cond/σ)² ≤ 1):
    with T = c_j a bright pixel beside faint ones took its neighbours' noise at its own
    curvature D, up to 1e6 per coefficient, and the penalty of a few edge pixels outweighed
    the likelihood 1000 to 1 (docs/unmixing.md, "Choosing the amplitude prior")."""
    xp = array_namespace(sig)
    energy = xp.asarray(band_energy(scales), dtype=sig.dtype)[:, None, None]
    local = energy * (s * s)[None, :, :]
    return xp.where(sig > 0, local / xp.where(sig > 0, sig, 1.0), 0.0)


def block_transfer(scales: int, factor: int, seed: int = 0, draws: int = 16, side: int | None = None,
                   psf=None) -> np.ndarray:
    """ρ_j (j = 0 … ``scales``, finest first, coarse last): the fraction of the energy of the
    scale-j band of the 2-D starlet of white noise that survives the observation's PSF
    (``psf``: a centred kernel on the model grid, summing to 1; None: none) and averaging
    over blocks of ``factor × factor`` pixels (each block's mean repeated over it). A
    measurement of blurred block means (a detector pixel covering factor² model pixels,
    behind its PSF) carries that fraction of its information about a scale-j pattern: ρ → 0
    for scales finer than the block or the PSF, → 1 for coarser ones; exactly 1 for
    ``factor`` 1 without a PSF. Estimated from ``draws`` seeded white-noise fields of
    ``side`` pixels (default: a multiple of ``factor``, at least 64, 4·2^scales and twice
    the kernel; the blur is circular; host, float64)."""
    if factor == 1 and psf is None:
        return np.ones(scales + 1)
    kernel = None if psf is None else np.asarray(psf, dtype=np.float64)
    least = max(64, 4 * 2 ** scales, 2 * max(kernel.shape) if kernel is not None else 0)
    side = side or factor * -(-least // factor)
    rng = np.random.default_rng([int(seed), 0x72686F])  # a stream of its own ("rho")
    bands = np.asarray(starlet2d(rng.standard_normal((draws, side, side)), scales))  # (J + 1, draws, side, side)
    seen = bands if kernel is None else _blurred(bands, kernel)
    n = side // factor
    means = seen.reshape(scales + 1, draws, n, factor, n, factor).mean(axis=(3, 5))
    kept = np.sum(means ** 2, axis=(1, 2, 3)) * factor ** 2  # each mean repeated over factor² pixels
    return kept / np.sum(bands ** 2, axis=(1, 2, 3))


def _blurred(images, kernel):
    """``images`` (..., side, side) circularly convolved with the centred ``kernel`` (ky, kx),
    cropped to the images where it is larger."""
    side = images.shape[-1]
    ky, kx = kernel.shape
    hy, hx = min(ky // 2, side // 2 - 1), min(kx // 2, side // 2 - 1)
    k = kernel[ky // 2 - hy: ky // 2 + hy + 1, kx // 2 - hx: kx // 2 + hx + 1]
    padded = np.zeros((side, side))
    padded[:k.shape[0], :k.shape[1]] = k
    padded = np.roll(padded, (-hy, -hx), axis=(0, 1))  # the kernel's centre at (0, 0)
    return np.fft.irfft2(np.fft.rfft2(images) * np.fft.rfft2(padded), s=(side, side))


def finest_scale_weights(pieces: list, seed: int = 0) -> list[float]:
    """Per observation [(block size f_k, PSF psf_k or None)], the weight ρ_0(k)/ρ_0(ref) in
    [0, 1] of its curvature in a per-pixel metric: the fraction of the finest starlet scale
    (``block_transfer``) its pixels and PSF keep, relative to the reference's (the finest
    block size, the first of those). One observation: [1.0]."""
    if len(pieces) == 1:
        return [1.0]
    ref = min(range(len(pieces)), key=lambda k: pieces[k][0])
    rho = [float(block_transfer(1, int(f), seed, psf=psf)[0]) for f, psf in pieces]
    return [float(np.clip(r / rho[ref], 0.0, 1.0)) if rho[ref] > 0 else 1.0 for r in rho]


def _piece(share):
    """(w or σ, block size, PSF or None) of a piece given as (·, f) or (·, f, psf)."""
    return (share[0], int(share[1]), share[2] if len(share) > 2 else None)


def shared_coefficient_sigma(sigma, shares: list, scales: int, seed: int = 0, draws: int = 64):
    """``coefficient_sigma`` of the noise level ``sigma`` (s = 1/(σ·D), ``metric_noise``) of
    a map informed by independent pieces of information, each about blurred block means of
    its own: ``shares`` = [(w_k, f_k)] or [(w_k, f_k, psf_k)], w_k (``(ny, nx)``, host;
    Σ_k w_k = 1) the fraction of pixel p's information that piece k holds (its per-pixel
    fits, which neglect the PSF), f_k its block size in model pixels per axis (the detector
    pixel of the observation it comes from) and psf_k that observation's PSF on the model
    grid (None: none).

    The penalty of a coefficient is λ = k·s·D = k·√I (I its information: the threshold k·σ
    of a noise σ = I^(−1/2) at the solution, whatever the metric), so at a fixed metric s²
    grows with the information, and a piece carries the fraction ρ_j(f_k, psf_k)
    (``block_transfer``) of its information about a scale-j pattern, relative to the
    reference piece's (the finest block size, the first of those):

        s_j(p) = c_j(p) · √(Σ_k w_k(p) · ρ_j(k) / ρ_j(ref)),   c = coefficient_sigma(sigma).

    A coarse or blurred observation's information then weighs on the scales its pixels and
    PSF resolve, and not on the finer ones, where only the sharp observation measures the
    map (their penalties stay those of its information alone). One piece, or pieces that
    all see alike (one block size, no PSF), give ``coefficient_sigma(sigma)`` itself."""
    c = coefficient_sigma(sigma, scales, seed, draws)
    pieces = [_piece(share) for share in shares]
    if len(pieces) == 1 or (len({f for _, f, _ in pieces}) == 1 and all(psf is None for _, _, psf in pieces)):
        return c
    xp = array_namespace(c)
    ref = min(range(len(pieces)), key=lambda k: pieces[k][1])
    reference = block_transfer(scales, pieces[ref][1], seed, psf=pieces[ref][2])
    kept = sum(np.clip(np.asarray(w, dtype=np.float64), 0.0, 1.0)[None, :, :]
               * (block_transfer(scales, f, seed, psf=psf) / reference)[:, None, None] for w, f, psf in pieces)
    return c * xp.asarray(np.sqrt(np.clip(kept, 0.0, 1.0)), dtype=c.dtype)


def information_shares(parts: list) -> list:
    """[(w_k, f_k)] (or [(w_k, f_k, psf_k)]) for ``shared_coefficient_sigma`` from [(σ_k, f_k)]
    (or [(σ_k, f_k, psf_k)]): the 1-σ errors (host maps; inf / NaN: no information) of
    independent pieces of information about a map, their block sizes (and PSFs);
    w_k = σ_k⁻² / Σ σ⁻², and where no piece informs a pixel, the finest piece holds it all."""
    pieces = [_piece(part) for part in parts]
    with np.errstate(divide="ignore", invalid="ignore"):
        infos = [np.where(np.isfinite(s) & (np.asarray(s) > 0), 1.0 / np.square(np.asarray(s, dtype=np.float64)), 0.0)
                 for s, _, _ in pieces]
    total = sum(infos)
    finest = min(range(len(pieces)), key=lambda k: pieces[k][1])
    out = []
    for k, ((_, f, psf), info, part) in enumerate(zip(pieces, infos, parts)):
        w = np.where(total > 0, info / np.where(total > 0, total, 1.0), 1.0 if k == finest else 0.0)
        out.append((w, f) if len(part) == 2 else (w, f, psf))
    return out
