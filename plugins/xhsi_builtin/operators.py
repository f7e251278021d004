"""Built-in operators plugin."""
from xhsi import hookimpl


@hookimpl
def xhsi_register_operators():
    return []
