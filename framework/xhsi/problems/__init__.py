"""Problems turn a validated config into operators, an objective and a solver run."""
from .base import ObservationData, Problem
from .imaging import Deconvolution, Fusion
from .pixelfit import PixelFit
from .unmixing import Unmixing

__all__ = ["Problem", "ObservationData", "Deconvolution", "Fusion", "Unmixing", "PixelFit"]
