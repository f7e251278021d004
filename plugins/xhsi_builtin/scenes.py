"""Built-in scenes plugin."""
from xhsi import hookimpl


@hookimpl
def xhsi_register_scenes():
    return []
