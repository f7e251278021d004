"""The plugin manager and the per-kind registries built from its registration hooks.

Nothing registers at import time: ``get_plugin_manager()`` builds a fresh manager from the
``xhsi`` entry-point group, and ``registries()`` caches the name → class tables built from it
(``reset()`` drops the cache, e.g. after installing a plugin in a test).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError, did_you_mean

ENTRY_POINT_GROUP = "xhsi"

#: kind -> registration hook. The kind is what ``xhsi.get(kind, name)`` takes.
KINDS = {
    "operator": "xhsi_register_operators",
    "likelihood": "xhsi_register_likelihoods",
    "regularizer": "xhsi_register_regularizers",
    "solver": "xhsi_register_solvers",
    "spectral_model": "xhsi_register_spectral_models",
    "problem": "xhsi_register_problems",
    "scene": "xhsi_register_scenes",
}
INSTRUMENT_HOOK = "xhsi_register_instruments"


def get_plugin_manager(load_entry_points: bool = True) -> pluggy.PluginManager:
    """A new plugin manager with xhsi's hookspecs and, by default, every plugin declared in
    the ``xhsi`` entry-point group (the built-in ones included)."""
    pm = pluggy.PluginManager("xhsi")
    pm.add_hookspecs(hookspecs)
    if load_entry_points:
        for ep in _entry_points():
            try:
                module = ep.load()
            except Exception as exc:  # a broken third-party plugin must not look like our bug
                dist = ep.dist.name if ep.dist else "unknown distribution"
                raise PluginError(
                    f"plugin `{ep.name}` ({ep.value}, from {dist}) failed to import: "
                    f"{type(exc).__name__}: {exc}. Fix or uninstall that package."
                ) from exc
            if pm.is_registered(module):
                continue
            if pm.get_plugin(ep.name) is not None:
                other = _DISTRIBUTIONS.get(ep.name)
                raise PluginError(
                    f"two plugins use the entry-point name `{ep.name}`: {other.name if other else '?'} and "
                    f"{ep.dist.name if ep.dist else '?'}. Rename one in its pyproject.toml [project.entry-points.xhsi]."
                )
            pm.register(module, name=ep.name)
            _DISTRIBUTIONS[ep.name] = ep.dist
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"{exc}. Hook names must be one of: {', '.join(_hook_names())}.") from exc
    return pm


_DISTRIBUTIONS: dict[str, Any] = {}


def _entry_points():
    eps = metadata.entry_points()
    selected = eps.select(group=ENTRY_POINT_GROUP) if hasattr(eps, "select") else eps.get(ENTRY_POINT_GROUP, [])
    # Built-in plugins first, then third-party ones in a stable order.
    return sorted(selected, key=lambda ep: (not ep.value.startswith("xhsi_builtin"), ep.name))


def _hook_names() -> list[str]:
    return sorted(n for n in dir(hookspecs) if n.startswith("xhsi_"))


@dataclass
class Registries:
    """name → class per kind, name → TOML path for instruments, and who registered what."""

    by_kind: dict[str, dict[str, type]] = field(default_factory=dict)
    instruments: dict[str, Path] = field(default_factory=dict)
    sources: dict[tuple[str, str], str] = field(default_factory=dict)
    plugins: list[dict] = field(default_factory=list)


def build_registries(pm: pluggy.PluginManager) -> Registries:
    """Call every registration hook implementation and build the registries."""
    reg = Registries(by_kind={kind: {} for kind in KINDS})
    listing: dict[str, dict] = {}
    for plugin_name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        dist = _DISTRIBUTIONS.get(plugin_name)
        listing[plugin_name] = {
            "name": plugin_name,
            "module": getattr(plugin, "__name__", repr(plugin)),
            "distribution": dist.name if dist else None,
            "version": dist.version if dist else None,
            "registers": {},
        }
    for kind, hook_name in list(KINDS.items()) + [("instrument", INSTRUMENT_HOOK)]:
        hook = getattr(pm.hook, hook_name)
        for impl in hook.get_hookimpls():  # registration order
            source = impl.plugin_name
            try:
                items = impl.function() or []
            except Exception as exc:
                raise PluginError(f"plugin `{source}` failed in {hook_name}(): {type(exc).__name__}: {exc}") from exc
            for item in items:
                name = _register_one(reg, kind, item, source)
                listing.setdefault(source, {"name": source, "registers": {}})["registers"].setdefault(kind, []).append(name)
    reg.plugins = list(listing.values())
    return reg


def _register_one(reg: Registries, kind: str, item, source: str) -> str:
    if kind == "instrument":
        path = Path(item)
        name = _instrument_name(path, source)
        table = reg.instruments
    else:
        name = getattr(item, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin `{source}` registered a {kind} {item!r} without a string `name` attribute.")
        table = reg.by_kind[kind]
    if name in table:
        first = reg.sources[(kind, name)]
        raise PluginError(
            f"the {kind} name `{name}` is registered twice: by plugin `{first}` and by plugin `{source}`. "
            "Uninstall one of them or rename the class's `name`."
        )
    table[name] = path if kind == "instrument" else item
    reg.sources[(kind, name)] = source
    return name


def _instrument_name(path: Path, source: str) -> str:
    from .tomlio import load_toml

    if not path.is_file():
        raise PluginError(f"plugin `{source}` registered the instrument file {path}, which does not exist.")
    data = load_toml(path)
    try:
        return str(data["instrument"]["name"])
    except (KeyError, TypeError):
        raise PluginError(f"instrument file {path} (from plugin `{source}`) has no [instrument] name.") from None


_CACHE: dict[str, Registries] = {}


def registries() -> Registries:
    """The registries of the installed plugins, built once per process (see ``reset``)."""
    if "reg" not in _CACHE:
        _CACHE["reg"] = build_registries(get_plugin_manager())
    return _CACHE["reg"]


def reset() -> None:
    """Forget the cached registries (they are rebuilt on next use)."""
    _CACHE.clear()
    _DISTRIBUTIONS.clear()


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise PluginError(f"unknown plugin kind `{kind}`{did_you_mean(kind, KINDS)}; kinds are: {', '.join(KINDS)}.")


def available(kind: str) -> list[str]:
    """Sorted names registered for ``kind`` (one of ``KINDS`` or ``"instrument"``)."""
    if kind == "instrument":
        return sorted(registries().instruments)
    _check_kind(kind)
    return sorted(registries().by_kind[kind])


def get(kind: str, name: str):
    """The class registered as ``name`` for ``kind``. Unknown names raise a PluginError that
    lists the available names and the nearest match."""
    if kind == "instrument":
        table = registries().instruments
    else:
        _check_kind(kind)
        table = registries().by_kind[kind]
    try:
        return table[name]
    except KeyError:
        names = ", ".join(sorted(table)) or "none installed"
        raise PluginError(
            f"no {kind} named `{name}`{did_you_mean(name, table)}. Available: {names}."
        ) from None


def call_run_hook(pm: pluggy.PluginManager | None, hook_name: str, **kwargs) -> list:
    """Call a run-event hook if a plugin manager is given; return the implementations' results."""
    if pm is None:
        return []
    return getattr(pm.hook, hook_name)(**kwargs)
