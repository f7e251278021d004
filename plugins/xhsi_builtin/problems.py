"""Built-in problem plugin: deconvolution and fusion."""
from xhsi import hookimpl
from xhsi.problems import Deconvolution, Fusion


@hookimpl
def xhsi_register_problems():
    return [Deconvolution, Fusion]
