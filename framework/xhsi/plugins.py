"""The plugin manager and the per-kind registries built from its registration hooks.

Nothing registers at import time: ``get_plugin_manager()`` builds a fresh manager from the
``xhsi`` entry-point group, and ``registries()`` caches the name → class tables built from it
together with that manager (``plugin_manager()``: the one a run calls its run-event hooks on),
so a process builds one manager (``reset()`` drops the cache, e.g. after installing a plugin
in a test).

A plugin named in the environment variable ``XHSI_DISABLE_PLUGINS`` (comma-separated
entry-point names) or by ``xhsi --disable-plugin NAME`` is never imported: the manager blocks
its name, so a broken third-party plugin can be switched off without uninstalling it. The
variable is read when a manager is built (call ``reset()`` after changing it in a process
that already built the registries).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator

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
#: Comma-separated entry-point names of plugins not to import.
DISABLE_ENV = "XHSI_DISABLE_PLUGINS"


def get_plugin_manager(load_entry_points: bool = True, disabled: Iterable[str] | None = None) -> pluggy.PluginManager:
    """A new plugin manager with xhsi's hookspecs and, by default, every plugin declared in
    the ``xhsi`` entry-point group (the built-in ones included).

    ``disabled``: entry-point names whose plugins are not imported but blocked (listed as
    disabled); default: those of ``XHSI_DISABLE_PLUGINS`` and ``xhsi --disable-plugin``
    (``disabled_plugins()``). A name that is not installed is a PluginError listing the
    installed ones."""
    pm = pluggy.PluginManager("xhsi")
    pm.add_hookspecs(hookspecs)
    if load_entry_points:
        entry_points = _entry_points()
        off = _check_disabled(disabled, entry_points)
        for ep in entry_points:
            if ep.name in off:
                pm.set_blocked(ep.name)
                _ENTRY_POINTS[ep.name] = ep
                continue
            try:
                module = ep.load()
            except Exception as exc:  # a broken third-party plugin must not look like our bug
                dist = ep.dist.name if ep.dist else "unknown distribution"
                raise PluginError(
                    f"plugin `{ep.name}` ({ep.value}, from {dist}) failed to import: "
                    f"{type(exc).__name__}: {exc}. Fix or uninstall that package, or switch the plugin off "
                    f"without uninstalling it: {_how_to_disable(ep.name)}."
                ) from exc
            if pm.is_registered(module):
                continue
            if pm.get_plugin(ep.name) is not None:
                other = _ENTRY_POINTS.get(ep.name)
                raise PluginError(
                    f"two plugins use the entry-point name `{ep.name}`: {_dist_name(other) or '?'} and "
                    f"{_dist_name(ep) or '?'}. Rename one in its pyproject.toml [project.entry-points.xhsi]."
                )
            pm.register(module, name=ep.name)
            _ENTRY_POINTS[ep.name] = ep
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"{exc}. Hook names must be one of: {', '.join(hook_names())}. Switch a broken "
                          f"plugin off with {_how_to_disable('NAME')}.") from exc
    return pm


#: entry-point name -> the entry point it was loaded (or blocked) from, for the listing.
_ENTRY_POINTS: dict[str, Any] = {}


def _dist_name(ep) -> str | None:
    return ep.dist.name if ep is not None and ep.dist is not None else None


def _how_to_disable(name: str) -> str:
    return f"set {DISABLE_ENV}={name} or run `xhsi --disable-plugin {name} COMMAND ...`"


# -- disabling plugins --------------------------------------------------------------------
_DISABLED_BY_OPTION: tuple[str, ...] = ()


def _disabled_sources() -> dict[str, str]:
    """Disabled entry-point name -> where it was named (for messages)."""
    sources = {name.strip(): f"the environment variable {DISABLE_ENV}"
               for name in os.environ.get(DISABLE_ENV, "").split(",") if name.strip()}
    sources.update((name, "the option --disable-plugin") for name in _DISABLED_BY_OPTION)
    return sources


def disabled_plugins() -> frozenset[str]:
    """Entry-point names switched off by ``XHSI_DISABLE_PLUGINS`` and ``xhsi --disable-plugin``."""
    return frozenset(_disabled_sources())


@contextlib.contextmanager
def disabling(names: Iterable[str]) -> Iterator[None]:
    """Within the block, also disable the plugins ``names`` (what ``xhsi --disable-plugin``
    does for one command); the cached registries are dropped on entry and on exit."""
    global _DISABLED_BY_OPTION
    names = tuple(names)
    if not names:
        yield
        return
    previous = _DISABLED_BY_OPTION
    _DISABLED_BY_OPTION = previous + names
    reset()
    try:
        yield
    finally:
        _DISABLED_BY_OPTION = previous
        reset()


def _check_disabled(disabled: Iterable[str] | None, entry_points) -> set[str]:
    sources = _disabled_sources() if disabled is None else dict.fromkeys(disabled, "the `disabled` argument")
    installed = sorted({ep.name for ep in entry_points})
    for name, where in sources.items():
        if name not in installed:
            raise PluginError(
                f"{where} disables the plugin `{name}`, but no installed plugin has that entry-point name"
                f"{did_you_mean(name, installed)}. Installed plugins: {', '.join(installed) or 'none'}."
            )
    return set(sources)


def _entry_points():
    eps = metadata.entry_points()
    selected = eps.select(group=ENTRY_POINT_GROUP) if hasattr(eps, "select") else eps.get(ENTRY_POINT_GROUP, [])
    # Built-in plugins first, then third-party ones in a stable order.
    return sorted(selected, key=lambda ep: (not ep.value.startswith("xhsi_builtin"), ep.name))


def hook_names() -> list[str]:
    """Every hook in ``xhsi.hookspecs``, in the order they are declared there."""
    return [name for name, obj in vars(hookspecs).items() if hasattr(obj, "xhsi_spec")]


@dataclass
class Registries:
    """name → class per kind, name → TOML path for instruments, and who registered what.

    ``plugins``: one dict per plugin (disabled ones included) with its ``name``, ``module``,
    ``distribution``, ``version``, ``disabled``, the ``hooks`` it implements and what it
    ``registers`` ({kind: [names]}); ``manager``: the plugin manager they were built from."""

    by_kind: dict[str, dict[str, type]] = field(default_factory=dict)
    instruments: dict[str, Path] = field(default_factory=dict)
    sources: dict[tuple[str, str], str] = field(default_factory=dict)
    plugins: list[dict] = field(default_factory=list)
    manager: pluggy.PluginManager | None = None


def build_registries(pm: pluggy.PluginManager) -> Registries:
    """Call every registration hook implementation and build the registries."""
    reg = Registries(by_kind={kind: {} for kind in KINDS}, manager=pm)
    listing: dict[str, dict] = {}
    order = {name: i for i, name in enumerate(hook_names())}
    for plugin_name, plugin in pm.list_name_plugin():
        ep = _ENTRY_POINTS.get(plugin_name)
        dist = ep.dist if ep is not None else None
        disabled = plugin is None  # a blocked name: never imported
        hooks = [] if disabled else sorted((caller.name for caller in pm.get_hookcallers(plugin) or []),
                                           key=lambda name: (order.get(name, len(order)), name))
        listing[plugin_name] = {
            "name": plugin_name,
            "module": (ep.value if ep is not None else None) if disabled else getattr(plugin, "__name__", repr(plugin)),
            "distribution": dist.name if dist else None,
            "version": dist.version if dist else None,
            "disabled": disabled,
            "hooks": hooks,
            "registers": {},
        }
    for kind, hook_name in list(KINDS.items()) + [("instrument", INSTRUMENT_HOOK)]:
        hook = getattr(pm.hook, hook_name)
        for impl in hook.get_hookimpls():  # registration order
            source = impl.plugin_name
            try:
                items = impl.function() or []
            except Exception as exc:
                raise PluginError(f"plugin `{source}` failed in {hook_name}(): {type(exc).__name__}: {exc}. "
                                  f"Fix or uninstall it, or {_how_to_disable(source)}.") from exc
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


def plugin_manager() -> pluggy.PluginManager:
    """The plugin manager the cached registries were built from: the process's one manager,
    whose run-event hooks (``xhsi_run_start``, ``xhsi_iteration``, ``xhsi_run_end``) a run calls."""
    return registries().manager


def reset() -> None:
    """Forget the cached registries (they are rebuilt on next use)."""
    _CACHE.clear()
    _ENTRY_POINTS.clear()


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
        off = [p["name"] for p in registries().plugins if p.get("disabled")]
        hint = f" Disabled plugins ({DISABLE_ENV}, --disable-plugin): {', '.join(off)}." if off else ""
        raise PluginError(
            f"no {kind} named `{name}`{did_you_mean(name, table)}. Available: {names}.{hint}"
        ) from None
