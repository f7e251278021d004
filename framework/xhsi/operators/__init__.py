"""Linear operators: algebra in ``base``, physical building blocks in their own modules
(``diagonal``, ``convolution``, ``response``, ``rebin``, ``crop``, ``starlet``; ``fused`` for the
PSF + response + rebin chain in one Fourier-space pass). See docs/operators.md."""
from .base import Composition, Identity, LinearOperator, Scaled, Sum, vdot
from .convolution import SpatialConvolution, SpectralConvolution
from .crop import Crop, Pad
from .diagonal import Diagonal
from .fused import BlurRebin
from .rebin import SpatialRebin, SpectralRebin
from .response import SpectralResponse
from .starlet import Starlet2d1d, StarletAnalysis

__all__ = [
    "LinearOperator", "Identity", "Composition", "Sum", "Scaled", "vdot",
    "Diagonal", "SpatialConvolution", "SpectralConvolution", "SpectralResponse",
    "SpatialRebin", "SpectralRebin", "Crop", "Pad", "BlurRebin", "Starlet2d1d", "StarletAnalysis",
]
