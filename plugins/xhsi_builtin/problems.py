"""Built-in problems plugin."""
from xhsi import hookimpl


@hookimpl
def xhsi_register_problems():
    return []
