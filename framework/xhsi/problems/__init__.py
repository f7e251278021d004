"""Problems turn a validated config into operators, an objective and a solver run."""
from .base import ObservationData, Problem
from .imaging import Deconvolution, Fusion

__all__ = ["Problem", "ObservationData", "Deconvolution", "Fusion"]
