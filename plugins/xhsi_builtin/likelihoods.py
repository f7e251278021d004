"""Built-in likelihoods plugin: Poisson and Gaussian (``xhsi.likelihoods``)."""
from xhsi import hookimpl
from xhsi.likelihoods import Gaussian, Poisson


@hookimpl
def xhsi_register_likelihoods():
    return [Poisson, Gaussian]
