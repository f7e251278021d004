"""Instruments described by TOML files, and their compilation into forward operators.

An instrument file (schema: :class:`InstrumentFile`; reference: docs/instruments.md) states
the detector channels, the spectral redistribution (an OGIP RMF or a Gaussian FWHM(E) law),
the effective area (an OGIP ARF, a table or a constant), the pixel size, the PSF (Gaussian,
King profile or FITS image) and a flat background, every number with its unit in the key
name and a source in ``references`` or a comment.

Two grids are kept apart throughout:

- the **model grid**: the sky cube's true-energy bins (``model_energy_edges_kev``) and sky
  pixels, chosen by the run config;
- the **channel grid**: the channels of the counts cube. A run (``spectral_rebin = k``,
  default 1) uses one channel per k model bins — moved onto the nearest RMF channel edges
  for an RMF instrument; ``spectral_rebin = None`` gives the detector's own channels (the
  RMF's EBOUNDS or the ``[channels]`` table) in the instrument's band.

``load_instrument(name_or_path)`` gives an :class:`Instrument`;
``compile_forward(...)`` builds the forward operator

    A = SpatialRebin ∘ SpectralResponse ∘ SpatialConvolution(PSF) ∘ Diagonal(exposure × area)

that maps a sky cube (photons / s / cm² per true-energy bin and sky pixel) to expected
counts per channel and detector pixel. Compiled operators are cached.

Energy tables ``{ energies_kev = [...], values = [...] }`` are interpolated linearly in
energy and held constant beyond their first and last energies (clamped).
"""
from __future__ import annotations

from .forward import ForwardOperator, compile_forward, compile_observation
from .instrument import Instrument
from .loading import describe, load_instrument, summary_rows
from .response import FWHM_PER_SIGMA, gaussian_redistribution, overlap_matrix
from .schema import EnergyTable, InstrumentFile, parse_instrument

__all__ = [
    "InstrumentFile", "EnergyTable", "Instrument", "ForwardOperator", "load_instrument", "compile_forward",
    "compile_observation",
    "summary_rows", "describe", "clear_caches", "parse_instrument", "overlap_matrix", "gaussian_redistribution",
    "FWHM_PER_SIGMA",
]


def clear_caches() -> None:
    """Forget loaded instruments, read responses and compiled operators."""
    from . import forward, loading, response

    loading._INSTRUMENTS.clear()
    forward._FORWARD_CACHE.clear()
    response._RESPONSES.clear()
