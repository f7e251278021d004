"""Built-in problem plugin: deconvolution, fusion and unmixing."""
from xhsi import hookimpl
from xhsi.problems import Deconvolution, Fusion, Unmixing


@hookimpl
def xhsi_register_problems():
    return [Deconvolution, Fusion, Unmixing]
