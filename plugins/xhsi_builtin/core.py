"""Built-in plugin ``core``: registers the classes the core defines and calls itself —
operators, likelihoods, solvers and problems — and the instrument files shipped in
``xhsi_instruments``. They are registered through the ``xhsi`` entry-point group exactly as
a third-party plugin's would be, so ``xhsi plugins`` lists them and configs name them.

(The rule, docs/architecture.md: the core holds contracts, engines and anything the core
itself calls; ``xhsi_builtin`` holds registrations, and leaf classes no core module imports:
the ``scenes``, ``regularizers`` and ``spectral_models`` plugins.)"""
from importlib import resources

from xhsi import hookimpl
from xhsi.likelihoods import Gaussian, Poisson
from xhsi.operators import (
    BlurRebin, Crop, Diagonal, Identity, Pad, SpatialConvolution, SpatialRebin, SpectralConvolution, SpectralRebin,
    SpectralResponse,
)
from xhsi.problems import Deconvolution, Fusion, PixelFit, Unmixing
from xhsi.problems.fusion_unmixing import FusionUnmixing
from xhsi.solvers import FISTA, ISTA, PALM, BlockLBFGS


@hookimpl
def xhsi_register_operators():
    return [Identity, Diagonal, SpatialConvolution, SpectralConvolution, SpectralResponse,
            SpatialRebin, SpectralRebin, Crop, Pad, BlurRebin]


@hookimpl
def xhsi_register_likelihoods():
    return [Poisson, Gaussian]


@hookimpl
def xhsi_register_solvers():
    return [ISTA, FISTA, PALM, BlockLBFGS]


@hookimpl
def xhsi_register_problems():
    return [Deconvolution, Fusion, Unmixing, PixelFit, FusionUnmixing]


@hookimpl
def xhsi_register_instruments():
    folder = resources.files("xhsi_instruments")
    return sorted(str(p) for p in folder.iterdir() if p.name.endswith(".toml"))
