"""Built-in likelihoods plugin."""
from xhsi import hookimpl


@hookimpl
def xhsi_register_likelihoods():
    return []
