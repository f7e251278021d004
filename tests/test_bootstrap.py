"""The parametric bootstrap of unmixing's error maps (xhsi.problems.bootstrap): replicate
counts are Poisson draws of the expected counts, from reproducible per-replicate streams;
without a prior and at high counts the replicates' spread is the Fisher error (Cramér–Rao);
the [problem] options are checked; a run writes the bootstrap's error maps and says so."""
from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits
from xhsi import plugins
from xhsi.config import load_config
from xhsi.errors import ConfigError
from xhsi.problems.base import run_solver
from xhsi.problems.bootstrap import (
    SHRINKAGE_FLOOR,
    bootstrap_replicates,
    check_bootstrap,
    coverage,
    half_width,
    replicate_counts,
)
from xhsi.runner import check_config, prepare, run

# A cluster seen in 2 × 2 pixels of 10″ (the ACIS PSF, < 1″, couples nothing), one thermal
# component with kT and the amplitude free: ~3e4 counts per pixel, where the likelihood is
# close to Gaussian. No prior unless ``k`` (the starlet threshold of the kT map, in σ) > 0.
CLUSTER = """\
[run]
problem = "unmixing"
output = "out"
dtype = "float64"
quicklook = false
seed = 5

[problem]
init_bin = 1
init_iter = 30
{problem}

[model]
energy = {{ min_kev = 3.0, max_kev = 8.0, bins = 40 }}
pixels = [{n}, {n}]
pixel_arcsec = 10.0

[[observations]]
name = "acis"
instrument = "chandra_acis_s"
exposure_s = {exposure}
spectral_rebin = 2

[[components]]
name = "thermal"
model = "thermal"
options = {{ fit_abundance = false, abundance = 0.3 }}
init = {{ kT = 4.0, z = 0.05 }}
bounds = {{ kT = [0.5, 12.0] }}
fixed = ["z"]
parameter_k = {k}

[solver]
name = "palm"
max_iter = {max_iter}
tol = 0.0
report_every = {max_iter}

[simulate]
scene = "cluster_beta"
"""


def cluster(tmp_path, n=2, exposure=300.0, max_iter=3, problem="", k=0.0):
    path = tmp_path / "cluster.toml"
    path.write_text(CLUSTER.format(n=n, exposure=exposure, max_iter=max_iter, problem=problem, k=k))
    return path


def solved(path, prepared=None):
    """(problem, solver, mixture, blocks, solution, maps, Fisher errors) of a config;
    ``prepared``, a dict, gets the run's prepared data (``prep``)."""
    cfg = load_config(path)
    regularizers = check_config(cfg)
    prep = prepare(cfg)
    if prepared is not None:
        prepared["prep"] = prep
    problem = plugins.get("problem", "unmixing")(cfg, prep.backend, prep.grid, prep.observations, regularizers,
                                                 plugins.get("likelihood", cfg.run.likelihood), options=cfg.problem)
    solver = plugins.get("solver", "palm").from_config(cfg.solver)
    x0, value, blocks, mixture = problem.build()
    out = run_solver(problem.name, solver, (x0, value, blocks))[0]
    maps = problem._maps(mixture, out.x)
    return problem, solver, mixture, blocks, out.x, maps, problem.error_maps(maps)


def test_replicate_counts_are_poisson_draws_of_the_expected_counts():
    mu = np.array([[[0.0, 0.3], [4.0, 50.0]]])
    draws = np.stack([replicate_counts([mu], seed=3, index=b)[0] for b in range(4000)])
    assert draws.dtype == np.float64 and np.all(draws == np.round(draws)) and np.all(draws[:, 0, 0, 0] == 0)
    se = np.sqrt(np.maximum(mu, 1e-12) / len(draws))
    np.testing.assert_array_less(np.abs(draws.mean(axis=0) - mu), 4 * se + 1e-12)
    np.testing.assert_allclose(draws.var(axis=0)[0, 1], mu[0, 1], rtol=0.1)  # variance = mean


def test_replicate_streams_are_reproducible_and_independent_of_their_number():
    mu = [np.full((3, 4, 4), 20.0), np.full((2, 2, 2), 5.0)]
    a = replicate_counts(mu, seed=7, index=2)
    b = replicate_counts(mu, seed=7, index=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], replicate_counts(mu, seed=7, index=3)[0])
    assert not np.array_equal(a[0], replicate_counts(mu, seed=8, index=2)[0])
    # seeds and indices do not mix: (7, 3) is not (8, 2)
    assert not np.array_equal(replicate_counts(mu, seed=7, index=3)[0], replicate_counts(mu, seed=8, index=2)[0])
    # not the simulation's stream: the run's seed alone draws other counts
    first = replicate_counts(mu, seed=7, index=0)[0]
    assert not np.array_equal(first, np.random.default_rng(7).poisson(mu[0]).astype(np.float64))


def test_the_shrinkage_interval_recovers_the_bias_of_a_linear_smoother():
    # θ̂ = s θ_p (θ_p the unregularised fit, error σ), here at θ_p = θ: bias (s - 1) θ, and the
    # replicates s (θ̂ + σ ε) have sd s σ and bias s (s - 1) θ about θ̂: s times too small
    rng = np.random.default_rng(0)
    theta, sigma = np.array([[4.0, -2.0, 0.5]]), np.array([[0.5, 0.2, 1.0]])
    for s in (0.3, 0.6, 1.0):
        est = s * theta
        reps = s * (est[None] + sigma[None] * rng.standard_normal((20000,) + theta.shape))
        expected = np.hypot(s * sigma, (s - 1.0) * theta)
        np.testing.assert_allclose(half_width(est, reps, "shrinkage", sigma), expected, rtol=0.02)
        if s < 1.0:  # the plain rms misses most of the bias
            assert np.all(half_width(est, reps, "rms")[0, :2] < 0.9 * expected[0, :2])
    # the definition: noise-free bias², s = sd*/σ_F clipped to [floor, 1] (NaN, 0: no information, s = 1)
    reps = np.array([[[1.5, 2.0, 1.0]], [[0.5, 3.0, 1.2]], [[2.5, 2.5, 1.4]]])
    est = np.array([[1.0, 2.0, 0.0]])
    var, bias = reps.var(axis=0, ddof=1), reps.mean(axis=0) - est
    bias2 = np.maximum(bias ** 2 - var / 3, 0.0)
    np.testing.assert_allclose(half_width(est, reps, "shrinkage", np.array([[np.nan, 0.0, 0.2]])),
                               np.sqrt(var + bias2 / np.array([[1.0, 1.0, 1.0]]) ** 2))
    np.testing.assert_allclose(half_width(est, reps, "shrinkage", np.full((1, 3), 1e6)),
                               np.sqrt(var + bias2 / SHRINKAGE_FLOOR ** 2))
    assert bias2[0, 0] == 0.0 and bias2[0, 2] > 0.0  # the first pixel's bias* is within its noise


def test_steins_risk_is_the_error_at_the_truth_of_a_linear_smoother():
    # θ̂ = s θ_p, θ_p = θ + σ ε (the unregularised fit): the error at the truth has mean square
    # (1 − s)² θ² + s² σ²; the replicates drawn at θ̂ see the bias s (s − 1) θ only (too small)
    # and the sure interval (θ_p − θ̂)² + (2 s − 1) σ², s = sd*/σ, is that mean square on
    # average over the noise draws (here the pixels)
    rng = np.random.default_rng(1)
    n = 4000
    for theta, sigma, s in ((4.0, 0.5, 0.5), (3.0, 1.0, 0.3), (2.0, 0.4, 0.9)):  # the floor seldom acts
        pilot = theta + sigma * rng.standard_normal((1, n))
        est = s * pilot
        reps = s * (est[None] + sigma * rng.standard_normal((400, 1, n)))
        sigmas = np.full((1, n), sigma)
        mse = (1 - s) ** 2 * theta ** 2 + s ** 2 * sigma ** 2
        assert np.mean((est - theta) ** 2) == pytest.approx(mse, rel=0.06)
        sure = half_width(est, reps, "sure", sigmas, pilot)
        assert np.mean(sure ** 2) == pytest.approx(mse, rel=0.06)
        if s <= 0.5:  # where the prior shrinks much, the replicates' bias at θ̂ is too small
            assert np.mean(half_width(est, reps, "rms") ** 2) < 0.75 * mse


def test_the_covariance_penalty_is_the_error_of_a_smoother_that_averages_neighbours():
    # θ̂ = mean of the pilot over 3 neighbours (periodic), θ_p = θ + σ ε: the map at a pixel
    # moves by 1/3 of its own pilot (the divergence), while sd*/σ_F = 1/√3. With the
    # divergence measured as cov*(θ*, θ_p*)/var*(θ_p*) on replicates that refit both, Stein's
    # risk is the mean squared error at the truth; with s = sd*/σ_F (``sure``) it is too wide
    rng = np.random.default_rng(2)
    n, sigma, b = 3000, 0.3, 200
    theta = 3.0 + 2.0 * np.sin(np.arange(n))[None]  # structure the average smooths away

    def smooth(x):
        return (np.roll(x, 1, axis=-1) + x + np.roll(x, -1, axis=-1)) / 3.0

    pilot = theta + sigma * rng.standard_normal((1, n))
    est = smooth(pilot)
    pilots = est[None] + sigma * rng.standard_normal((b, 1, n))  # replicates drawn at θ̂
    reps = smooth(pilots)
    mse = np.mean((est - theta) ** 2)
    cov = half_width(est, reps, "covariance", pilot=pilot, pilot_replicates=pilots)
    assert np.mean(cov ** 2) == pytest.approx(mse, rel=0.1)  # 1.07: the floor at sd*² adds a little
    sure = half_width(est, reps, "sure", np.full((1, n), sigma), pilot)
    assert np.mean(sure ** 2) > 1.15 * mse  # 1.22


def test_the_covariance_interval_is_its_definition():
    reps = np.array([[[1.5, 2.0, 1.0]], [[0.5, 3.0, 1.2]], [[2.5, 2.5, 1.4]]])
    pilots = np.array([[[2.0, 1.0, 1.0]], [[0.0, 5.0, 1.0]], [[4.0, 3.0, 1.0]]])
    est = np.array([[1.0, 2.0, 0.0]])
    pilot = np.array([[3.0, 2.1, 0.5]])
    var = reps.var(axis=0, ddof=1)
    cov = np.mean((reps - reps.mean(axis=0)) * (pilots - pilots.mean(axis=0)), axis=0) * 3 / 2
    risk = (pilot - est) ** 2 + 2 * cov - pilots.var(axis=0, ddof=1)
    got = half_width(est, reps, "covariance", pilot=pilot, pilot_replicates=pilots)
    np.testing.assert_allclose(got[0, :2], np.sqrt(np.maximum(risk, var))[0, :2])
    assert got[0, 0] > np.sqrt(var[0, 0])  # risk above the spread
    # a pilot that does not vary carries no information: the replicates' rms there
    np.testing.assert_allclose(got[0, 2], half_width(est, reps, "rms")[0, 2])


def test_the_sure_interval_is_its_definition():
    reps = np.array([[[1.5, 2.0, 1.0, 0.0]], [[0.5, 3.0, 1.2, 1.0]], [[2.5, 2.5, 1.4, 2.0]]])
    est = np.array([[1.0, 2.0, 0.0, 1.0]])
    pilot = np.array([[3.0, 2.1, np.nan, 1.0]])
    sigma = np.array([[0.5, 2.0, 0.2, np.inf]])
    var = reps.var(axis=0, ddof=1)
    s = np.clip(np.sqrt(var) / sigma, 0.0, 1.0)
    risk = (pilot - est) ** 2 + (2 * s - 1) * sigma ** 2
    got = half_width(est, reps, "sure", sigma, pilot)
    np.testing.assert_allclose(got[0, :2], np.sqrt(np.maximum(risk, var))[0, :2])
    assert got[0, 0] > half_width(est, reps, "rms")[0, 0]  # the pilot's departure: a bias the replicates miss
    assert got[0, 1] == pytest.approx(np.sqrt(var[0, 1]))  # risk below the spread: floored at it
    # no pilot or no Fisher information in a pixel: the replicates' rms there
    np.testing.assert_allclose(got[0, 2:], half_width(est, reps, "rms")[0, 2:])


def test_intervals_and_coverage_are_their_definitions():
    est = np.array([[1.0, 2.0]])
    reps = np.array([[[1.5, 2.0]], [[0.5, 3.0]], [[2.5, 2.5]]])  # (B, 1, 2)
    sd = half_width(est, reps, "sd")
    rms = half_width(est, reps, "rms")
    bias = reps.mean(axis=0) - est
    np.testing.assert_allclose(sd, reps.std(axis=0, ddof=1))
    np.testing.assert_allclose(rms ** 2, sd ** 2 * 2 / 3 + bias ** 2)
    np.testing.assert_allclose(half_width(est, reps, "fisher_bias", np.array([[0.1, np.nan]])),
                               np.hypot([[0.1, np.inf]], bias))
    truth = np.array([[1.2, 1.5], [0.0, 5.0]])
    assert coverage(np.ones((2, 2)), np.full((2, 2), 0.5), truth, np.ones((2, 2), bool)) == 0.5
    assert coverage(np.ones((2, 2)), np.full((2, 2), np.nan), truth, np.ones((2, 2), bool)) == 0.0


def test_without_prior_the_bootstrap_spread_is_the_fisher_error(tmp_path):
    problem, solver, mixture, blocks, xs, maps, fisher = solved(cluster(tmp_path))
    reps = bootstrap_replicates(problem, solver, mixture, blocks, xs, samples=40, iterations=3, seed=1)
    for name in ("thermal.kT", "thermal.amplitude"):
        ratio = half_width(maps[name], reps[name], "sd") / fisher[name]
        # 40 replicates: the sd is good to 1/√78 ≈ 11 % per pixel; 4 pixels
        assert 0.75 < float(np.median(ratio)) < 1.25, (name, ratio)
        assert np.all((ratio > 0.6) & (ratio < 1.5)), (name, ratio)


def test_with_the_prior_the_bootstrap_spread_is_the_estimators_not_fishers(tmp_path):
    """The starlet prior (k = 3 on kT) narrows the spread of the kT map to about half its
    Fisher error: the bootstrap's spread (replicates of the solution) matches the spread of
    the estimator over data sets drawn from the truth; the Fisher error does not."""
    from xhsi.problems.bootstrap import ReplicateFit, stack

    held: dict = {}
    problem, solver, mixture, blocks, xs, _, fisher = solved(cluster(tmp_path, k=3.0), held)
    prep = held["prep"]
    boot = bootstrap_replicates(problem, solver, mixture, blocks, xs, samples=16, iterations=3, seed=1)["thermal.kT"]
    sims = ReplicateFit(problem, solver, mixture, blocks, xs, 3)
    sims.expected = [np.asarray(prep.observations[0].forward.apply(prep.backend.asarray(prep.truth)))]
    truth_sd = stack([sims.fit(b, seed=2) for b in range(16)])["thermal.kT"].std(axis=0, ddof=1)
    boot_sd = boot.std(axis=0, ddof=1)
    assert np.all(boot_sd / fisher["thermal.kT"] < 0.8)
    assert np.all((boot_sd / truth_sd > 0.6) & (boot_sd / truth_sd < 1.6)), (boot_sd, truth_sd)


def test_replicates_do_not_depend_on_how_many_are_drawn(tmp_path):
    problem, solver, mixture, blocks, xs, maps, _ = solved(cluster(tmp_path))
    two = bootstrap_replicates(problem, solver, mixture, blocks, xs, samples=2, iterations=2, seed=4)
    three = bootstrap_replicates(problem, solver, mixture, blocks, xs, samples=3, iterations=2, seed=4)
    other = bootstrap_replicates(problem, solver, mixture, blocks, xs, samples=2, iterations=2, seed=5)
    for name in two:
        np.testing.assert_array_equal(two[name], three[name][:2])
        assert not np.array_equal(two[name], other[name])
    # the problem's own state is untouched: its solution's cube is the same after
    np.testing.assert_array_equal(problem._maps(mixture, xs)["thermal.kT"], maps["thermal.kT"])


def test_replicates_as_dask_tasks_are_the_sequential_ones(tmp_path):
    pytest.importorskip("distributed")
    from xhsi.distributed import connect
    from xhsi.distributed.bootstrap_tasks import DaskReplicates

    problem, solver, mixture, blocks, xs, _, _ = solved(cluster(tmp_path))
    here = bootstrap_replicates(problem, solver, mixture, blocks, xs, samples=3, iterations=2, seed=4)
    with connect(workers=2, processes=False) as client:
        there = bootstrap_replicates(problem, solver, mixture, blocks, xs, samples=3, iterations=2, seed=4,
                                     tasks=DaskReplicates(client))
    for name in here:
        np.testing.assert_array_equal(here[name], there[name])


@pytest.mark.parametrize("setting, words", [
    ("problem.bootstrap_samples=1", "bootstrap_samples`: must be >= 2"),
    ("problem.bootstrap_iter=-1", "bootstrap_iter`: must be >= 0"),
    ('problem.errors="bootstrapped"', "not one of fisher, bootstrap"),
    ('problem.bootstrap_interval="mad"', "not one of auto, sure, rms"),
])
def test_bootstrap_options_are_checked(tmp_path, setting, words):
    with pytest.raises(ConfigError, match=words):
        load_config(cluster(tmp_path), [setting])
    with pytest.raises(ConfigError, match="at least 2 replicates"):
        check_bootstrap(1, 10)
    with pytest.raises(ConfigError, match="each needs at least 1"):
        check_bootstrap(2, 0)


def test_a_bootstrap_with_no_iteration_is_refused_before_the_run(tmp_path):
    """bootstrap_iter = 0 takes the solver's max_iter; with max_iter = 0 too the replicates
    could not move: refused by the config check, not after the solve."""
    from xhsi.runner import check_config

    cfg = load_config(cluster(tmp_path), ['problem.errors="bootstrap"', "solver.max_iter=0"])
    with pytest.raises(ConfigError, match="bootstrap_iter"):
        check_config(cfg)
    check_config(load_config(cluster(tmp_path), ['problem.errors="bootstrap"', "solver.max_iter=0",
                                                 "problem.bootstrap_iter=2"]))


def test_a_run_writes_the_bootstrap_error_maps_and_says_so(tmp_path):
    path = cluster(tmp_path, problem="errors = \"bootstrap\"\nbootstrap_samples = 3\nbootstrap_iter = 2")
    run(load_config(path), out=tmp_path / "boot", quiet=True)
    meta = json.loads((tmp_path / "boot" / "run.json").read_text())
    assert meta["errors"]["method"] == "bootstrap"
    assert meta["errors"]["samples"] == 3 and meta["errors"]["iterations"] == 2
    assert meta["errors"]["interval_kind"] == "sure"  # the default at the solution
    run(load_config(path, ['problem.errors="fisher"']), out=tmp_path / "fisher", quiet=True)
    assert json.loads((tmp_path / "fisher" / "run.json").read_text())["errors"]["method"] == "fisher"
    with fits.open(tmp_path / "boot" / "maps.fits") as boot, fits.open(tmp_path / "fisher" / "maps.fits") as fish:
        for hdu in ("THERMAL_KT_ERR", "THERMAL_AMPLITUDE_ERR"):
            b, f = boot[hdu].data, fish[hdu].data
            assert np.all(np.isfinite(b)) and np.all(b > 0)
            assert not np.allclose(b, f)  # another method, not the Fisher maps again


def test_the_pilot_is_the_fit_without_the_prior_and_the_errors_are_about_it(tmp_path):
    """``bootstrap_from = "pilot"``: the replicates are drawn at the problem solved without
    its prior — the same maps as the config with k = 0 — and the error is their rms
    deviation from that pilot; ``"solution"`` (the default) draws them at the solution."""
    from xhsi.problems.bootstrap import bootstrap_errors, unregularised_pilot

    problem, solver, mixture, blocks, xs, maps, _ = solved(cluster(tmp_path, k=3.0))
    _, _, _, pilot = unregularised_pilot(problem, solver, 3)
    (tmp_path / "free").mkdir()
    free = solved(cluster(tmp_path / "free", k=0.0))[5]
    for name in ("thermal.kT", "thermal.amplitude"):
        np.testing.assert_array_equal(pilot[name], free[name])
    assert not np.array_equal(pilot["thermal.kT"], maps["thermal.kT"])  # the prior does act
    errors, notes = bootstrap_errors(problem, solver, mixture, blocks, xs, maps, 4, 3, seed=2, start_from="pilot")
    pmix, pblocks, pxs, _ = unregularised_pilot(problem, solver, 3)
    reps = bootstrap_replicates(problem, solver, pmix, pblocks, pxs, samples=4, iterations=3, seed=2)
    np.testing.assert_allclose(errors["thermal.kT"], half_width(pilot["thermal.kT"], reps["thermal.kT"], "rms"))
    assert notes["from"] == "pilot" and "pilot" in notes["interval"]
    at_solution, notes = bootstrap_errors(problem, solver, mixture, blocks, xs, maps, 4, 3, seed=2)
    reps = bootstrap_replicates(problem, solver, mixture, blocks, xs, samples=4, iterations=3, seed=2)
    np.testing.assert_allclose(at_solution["thermal.kT"], half_width(maps["thermal.kT"], reps["thermal.kT"], "rms"))
    assert notes["from"] == "solution"
    with pytest.raises(ConfigError, match="not one of solution, pilot"):
        load_config(cluster(tmp_path), ['problem.bootstrap_from="truth"'])


def test_the_sure_errors_take_the_pilots_departure_and_are_the_default(tmp_path):
    """``bootstrap_interval = "sure"`` (what ``auto`` gives at the solution): replicates
    drawn at the solution, the unregularised pilot and the Fisher errors at the solution,
    combined by ``half_width(..., "sure")``; refused with replicates drawn at the pilot."""
    from xhsi.problems.bootstrap import (
        bootstrap_errors,
        unregularised_pilot,
        written_interval,
    )
    from xhsi.runner import check_config

    problem, solver, mixture, blocks, xs, maps, fisher = solved(cluster(tmp_path, k=3.0))
    errors, notes = bootstrap_errors(problem, solver, mixture, blocks, xs, maps, 4, 3, seed=2, interval="sure")
    pilot = unregularised_pilot(problem, solver, 3)[3]
    reps = bootstrap_replicates(problem, solver, mixture, blocks, xs, samples=4, iterations=3, seed=2)
    for name in ("thermal.kT", "thermal.amplitude"):
        np.testing.assert_allclose(errors[name], half_width(maps[name], reps[name], "sure", fisher[name], pilot[name]))
    assert notes["interval_kind"] == "sure" and "Stein" in notes["interval"]
    options = load_config(cluster(tmp_path), ['problem.errors="bootstrap"']).problem
    assert options.bootstrap_interval == "auto" and written_interval(options) == "sure"
    options = load_config(cluster(tmp_path), ['problem.bootstrap_from="pilot"']).problem
    assert written_interval(options) == "rms"
    cfg = load_config(cluster(tmp_path), ['problem.errors="bootstrap"', 'problem.bootstrap_from="pilot"',
                                          'problem.bootstrap_interval="sure"'])
    with pytest.raises(ConfigError, match="drawn at the solution"):
        check_config(cfg)
