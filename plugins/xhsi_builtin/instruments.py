"""Built-in instruments plugin: the instrument TOML files shipped in ``xhsi_instruments``."""
from importlib import resources

from xhsi import hookimpl


@hookimpl
def xhsi_register_instruments():
    folder = resources.files("xhsi_instruments")
    return sorted(str(p) for p in folder.iterdir() if p.name.endswith(".toml"))
