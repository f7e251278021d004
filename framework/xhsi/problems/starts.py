"""Data-only estimates of the sky cube: the starts of deconvolution and fusion, and their
data-only baselines (``backprojection``, ``ratio_fusion``), computed on the host in float32
(``host_observation``) so that every precision and backend starts from the same bits; and
the reader of a start cube from a file (``read_start_cube``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..backend import array_namespace, to_numpy
from ..errors import DataError
from .base import ObservationData


def imager_and_spectrometer(observations) -> tuple[int, int]:
    """Indices of the observation with the most detector pixels (the imager) and of the one
    with the most channels (the spectrometer); ties go to the first in config order."""
    shapes = [tuple(o.counts.shape) for o in observations]
    imager = max(range(len(shapes)), key=lambda i: (shapes[i][-2] * shapes[i][-1], -i))
    spectrometer = max(range(len(shapes)), key=lambda i: (shapes[i][0], -i))
    return imager, spectrometer


def _tiny(x, xp) -> float:
    """A positive floor for dividing by ``x`` (≥ 0): 1e-12 of its largest value."""
    return float(xp.max(x)) * 1e-12 + 1e-30


def backprojection(observations: list[ObservationData], xp, floor: float = 0.0):
    """One Richardson–Lucy step from a flat sky: Σ_k A_kᵀ(E_k / A_k 1) / Σ_k A_kᵀ 1, with
    E_k = max(Y_k − B_k, 0) the excess counts. For a diagonal response this is E/a, the
    counts divided by exposure × area; in general each data voxel's excess is spread back
    over the sky voxels that feed it. A positive, data-only estimate of the sky cube, used
    to start the solvers and as the data-only baseline of each observation."""
    num = den = None
    for obs in observations:
        excess = obs.counts if obs.background is None else xp.clip(obs.counts - obs.background, min=0.0)
        response = obs.forward.apply(xp.ones(obs.forward.shape_in, dtype=obs.counts.dtype))
        tiny = _tiny(response, xp)
        ratio = xp.where(response > tiny, excess / xp.clip(response, min=tiny), xp.zeros_like(excess))
        n = obs.forward.adjoint(ratio)
        d = obs.forward.adjoint(xp.ones_like(obs.counts))
        num, den = (n, d) if num is None else (num + n, den + d)
    return xp.clip(num / xp.clip(den, min=_tiny(den, xp)), min=floor)


def ratio_fusion(observations: list[ObservationData], xp):
    """A data-only fused estimate: z(e, p) = b_s(e, p) · Σ_e b_i(e, p) / Σ_e b_s(e, p), with
    b_k the back-projection of observation k alone (``backprojection``), s the observation
    with the most channels (finest spectra) and i the one with the most detector pixels
    (finest image); ties go to the first in config order. The spectral shape of every
    pixel is the spectrometer's, its broad-band flux the imager's: the ratio (Brovey) form
    of component substitution in pansharpening (Gillespie, Kahle & Walker 1987, Remote
    Sens. Environ. 22, 343). Pixels where the spectrometer's band flux is below 1e-6 of its
    maximum keep the joint back-projection. When one observation is finest in both, this
    is its own back-projection."""
    i, s = imager_and_spectrometer(observations)
    spatial, spectral = observations[i], observations[s]
    b_spec = backprojection([spectral], xp)
    if i == s:
        return b_spec
    image = xp.sum(backprojection([spatial], xp), axis=0)
    band = xp.sum(b_spec, axis=0)
    tiny = float(xp.max(band)) * 1e-6
    ok = band > tiny
    ratio = xp.where(ok, image / xp.where(ok, band, xp.ones_like(band)), xp.zeros_like(band))
    if bool(xp.all(ok)):  # the fallback is not needed: skip its back-projection (cubes of memory)
        return b_spec * ratio
    return xp.where(ok, b_spec * ratio, backprojection(observations, xp))


def ratio_channels(observations: list[ObservationData], xp, alpha: float | None = None):
    """A data-only fused estimate that keeps the imager's spectral information: one
    Richardson–Lucy step of the imager's counts from the spectrometer's back-projection,

        z = b_s · A_iᵀ r / A_iᵀ1,    r = (Y_i + α) / (m + α / r_p),    m = A_i b_s + B_i,

    with s the observation with the most channels and i the one with the most detector
    pixels (as ``ratio_fusion``), r_p = Σ_c Y_i / Σ_c m each detector pixel's broad-band
    ratio. With α = 0, r = Y_i / m is the ratio per imager channel and pixel (the RL step);
    as α → ∞ it is the broad-band ratio r_p of every channel, which is ``ratio_fusion``
    but for where the ratio is taken (data, not sky). In between r is the posterior mean
    of a channel's ratio under a Gamma prior of shape α centred on r_p (Poisson–Gamma
    empirical Bayes: a channel's counts pull its ratio from the pixel's as far as they are
    many), with α from the data's moments (``channel_ratio_shape``) unless given. So at
    high counts each pixel's spectrum follows the imager's channels (the spectrometer's
    shape only within them), at low counts it follows the spectrometer's whole spectrum.
    When one observation is finest in both, this is its own back-projection."""
    i, s = imager_and_spectrometer(observations)
    spatial, spectral = observations[i], observations[s]
    b_spec = backprojection([spectral], xp)
    if i == s:
        return b_spec
    forward, counts = spatial.forward, spatial.counts
    m = forward.apply(b_spec)
    m = m if spatial.background is None else m + spatial.background
    tiny = _tiny(m, xp)
    band = xp.sum(counts, axis=0) / xp.clip(xp.sum(m, axis=0), min=tiny)  # r_p per detector pixel
    alpha = channel_ratio_shape(counts, m * band[None, ...]) if alpha is None else float(alpha)
    if alpha == float("inf"):
        ratio = xp.broadcast_to(band[None, ...], tuple(m.shape))
    else:
        ratio = (counts + alpha) / xp.clip(m + alpha / xp.clip(band, min=tiny)[None, ...], min=tiny)
    den = forward.adjoint(xp.ones_like(counts))
    # clipped: a PSF applied by FFT leaves rounding-level negatives in the adjoint
    return xp.clip(b_spec * forward.adjoint(ratio) / xp.clip(den, min=_tiny(den, xp)), min=0.0)


def channel_ratio_shape(counts, expected) -> float:
    """The shape α of the Gamma prior of ``ratio_channels``: 1/CV², CV² the squared
    coefficient of variation of the channels' true ratios about their pixel's, from the
    moments of the counts Y ~ Poisson(μ·ρ) about the pixel-ratio prediction μ = ``expected``:
    E(Y − μ)² = μ² CV² + μ, so CV² = Σ((Y − μ)² − μ) / Σ μ² (pooled over every channel and
    pixel). inf where the counts vary no more than Poisson noise (CV² ≤ 0)."""
    xp = array_namespace(counts, expected)
    spread = float(xp.sum((counts - expected) ** 2 - expected))
    scale = float(xp.sum(expected * expected))
    return scale / spread if spread > 0 and scale > 0 else float("inf")


def host_observation(obs: ObservationData) -> ObservationData:
    """``obs`` with its float32 host operator (``ObservationData.host_forward``) and float32
    numpy copies of its counts and background: the data-only starts computed from it are
    the same bits whatever the run's backend and dtype."""
    def host(a):
        return None if a is None else np.asarray(to_numpy(a), dtype=np.float32)

    return ObservationData(obs.name, obs.host_forward(), host(obs.counts), host(obs.background), obs.instrument)


def check_start_cube(path: Path, grid) -> None:
    """The checks of :func:`read_start_cube` that need no data: the file exists and its
    header and energy grid map onto the model grid."""
    from ..errors import XhsiError
    from ..io.sky import check_sky_cube

    if not Path(path).is_file():
        raise DataError(f"[problem] start_file {path}: no such file; give the result.fits of an earlier run on this "
                        "[model] grid.")
    try:
        check_sky_cube(Path(path), grid)
    except XhsiError as exc:
        raise type(exc)(f"[problem] start_file: {exc}") from None


def read_start_cube(path: Path, grid) -> np.ndarray:
    """A sky cube FITS (photons / s / cm² per bin and pixel) on the model grid, read by the
    ``fits`` scene (EBOUNDS or a spectral WCS; resampled when the grids differ by integer
    factors, else a DataError), and checked to be ≥ 0."""
    from ..errors import XhsiError
    from ..io.sky import read_sky_cube

    where = f"[problem] start_file {path}"
    if not Path(path).is_file():
        raise DataError(f"{where}: no such file; give the result.fits of an earlier run on this [model] grid.")
    try:
        data = read_sky_cube(Path(path), grid)
    except XhsiError as exc:
        raise type(exc)(f"[problem] start_file: {exc}") from None
    if data.min() < 0:
        raise DataError(f"{where}: the cube has negative values; a start must be >= 0.")
    return np.asarray(data, dtype=np.float64)
