"""The command line: exit codes (0 success, 2 user error with one paragraph, no traceback),
and each sub-command's output."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT, unwrapped
from fakes import TOY_CONFIG, fake_registries
from xhsi import __version__, plugins
from xhsi.cli import main


@pytest.fixture
def toy(monkeypatch, tmp_path):
    monkeypatch.setitem(plugins._CACHE, "reg", fake_registries())
    path = tmp_path / "run.toml"
    path.write_text(TOY_CONFIG)
    return path


def test_version():
    out = subprocess.run([sys.executable, "-m", "xhsi", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"xhsi {__version__}"


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_validate_ok(toy, capsys):
    assert main(["validate", str(toy)]) == 0
    assert "valid" in capsys.readouterr().out


def test_validate_says_when_a_run_selects_its_options(capsys):
    from pathlib import Path

    default = Path(__file__).resolve().parents[1] / "configs" / "fusion_xmm_xrism_default.toml"
    assert main(["validate", str(default)]) == 0
    assert "selects its options from the data first" in capsys.readouterr().out
    assert main(["validate", str(default), "--show-defaults"]) == 0
    assert capsys.readouterr().out.startswith("# The given config selects")
    assert main(["validate", str(default), "--set", 'selection.select="off"']) == 0
    assert "selects" not in capsys.readouterr().out


def test_validate_show_defaults_prints_resolved_toml(toy, capsys):
    assert main(["validate", str(toy), "--show-defaults", "--set", "solver.max_iter=7"]) == 0
    out = capsys.readouterr().out
    assert "max_iter = 7" in out and "tol = 1e-06" in out and "checkpoint_every = 100" in out
    assert "[[observations]]" in out and "scales = 3" in out


def test_validate_misspelt_key_exits_2_with_path_and_suggestion(toy, capsys):
    toy.write_text(TOY_CONFIG.replace("max_iter = 20", "max_iters = 20"))
    assert main(["validate", str(toy)]) == 2
    err = unwrapped(capsys.readouterr().err)
    assert "solver.max_iters" in err and "did you mean `max_iter`" in err
    assert "Traceback" not in err


def test_validate_syntax_error_names_file_line_column(toy, capsys):
    toy.write_text("[run]\nproblem = \n")
    assert main(["validate", str(toy)]) == 2
    assert f"{toy}:2:" in capsys.readouterr().err.replace("\n", "")


def test_debug_shows_the_traceback(toy):
    toy.write_text("[run]\nproblem = \n")
    from xhsi.errors import ConfigError

    with pytest.raises(ConfigError):
        main(["validate", str(toy), "--debug"])


def test_user_error_in_subprocess_has_no_traceback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "xhsi", "validate", str(tmp_path / "missing.toml")],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert "no such file" in out.stderr and "Traceback" not in out.stderr


def test_plugins_json_lists_builtins():
    out = subprocess.run([sys.executable, "-m", "xhsi", "plugins", "--json"], capture_output=True, text=True, check=True)
    listing = {p["name"]: p for p in json.loads(out.stdout)}
    assert {"core", "regularizers", "scenes", "spectral_models"} <= set(listing)
    assert listing["core"]["distribution"] == "xhsi"
    # each plugin's options schema, with defaults and units, is part of the listing
    fista = {f["name"]: f for f in listing["core"]["options"]["solver"]["fista"]}
    assert fista["restart"]["default"] == "adaptive"
    starlet = {f["name"]: f for f in listing["regularizers"]["options"]["regularizer"]["starlet2d1d_l1"]}
    assert starlet["k"]["default"] == 3.0 and starlet["k"]["unit"]


def test_plugins_text(capsys):
    assert main(["plugins"]) == 0
    assert "regularizers" in capsys.readouterr().out


def test_bad_argument_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["validate"])
    assert info.value.code == 2


def test_instruments_listing_and_description(capsys):
    assert main(["instruments"]) == 0
    out = capsys.readouterr().out
    for name in ("xmm_epic_pn", "xrism_resolve", "chandra_acis_s", "athena_xifu"):
        assert name in out
    assert main(["instruments", "xrism_resolve"]) == 0
    assert "Resolve" in capsys.readouterr().out
    assert main(["instruments", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"name", "pixel_arcsec"} <= set(rows[0])
    assert main(["instruments", "xmm_epic_pnn"]) == 2
    assert "did you mean `xmm_epic_pn`" in unwrapped(capsys.readouterr().err)


def test_bin_command_writes_a_cube(tmp_path, capsys):
    import numpy as np
    from astropy.io import fits

    cols = [fits.Column("X", "E", array=np.array([1.2, 1.7, 3.5])), fits.Column("Y", "E", array=np.array([2.1, 2.2, 4.0])),
            fits.Column("ENERGY", "E", unit="keV", array=np.array([6.0, 6.1, 7.0]))]
    hdu = fits.BinTableHDU.from_columns(cols, name="EVENTS")
    hdu.header["EXPOSURE"] = 500.0
    events = tmp_path / "events.fits"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(events)
    out = tmp_path / "cube.fits"
    assert main(["bin", str(events), "--instrument", "xrism_resolve", "--out", str(out), "--energy-bin", "100",
                 "--energy-range", "5", "8"]) == 0
    assert "3 counts" in capsys.readouterr().out
    with fits.open(out) as hdul:
        assert hdul[0].data.sum() == 3 and hdul[0].header["EXPOSURE"] == 500.0
    assert main(["bin", str(tmp_path / "none.fits"), "--out", str(out)]) == 2


# Configs whose [[components]] read a model trained by another config: (index, training config,
# its table, the settings of a tiny model of it).
LEARNT_OF = {"unmixing_casa_chandra_surrogate.toml": (0, "train_surrogate_thermal_casa.toml", "surrogate",
                                                      {"n_samples": 100, "epochs": 2}),
             "unmixing_casa_chandra_iae.toml": (0, "train_iae_thermal_casa.toml", "iae",
                                                {"n_samples": 100, "epochs": 2, "layers": 1, "width": 8})}
# Configs that read a cube binned from ../shared's event list (docs/real_data.md): the grid of
# the `xhsi bin` command in their header (the pulsar exclusion does not change the grid).
_MSH = ["--instrument", "chandra_acis_i", "--center", "228.481667", "-59.135833", "--energy-range", "1", "8"]
BINNED_FROM_SHARED = {
    "msh1552_chandra.toml": _MSH + ["--size", "944", "--pixel-arcsec", "4", "--energy-bin", "8"],
    "msh1552_chandra_unmixing.toml": _MSH + ["--size", "944", "--pixel-arcsec", "16", "--energy-bin", "8"],
    "msh1552_chandra_small.toml": _MSH + ["--size", "496", "--pixel-arcsec", "16", "--energy-bin", "16"],
}


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_config_validates(config, capsys, tmp_path):
    """Every example config passes ``xhsi validate`` (the heavy ones are not run by the tests).
    Validation builds the [[components]], so a learnt model must exist: a tiny one is trained."""
    from xhsi.tomlio import dumps_toml, load_toml

    overrides = []
    if config.name in LEARNT_OF:
        index, training, table, tiny = LEARNT_OF[config.name]
        data = load_toml(ROOT / "configs" / training)
        data[table].update(tiny)
        (tmp_path / training).write_text(dumps_toml(data))
        model = tmp_path / "model.npz"
        assert main(["train-model", str(tmp_path / training), "--out", str(model), "--quiet"]) == 0
        overrides = ["--set", f'components[{index}].options.file="{model}"']
    if config.name in BINNED_FROM_SHARED:
        events = ROOT.parent / "shared" / "research" / "data" / "msh1552_acis_evt2_filtered.fits.gz"
        if not events.is_file():
            pytest.skip(f"{events} is not present")
        cube = tmp_path / "cube.fits"
        assert main(["bin", str(events), *BINNED_FROM_SHARED[config.name], "--out", str(cube)]) == 0
        overrides = ["--set", f'observations[0].counts="{cube}"']
    assert main(["validate", str(config), *overrides]) == 0, capsys.readouterr().err
    assert "valid" in capsys.readouterr().out


def test_validate_recognises_a_training_config(capsys, tmp_path):
    assert main(["validate", str(ROOT / "configs" / "train_surrogate_thermal.toml")]) == 0
    assert "valid training config for `xhsi train-model`" in unwrapped(capsys.readouterr().out)
    bad = tmp_path / "train.toml"
    bad.write_text((ROOT / "configs" / "train_surrogate_thermal.toml").read_text().replace("[surrogate]",
                                                                                          "[surrogate]\nepochz = 3"))
    assert main(["validate", str(bad)]) == 2
    assert "epochz" in capsys.readouterr().err
