"""Surrogates (learnt emulators of spectral models): accuracy of a tiny trained emulator,
save/load round trip without pickle, refusal of another energy grid, response or altered
file, the training config schema and the ``xhsi train-model`` command."""
from __future__ import annotations

import json

import numpy as np
import pytest

from xhsi import cli

from xhsi.spectral import spectra
from xhsi.backend import Backend, to_numpy
from xhsi.errors import ConfigError, DataError
from xhsi.spectral.models import Product, build_spectral_model
from xhsi.spectral.surrogate import load_surrogate, save_surrogate
from xhsi.spectral.training import TrainSurrogateSection, load_training_config, response_identity, train_surrogate
from xhsi.testing import assert_close
from xhsi_builtin.spectral_models import SurrogateModel

EDGES = np.linspace(0.5, 10.0, 41)
#: Stated accuracy of the tiny power-law emulator below (relative L2 error per spectrum);
#: it reaches ~2e-5, the bound leaves room for other BLAS/platforms.
TINY_BOUND = 1e-3


def _tiny_settings(**kw):
    base = dict(model="powerlaw", n_samples=300, n_components=3, hidden=[16], epochs=100, batch_size=32,
                learning_rate=1e-2, bounds={"index": [1.0, 3.0]})
    base.update(kw)
    return TrainSurrogateSection(**base)


@pytest.fixture(scope="module")
def tiny():
    model = build_spectral_model("powerlaw").setup(EDGES)
    return train_surrogate(model, _tiny_settings())


def test_tiny_powerlaw_surrogate_is_accurate(tiny):
    v = tiny.validation
    assert v["network"]["max"] < TINY_BOUND, v
    assert v["pca_only"]["max"] < 1e-5, v
    assert tiny.metadata["training"]["n_validation"] == 60
    # And on fresh parameters, through the registered model.
    model = SurrogateModel(surrogate=tiny).setup(EDGES)
    gamma = np.random.default_rng(9).uniform(1.0, 3.0, (1, 5, 4))
    ref = spectra.powerlaw(EDGES, gamma[0])
    err = np.linalg.norm(model.evaluate(gamma) - ref, axis=0) / np.linalg.norm(ref, axis=0)
    assert np.max(err) < TINY_BOUND


def test_untrained_network_is_not_accurate():
    """The accuracy test can fail: with no training the emulator is poor."""
    model = build_spectral_model("powerlaw").setup(EDGES)
    raw = train_surrogate(model, _tiny_settings(epochs=0, hidden=[16, 16]))
    assert raw.validation["network"]["median"] > 10 * TINY_BOUND


def test_save_and_load_round_trip_without_pickle(tiny, tmp_path):
    path = save_surrogate(tiny, tmp_path / "pl.npz")
    meta = json.loads((tmp_path / "pl.json").read_text())
    assert meta["format"] == "xhsi-surrogate" and meta["emulated_model"] == "powerlaw"
    assert meta["parameters"][0]["name"] == "index" and meta["parameters"][0]["bounds"] == [1.0, 3.0]
    assert meta["energy_grid"]["n_e"] == 40 and meta["response"] is None
    assert set(meta["validation"]) >= {"network", "pca_only", "metric"}
    with np.load(path, allow_pickle=False) as z:  # plain numeric arrays only
        assert all(z[k].dtype == np.float64 for k in z.files)
    back = load_surrogate(path)
    be = Backend("array_api_strict", "float64")
    a = build_spectral_model("surrogate", {"file": str(path)}).setup(EDGES, be.xp, be.dtype)
    b = SurrogateModel(surrogate=tiny).setup(EDGES, be.xp, be.dtype)
    theta = be.asarray(np.array([[[1.2, 2.9]]]))
    assert_close(a.evaluate(theta), to_numpy(b.evaluate(theta)), rtol=1e-14, xp=be.xp)
    assert back.validation == tiny.validation


def test_surrogate_refuses_another_energy_grid(tiny, tmp_path):
    path = save_surrogate(tiny, tmp_path / "pl.npz")
    model = build_spectral_model("surrogate", {"file": str(path)})
    with pytest.raises(DataError, match=r"trained on 40 bins 0\.5–10\.0 keV.*41 bins"):
        model.setup(np.linspace(0.5, 10.0, 42))
    with pytest.raises(DataError, match="trained on"):
        model.setup(EDGES * 1.0001)


def test_altered_or_incomplete_files_are_refused(tiny, tmp_path):
    path = save_surrogate(tiny, tmp_path / "pl.npz")
    other = train_surrogate(build_spectral_model("powerlaw").setup(EDGES), _tiny_settings(epochs=1))
    save_surrogate(other, tmp_path / "other.npz")
    (tmp_path / "pl.npz").write_bytes((tmp_path / "other.npz").read_bytes())
    with pytest.raises(DataError, match="does not match"):
        load_surrogate(path)
    (tmp_path / "other.json").unlink()
    with pytest.raises(DataError, match="no such file"):
        load_surrogate(tmp_path / "other.npz")
    (tmp_path / "x.json").write_text('{"format": "something else"}')
    (tmp_path / "x.npz").write_bytes(b"")
    with pytest.raises(DataError, match="not an xhsi surrogate"):
        load_surrogate(tmp_path / "x.npz")
    with pytest.raises(ConfigError, match=r"\.npz"):
        load_surrogate(tmp_path / "x.fits")


def test_folded_surrogate_checks_its_response():
    model = build_spectral_model("powerlaw").setup(EDGES)
    fold = np.random.default_rng(0).uniform(0.0, 1.0, (40, 7))
    identity = {"instrument": "toy", "spectral_rebin": 1, "effective_area": False, "matrix_sha256": "abc"}
    s = train_surrogate(model, _tiny_settings(epochs=5), fold=fold, output_edges_kev=np.linspace(0.5, 10, 8),
                        response=identity)
    folded = SurrogateModel(surrogate=s).setup(EDGES)
    assert folded.n_out == 7 and folded.response == identity
    assert folded.evaluate(np.array([[2.0, 2.5]])).shape == (7, 2)
    folded.check_response(dict(identity))
    with pytest.raises(DataError, match="Retrain"):
        folded.check_response(dict(identity, matrix_sha256="def"))
    with pytest.raises(DataError, match="folded"):
        folded.check_response(None)
    with pytest.raises(ConfigError, match="cannot be multiplied"):
        Product([build_spectral_model("absorption"), SurrogateModel(surrogate=s)])


def test_response_identity_of_an_instrument():
    edges = np.linspace(0.5, 8.0, 31)
    a = response_identity("chandra_acis_s", edges, 1, True)
    assert a["instrument"] == "chandra_acis_s" and a["spectral_rebin"] == 1
    assert response_identity("chandra_acis_s", edges, 1, True) == a
    assert response_identity("chandra_acis_s", edges, 1, False)["matrix_sha256"] != a["matrix_sha256"]


@pytest.mark.parametrize("settings, message", [
    (dict(bounds={"gamma": [1.0, 2.0]}), "did you mean `index`|not a parameter"),
    (dict(bounds={"index": [2.0, 1.0]}), "increasing and inside"),
    (dict(bounds={"index": [1.0, 9.0]}), "increasing and inside"),
    (dict(log_parameters=["index"], bounds={"index": [0.0, 2.0]}), "above 0"),
    (dict(log_parameters=["nh"]), "not a parameter"),
])
def test_bad_training_settings_are_config_errors(settings, message):
    model = build_spectral_model("powerlaw").setup(EDGES)
    with pytest.raises(ConfigError, match=message):
        train_surrogate(model, _tiny_settings(**settings))


def test_example_training_config_is_valid():
    from pathlib import Path

    from xhsi.spectral.training import _training_bounds

    cfg = load_training_config(Path(__file__).resolve().parents[1] / "configs" / "train_surrogate_thermal.toml")
    model = build_spectral_model(cfg.surrogate.model, cfg.surrogate.options)
    model.setup(np.linspace(cfg.model.energy.min_kev, cfg.model.energy.max_kev, cfg.model.energy.bins + 1))
    lo, hi = _training_bounds(model, cfg.surrogate.bounds)
    assert np.all(lo < hi) and set(cfg.surrogate.log_parameters) <= set(model.parameter_names)
    assert cfg.response is not None and cfg.response.instrument == "xmm_epic_pn"


TINY_TOML = """
[model.energy]
min_kev = 0.5
max_kev = 10.0
bins = 40

[surrogate]
model = "absorption * powerlaw"
bounds = { nh = [0.05, 1.0], index = [1.0, 3.0] }
log_parameters = ["nh"]
n_samples = 300
n_components = 4
hidden = [16]
epochs = 60
batch_size = 32
learning_rate = 1e-2
"""


def test_train_model_command(tmp_path, capsys):
    cfg = tmp_path / "train.toml"
    cfg.write_text(TINY_TOML)
    out = tmp_path / "sub" / "absorbed_pl.npz"
    assert cli.main(["train-model", str(cfg), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "validation relative L2 error" in printed and "absorption * powerlaw" in printed
    assert out.is_file() and out.with_suffix(".json").is_file()
    model = build_spectral_model("surrogate", {"file": str(out)}).setup(EDGES)
    assert model.parameter_names == ("nh", "index")
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["validation"]["network"]["median"] < 1e-2


def test_train_model_command_reports_config_errors(tmp_path, capsys):
    cfg = tmp_path / "train.toml"
    cfg.write_text(TINY_TOML.replace("n_samples", "n_sample"))
    assert cli.main(["train-model", str(cfg), "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err
    assert "surrogate.n_sample" in err and "n_samples" in err
