"""Instruments by name (the ``xhsi_register_instruments`` registry) or by TOML path,
validated and cached per file and modification time."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError, PluginError
from ..tomlio import load_toml
from .instrument import Instrument
from .schema import parse_instrument

_INSTRUMENTS: dict[tuple, Instrument] = {}


def _resolve(name_or_path: str | os.PathLike) -> Path:
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.suffix.lower() == ".toml" or os.sep in text or "/" in text:
        if not path.is_file():
            raise ConfigError(f"{path}: no such instrument file.")
        return path.resolve()
    from .. import plugins

    try:
        return Path(plugins.get("instrument", text)).resolve()
    except PluginError as exc:
        raise ConfigError(f"{exc} Or give the path to an instrument TOML file.") from None


def load_instrument(name_or_path: str | os.PathLike | Instrument) -> Instrument:
    """The instrument registered as ``name`` (see ``xhsi instruments``) or described by the
    TOML file at a path. Validated, response files read and checked; cached per file and
    modification time."""
    if isinstance(name_or_path, Instrument):
        return name_or_path
    path = _resolve(name_or_path)
    key = (str(path), path.stat().st_mtime_ns)
    if key not in _INSTRUMENTS:
        spec = parse_instrument(load_toml(path), str(path), path.parent)
        _INSTRUMENTS[key] = Instrument(spec, path)
    return _INSTRUMENTS[key]


def summary_rows() -> list[dict]:
    """One row per registered instrument: name, mission, detector, band (keV), channels,
    resolution FWHM at 6 keV (eV), pixel (arcsec), PSF FWHM (arcsec)."""
    from .. import plugins

    return [load_instrument(name).summary_row() for name in plugins.available("instrument")]


def describe(name_or_path: str | os.PathLike) -> str:
    """The full human-readable description of one instrument."""
    return load_instrument(name_or_path).describe()


