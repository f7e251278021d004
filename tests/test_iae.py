"""Interpolatory Auto-Encoder spectral models (``iae``): exact derivatives of the decoder and
of the training loss, barycentric weights, a tiny training run and its read-out of the
physical parameters, files (round trip, tampering, grid, response, anchors), spectral
libraries (npz, FITS, NaN) and ``xhsi train-model`` / ``xhsi validate`` with an ``[iae]``
table. The contract tests (tests/contracts) check ``iae`` like every spectral model."""
from __future__ import annotations

import json

import numpy as np
import pytest

from xhsi import cli
from xhsi.backend import Backend, to_numpy
from xhsi.errors import ConfigError, DataError
from xhsi.spectral import spectra
from xhsi.spectral.iae import fit_physical, load_iae, save_iae
from xhsi.spectral.iae_data import TrainIAESection, TrainingSet, _anchor_points, library_set, sample_model, simplex_vertices
from xhsi.spectral.iae_training import _Net, train_iae
from xhsi.spectral.library import read_spectral_library, write_spectral_library
from xhsi.spectral.models import build_spectral_model
from xhsi.testing import assert_close, check_gradient
from xhsi_builtin.spectral_models import IAEModel

EDGES = np.linspace(0.5, 10.0, 41)
#: Held-out reconstruction error (median relative L2 per spectrum) of the tiny power-law IAE
#: below. It reaches ≈ 0.004 (untrained: ≈ 0.4); 0.03 leaves room for other BLAS / platforms.
TINY_BOUND = 0.03
#: Its learnt read-out of Γ (in [1, 3]) on held-out spectra: ≈ 1e-4 median absolute error
#: (untrained: ≈ 0.02).
READOUT_BOUND = 2e-3
#: The per-pixel fit of Γ to the decoded spectra: ≈ 0.004, the decoder's 0.3 % error in Γ.
FIT_BOUND = 0.02


def _settings(**kw):
    base = dict(model="powerlaw", bounds={"index": [1.0, 3.0]}, n_samples=200, width=8, layers=1, epochs=60,
                batch_size=32, learning_rate=1e-2)
    base.update(kw)
    return TrainIAESection(**base)


def _train(**kw):
    s = _settings(**kw)
    return train_iae(sample_model(build_spectral_model(s.model).setup(EDGES), s), s)


@pytest.fixture(scope="module")
def tiny():
    return _train()


@pytest.fixture(scope="module")
def free_weights():
    """Two layers, no sum-to-one constraint, leaky ReLU: the other branches of the runtime."""
    return _train(layers=2, epochs=5, sum_to_one=False, activation="leaky_relu", model="absorption * powerlaw",
                  bounds={"nh": [0.05, 2.0], "index": [1.0, 3.0]}, readout_degree=2)


def test_tiny_training_reduces_the_held_out_error(tiny):
    rec = tiny.validation["reconstruction"]
    assert rec["median"] < TINY_BOUND and rec["p90"] < 2 * TINY_BOUND, rec
    untrained = _train(epochs=0).validation["reconstruction"]
    assert untrained["median"] > 10 * TINY_BOUND, untrained
    # Fresh spectra through the registered model: encode, decode.
    model = IAEModel(iae=tiny).setup(EDGES)
    gamma = np.random.default_rng(3).uniform(1.1, 2.9, (4, 5))
    truth = spectra.powerlaw(EDGES, gamma)
    decoded = model.evaluate(model.encode(truth))
    err = np.linalg.norm(decoded - truth, axis=0) / np.linalg.norm(truth, axis=0)
    assert np.median(err) < TINY_BOUND


def test_readout_recovers_the_physical_parameter(tiny):
    assert tiny.validation["readout"]["index"]["median_abs"] < READOUT_BOUND
    model = IAEModel(iae=tiny).setup(EDGES)
    gamma = np.random.default_rng(4).uniform(1.1, 2.9, (3, 6))
    back = model.physical(model.encode(spectra.powerlaw(EDGES, gamma)))
    assert set(back) == {"index"} and back["index"].shape == (3, 6)
    assert np.median(np.abs(back["index"] - gamma)) < READOUT_BOUND


def test_physical_fit_recovers_the_parameters():
    """The per-pixel fit behind ``IAEModel.fit_physical``: exact spectra of a known model
    from a start off by up to 20 % are fitted to their parameters."""
    be = Backend("array_api_strict", "float64")
    model = build_spectral_model("absorption * powerlaw").setup(EDGES, be.xp, be.dtype)
    truth = np.array([[0.3, 1.0, 0.1, 1.7], [1.5, 2.0, 2.8, 2.2]])
    start = truth * np.array([[1.2], [0.85]])
    fitted = fit_physical(model, model.evaluate(be.asarray(truth)), be.asarray(start), iterations=30,
                          bounds=[(0.05, 2.0), (1.0, 3.0)])
    np.testing.assert_allclose(to_numpy(fitted), truth, rtol=1e-6)


def test_fit_physical_of_the_decoded_spectra(tiny, tmp_path):
    model = IAEModel(iae=tiny).setup(EDGES)
    gamma = np.random.default_rng(5).uniform(1.1, 2.9, (2, 5))
    fitted = model.fit_physical(model.encode(spectra.powerlaw(EDGES, gamma)))
    assert set(fitted) == {"index"} and fitted["index"].shape == (2, 5)
    assert np.median(np.abs(fitted["index"] - gamma)) < FIT_BOUND
    spec, params = _library()
    s = _settings(model="", library=write_spectral_library(tmp_path / "lib.npz", spec, params, ["index"], EDGES),
                  bounds={}, epochs=1)
    from_library = IAEModel(iae=train_iae(library_set(s, None, None), s)).setup(EDGES)
    with pytest.raises(ConfigError, match="trained on a library"):
        from_library.fit_physical(np.array([[0.5]]))


def test_an_anchor_has_the_unit_vector_of_weights(free_weights, tiny):
    for iae, expr, corners in ((free_weights, "absorption * powerlaw", [[0.05, 1.0], [2.0, 1.0], [1.025, 3.0]]),
                               (tiny, "powerlaw", [[1.0], [3.0]])):
        model = IAEModel(iae=iae).setup(EDGES)
        k = len(corners)
        assert np.allclose(iae.anchor_parameters, corners)
        anchors = build_spectral_model(expr).setup(EDGES).evaluate(np.array(corners).T)
        weights = model.encode(anchors)  # (n_params, k): parameters of each anchor
        if iae.weight_matrix is not None:  # aligned coordinates w = M λ + c: back to the free weights λ
            weights = np.linalg.solve(iae.weight_matrix, weights - iae.weight_offset[:, None])
        full = weights if model.n_params == k else np.vstack([weights, 1.0 - weights.sum(axis=0)])
        np.testing.assert_allclose(full, np.eye(k), atol=1e-3)


def test_aligned_weights_follow_the_physical_parameters(tiny, free_weights):
    # tiny: 2 simplex anchors, one free weight for Γ in [1, 3]: aligned, w1 ≈ (Γ - 1) / 2
    assert tiny.metadata["weights"]["kind"] == "aligned" and tiny.weight_matrix.shape == (1, 1)
    gamma = np.linspace(1.1, 2.9, 7)
    w = np.asarray(IAEModel(iae=tiny).setup(EDGES).encode(spectra.powerlaw(EDGES, gamma[None, :]))).reshape(-1)
    np.testing.assert_allclose(w, (gamma - 1.0) / 2.0, atol=0.1)
    assert tiny.metadata["weights"]["rms_residual"][0] < 0.1
    # free_weights: no sum-to-one, 3 free weights for 2 parameters: the barycentric weights
    assert free_weights.weight_matrix is None and free_weights.metadata["weights"]["kind"] == "barycentric"
    assert "3 free weights for 2 parameters" in free_weights.metadata["weights"]["why"]
    plain = _train(aligned=False)  # asked for: the barycentric weights, no reason to give
    assert plain.weight_matrix is None and plain.metadata["weights"] == {"kind": "barycentric"}


def test_default_anchors_are_a_simplex_or_the_corners():
    names, lo, hi = ["kT", "z"], np.array([0.5, -0.02]), np.array([8.0, 0.02])
    simplex = _anchor_points(_settings(log_parameters=["kT"]), names, lo, hi)
    np.testing.assert_allclose(simplex, [[0.5, -0.02], [8.0, -0.02], [2.0, 0.02]])  # the middle of ln kT: 2 keV
    corners = _anchor_points(_settings(anchor_layout="corners"), names, lo, hi)
    np.testing.assert_allclose(corners, [[0.5, -0.02], [0.5, 0.02], [8.0, -0.02], [8.0, 0.02]])
    v = simplex_vertices(3)
    assert v.shape == (4, 3) and abs(np.linalg.det(v[1:] - v[0])) > 0.1  # p + 1 affinely independent points
    with pytest.raises(ConfigError, match="give at most 16 anchors"):
        _anchor_points(_settings(anchor_layout="corners"), list("abcde"), np.zeros(5), np.ones(5))


@pytest.mark.parametrize("backend_name", ["numpy", "array_api_strict"])
def test_vjp_and_jvp_match_finite_differences(tiny, free_weights, backend_name):
    be = Backend(backend_name, "float64")
    for iae in (tiny, free_weights):
        model = IAEModel(iae=iae).setup(EDGES, be.xp, be.dtype)
        rng = np.random.default_rng(1)
        lo = np.array([p.bounds[0] for p in model.parameters])[:, None]
        hi = np.array([p.bounds[1] for p in model.parameters])[:, None]
        theta = be.asarray(lo + (hi - lo) * rng.uniform(0.2, 0.8, (model.n_params, 5)))
        c = be.asarray(rng.standard_normal((model.n_out, 5)))
        check_gradient(lambda t: float(be.xp.sum(model.evaluate(t) * c)), lambda t: model.vjp(t, c), theta,
                       directions=4)
        t = rng.standard_normal((model.n_params, 5)) * (hi - lo)
        h = 1e-5

        def at(step):
            return to_numpy(model.evaluate(theta + be.asarray(step * h * t)))

        fd = (8.0 * (at(1) - at(-1)) - (at(2) - at(-2))) / (12.0 * h)  # every bin along t
        jt = to_numpy(model.jvp(theta, be.asarray(t)))
        assert np.max(np.abs(jt - fd)) <= 1e-6 * np.max(np.abs(fd)), np.max(np.abs(jt - fd))
        t = be.asarray(t)
        lhs = float(be.xp.sum(model.jvp(theta, t) * c))
        rhs = float(be.xp.sum(t * model.vjp(theta, c)))
        assert abs(lhs - rhs) <= 1e-10 * (abs(lhs) + abs(rhs))


def test_training_loss_gradient_matches_finite_differences():
    """The explicit back-propagation of the loss, through the barycentric solve."""
    rng = np.random.default_rng(0)
    n_out, width, k, n = 10, 5, 3, 4
    for sum_to_one in (True, False):
        net = _Net(n_out, width, 2, "smooth_leaky_relu", rng)
        for block in net.enc + net.dec:
            block[0][...] = 0.5 * rng.standard_normal(block[0].shape)
            block[1][...] = 0.3 * rng.standard_normal(block[1].shape)
        x = rng.uniform(0.1, 1.0, (n_out, n))
        x /= x.sum(axis=0)
        logx = np.log(x)
        consts = (1e-3, sum_to_one, 0.7, rng.standard_normal((n_out, 1)), rng.uniform(0.5, 2.0, (n_out, 1)), 1e-8)
        args = (logx - logx.mean(axis=1, keepdims=True), logx, rng.uniform(0.5, 1.5, (n_out, n)),
                rng.standard_normal((n_out, k)), consts, 2)
        _, grads, _, _ = net.loss(*args)
        for array, grad in zip([a for pair in net.params(2) for a in pair], [g for pair in grads for g in pair]):
            direction = rng.standard_normal(array.shape)
            h = 1e-6
            array += h * direction
            up = net.loss(*args, grad=False)[0]
            array -= 2 * h * direction
            down = net.loss(*args, grad=False)[0]
            array += h * direction
            fd, an = (up - down) / (2 * h), float(np.sum(grad * direction))
            assert abs(fd - an) <= 1e-6 * max(abs(an), 1e-8), (sum_to_one, fd, an)


def test_save_and_load_round_trip_without_pickle(tiny, tmp_path):
    path = save_iae(tiny, tmp_path / "pl.npz")
    meta = json.loads((tmp_path / "pl.json").read_text())
    assert meta["format"] == "xhsi-iae" and meta["source"]["model"] == "powerlaw"
    assert [p["name"] for p in meta["parameters"]] == ["w1"] and meta["anchors"] == [{"index": 1.0}, {"index": 3.0}]
    assert meta["physical_parameters"][0]["bounds"] == [1.0, 3.0] and meta["response"] is None
    with np.load(path, allow_pickle=False) as z:
        assert all(z[k].dtype == np.float64 for k in z.files)
    be = Backend("array_api_strict", "float64")
    a = build_spectral_model("iae", {"file": str(path)}).setup(EDGES, be.xp, be.dtype)
    b = IAEModel(iae=tiny).setup(EDGES, be.xp, be.dtype)
    theta = be.asarray(np.array([[0.2, 0.7]]))
    assert_close(a.evaluate(theta), to_numpy(b.evaluate(theta)), rtol=1e-14, xp=be.xp)
    assert_close(a.physical(theta)["index"], to_numpy(b.physical(theta)["index"]), rtol=1e-14, xp=be.xp)
    spectrum = be.asarray(spectra.powerlaw(EDGES, np.array([1.5, 2.5])))
    assert_close(a.encode(spectrum), to_numpy(b.encode(spectrum)), rtol=1e-14, xp=be.xp)
    assert load_iae(path).validation == tiny.validation


def test_an_invalid_alignment_is_refused(tiny, tmp_path):
    import dataclasses

    for matrix, offset in ((np.zeros((1, 1)), np.zeros(1)), (np.eye(2), np.zeros(2)), (np.eye(1), np.full(1, np.nan))):
        bad = dataclasses.replace(tiny, weight_matrix=matrix, weight_offset=offset)
        with pytest.raises(DataError, match="invalid IAE model"):
            load_iae(save_iae(bad, tmp_path / "bad.npz"))


def test_altered_files_are_refused(tiny, tmp_path):
    path = save_iae(tiny, tmp_path / "pl.npz")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="SHA-256 differs"):
        load_iae(path)
    with pytest.raises(DataError, match="not an xhsi IAE"):
        (tmp_path / "s.json").write_text('{"format": "xhsi-surrogate"}')
        (tmp_path / "s.npz").write_bytes(b"")
        load_iae(tmp_path / "s.npz")


def test_anchors_outside_the_bounds_are_refused(tiny, tmp_path):
    with pytest.raises(ConfigError, match=r"anchor 2 has index = 3\.5.*outside the parameter bounds"):
        _train(anchors=[{"index": 1.0}, {"index": 3.5}])
    with pytest.raises(ConfigError, match="not a parameter"):
        _train(anchors=[{"gamma": 1.0}, {"index": 3.0}])
    path = save_iae(tiny, tmp_path / "pl.npz")
    meta = json.loads((tmp_path / "pl.json").read_text())
    meta["physical_parameters"][0]["bounds"] = [1.5, 3.0]  # the anchor Γ = 1 now lies outside
    (tmp_path / "pl.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="anchor 1 has index = 1, outside the parameter bounds"):
        load_iae(path)


def test_another_energy_grid_or_response_is_refused(tiny, tmp_path):
    path = save_iae(tiny, tmp_path / "pl.npz")
    model = build_spectral_model("iae", {"file": str(path)})
    with pytest.raises(DataError, match=r"trained on 40 bins 0\.5–10\.0 keV.*41 bins"):
        model.setup(np.linspace(0.5, 10.0, 42))
    s = _settings(epochs=2)
    fold = np.random.default_rng(0).uniform(0.0, 1.0, (40, 7))
    identity = {"instrument": "toy", "spectral_rebin": 1, "effective_area": False, "matrix_sha256": "abc"}
    data = sample_model(build_spectral_model("powerlaw").setup(EDGES), s, fold, np.linspace(0.5, 10.0, 8), identity)
    folded = IAEModel(iae=train_iae(data, s)).setup(EDGES)
    assert folded.n_out == 7 and folded.evaluate(np.array([[0.3, 0.6]])).shape == (7, 2)
    folded.check_response(dict(identity))
    with pytest.raises(DataError, match="Retrain"):
        folded.check_response(dict(identity, matrix_sha256="def"))


def _library(n=60, seed=0):
    rng = np.random.default_rng(seed)
    gamma = rng.uniform(1.0, 3.0, n)
    return spectra.powerlaw(EDGES, gamma).T * 7.0, gamma[:, None]


@pytest.mark.parametrize("suffix", [".npz", ".fits"])
def test_spectral_library_round_trip_and_training(tmp_path, suffix):
    spec, params = _library()
    path = write_spectral_library(tmp_path / f"lib{suffix}", spec, params, ["index"], EDGES, units=[""])
    lib = read_spectral_library(path)
    assert lib.names == ["index"] and lib.spectra.shape == (60, 40)
    np.testing.assert_allclose(lib.spectra, spec)
    s = _settings(model="", library=path, bounds={}, epochs=5)
    data = library_set(s, None, None)
    assert isinstance(data, TrainingSet) and data.spectra.shape == (40, 60)
    assert np.allclose(sorted(data.anchor_parameters[0]), [params.min(), params.max()])
    iae = train_iae(data, s)
    assert iae.metadata["source"]["library"] == str(path) and iae.physical_parameters[0].bounds[0] == params.min()


@pytest.mark.parametrize("suffix", [".npz", ".fits"])
def test_library_with_nan_spectra_is_refused(tmp_path, suffix):
    spec, params = _library()
    spec[5, 3] = np.nan
    path = write_spectral_library(tmp_path / f"lib{suffix}", spec, params, ["index"], EDGES)
    with pytest.raises(DataError, match="1 spectra hold NaN or infinite values.*row 5"):
        read_spectral_library(path)


TINY_TOML = """
[model.energy]
min_kev = 0.5
max_kev = 10.0
bins = 40

[iae]
model = "powerlaw"
bounds = { index = [1.0, 3.0] }
n_samples = 200
width = 8
layers = 1
epochs = 20
batch_size = 32
learning_rate = 1e-2
"""


def test_train_model_and_validate_commands(tmp_path, capsys):
    cfg = tmp_path / "train.toml"
    cfg.write_text(TINY_TOML)
    assert cli.main(["validate", str(cfg)]) == 0
    assert "valid training config" in capsys.readouterr().out
    out = tmp_path / "pl_iae.npz"
    assert cli.main(["train-model", str(cfg), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "IAE of powerlaw" in printed and "held-out relative L2 error" in printed and "read-out of index" in printed
    assert "weights aligned with index (rms residual" in printed
    model = build_spectral_model("absorption * iae", {"iae": {"file": str(out)}}).setup(EDGES)
    assert model.parameter_names == ("nh", "w1")


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("learning_rate", "learning_rat"), "iae.learning_rat"),
    (lambda t: t + 'anchors = [{index = 1.0}, {index = 4.0}]\n', "outside the parameter bounds"),
    (lambda t: t + 'library = "lib.npz"\n', "exactly one of `model`"),
    (lambda t: t.replace('model = "powerlaw"', 'library = "lib.npz"'), "NaN"),
])
def test_bad_training_inputs_exit_2(tmp_path, capsys, edit, message):
    spec, params = _library()
    spec[0, 0] = np.nan
    write_spectral_library(tmp_path / "lib.npz", spec, params, ["index"], EDGES)
    cfg = tmp_path / "train.toml"
    cfg.write_text(edit(TINY_TOML))
    for command in (["validate", str(cfg)], ["train-model", str(cfg), "--out", str(tmp_path / "x.npz")]):
        assert cli.main(command) == 2
        assert message in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.slow  # a whole run or many fits: `pytest -m slow` (CI runs both)
def test_unmixing_with_an_iae_component_writes_its_physical_maps(tmp_path):
    """In unmixing the IAE's weight maps are the fitted (regularised) variables; the physical
    maps (here Γ of the synchrotron) come out beside them, fitted to the decoded spectra."""
    from astropy.io import fits

    from test_unmixing import tiny as tiny_unmixing
    from xhsi.config import load_config
    from xhsi.runner import run

    s = _settings(epochs=30)
    grid = np.linspace(3.0, 8.0, 41)  # the tiny unmixing config's [model] energy grid
    save_iae(train_iae(sample_model(build_spectral_model(s.model).setup(grid), s), s), tmp_path / "sync.npz")
    path = tiny_unmixing(tmp_path, max_iter=3)
    plain = path.read_text()
    file = tmp_path / "sync.npz"
    path.write_text(plain.replace('name = "synchrotron"\nmodel = "powerlaw"\ninit = { index = 2.5 }',
                                  f'name = "synchrotron"\nmodel = "iae"\noptions = {{ file = "{file}" }}'))
    result = run(load_config(path), quiet=True)
    index = result.maps["synchrotron.index"]
    assert index.shape == (8, 8) and np.all((index >= 1.0) & (index <= 3.0))
    assert "synchrotron.w1" in result.maps and "synchrotron.index" not in result.map_errors
    with fits.open(tmp_path / "out" / "maps.fits") as hdul:
        assert "SYNCHROTRON_INDEX" in hdul and "SYNCHROTRON_W1" in hdul
    # the yardstick's per-pixel fits are read out in physical parameters too
    assert "synchrotron.index" in result.metrics["maps"] and "synchrotron.index" in result.metrics["maps_pixelfit"]
    # the IAE as a factor of a product (absorption with a fixed column): its parameters read out too
    path.write_text(plain.replace('name = "synchrotron"\nmodel = "powerlaw"\ninit = { index = 2.5 }',
                                  f'name = "synchrotron"\nmodel = "absorption * iae"\n'
                                  f'options = {{ iae = {{ file = "{file}" }} }}\ninit = {{ nh = 0.1 }}\nfixed = ["nh"]'))
    result = run(load_config(path, ["run.output=\"out2\""]), quiet=True)
    assert "synchrotron.w1" in result.maps and "synchrotron.index" in result.metrics["maps"]
