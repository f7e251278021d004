"""End-to-end runs from TOML at a tiny size: outputs, metrics, resume, and the user errors
that must be caught before any heavy work."""
from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits

from conftest import unwrapped
from xhsi.cli import main
from xhsi.config import load_config
from xhsi.errors import DataError, XhsiError
from xhsi.results import read_history
from xhsi.runner import make_regularizers, run, simulate
from xhsi.solvers import load_checkpoint

TINY = """\
[run]
problem = "fusion"
output = "out"
dtype = "float64"
quicklook = {quicklook}

[model]
energy = {{ min_kev = 5.5, max_kev = 7.5, bins = 40 }}
pixels = [12, 12]
pixel_arcsec = 4.1

[[observations]]
name = "xmm"
instrument = "xmm_epic_pn"
exposure_s = 5.0e4
spectral_rebin = 4

[[observations]]
name = "xrism"
instrument = "xrism_resolve"
exposure_s = 1.0e5
spatial_rebin = 3

[solver]
name = "fista"
max_iter = {max_iter}
tol = 0.0
report_every = 5

[simulate]
scene = "casa_like"
"""


def tiny(tmp_path, max_iter=20, quicklook=False, extra=""):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.format(max_iter=max_iter, quicklook=str(quicklook).lower()) + extra)
    return path


def test_fusion_run_writes_every_output(tmp_path):
    cfg = load_config(tiny(tmp_path, quicklook=True))
    result = run(cfg, quiet=True)
    out = tmp_path / "out"
    for name in ("result.fits", "metrics.json", "history.csv", "config.resolved.toml", "checkpoint.npz",
                 "images.png", "spectra.png", "cost.png", "run.json", "residuals_xmm.fits", "residuals_xrism.fits"):
        assert (out / name).is_file(), name
    with fits.open(out / "result.fits") as hdul:
        assert hdul[0].data.shape == (40, 12, 12)
        assert hdul[0].header["BUNIT"] == "photon / (s cm2)"
        assert hdul["EBOUNDS"].data["E_MIN"][0] == pytest.approx(5.5)
    history = read_history(out / "history.csv")
    assert history[0]["iteration"] == 0 and history[-1]["iteration"] == 20
    costs = [row["cost"] for row in history]
    assert costs[-1] < costs[0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["baselines"]) == {"xmm", "xrism"} and "psnr_db" in metrics["result"]
    by_flux = metrics["asam_by_flux"]
    assert set(by_flux["baselines"]) == {"xmm", "xrism"}
    assert sum(c["pixels"] for c in by_flux["result"]) == 12 * 12  # every pixel of the field, once
    assert result.metadata["n_iter"] == 20
    with fits.open(out / "residuals_xrism.fits") as hdul:  # significance per detector pixel
        # a significance is dimensionless: empty BUNIT, "[sigma]" in its comment
        assert hdul[1].data.shape == (4, 4) and hdul[1].header["BUNIT"] == ""
        assert hdul[1].header.comments["BUNIT"].startswith("[sigma]")
        assert np.all(np.abs(hdul[1].data) < 50)
    # the resolved config runs the same problem
    assert load_config(out / "config.resolved.toml").digest() == cfg.digest()


def test_fusion_beats_both_data_only_baselines(tmp_path):
    cfg = load_config(tiny(tmp_path, max_iter=60))
    m = run(cfg, quiet=True).metrics
    for name, base in m["baselines"].items():
        assert m["result"]["psnr_db"] > base["psnr_db"], name
        assert m["result"]["rel_error_voxel"] < base["rel_error_voxel"], name


def test_existing_run_is_refused_then_resumed(tmp_path):
    path = tiny(tmp_path, max_iter=10)
    run(load_config(path), quiet=True)
    with pytest.raises(XhsiError, match="already holds a run.*--overwrite.*--resume"):
        run(load_config(path), quiet=True)
    resumed = run(load_config(path, ["solver.max_iter=20"]), resume=True, quiet=True)
    assert resumed.metadata["n_iter"] == 20
    assert read_history(tmp_path / "out" / "history.csv")[-1]["iteration"] == 20


def test_resume_equals_uninterrupted_run(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    full = run(load_config(tiny(a, max_iter=20)), quiet=True)
    run(load_config(tiny(b, max_iter=10)), quiet=True)
    resumed = run(load_config(tiny(b, max_iter=20)), resume=True, quiet=True)
    np.testing.assert_array_equal(full.arrays["cube"], resumed.arrays["cube"])


def test_resume_with_another_problem_is_refused(tmp_path):
    path = tiny(tmp_path, max_iter=5)
    run(load_config(path), quiet=True)
    with pytest.raises(XhsiError, match="config"):
        run(load_config(path, ["observations.xmm.exposure_s=1e3"]), resume=True, quiet=True)


def test_simulate_then_run_from_counts_files(tmp_path):
    cfg = load_config(tiny(tmp_path))
    written = simulate(cfg, tmp_path / "sim")
    assert [p.name for p in written] == ["truth.fits", "xmm_counts.fits", "xrism_counts.fits"]
    text = tiny(tmp_path, max_iter=5).read_text().replace("[simulate]\nscene = \"casa_like\"\n", "")
    text = text.replace('spectral_rebin = 4', 'spectral_rebin = 4\ncounts = "sim/xmm_counts.fits"')
    text = text.replace('spatial_rebin = 3', 'spatial_rebin = 3\ncounts = "sim/xrism_counts.fits"')
    text += '\n[metrics]\ntruth = "sim/truth.fits"\n'
    path = tmp_path / "from_files.toml"
    path.write_text(text)
    result = run(load_config(path), quiet=True)
    assert "result" in result.metrics


def test_counts_grid_mismatch_is_caught_before_solving(tmp_path):
    cfg = load_config(tiny(tmp_path))
    simulate(cfg, tmp_path / "sim")
    text = tiny(tmp_path).read_text().replace('spectral_rebin = 4', 'spectral_rebin = 2\ncounts = "sim/xmm_counts.fits"')
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(DataError, match="xmm_counts.fits.*shape.*spectral_rebin"):
        run(load_config(path), quiet=True)
    assert not (tmp_path / "out" / "result.fits").exists()


def test_missing_counts_without_simulate(tmp_path):
    text = tiny(tmp_path).read_text().replace("[simulate]\nscene = \"casa_like\"\n", "")
    path = tmp_path / "nosim.toml"
    path.write_text(text)
    with pytest.raises(XhsiError, match=r"observations\[0\] \(`xmm`\) has no `counts` file.*\[simulate\]"):
        run(load_config(path), quiet=True)


def test_missing_counts_file(tmp_path):
    text = tiny(tmp_path).read_text().replace('spectral_rebin = 4', 'spectral_rebin = 4\ncounts = "nope.fits"')
    path = tmp_path / "missing.toml"
    path.write_text(text)
    with pytest.raises(DataError, match="nope.fits does not exist"):
        run(load_config(path), quiet=True)


def test_deconvolution_takes_one_observation(tmp_path):
    path = tiny(tmp_path)
    with pytest.raises(XhsiError, match="exactly 1 observation.*fusion"):
        run(load_config(path, ["run.problem=\"deconvolution\""]), quiet=True)


def test_lowrank_sobolev_setup_runs(tmp_path):
    extra = '\n[[regularizers]]\nname = "lowrank_pca"\noptions = { rank = 3 }\n\n[[regularizers]]\nname = "sobolev"\nweight = 0.1\n'
    result = run(load_config(tiny(tmp_path, max_iter=10, extra=extra)), quiet=True)
    assert result.arrays["rank_maps"].shape == (3, 12, 12)
    assert result.arrays["cube"].shape == (40, 12, 12)


def test_cli_run_exit_codes(tmp_path, capsys):
    path = tiny(tmp_path, max_iter=5)
    assert main(["run", str(path), "--quiet"]) == 0
    assert main(["run", str(path), "--quiet"]) == 2
    assert "already holds a run" in unwrapped(capsys.readouterr().err)
    assert main(["run", str(path), "--quiet", "--overwrite", "--out", str(tmp_path / "other")]) == 0


def test_ctrl_c_writes_a_checkpoint_and_resume_continues(tmp_path):
    import signal
    import subprocess
    import sys

    path = tiny(tmp_path, max_iter=100000)
    text = path.read_text().replace("report_every = 5", "report_every = 1")
    path.write_text(text)
    # A shell that starts a job in the background (`cmd &`) ignores SIGINT in it, and the
    # child would inherit that: give it the default disposition, which Python turns into
    # KeyboardInterrupt.
    proc = subprocess.Popen([sys.executable, "-m", "xhsi", "run", str(path)], stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in proc.stderr:  # progress lines (no terminal): wait until the solver is iterating
        if line.startswith("iteration") and int(line.split()[1]) >= 3:
            break
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 130
    assert "checkpoint written" in rest and "--resume" in rest
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.npz"]  # an interrupted run: its checkpoint alone
    stopped_at = load_checkpoint(out / "checkpoint.npz").iteration
    resumed = run(load_config(path, [f"solver.max_iter={stopped_at + 3}"]), resume=True, quiet=True)
    assert resumed.metadata["n_iter"] == stopped_at + 3


def test_gaussian_likelihood_runs_end_to_end(tmp_path):
    result = run(load_config(tiny(tmp_path, max_iter=20), ['run.likelihood="gaussian"']), quiet=True)
    costs = [row["cost"] for row in result.history]
    assert costs[-1] < costs[0]
    for base in result.metrics["baselines"].values():
        assert result.metrics["result"]["rel_error_voxel"] < base["rel_error_voxel"]


# -- fusion start and noise calibration (framework/xhsi/problems/imaging.py) ----------------
def test_fusion_starts_from_spectrometer_spectra_and_imager_band_image(tmp_path):
    from xhsi import plugins
    from xhsi.metrics import asam
    from xhsi.runner import prepare

    cfg = load_config(tiny(tmp_path))
    prep = prepare(cfg)
    problem = plugins.get("problem", "fusion")(cfg, prep.backend, prep.grid, prep.observations, [],
                                                plugins.get("likelihood", "poisson"))
    z0 = np.asarray(problem.initial_cube(), dtype=np.float64)
    base = {k: np.asarray(v, dtype=np.float64) for k, v in problem.baselines().items()}
    # every pixel: the Resolve-only spectral shape ...
    assert asam(z0, base["xrism"]) == pytest.approx(0.0, abs=0.05)
    # ... carrying the pn-only broad-band flux (the start is computed in float32 on the host)
    np.testing.assert_allclose(z0.sum(axis=0), base["xmm"].sum(axis=0), rtol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradient_noise_is_the_counting_noise_of_the_gradient(dtype):
    from types import SimpleNamespace

    from xhsi.backend import Backend
    from xhsi.likelihoods import Gaussian, Poisson
    from xhsi.operators import Identity
    from xhsi.problems.imaging import Fusion, data_noise_std

    backend = Backend("numpy", dtype, seed=0)
    shape = (4, 50, 50)
    counts = backend.asarray(np.full(shape, 100.0))
    assert float(data_noise_std(Poisson(), counts)[0, 0, 0]) == pytest.approx(10.0)
    assert float(data_noise_std(Poisson(), counts * 0.0)[0, 0, 0]) == pytest.approx(1.0)  # floored at 1 count
    assert float(data_noise_std(Gaussian(variance=counts * 4.0), counts)[0, 0, 0]) == pytest.approx(20.0)
    problem = Fusion.__new__(Fusion)
    problem.backend, problem.config = backend, SimpleNamespace(run=SimpleNamespace(seed=3))
    term = SimpleNamespace(operator=Identity(shape), data=counts, likelihood=Poisson())
    noise = problem.gradient_noise([term, term])
    assert noise.dtype == backend.dtype and tuple(noise.shape) == shape
    # two independent draws through the identity: σ = √2 / √100 — whatever the misfit of any estimate
    assert float(np.std(np.asarray(noise))) == pytest.approx(np.sqrt(2.0) / 10.0, rel=0.03)
    np.testing.assert_array_equal(np.asarray(problem.gradient_noise([term, term])), np.asarray(noise))  # seeded


def test_lowrank_fusion_folds_the_basis_into_the_operators(tmp_path):
    # The solver's operators act on the rank maps without forming the cube, and equal A ∘ W.
    from xhsi import plugins
    from xhsi.problems.imaging import ParametrisedCube
    from xhsi.runner import prepare

    extra = '\n[[regularizers]]\nname = "lowrank_pca"\noptions = { rank = 3 }\n'
    cfg = load_config(tiny(tmp_path, extra=extra))
    prep = prepare(cfg)
    regs = make_regularizers(cfg)
    problem = plugins.get("problem", "fusion")(cfg, prep.backend, prep.grid, prep.observations, regs,
                                               plugins.get("likelihood", "poisson"))
    x0, smooth, prox, to_cube = problem.build()
    h = np.random.default_rng(0).random(x0.shape)
    for term, obs in zip(smooth.terms, prep.observations):
        ops = getattr(term.operator, "ops", [term.operator])
        assert not any(isinstance(op, ParametrisedCube) for op in ops)
        np.testing.assert_allclose(term.operator.apply(h), obs.forward.apply(to_cube.apply(h)), rtol=1e-8)


def test_start_file_continues_from_an_earlier_result(tmp_path):
    first = run(load_config(tiny(tmp_path, max_iter=10)), quiet=True)
    path = tiny(tmp_path, max_iter=3, extra='\n[problem]\nstart_file = "out/result.fits"\n')
    again = run(load_config(path), out=tmp_path / "again", quiet=True)
    # the second run starts where the first stopped (its cost at iteration 0 is the first's last)
    assert again.history[0]["cost"] == pytest.approx(first.history[-1]["cost"], rel=1e-6)
    assert again.history[0]["cost"] < first.history[0]["cost"]


@pytest.mark.parametrize("edit, match", [
    ({"pixels = [12, 12]": "pixels = [24, 24]"}, r"start_file.*does not map onto the model grid.*pixel sizes"),
    ({"min_kev = 5.5": "min_kev = 5.0"}, r"start_file.*does not map onto the model grid.*energy bins"),
])
def test_start_file_on_another_grid_is_refused_before_solving(tmp_path, edit, match):
    run(load_config(tiny(tmp_path, max_iter=2)), quiet=True)
    path = tiny(tmp_path, max_iter=2, extra='\n[problem]\nstart_file = "out/result.fits"\n')
    text = path.read_text()
    for old, new in edit.items():
        text = text.replace(old, new)
    path.write_text(text)
    with pytest.raises(XhsiError, match=match):
        run(load_config(path), out=tmp_path / "other", quiet=True)


def test_simulated_counts_do_not_depend_on_the_run_dtype(tmp_path):
    from xhsi.runner import prepare

    single, double = (prepare(load_config(tiny(tmp_path), [f'run.dtype="{d}"'])) for d in ("float32", "float64"))
    for a, b in zip(single.observations, double.observations):
        np.testing.assert_array_equal(np.asarray(a.counts, dtype=np.float64), np.asarray(b.counts))
    np.testing.assert_array_equal(single.truth.astype(np.float64), double.truth)
    assert single.truth.dtype == np.float32 and double.truth.dtype == np.float64


# -- dtype-independent start and the em metric (problems/starts.py, problems/metric.py) ------
NMF_SOBOLEV = ('\n[[regularizers]]\nname = "lowrank_pca"\noptions = { rank = 3, basis = "nmf" }\n'
               '\n[[regularizers]]\nname = "sobolev"\nweight = 0.1\n')


def _problem(cfg):
    from xhsi import plugins
    from xhsi.runner import prepare

    prep = prepare(cfg)
    regs = make_regularizers(cfg)
    extra = {"options": cfg.problem} if cfg.problem is not None else {}
    return plugins.get("problem", cfg.run.problem)(cfg, prep.backend, prep.grid, prep.observations, regs,
                                                   plugins.get("likelihood", "poisson"), **extra)


def test_start_and_lowrank_basis_do_not_depend_on_the_run_dtype(tmp_path):
    # The start goes through the float32 host operators and the basis is learnt in float64:
    # float32 and float64 runs get the same bits (an NMF's flat directions amplify any
    # difference of its input, measured 1e-3 on its spectra for 6e-6 on the start).
    problems = {d: _problem(load_config(tiny(tmp_path, extra=NMF_SOBOLEV), [f'run.dtype="{d}"']))
                for d in ("float32", "float64")}
    starts = {d: p.initial_cube() for d, p in problems.items()}
    assert starts["float32"].dtype == np.float64
    np.testing.assert_array_equal(starts["float32"], starts["float64"])
    built = {d: p.build() for d, p in problems.items()}
    single, double = (problems[d].parametrisation for d in ("float32", "float64"))
    assert single.basis.dtype == np.float32 and double.basis.dtype == np.float64
    np.testing.assert_array_equal(single.basis, double.basis.astype(np.float32))
    z = {d: np.asarray(built[d][3].apply(built[d][0]), dtype=np.float64) for d in built}  # the start's cube
    np.testing.assert_allclose(z["float32"], z["float64"], rtol=1e-5, atol=1e-6 * z["float64"].max())


def test_em_scaling_is_flux_over_sensitivity():
    from xhsi.operators import Diagonal
    from xhsi.problems.metric import em_scaling

    x0 = np.array([0.0, 1.0, 2.0, 5.0])  # mean 2
    ops = [Diagonal(np.array([1.0, 1.0, 2.0, 4.0]), (4,)), Diagonal(np.array([1.0, 1.0, 2.0, 1.0]), (4,))]
    d = em_scaling(x0, ops, floor=0.75)  # floor 0.75 × 2 = 1.5 lifts the first two voxels
    expected = np.array([1.5, 1.5, 2.0, 5.0]) / np.array([2.0, 2.0, 4.0, 5.0])
    np.testing.assert_allclose(d ** 2, expected / expected.mean(), rtol=1e-12)
    # per slice (first axis): D averaged over each slice
    cube, ops2 = x0.reshape(2, 1, 2), [Diagonal(op.weight.reshape(2, 1, 2), (2, 1, 2)) for op in ops]
    d = em_scaling(cube, ops2, floor=0.75, per_slice=True)
    per_slice = expected.reshape(2, 2).mean(axis=1)
    np.testing.assert_allclose(d.ravel() ** 2, per_slice / per_slice.mean(), rtol=1e-12)
    assert d.shape == (2, 1, 1)
    # bounded: D at most cap × its mean, the rest unchanged
    d = em_scaling(x0, ops, floor=0.75, cap=1.2)
    np.testing.assert_allclose(d ** 2, np.minimum(expected / expected.mean(), 1.2), rtol=1e-12)


@pytest.mark.slow  # a whole run or many fits: `pytest -m slow` (CI runs both)
def test_em_metric_converges_faster_to_the_same_minimum(tmp_path):
    # A smooth-only, non-negative problem (full cube + Sobolev): auto solves it in the em
    # metric, which is ahead early and ends at least as low (a wrong chain rule through the
    # change of variable would end higher).
    extra = '\n[[regularizers]]\nname = "sobolev"\nweight = 0.1\n'
    runs = {}
    for mode in ("auto", "none"):
        cfg = load_config(tiny(tmp_path, max_iter=300, extra=extra), [f'problem.precondition="{mode}"'])
        runs[mode] = run(cfg, out=tmp_path / mode, quiet=True)
    cost = {m: [row["cost"] for row in r.history] for m, r in runs.items()}  # every 5 iterations
    assert runs["auto"].metadata["metric"] == "em (per voxel)" and runs["none"].metadata["metric"] == "euclidean"
    assert cost["auto"][-1] <= cost["none"][-1] * (1 + 1e-6)
    assert cost["auto"][10] < cost["none"][10]  # iteration 50: ahead


@pytest.mark.parametrize("mode, extra, metric", [
    ("auto", '[[regularizers]]\nname = "sobolev"\nweight = 0.1', "voxels"),
    ("auto", '[[regularizers]]\nname = "nonnegative"', "voxels"),
    ("auto", '[[regularizers]]\nname = "starlet2d_l1"', "slices"),  # one scalar per energy plane
    ("auto", NMF_SOBOLEV.replace("sobolev", "starlet2d_l1"), "slices"),  # one per rank map
    ("auto", '[[regularizers]]\nname = "starlet2d1d_l1"', None),
    ("auto", '[[regularizers]]\nname = "starlet2d_l1"\noptions = { per_slice = false }', None),
    ("none", '[[regularizers]]\nname = "sobolev"\nweight = 0.1', None)])
def test_precondition_auto_takes_the_finest_metric_every_prox_accepts(tmp_path, mode, extra, metric):
    problem = _problem(load_config(tiny(tmp_path, extra="\n" + extra + "\n"), [f'problem.precondition="{mode}"']))
    x0 = problem.build()[0]
    assert problem.metric_mode == metric
    if metric == "slices":
        d = np.asarray(problem.metric.weight)
        assert d.shape == (x0.shape[0], 1, 1) and np.ptp(d) > 0  # one scalar per slice


@pytest.mark.parametrize("extra, why", [
    ('\n[[regularizers]]\nname = "starlet2d1d_l1"\n', "starlet2d1d_l1.*Euclidean metric only"),
    ('\n[[regularizers]]\nname = "lowrank_pca"\noptions = { rank = 3 }\n', "not constrained to >= 0"),
])
def test_em_metric_is_refused_where_it_does_not_apply(tmp_path, capsys, extra, why):
    # by `xhsi validate`, and by `xhsi run` before any data is simulated or read
    path = tiny(tmp_path, extra=extra)
    assert main(["validate", str(path), "--set", 'problem.precondition="em"']) == 2
    assert "does not apply" in unwrapped(capsys.readouterr().err)
    cfg = load_config(path, ['problem.precondition="em"'])
    with pytest.raises(XhsiError, match=r'precondition = "em" does not apply.*' + why):
        run(cfg, quiet=True)
    assert not (tmp_path / "out" / "config.resolved.toml").exists()
