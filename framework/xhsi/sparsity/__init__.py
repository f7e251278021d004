"""Sparse representations for the regularisers: wavelet transforms and their proxes.

- ``wavelets``: the starlet (isotropic undecimated wavelet, Starck et al. 2007) in 2-D
  (``starlet2d``) and 1-D along any axis (``starlet1d``), their true adjoints and synthesis,
  the orthonormal 2-D DWT (``dwt2``/``idwt2``, Haar and Daubechies-4), ``mad_sigma`` (noise
  by median absolute deviation) and ``soft_threshold``, on any array namespace;
- ``frame2d1d``: the 2D-1D starlet of a cube (Starck et al. 2009), streamed band by band
  (``shrink``, ``l1_norms``, ``analysis``, ``adjoint``): what ``starlet2d1d_l1`` runs;
- ``analysis_prox``: the exact prox of a weighted analysis ℓ1 term plus non-negativity,
  by FISTA on its dual (``analysis_l1_prox_nonnegative``), and ``dual_steps``: its
  per-coefficient dual steps for the 2D-1D starlet in a diagonal metric.

The regularisers themselves are plugins (``xhsi.get("regularizer", "starlet2d1d_l1")``);
see docs/regularizers.md.
"""
from .analysis_prox import analysis_l1_prox_nonnegative
from .wavelets import (dwt2, idwt2, mad_sigma, soft_threshold, starlet1d, starlet1d_adjoint, starlet2d,
                       starlet2d_adjoint, starlet_synthesis)

__all__ = [
    "starlet2d", "starlet2d_adjoint", "starlet1d", "starlet1d_adjoint", "starlet_synthesis", "dwt2", "idwt2",
    "mad_sigma", "soft_threshold", "analysis_l1_prox_nonnegative",
]
