"""Compilation of an observation's forward operator from an :class:`Instrument` and the run's
grid, with a cache of the most recent operators."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ShapeError
from ..operators.base import LinearOperator
from .instrument import Instrument
from .loading import load_instrument
from .response import check_edges

class ForwardOperator(LinearOperator):
    """The compiled forward operator of one observation (built by :func:`compile_forward`):
    sky cube (n_e, ny, nx) in photons / s / cm² per true-energy bin and sky pixel → expected
    counts (n_chan, ny / r, nx / r). ``parts`` lists the operators, innermost first."""

    def __init__(self, op: LinearOperator, *, instrument: "Instrument", model_energy_edges_kev: np.ndarray,
                 channel_edges_kev: np.ndarray, model_pixel_arcsec: float, detector_pixel_arcsec: float,
                 exposure_s: float, channel_keep: np.ndarray | None = None):
        super().__init__(op.shape_in, op.shape_out)
        self.channel_keep = channel_keep  # indices of the channels kept (a spectrum's fit); None: all
        self.op = op
        self.instrument = instrument
        self.model_energy_edges_kev = model_energy_edges_kev
        self.channel_edges_kev = channel_edges_kev
        self.model_pixel_arcsec = model_pixel_arcsec
        self.detector_pixel_arcsec = detector_pixel_arcsec
        self.exposure_s = exposure_s
        self.parts = list(getattr(op, "ops", [op]))

    def _apply(self, x):
        return self.op._apply(x)

    def _adjoint(self, y):
        return self.op._adjoint(y)

    def background_counts(self) -> np.ndarray:
        """Flat background counts per channel and detector pixel, numpy (n_chan, 1, 1)."""
        b = self.instrument.background_counts(self.channel_edges_kev, self.detector_pixel_arcsec, self.exposure_s)
        if self.channel_keep is not None:
            b = b[self.channel_keep]
        return b[:, None, None]

    def __repr__(self) -> str:
        return f"Forward[{self.instrument.name}]({self.op!r})"


def compile_observation(observation, instrument: str | Path | Instrument, grid, backend=None, cache: bool = True):
    """The forward operator of one ``[[observations]]`` table (an
    ``xhsi.config.ObservationSection``: exposure, rebin factors, PSF crop) seen by
    ``instrument`` on a run's model grid (an ``xhsi.grid.ModelGrid``): :func:`compile_forward`
    with the table's settings."""
    return compile_forward(instrument, grid.energy_edges_kev, (grid.ny, grid.nx), grid.pixel_arcsec,
                           observation.exposure_s, spatial_rebin=observation.spatial_rebin,
                           spectral_rebin=observation.spectral_rebin, backend=backend, psf_size=observation.psf_size,
                           cache=cache)


_FORWARD_CACHE: dict[tuple, Any] = {}
_FORWARD_CACHE_SIZE = 16


def compile_forward(instrument: str | Path | Instrument, model_energy_edges_kev, model_pixels: Sequence[int],
                    model_pixel_arcsec: float, exposure_s: float, spatial_rebin: int = 1,
                    spectral_rebin: int | None = 1, backend=None, channel_edges_kev=None,
                    boundary: str = "zero", psf_size: int | None = None, cache: bool = True, channel_keep=None):
    """The forward operator of one observation,

        A = SpatialRebin(r) ∘ SpectralResponse(R) ∘ SpatialConvolution(PSF) ∘ Diagonal(exposure × area),

    computed as Diagonal followed by :func:`xhsi.operators.fused.blur_respond_rebin`'s
    operators (the same map, FFTs on the fewest slices),

    from sky cubes (n_e, ny, nx) [photons / s / cm² per true-energy bin and sky pixel] to
    expected counts (n_chan, ny / r, nx / r).

    - ``model_energy_edges_kev``: n_e + 1 true-energy edges (keV); ``model_pixels`` (ny, nx);
      ``model_pixel_arcsec``: sky pixel (arcsec); ``exposure_s`` (s);
    - ``spatial_rebin`` r: detector pixel = r × model pixel (ny, nx divisible by r);
    - ``spectral_rebin`` k: one channel per k model bins (for an RMF, edges moved to the
      nearest RMF channel edges); None: the instrument's own channels in its band (see
      :meth:`Instrument.detector_channels`);
    - ``channel_edges_kev``: explicit channel edges instead (e.g. a counts cube's EBOUNDS);
    - ``psf_size``: crop the PSF kernel to psf_size × psf_size model pixels (odd; the flux
      outside is dropped, as the instrument's ``[psf] radius_arcsec`` cut does), e.g. the
      29 × 29 kernels of Lascar et al. 2025; default: the instrument's own cut;
    - ``backend``: an :class:`xhsi.backend.Backend` (default numpy float64);
    - ``cache``: keep the operator for later calls with the same arguments (default);
    - ``channel_keep``: indices of the channels (of ``channel_edges_kev``) the operator
      outputs, the others dropped (a spectrum's bad or ignored channels); default: all.

    The redistribution matrix R is computed directly on the output channels (one
    ``SpectralResponse``; for Gaussian responses this is exact where SpectralRebin ∘
    SpectralConvolution would need an energy-independent kernel). The area is averaged over
    each true-energy bin; the PSF (energy-dependent: one kernel per bin, batched by FFT) is
    sampled at the model pixel and cropped to at most twice the image size.

    The result is a LinearOperator with attributes ``channel_edges_kev``,
    ``model_energy_edges_kev``, ``detector_pixel_arcsec``, ``exposure_s``, ``instrument``,
    ``parts`` and ``background_counts()``; compiled operators are cached (16 most recent)."""
    from ..backend import Backend

    inst = load_instrument(instrument)
    backend = backend or Backend("numpy", "float64")
    edges = check_edges(model_energy_edges_kev)
    ny, nx = (int(n) for n in model_pixels)
    if ny < 1 or nx < 1:
        raise ShapeError(f"model_pixels must be two positive sizes (ny, nx), got {tuple(model_pixels)}.")
    if not model_pixel_arcsec > 0 or not exposure_s > 0:
        raise ShapeError(f"model_pixel_arcsec ({model_pixel_arcsec}) and exposure_s ({exposure_s}) must be > 0.")
    ch_key = None if channel_edges_kev is None else tuple(check_edges(channel_edges_kev, "channel_edges_kev"))
    if psf_size is not None and (int(psf_size) < 1 or int(psf_size) % 2 == 0):
        raise ShapeError(f"psf_size must be a positive odd number of model pixels, got {psf_size}.")
    key = (inst.path, id(inst), tuple(edges), ny, nx, float(model_pixel_arcsec), float(exposure_s), spatial_rebin,
           spectral_rebin, backend.name, backend.dtype_name, ch_key, boundary, psf_size,
           None if channel_keep is None else tuple(int(i) for i in channel_keep))
    if cache and key in _FORWARD_CACHE:
        return _FORWARD_CACHE[key]

    from ..operators.diagonal import Diagonal
    from ..operators.fused import blur_respond_rebin

    n_e = edges.size - 1
    shape = (n_e, ny, nx)
    weight = float(exposure_s) * inst.mean_effective_area(edges)
    ops = [Diagonal(backend.asarray(weight.reshape(n_e, 1, 1)), shape)]
    centres = 0.5 * (edges[:-1] + edges[1:])
    # A kernel wider than twice the image cannot reach any pixel from any other: crop it.
    half = (ny - 1, nx - 1) if psf_size is None else (min(ny - 1, psf_size // 2), min(nx - 1, psf_size // 2))
    psf = inst.psf_image(model_pixel_arcsec, centres, max_half=half)
    matrix = inst.redistribution(edges, spectral_rebin, channel_edges_kev)
    out_edges = inst.detector_channels(edges, spectral_rebin, channel_edges_kev)
    # PSF, redistribution and rebin fused and ordered so the FFTs run on the fewest slices
    # (xhsi.operators.fused; equal to SpatialRebin ∘ SpectralResponse ∘ SpatialConvolution).
    ops += blur_respond_rebin(backend.asarray(np.ascontiguousarray(psf)), matrix, shape, spatial_rebin, boundary)
    if channel_keep is not None:
        from ..operators.crop import Select

        ops.append(Select(ops[-1].shape_out, channel_keep))
    chain = ops[0]
    for op in ops[1:]:
        chain = op @ chain
    forward = ForwardOperator(chain, instrument=inst, model_energy_edges_kev=edges, channel_edges_kev=out_edges,
                               model_pixel_arcsec=float(model_pixel_arcsec),
                               detector_pixel_arcsec=float(model_pixel_arcsec) * spatial_rebin, exposure_s=float(exposure_s),
                               channel_keep=None if channel_keep is None else np.asarray(channel_keep, dtype=np.int64))
    if not cache:
        return forward
    if len(_FORWARD_CACHE) >= _FORWARD_CACHE_SIZE:
        _FORWARD_CACHE.pop(next(iter(_FORWARD_CACHE)))
    _FORWARD_CACHE[key] = forward
    return forward


