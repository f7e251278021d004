"""Plugin manager: entry-point discovery, registries, duplicates, misspelt hooks, errors."""
from __future__ import annotations

import inspect
import json
import subprocess
import sys
from types import SimpleNamespace

import pluggy
import pytest

import xhsi
from fakes import ToyRegularizer, fake_plugin, fake_registries
from xhsi import hookimpl, hookspecs, plugins
from xhsi.errors import PluginError


def test_builtin_plugins_come_from_the_entry_point_group():
    pm = xhsi.get_plugin_manager()
    names = {name for name, _ in pm.list_name_plugin()}
    assert {"operators", "regularizers", "solvers", "likelihoods", "problems", "scenes", "instruments"} <= names
    # registered through the entry point group, like a third-party plugin
    from importlib.metadata import entry_points

    group = {ep.name for ep in entry_points(group="xhsi") if ep.value.startswith("xhsi_builtin")}
    assert group <= names


def test_get_plugin_manager_is_a_factory():
    assert xhsi.get_plugin_manager() is not xhsi.get_plugin_manager()


def test_registry_from_registration_hooks():
    reg = fake_registries()
    assert reg.by_kind["regularizer"]["toy_reg"] is ToyRegularizer
    assert reg.sources[("regularizer", "toy_reg")] == "fake0"
    listing = {p["name"]: p for p in reg.plugins}
    assert listing["fake0"]["registers"]["regularizer"] == ["toy_reg"]


def test_duplicate_names_are_refused_naming_both_plugins():
    with pytest.raises(PluginError, match=r"name `\w+` is registered twice: by plugin `fake0` and by plugin `fake1`"):
        fake_registries(fake_plugin(), fake_plugin())


def test_misspelt_hook_fails_check_pending():
    @hookimpl
    def xhsi_register_regularisers():  # British spelling: not a hook
        return []

    pm = xhsi.get_plugin_manager(load_entry_points=False)
    pm.register(SimpleNamespace(xhsi_register_regularisers=xhsi_register_regularisers), name="typo")
    with pytest.raises(pluggy.PluginValidationError):
        pm.check_pending()


def test_class_without_name_is_refused():
    class Nameless:
        pass

    @hookimpl
    def xhsi_register_solvers():
        return [Nameless]

    with pytest.raises(PluginError, match="without a string `name`"):
        fake_registries(SimpleNamespace(xhsi_register_solvers=xhsi_register_solvers))


def test_broken_registration_hook_names_the_plugin():
    @hookimpl
    def xhsi_register_solvers():
        raise RuntimeError("boom")

    with pytest.raises(PluginError, match=r"plugin `fake0` failed in xhsi_register_solvers\(\): RuntimeError: boom"):
        fake_registries(SimpleNamespace(xhsi_register_solvers=xhsi_register_solvers))


def test_unknown_name_lists_available_and_nearest(monkeypatch):
    monkeypatch.setitem(plugins._CACHE, "reg", fake_registries())
    with pytest.raises(PluginError) as info:
        xhsi.get("regularizer", "toy_rg")
    assert "did you mean `toy_reg`" in str(info.value) and "Available: toy_reg" in str(info.value)
    with pytest.raises(PluginError, match="unknown plugin kind `regulariser`.*did you mean `regularizer`"):
        xhsi.available("regulariser")
    assert xhsi.available("regularizer") == ["toy_reg"]


def test_public_kinds():
    assert set(xhsi.KINDS) == {"operator", "likelihood", "regularizer", "solver", "spectral_model", "problem", "scene"}


def test_every_hookspec_is_documented():
    specs = [name for name in dir(hookspecs) if name.startswith("xhsi_")]
    assert len(specs) >= 11
    for name in specs:
        doc = inspect.getdoc(getattr(hookspecs, name))
        assert doc and "Called" in doc, f"{name} needs a docstring saying when it is called"


def test_every_registration_hook_is_used_by_a_builtin_plugin():
    pm = xhsi.get_plugin_manager()
    for hook_name in list(plugins.KINDS.values()) + [plugins.INSTRUMENT_HOOK]:
        impls = getattr(pm.hook, hook_name).get_hookimpls()
        assert any(i.plugin_name in {"operators", "likelihoods", "regularizers", "solvers", "problems", "scenes",
                                     "spectral_models", "instruments"} for i in impls), hook_name


def test_run_event_hooks_can_ask_to_stop():
    calls = []

    @hookimpl
    def xhsi_iteration(iteration, cost, step, state):
        calls.append(iteration)
        return iteration >= 20

    pm = xhsi.get_plugin_manager(load_entry_points=False)
    pm.register(SimpleNamespace(xhsi_iteration=xhsi_iteration), name="stopper")
    assert pm.hook.xhsi_iteration(iteration=10, cost=1.0, step=0.1, state=None) == [False]
    assert pm.hook.xhsi_iteration(iteration=20, cost=1.0, step=0.1, state=None) == [True]
    assert calls == [10, 20]


# -- the third-party example plugin (tests/third_party_plugin), installed by CI ---------------
def _example_installed() -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("xhsi-example-plugin")
        return True
    except PackageNotFoundError:
        return False


needs_example = pytest.mark.skipif(not _example_installed(),
                                   reason="pip install ./tests/third_party_plugin (CI does) to run this test")


@needs_example
def test_third_party_plugin_is_listed_by_cli():
    out = subprocess.run([sys.executable, "-m", "xhsi", "plugins", "--json"], capture_output=True, text=True, check=True)
    listing = {p["name"]: p for p in json.loads(out.stdout)}
    assert listing["example_l1"]["distribution"] == "xhsi-example-plugin"
    assert listing["example_l1"]["registers"] == {"regularizer": ["example_l1"]}


@needs_example
def test_third_party_regularizer_usable_by_name_in_a_config(tmp_path):
    from xhsi.config import load_config

    plugins.reset()
    cls = xhsi.get("regularizer", "example_l1")
    assert cls.__module__ == "xhsi_example_plugin"
    if "deconvolution" not in xhsi.available("problem") or "fista" not in xhsi.available("solver"):
        pytest.skip("the deconvolution problem and fista solver are not registered yet")
    path = tmp_path / "c.toml"
    path.write_text('[run]\nproblem = "deconvolution"\n\n[[regularizers]]\nname = "example_l1"\n'
                    'options = { scale = 2.0 }\n\n[solver]\nname = "fista"\n')
    cfg = load_config(path)
    assert isinstance(cfg.regularizers[0].options, cls.Options) and cfg.regularizers[0].options.scale == 2.0
