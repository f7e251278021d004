"""Config loading: typed sections, defaults, relative paths, overrides and every kind of
user error (each must name the file, the dotted key and what to do)."""
from __future__ import annotations

from pathlib import Path

import pytest

from fakes import TOY_CONFIG, ToyRegularizer, fake_registries
from xhsi import plugins
from xhsi.config import apply_override, load_config
from xhsi.errors import ConfigError


@pytest.fixture(autouse=True)
def toy_registry(monkeypatch):
    monkeypatch.setitem(plugins._CACHE, "reg", fake_registries())


def write(tmp_path: Path, text: str, name: str = "run.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_loads_typed_sections_with_defaults(tmp_path):
    cfg = load_config(write(tmp_path, TOY_CONFIG))
    assert cfg.run.problem == "toy_problem" and cfg.run.backend == "numpy"
    assert cfg.model.energy.bins == 40 and cfg.model.pixels == (16, 16)
    assert cfg.observations[0].spectral_rebin == 4 and cfg.observations[0].spatial_rebin == 1
    assert cfg.solver.max_iter == 20 and cfg.solver.tol == 1e-6
    # plugin options become the plugin's typed Options, with defaults filled in
    assert isinstance(cfg.regularizers[0].options, ToyRegularizer.Options)
    assert cfg.regularizers[0].options.k == 2.0 and cfg.regularizers[0].options.scales == 3


def test_relative_paths_resolve_against_config_folder(tmp_path):
    sub = tmp_path / "deep"
    sub.mkdir()
    text = TOY_CONFIG.replace('exposure_s = 1.0e5', 'exposure_s = 1.0e5\ncounts = "data/xmm.fits"')
    cfg = load_config(write(sub, text))
    assert cfg.observations[0].counts == sub.resolve() / "data" / "xmm.fits"
    assert cfg.run.output == sub.resolve() / "out"


def test_instrument_paths_resolve_against_config_folder_names_stay_names(tmp_path):
    sub = tmp_path / "deep"
    sub.mkdir()
    text = TOY_CONFIG.replace('instrument = "xmm_epic_pn"', 'instrument = "instruments/my_pn.toml"', 1)
    assert text != TOY_CONFIG
    cfg = load_config(write(sub, text))
    assert cfg.observations[0].instrument == str(sub.resolve() / "instruments" / "my_pn.toml")
    assert load_config(write(sub, TOY_CONFIG)).observations[0].instrument == "xmm_epic_pn"


def test_overrides_parse_toml_values(tmp_path):
    path = write(tmp_path, TOY_CONFIG)
    cfg = load_config(path, ["solver.max_iter=50", "solver.tol=1e-3", "run.dtype=\"float32\"",
                             "observations[0].exposure_s=2e4", "observations.xmm.spatial_rebin=3",
                             "model.pixels=[8, 8]", "regularizers.0.options.k=1.5", "run.seed=7"])
    assert cfg.solver.max_iter == 50 and cfg.solver.tol == 1e-3 and cfg.run.dtype == "float32"
    assert cfg.observations[0].exposure_s == 2e4 and cfg.observations[0].spatial_rebin == 3
    assert cfg.model.pixels == (8, 8) and cfg.regularizers[0].options.k == 1.5 and cfg.run.seed == 7


def test_bare_word_override_is_a_string(tmp_path):
    cfg = load_config(write(tmp_path, TOY_CONFIG), ["run.backend=numpy"])
    assert cfg.run.backend == "numpy"


def test_round_trip_through_resolved_toml(tmp_path):
    cfg = load_config(write(tmp_path, TOY_CONFIG))
    again = load_config(write(tmp_path, cfg.to_toml(), "resolved.toml"))
    assert again.to_dict() == cfg.to_dict()
    assert again.digest() == cfg.digest()


BAD = [
    # (description, edit of the toy config, expected fragments of the message)
    ("misspelt solver key", ("max_iter = 20", "max_iters = 20"), ["solver.max_iters", "did you mean `max_iter`"]),
    ("misspelt table", ("[solver]", "[solvr]"), ["`solvr`", "did you mean `solver`"]),
    ("misspelt observation key", ("exposure_s = 1.0e5", "exposure = 1.0e5"), ["observations[0].exposure", "exposure_s"]),
    ("wrong type", ("max_iter = 20", 'max_iter = "many"'), ["solver.max_iter", "expected an integer", "string"]),
    ("float for int", ("max_iter = 20", "max_iter = 2.5"), ["solver.max_iter", "integer", "2.5"]),
    ("out of range", ("max_iter = 20", "max_iter = -1"), ["solver.max_iter", ">= 0"]),
    ("negative exposure", ("exposure_s = 1.0e5", "exposure_s = -3.0"), ["observations[0].exposure_s", "must be > 0 s"]),
    ("bad choice", ('dtype = "float64"', 'dtype = "float16"'), ["run.dtype", "float32, float64"]),
    ("bad backend", ('dtype = "float64"', 'backend = "numpi"'), ["run.backend", "did you mean `numpy`"]),
    ("missing required", ("pixel_arcsec = 4.1\n", ""), ["model.pixel_arcsec", "required", "arcsec"]),
    ("energy range inverted", ("max_kev = 10.0", "max_kev = 0.2"), ["model.energy", "max_kev"]),
    ("pixels wrong length", ("pixels = [16, 16]", "pixels = [16, 16, 3]"), ["model.pixels", "2 values"]),
    ("unknown regulariser", ('name = "toy_reg"', 'name = "toy_regg"'), ["regularizers[0].name", "did you mean `toy_reg`", "Available"]),
    ("unknown plugin option", ("options = { k = 2.0 }", "options = { kk = 2.0 }"), ["regularizers[0].options.kk", "did you mean `k`"]),
    ("plugin option range", ("options = { k = 2.0 }", "options = { scales = 99 }"), ["regularizers[0].options.scales", "<= 10"]),
    ("unknown solver", ('name = "toy_solver"', 'name = "fista9"'), ["solver.name", "no solver named"]),
    ("unknown problem", ('problem = "toy_problem"', 'problem = "toy_problm"'), ["run.problem", "toy_problem"]),
    ("unknown scene", ('scene = "toy_scene"', 'scene = "nope"'), ["simulate.scene", "no scene named"]),
    ("duplicate observation names", ("[solver]", '[[observations]]\nname = "xmm"\ninstrument = "x"\nexposure_s = 1.0\n\n[solver]'),
     ["observations", "unique", "xmm"]),
    ("table expected", ("[solver]\nname", "solver_x = 1\n[solver]\nname"), ["solver_x", "unknown key"]),
    ("nan", ("exposure_s = 1.0e5", "exposure_s = nan"), ["observations[0].exposure_s", "finite"]),
    ("even psf_size", ("exposure_s = 1.0e5", "exposure_s = 1.0e5\npsf_size = 28"), ["observations[0]", "psf_size", "odd"]),
]


@pytest.mark.parametrize("what, edit, fragments", BAD, ids=[b[0] for b in BAD])
def test_bad_config_errors_name_file_key_and_fix(tmp_path, what, edit, fragments):
    old, new = edit
    assert old in TOY_CONFIG, what
    path = write(tmp_path, TOY_CONFIG.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_toml_syntax_error_names_file_line_column(tmp_path):
    path = write(tmp_path, TOY_CONFIG.replace("max_iter = 20", "max_iter = = 20"))
    with pytest.raises(ConfigError, match=rf"{path}:\d+:\d+: TOML syntax error"):
        load_config(path)
    line = TOY_CONFIG.splitlines().index("max_iter = 20") + 1
    with pytest.raises(ConfigError, match=rf":{line}:"):
        load_config(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize("assignment, fragment", [
    ("solver.max_iter", "KEY=VALUE"),
    ("observations.chandra.exposure_s=1", "no item named `chandra`"),
    ("observations[3].exposure_s=1", "past the end"),
])
def test_bad_overrides(tmp_path, assignment, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[")):
        load_config(write(tmp_path, TOY_CONFIG), [assignment])


def test_override_of_unknown_key_is_reported_like_a_file_key(tmp_path):
    with pytest.raises(ConfigError, match=r"solver.max_iters.*did you mean `max_iter`"):
        load_config(write(tmp_path, TOY_CONFIG), ["solver.max_iters=3"])


def test_apply_override_creates_tables():
    data = {}
    apply_override(data, "metrics.truth=\"sky.fits\"")
    assert data == {"metrics": {"truth": "sky.fits"}}
