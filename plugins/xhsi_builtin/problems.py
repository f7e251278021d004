"""Built-in problem plugin: deconvolution, fusion, unmixing and pixelfit."""
from xhsi import hookimpl
from xhsi.problems import Deconvolution, Fusion, PixelFit, Unmixing


@hookimpl
def xhsi_register_problems():
    return [Deconvolution, Fusion, Unmixing, PixelFit]
