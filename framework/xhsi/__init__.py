"""xhsi: X-ray hyperspectral imaging — deconvolution, fusion and unmixing of photon-count
cubes (energy, y, x) as regularised inverse problems, on numpy or cupy.

Public API::

    xhsi.get_plugin_manager()      # a new pluggy manager with every installed plugin
    xhsi.get(kind, name)           # the registered class, e.g. xhsi.get("regularizer", "l2")
    xhsi.available(kind)           # registered names of a kind
    xhsi.load_config(path, overrides=())
"""
from __future__ import annotations

from importlib import metadata as _metadata

from .config import Config, load_config
from .errors import ConfigError, DataError, PluginError, ShapeError, XhsiError
from .hookspecs import hookimpl
from .plugins import KINDS, available, get, get_plugin_manager

try:
    __version__ = _metadata.version("xhsi")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "__version__", "hookimpl", "get_plugin_manager", "get", "available", "KINDS",
    "load_config", "Config", "XhsiError", "ConfigError", "PluginError", "DataError", "ShapeError",
]
