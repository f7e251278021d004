"""Numerical helpers of the instrument model: energy grids and their overlaps, Gaussian
redistribution, PSF kernels sampled on a pixel grid, and cached reading of OGIP responses."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.special import ndtr

from ..errors import ShapeError
from .schema import EnergyTable

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))  # 2.3548: Gaussian FWHM = 2.3548 σ
ARCSEC_PER_ARCMIN = 60.0
SUPERSAMPLE = 5  # analytic PSFs are integrated over each pixel on a 5 × 5 sub-grid...
SUPERSAMPLED_HALF = 10  # ...within 10 pixels of the centre (point-sampled beyond)


def as_function(value: float | EnergyTable):
    """A scalar or an energy table as a function of energy (keV) → array."""
    if isinstance(value, EnergyTable):
        return value
    return lambda e: np.full(np.shape(e), float(value))


def energy_dependent(value) -> bool:
    return isinstance(value, EnergyTable) and len(set(value.values)) > 1


# ----------------------------------------------------------------------------- grids
def check_edges(edges_kev, what: str = "model_energy_edges_kev") -> np.ndarray:
    from ..backend import to_numpy

    edges = np.asarray(to_numpy(edges_kev) if not isinstance(edges_kev, (list, tuple)) else edges_kev, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0) or edges[0] < 0:
        raise ShapeError(f"{what} must be at least two finite, increasing energies >= 0 keV; got {edges!r:.200}.")
    return edges


def overlap_matrix(src_edges: np.ndarray, dst_edges: np.ndarray) -> sp.csr_matrix:
    """Sparse (n_dst, n_src) matrix of overlap lengths between the bins of two edge lists."""
    if dst_edges.size * src_edges.size < 4e6:
        lo = np.maximum(dst_edges[:-1, None], src_edges[None, :-1])
        hi = np.minimum(dst_edges[1:, None], src_edges[None, 1:])
        return sp.csr_matrix(np.clip(hi - lo, 0.0, None))
    # Large grids: only the few source bins each destination bin touches.
    first = np.searchsorted(src_edges, dst_edges[:-1], side="right") - 1
    last = np.searchsorted(src_edges, dst_edges[1:], side="left")
    counts = np.clip(last - first, 0, None)
    rows = np.repeat(np.arange(dst_edges.size - 1), counts)
    cols = np.repeat(first, counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
    ok = (cols >= 0) & (cols < src_edges.size - 1)
    rows, cols = rows[ok], cols[ok]
    w = np.minimum(dst_edges[1:][rows], src_edges[1:][cols]) - np.maximum(dst_edges[:-1][rows], src_edges[:-1][cols])
    keep = w > 0
    return sp.csr_matrix((w[keep], (rows[keep], cols[keep])), shape=(dst_edges.size - 1, src_edges.size - 1))


def _antiderivative_ndtr(x):
    """∫ Φ(u) du = x Φ(x) + φ(x), with Φ the standard normal CDF and φ its density."""
    return x * ndtr(x) + np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def gaussian_redistribution(model_edges_kev: np.ndarray, channel_edges_kev: np.ndarray,
                            fwhm_kev: np.ndarray) -> np.ndarray:
    """Dense (n_e, n_chan) matrix: probability that a photon drawn uniformly in true-energy
    bin i lands in channel c, for a Gaussian line-spread function of FWHM ``fwhm_kev[i]``.

    Exact box-average: the CDF Φ((e − E)/σ) at each channel edge e is averaged over
    E ∈ [a, b] with the closed form σ [G((e−a)/σ) − G((e−b)/σ)] / (b − a), G(x) = xΦ(x) + φ(x),
    so bins wider than σ (a 5 eV Resolve FWHM on 10 eV model bins) are handled exactly;
    bins much narrower than σ use Φ at the bin centre."""
    a, b = model_edges_kev[:-1, None], model_edges_kev[1:, None]
    sigma = (np.asarray(fwhm_kev, dtype=np.float64) / FWHM_PER_SIGMA)[:, None]
    e = channel_edges_kev[None, :]
    narrow = (b - a) < 1e-3 * sigma
    with np.errstate(invalid="ignore", divide="ignore"):
        boxed = sigma * (_antiderivative_ndtr((e - a) / sigma) - _antiderivative_ndtr((e - b) / sigma)) / (b - a)
    cdf = np.where(narrow, ndtr((e - 0.5 * (a + b)) / sigma), boxed)
    return np.clip(np.diff(cdf, axis=1), 0.0, None)


# ----------------------------------------------------------------------------- PSF kernels
def kernel_half(radius_arcsec: float, pixel_arcsec: float) -> int:
    return max(1, int(math.ceil(radius_arcsec / pixel_arcsec - 0.5)))


def supersampled_radius2(half: int, pixel_arcsec: float) -> np.ndarray:
    """Squared radius (arcsec²) of a (2h+1)·s square sub-grid whose s × s blocks are pixels."""
    s = SUPERSAMPLE
    n = (2 * half + 1) * s
    offsets = (np.arange(n) + 0.5) / s - (half + 0.5)  # pixel units, 0 at the centre pixel's centre
    r = offsets * pixel_arcsec
    return r[None, :] ** 2 + r[:, None] ** 2


def block_sum(fine: np.ndarray) -> np.ndarray:
    s = SUPERSAMPLE
    *lead, ny, nx = fine.shape
    return fine.reshape(*lead, ny // s, s, nx // s, s).sum(axis=(-3, -1))


def normalise_kernel(kernel: np.ndarray) -> np.ndarray:
    total = kernel.sum(axis=(-2, -1), keepdims=True)
    return kernel / total


def crop_kernel(kernel: np.ndarray, max_half) -> np.ndarray:
    """Keep at most (2 hy + 1, 2 hx + 1) central pixels of (..., ky, kx) odd kernels."""
    if max_half is None:
        return kernel
    ky, kx = kernel.shape[-2:]
    cy, cx = min(ky // 2, int(max_half[0])), min(kx // 2, int(max_half[1]))
    return kernel[..., ky // 2 - cy: ky // 2 + cy + 1, kx // 2 - cx: kx // 2 + cx + 1]


def resample_axis(n_in: int, p_in: float, n_out: int, p_out: float, centre_in: float | None = None) -> np.ndarray:
    """(n_out, n_in) fractions of each input pixel falling in each output pixel, the output
    grid centred on ``centre_in`` (input pixels from the first pixel's outer edge; default the
    middle, n_in / 2): flux-conserving resampling."""
    e_in = (np.arange(n_in + 1) - (n_in / 2.0 if centre_in is None else centre_in)) * p_in
    e_out = (np.arange(n_out + 1) - n_out / 2.0) * p_out
    return (overlap_matrix(e_in, e_out) / p_in).toarray()


def image_peak_centre(image: np.ndarray) -> tuple[float, float]:
    """The centre (y, x) of a PSF image's peak, in pixels from the image's outer edge (so the
    middle of an n-pixel axis is n / 2): the flux-weighted centroid of the connected pixels at
    or above half the maximum that hold the maximum. A PSF sampled symmetrically about a
    pixel corner (an even image centred on its middle) gives that corner; one whose peak
    is a pixel gives about that pixel's centre."""
    from scipy import ndimage

    core = image >= 0.5 * image.max()
    labels, _ = ndimage.label(core)
    peak = labels[np.unravel_index(np.argmax(image), image.shape)]
    weights = np.where(labels == peak, image, 0.0)
    yy, xx = np.indices(image.shape)
    total = weights.sum()
    # Rounded to 1e-9 pixel so that a symmetric image gives its middle exactly (not n/2 + 1 ulp).
    return (round(float((weights * yy).sum() / total + 0.5), 9), round(float((weights * xx).sum() / total + 0.5), 9))


_RESPONSES: dict[tuple, Any] = {}


def read_response(kind: str, path: Path):
    """read_rmf / read_arf, cached per file and modification time (several instrument files
    may share one response; the objects are not modified after reading)."""
    from ..io import read_arf, read_rmf

    path = Path(path).resolve()
    key = (kind, str(path), path.stat().st_mtime_ns)
    if key not in _RESPONSES:
        _RESPONSES[key] = read_rmf(path) if kind == "rmf" else read_arf(path)
    return _RESPONSES[key]

