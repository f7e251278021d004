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
from conftest import ROOT, unwrapped
from fakes import ToyRegularizer, fake_plugin, fake_registries
from xhsi import hookimpl, hookspecs, plugins
from xhsi.cli import main
from xhsi.errors import PluginError


def test_builtin_plugins_come_from_the_entry_point_group():
    pm = xhsi.get_plugin_manager()
    names = {name for name, _ in pm.list_name_plugin()}
    assert {"core", "regularizers", "scenes", "spectral_models"} <= names
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
        assert any(i.plugin_name in {"core", "regularizers", "scenes", "spectral_models"} for i in impls), hook_name


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


def _hookspecs() -> list[str]:
    """Every hook declared in xhsi.hookspecs (pluggy marks each with ``xhsi_spec``)."""
    specs = [name for name, obj in vars(hookspecs).items() if hasattr(obj, "xhsi_spec")]
    assert len(specs) >= 11
    return specs


def test_every_hookspec_has_a_section_in_docs_plugins_md():
    text = (ROOT / "docs" / "plugins.md").read_text()
    for name in _hookspecs():
        signature = f"{name}({', '.join(inspect.signature(getattr(hookspecs, name)).parameters)})"
        assert f"### `{signature}`" in text, f"docs/plugins.md needs a section `### `{signature}`` for the hook"
        section = text.split(f"### `{signature}`", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
        assert "Called" in section and "```python" in section and f"def {name}(" in section, \
            f"the section of {name} in docs/plugins.md needs when it is called and an example implementation"


def test_every_hookspec_is_exercised_by_a_test():
    """A new hook needs a test that names it (e.g. in the lists below or its own test)."""
    texts = [path.read_text() for path in (ROOT / "tests").rglob("test_*.py") if "third_party_plugin" not in path.parts]
    missing = [name for name in _hookspecs() if not any(name in text for text in texts)]
    assert not missing, f"no test under tests/ names the hook(s) {missing}: add a test that exercises each"


@pytest.mark.parametrize("hook_name, kind", [
    ("xhsi_register_operators", "operator"),
    ("xhsi_register_likelihoods", "likelihood"),
    ("xhsi_register_regularizers", "regularizer"),
    ("xhsi_register_solvers", "solver"),
    ("xhsi_register_spectral_models", "spectral_model"),
    ("xhsi_register_problems", "problem"),
    ("xhsi_register_scenes", "scene"),
    ("xhsi_register_instruments", "instrument"),
])
def test_each_registration_hook_fills_its_registry(hook_name, kind, tmp_path):
    if kind == "instrument":
        item = tmp_path / "mine.toml"
        item.write_text('[instrument]\nname = "mine"\n')
    else:
        item = type("Mine", (), {"name": "mine"})
    impl = hookimpl(specname=hook_name)(lambda: [item])
    pm = xhsi.get_plugin_manager(load_entry_points=False)
    pm.register(SimpleNamespace(**{hook_name: impl}), name="mine_plugin")
    pm.check_pending()
    reg = plugins.build_registries(pm)
    table = reg.instruments if kind == "instrument" else reg.by_kind[kind]
    assert table == {"mine": item} and reg.sources[(kind, "mine")] == "mine_plugin"
    listing = {p["name"]: p for p in reg.plugins}
    assert listing["mine_plugin"]["hooks"] == [hook_name] and listing["mine_plugin"]["registers"] == {kind: ["mine"]}


# -- run-event hooks during a small run ----------------------------------------------------
SMALL_RUN = """\
[run]
problem = "deconvolution"
output = "out"
dtype = "float64"

[model]
energy = { min_kev = 5.5, max_kev = 7.5, bins = 8 }
pixels = [8, 8]
pixel_arcsec = 4.1

[[observations]]
name = "xmm"
instrument = "xmm_epic_pn"
exposure_s = 5.0e4
spectral_rebin = 2

[solver]
name = "fista"
max_iter = 6
tol = 0.0
report_every = 2

[simulate]
scene = "casa_like"
"""


class Recorder:
    """A plugin implementing the three run-event hooks; records each call."""

    def __init__(self, out, stop_at=None):
        self.out, self.stop_at, self.calls = out, stop_at, []

    @hookimpl
    def xhsi_run_start(self, config, problem):
        self.calls.append(("xhsi_run_start", {"config": config, "problem": problem}))

    @hookimpl
    def xhsi_iteration(self, iteration, cost, step, state):
        self.calls.append(("xhsi_iteration", {"iteration": iteration, "cost": cost, "step": step, "state": state}))
        return self.stop_at is not None and iteration >= self.stop_at

    @hookimpl
    def xhsi_run_end(self, config, result):
        written = (self.out / "result.fits").is_file()
        self.calls.append(("xhsi_run_end", {"config": config, "result": result, "outputs_written": written}))


def _run_with(recorder, tmp_path, monkeypatch):
    from xhsi.config import load_config
    from xhsi.runner import run

    pm = plugins.get_plugin_manager()
    pm.register(recorder, name="recorder")
    monkeypatch.setitem(plugins._CACHE, "reg", plugins.build_registries(pm))  # the one manager of the process
    path = tmp_path / "run.toml"
    path.write_text(SMALL_RUN)
    cfg = load_config(path)
    return cfg, run(cfg, quiet=True)


def test_run_event_hooks_are_called_during_a_run(tmp_path, monkeypatch):
    recorder = Recorder(tmp_path / "out")
    cfg, result = _run_with(recorder, tmp_path, monkeypatch)
    names = [name for name, _ in recorder.calls]
    assert names == ["xhsi_run_start"] + ["xhsi_iteration"] * 3 + ["xhsi_run_end"]
    start, iterations, end = recorder.calls[0][1], [c for _, c in recorder.calls[1:-1]], recorder.calls[-1][1]
    assert start["config"] is cfg and isinstance(start["problem"], xhsi.get("problem", "deconvolution"))
    assert [c["iteration"] for c in iterations] == [2, 4, 6]  # every report_every = 2, up to max_iter = 6
    history = {row["iteration"]: row for row in result.history}
    for c in iterations:
        assert type(c["cost"]) is float and c["cost"] == pytest.approx(history[c["iteration"]]["cost"])
        assert isinstance(c["step"], float) and c["step"] > 0 and c["state"] is not None
    assert end["config"] is cfg and end["result"] is result and end["outputs_written"]
    assert result.metadata["stop_reason"] == "max_iter"


@pytest.mark.slow  # a whole run or many fits: `pytest -m slow` (CI runs both)
def test_xhsi_iteration_returning_true_stops_the_run(tmp_path, monkeypatch):
    recorder = Recorder(tmp_path / "out", stop_at=4)
    _, result = _run_with(recorder, tmp_path, monkeypatch)
    assert [c["iteration"] for name, c in recorder.calls if name == "xhsi_iteration"] == [2, 4]
    assert result.metadata["stop_reason"] == "stopped by callback" and result.metadata["n_iter"] == 4
    assert recorder.calls[-1][0] == "xhsi_run_end" and recorder.calls[-1][1]["outputs_written"]


# -- the listing: hooks each plugin implements ---------------------------------------------
def _registries_with_watcher():
    @hookimpl
    def xhsi_iteration(iteration, cost, step, state):
        return None

    pm = xhsi.get_plugin_manager(load_entry_points=False)
    pm.register(fake_plugin(), name="fake0")
    pm.register(SimpleNamespace(__name__="watcher_module", xhsi_iteration=xhsi_iteration), name="watcher")
    return plugins.build_registries(pm)


def test_listing_names_the_hooks_of_each_plugin_even_run_event_only_ones():
    listing = {p["name"]: p for p in _registries_with_watcher().plugins}
    assert listing["watcher"]["hooks"] == ["xhsi_iteration"]
    assert listing["watcher"]["registers"] == {} and listing["watcher"]["disabled"] is False
    assert listing["fake0"]["hooks"] == ["xhsi_register_likelihoods", "xhsi_register_regularizers",
                                         "xhsi_register_solvers", "xhsi_register_problems",
                                         "xhsi_register_scenes"]  # in the order of xhsi.hookspecs


def test_plugins_command_lists_hooks_in_text_and_json(monkeypatch, capsys):
    monkeypatch.setitem(plugins._CACHE, "reg", _registries_with_watcher())
    assert main(["plugins"]) == 0
    lines = capsys.readouterr().out.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("watcher  "))
    assert "watcher_module" in lines[i] and lines[i + 1].split() == ["hooks:", "xhsi_iteration"]
    assert "    hooks: xhsi_register_likelihoods, xhsi_register_regularizers," in "\n".join(lines)
    assert main(["plugins", "--json"]) == 0
    listing = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert listing["watcher"]["hooks"] == ["xhsi_iteration"] and listing["watcher"]["disabled"] is False
    assert "xhsi_register_regularizers" in listing["fake0"]["hooks"]


def test_builtin_plugins_list_their_registration_hook():
    listing = {p["name"]: p for p in plugins.build_registries(xhsi.get_plugin_manager(disabled=())).plugins}
    assert listing["core"]["hooks"] == ["xhsi_register_operators", "xhsi_register_likelihoods",
                                        "xhsi_register_solvers", "xhsi_register_problems", "xhsi_register_instruments"]
    assert listing["scenes"]["hooks"] == ["xhsi_register_scenes"]


# -- disabling plugins ---------------------------------------------------------------------
class FakeEntryPoint:
    """An entry point of the `xhsi` group; ``load()`` returns ``plugin`` or raises ``error``."""

    def __init__(self, name, plugin=None, error=None):
        self.name, self.value, self.plugin, self.error = name, f"{name}_module", plugin, error
        self.dist = SimpleNamespace(name=f"{name}-dist", version="1.0")
        self.loads = 0

    def load(self):
        self.loads += 1
        if self.error is not None:
            raise self.error
        return self.plugin


@pytest.fixture
def fake_entry_points(monkeypatch):
    """Entry points `good` (the toy plugin) and `broken` (its import raises) instead of the
    installed ones; the registries cache and the entry-point table are restored afterwards."""
    eps = [FakeEntryPoint("good", fake_plugin()), FakeEntryPoint("broken", error=ImportError("no module named boom"))]
    monkeypatch.setattr(plugins, "_entry_points", lambda: list(eps))
    monkeypatch.setattr(plugins, "_CACHE", {})
    monkeypatch.setattr(plugins, "_ENTRY_POINTS", {})
    monkeypatch.delenv(plugins.DISABLE_ENV, raising=False)
    return {ep.name: ep for ep in eps}


def test_import_error_says_how_to_disable_the_plugin(fake_entry_points, capsys):
    with pytest.raises(PluginError) as info:
        xhsi.get_plugin_manager()
    message = str(info.value)
    assert ("plugin `broken` (broken_module, from broken-dist) failed to import: ImportError: no module named boom"
            in message)
    assert "XHSI_DISABLE_PLUGINS=broken" in message and "--disable-plugin broken" in message
    assert main(["plugins"]) == 2
    assert "xhsi --disable-plugin broken" in unwrapped(capsys.readouterr().err)


def test_env_var_disables_a_plugin_without_importing_it(fake_entry_points, monkeypatch):
    monkeypatch.setenv("XHSI_DISABLE_PLUGINS", " broken , ")
    pm = xhsi.get_plugin_manager()
    assert fake_entry_points["broken"].loads == 0 and pm.is_blocked("broken")
    assert fake_entry_points["good"].loads == 1 and pm.get_plugin("good") is not None
    listing = {p["name"]: p for p in plugins.registries().plugins}
    assert listing["broken"]["disabled"] is True and listing["broken"]["hooks"] == []
    assert listing["broken"]["module"] == "broken_module" and listing["broken"]["distribution"] == "broken-dist"
    assert listing["good"]["disabled"] is False and "toy_reg" in listing["good"]["registers"]["regularizer"]


@pytest.mark.parametrize("argv", [["--disable-plugin", "broken", "plugins"], ["plugins", "--disable-plugin", "broken"]])
def test_disable_plugin_option_before_or_after_the_command(fake_entry_points, capsys, argv):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "broken  (broken-dist 1.0; broken_module)  (disabled)" in out and "good  (good-dist 1.0" in out
    assert fake_entry_points["broken"].loads == 0
    assert plugins.disabled_plugins() == frozenset() and not plugins._CACHE  # only for that command
    assert main(argv + ["--json"]) == 0
    listing = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert listing["broken"]["disabled"] is True and listing["good"]["disabled"] is False


def test_disable_plugin_option_adds_to_the_env_var_and_repeats(fake_entry_points, monkeypatch, capsys):
    fake_entry_points["other"] = FakeEntryPoint("other", error=RuntimeError("also broken"))
    monkeypatch.setattr(plugins, "_entry_points", lambda: list(fake_entry_points.values()))
    monkeypatch.setenv("XHSI_DISABLE_PLUGINS", "other")
    assert main(["--disable-plugin", "broken", "plugins", "--json"]) == 0
    listing = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert listing["broken"]["disabled"] and listing["other"]["disabled"]
    monkeypatch.delenv("XHSI_DISABLE_PLUGINS")
    assert main(["--disable-plugin", "broken", "plugins", "--disable-plugin", "other", "--json"]) == 0
    listing = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert listing["broken"]["disabled"] and listing["other"]["disabled"] and not listing["good"]["disabled"]


def test_disabling_a_plugin_that_is_not_installed_names_the_installed_ones(fake_entry_points, monkeypatch, capsys):
    monkeypatch.setenv("XHSI_DISABLE_PLUGINS", "brokn")
    with pytest.raises(PluginError, match=r"XHSI_DISABLE_PLUGINS disables the plugin `brokn`.*did you mean `broken`"
                                          r".*Installed plugins: broken, good\."):
        xhsi.get_plugin_manager()
    monkeypatch.delenv("XHSI_DISABLE_PLUGINS")
    assert main(["--disable-plugin", "nope", "plugins"]) == 2
    err = unwrapped(capsys.readouterr().err)
    assert "--disable-plugin disables the plugin `nope`" in err and "Installed plugins: broken, good" in err


def test_disabling_a_builtin_plugin_lists_it_as_disabled(monkeypatch, capsys):
    monkeypatch.delenv(plugins.DISABLE_ENV, raising=False)
    monkeypatch.setattr(plugins, "_CACHE", {})
    monkeypatch.setattr(plugins, "_ENTRY_POINTS", {})
    assert main(["--disable-plugin", "scenes", "plugins"]) == 0
    lines = capsys.readouterr().out.splitlines()
    disabled = [line for line in lines if line.endswith("(disabled)")]
    assert disabled == [f"scenes  (xhsi {xhsi.__version__}; xhsi_builtin.scenes)  (disabled)"]
    with plugins.disabling(["scenes"]):
        assert xhsi.available("scene") == []
        with pytest.raises(PluginError, match=r"no scene named `casa_like`.*Disabled plugins .*: scenes\."):
            xhsi.get("scene", "casa_like")
    assert "casa_like" in xhsi.available("scene")  # the cache was dropped on leaving the block


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
