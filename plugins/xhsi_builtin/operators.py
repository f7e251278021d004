"""Built-in operators plugin: the physical building blocks of forward models."""
from xhsi import hookimpl
from xhsi.operators import (
    BlurRebin, Crop, Diagonal, Identity, Pad, SpatialConvolution, SpatialRebin, SpectralConvolution, SpectralRebin,
    SpectralResponse,
)


@hookimpl
def xhsi_register_operators():
    return [Identity, Diagonal, SpatialConvolution, SpectralConvolution, SpectralResponse,
            SpatialRebin, SpectralRebin, Crop, Pad, BlurRebin]
