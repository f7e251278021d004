"""Built-in regulariser plugin: one module per family (basic, starlet, wavelet, lowrank).
docs/regularizers.md describes each one."""
from xhsi import hookimpl

from .basic import L2, NonNegative, Sobolev
from .lowrank import LowRankPCA
from .starlet import Starlet2d1dL1, Starlet2dL1
from .wavelet import Wavelet2dL1

__all__ = ["NonNegative", "L2", "Sobolev", "Starlet2dL1", "Starlet2d1dL1", "Wavelet2dL1", "LowRankPCA"]


@hookimpl
def xhsi_register_regularizers():
    return [NonNegative, L2, Sobolev, Starlet2dL1, Starlet2d1dL1, Wavelet2dL1, LowRankPCA]
