"""xhsi: X-ray hyperspectral imaging — deconvolution, fusion and unmixing of photon-count
cubes (energy, y, x) as regularised inverse problems, on numpy or cupy.

Top level::

    xhsi.__version__
    xhsi.get_plugin_manager()      # a new pluggy manager with every installed plugin
    xhsi.get(kind, name)           # the registered class, e.g. xhsi.get("regularizer", "l2")
    xhsi.available(kind)           # registered names of a kind (xhsi.KINDS: every kind)
    xhsi.load_config(path, overrides=())   # a validated run config, an xhsi.Config
    xhsi.hookimpl                  # marks a plugin's hook implementations
    xhsi.XhsiError                 # base of xhsi.ConfigError, xhsi.PluginError,
                                   # xhsi.DataError, xhsi.ShapeError

Subpackages and modules for library use (import them by name; wherever a function takes an
array namespace ``xp``, plain ``numpy`` or ``cupy`` is accepted; see docs/api.md)::

    xhsi.backend       Backend (namespace, dtype, FFT, seeded draws), compat_namespace, to_numpy
    xhsi.grid          ModelGrid: the sky cube's true-energy bins and pixels
    xhsi.instruments   load_instrument, compile_forward: instrument TOML → forward operator
    xhsi.io            FITS cubes with WCS, OGIP RMF/ARF, event lists
    xhsi.operators     LinearOperator and the physical operators (PSF, response, rebin, ...)
    xhsi.spectral      spectra, SpectralModel, build_spectral_model, surrogates
    xhsi.sparsity      starlet and wavelet transforms, the analysis-ℓ1 prox
    xhsi.likelihoods   Poisson, Gaussian, DataTerm
    xhsi.regularizers  the Regularizer base class (the regularisers are plugins)
    xhsi.solvers       ISTA/FISTA, PALM, prox terms, checkpoints
    xhsi.problems      Deconvolution, Fusion, Unmixing, PixelFit
    xhsi.simulate      the Scene base class, simulate_counts
    xhsi.metrics       PSNR, ASAM, SSIM, relative errors
    xhsi.runner        run and simulate from a config (what the xhsi command does)
    xhsi.distributed   sweeps of a config over a grid of overrides on Dask (xhsi sweep)
    xhsi.testing       dot_test, check_gradient, check_prox: checks for plugin authors
"""
from __future__ import annotations

from importlib import metadata as _metadata

from .config import Config, load_config
from .errors import ConfigError, DataError, PluginError, ShapeError, XhsiError
from .hookspecs import hookimpl
from .plugins import KINDS, available, get, get_plugin_manager

try:
    __version__ = _metadata.version("xhsi")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "__version__", "hookimpl", "get_plugin_manager", "get", "available", "KINDS",
    "load_config", "Config", "XhsiError", "ConfigError", "PluginError", "DataError", "ShapeError",
]
