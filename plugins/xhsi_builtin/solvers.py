"""Built-in solvers plugin."""
from xhsi import hookimpl


@hookimpl
def xhsi_register_solvers():
    return []
