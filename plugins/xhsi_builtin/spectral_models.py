"""Built-in spectral models plugin."""
from xhsi import hookimpl


@hookimpl
def xhsi_register_spectral_models():
    return []
