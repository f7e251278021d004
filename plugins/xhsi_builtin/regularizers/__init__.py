"""Built-in regulariser plugin."""
from xhsi import hookimpl


@hookimpl
def xhsi_register_regularizers():
    return []
