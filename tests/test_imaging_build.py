"""The imaging problem's build on every backend: the host start, the EM metric (per voxel
and per slice) and a few FISTA iterations in it keep the run's namespace and dtype."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from array_api_compat import array_namespace

import xhsi
from xhsi.backend import Backend, to_numpy
from xhsi.operators.fused import BlurRebin
from xhsi.problems.base import ObservationData
from xhsi.problems.imaging import Fusion, ImagingOptions, floor_pixels
from xhsi.schema import Context, from_dict
from xhsi.solvers import FISTA

SHAPE = (6, 8, 8)


def _observations(backend: Backend, dark: bool = False):
    """An imager (2×2 rebin, sharp PSF, energies summed in pairs) and a spectrometer (4×4
    rebin, broad PSF), with Poisson counts of a smooth positive sky (``dark``: one with no
    flux in its upper left 4 × 4 pixels)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[-1:2, -1:2]
    sharp, broad = np.exp(-(yy ** 2 + xx ** 2) / 0.5), np.exp(-(yy ** 2 + xx ** 2) / 4.0)
    pairs = np.kron(np.eye(3), np.ones((2, 1)))  # (6 energies, 3 channels)
    sky = 50.0 * (1.0 + rng.random(SHAPE))
    if dark:
        sky[:, :4, :4] = 0.0
    out = []
    for name, psf, factor, response in (("imager", sharp, 2, pairs), ("spectrometer", broad, 4, None)):
        def make(be, psf=psf, factor=factor, response=response):
            return BlurRebin(be.asarray(psf / psf.sum()), SHAPE, factor,
                             response=None if response is None else be.asarray(response))
        host = make(Backend("numpy", "float32"))
        counts = rng.poisson(np.asarray(host.apply(sky.astype(np.float32)), dtype=np.float64))
        out.append(ObservationData(name, make(backend), backend.asarray(counts), None, None,
                                   compile_host=lambda make=make: make(Backend("numpy", "float32"))))
    return out


@pytest.mark.parametrize("regularizer, mode", [("sobolev", "voxels"), ("starlet2d_l1", "slices")])
def test_build_and_iterate_in_the_em_metric(backend, regularizer, mode):
    reg = xhsi.get("regularizer", regularizer)(weight=0.1)
    problem = Fusion(SimpleNamespace(run=SimpleNamespace(seed=0)), backend, SimpleNamespace(shape=SHAPE),
                     _observations(backend), [reg], xhsi.get("likelihood", "poisson"), options=ImagingOptions())
    x0, smooth, prox, to_cube = problem.build()
    assert problem.metric_mode == mode
    for a in (x0, problem.metric.weight, to_cube.apply(x0)):
        assert array_namespace(a) == backend.xp and a.dtype == backend.dtype
    solver = FISTA(max_iter=15, tol=0.0, report_every=5)
    solver.setup(x0, smooth, prox)
    out = solver.run()
    costs = [row[1] for row in out.history]
    assert costs[-1] < costs[0]
    cube = to_numpy(to_cube.apply(out.x))
    assert cube.shape == SHAPE and cube.min() >= 0.0


def _relative_problem(backend, regularizer, precondition="auto", floor=0.5):
    reg = xhsi.get("regularizer", regularizer)(weight=0.1)
    problem = Fusion(SimpleNamespace(run=SimpleNamespace(seed=0)), backend, SimpleNamespace(shape=SHAPE),
                     _observations(backend), [reg], xhsi.get("likelihood", "poisson"),
                     options=ImagingOptions(precondition=precondition, regularize="relative", relative_floor=floor))
    return problem, problem.build()


@pytest.mark.parametrize("precondition", ["none", "auto"])
def test_relative_regularisation_penalises_the_cube_over_the_start_brightness(backend, precondition):
    """regularize = relative: the solver's variable maps to the same start cube, and the
    Sobolev term of the objective is ½‖∇(Z/b)‖² of that cube, b the start's broad-band
    image (mean 1, floored), whatever the metric iterated in."""
    problem, (x0, smooth, prox, to_cube) = _relative_problem(backend, "sobolev", precondition)
    start = problem.initial_cube() / problem.scale
    image = start.sum(axis=0)
    b = np.maximum(image / image.mean(), 0.5)
    assert problem.relative.weight.dtype == backend.dtype
    np.testing.assert_allclose(to_numpy(problem.relative.weight)[0], b, rtol=1e-5)
    np.testing.assert_allclose(to_numpy(to_cube.apply(x0)), problem.initial_cube(), rtol=1e-4)
    z = start * (1.0 + 0.1 * np.random.default_rng(1).standard_normal(SHAPE))  # any cube
    v = backend.asarray(z) / to_cube.apply(backend.xp.ones_like(x0)) * problem.scale  # its variable (Z = scale·b·d·v)
    rel = z / b
    expected = 0.5 * 0.1 * (np.sum(np.diff(rel, axis=1) ** 2) + np.sum(np.diff(rel, axis=2) ** 2))
    assert smooth.terms[-1].value(v) == pytest.approx(expected, rel=1e-4)


def test_relative_regularisation_iterates_on_every_backend(backend):
    problem, built = _relative_problem(backend, "starlet2d_l1")
    assert problem.metric_mode == "slices"
    _lowers_the_cost(backend, *built)


def _lowers_the_cost(backend, x0, smooth, prox, to_cube):
    """15 FISTA iterations lower the cost; the cube keeps the namespace and dtype, and is >= 0."""
    solver = FISTA(max_iter=15, tol=0.0, report_every=5)
    solver.setup(x0, smooth, prox)
    out = solver.run()
    assert out.history[-1][1] < out.history[0][1]
    cube = to_cube.apply(out.x)
    assert array_namespace(cube) == backend.xp and cube.dtype == backend.dtype
    assert float(backend.xp.min(cube)) >= 0.0


@pytest.mark.parametrize("regularize", ["absolute", "relative"])
def test_build_gives_every_regulariser_the_start_brightness(backend, regularize):
    """``Regularizer.calibrate_sky`` gets the broad-band image of the start cube (host
    float64, in the problem's units), not that of the solver's variable: with regularize =
    relative the variable is the cube over that brightness, flat to the eye of a regulariser."""
    seen = []

    class Recorder(xhsi.get("regularizer", "sobolev")):
        def calibrate_sky(self, image):
            seen.append(image)

    problem = Fusion(SimpleNamespace(run=SimpleNamespace(seed=0)), backend, SimpleNamespace(shape=SHAPE),
                     _observations(backend), [Recorder(weight=0.1)], xhsi.get("likelihood", "poisson"),
                     options=ImagingOptions(regularize=regularize))
    problem.build()
    assert len(seen) == 1
    assert isinstance(seen[0], np.ndarray) and seen[0].dtype == np.float64
    np.testing.assert_allclose(seen[0], (problem.initial_cube() / problem.scale).sum(axis=0), rtol=1e-6)


def test_the_exact_2d1d_prox_iterates_in_the_em_metric_on_the_same_objective(backend):
    """starlet2d1d_l1 with prox = "exact" takes the metric (``use_metric``): precondition
    auto iterates in the per-voxel EM metric, with the thresholds and the objective of the
    Euclidean run at every cube, and FISTA lowers it there."""
    from xhsi.schema import Context, from_dict

    cls = xhsi.get("regularizer", "starlet2d1d_l1")
    runs = {}
    for precondition in ("none", "auto"):
        reg = cls(from_dict(cls.Options, {"scales_2d": 1, "scales_1d": 1, "k": 1.0, "prox": "exact",
                                          "prox_tol": 1e-4}, Context(file="<test>")), weight=0.1)
        problem = Fusion(SimpleNamespace(run=SimpleNamespace(seed=0)), backend, SimpleNamespace(shape=SHAPE),
                         _observations(backend), [reg], xhsi.get("likelihood", "poisson"),
                         options=ImagingOptions(precondition=precondition))
        runs[precondition] = (problem, reg, problem.build())
    assert runs["none"][0].metric_mode is None and runs["auto"][0].metric_mode == "voxels"
    np.testing.assert_allclose(runs["auto"][1].thresholds, runs["none"][1].thresholds, rtol=1e-4)
    z = runs["none"][0].initial_cube() * (1.0 + 0.2 * np.random.default_rng(2).random(SHAPE))  # any cube >= 0
    costs = []
    for problem, reg, (x0, smooth, prox, to_cube) in runs.values():
        variable = backend.asarray(z) / to_cube.apply(backend.xp.ones_like(x0))
        costs.append(smooth.value(variable) + prox.value(variable))
    assert costs[1] == pytest.approx(costs[0], rel=1e-4)
    _lowers_the_cost(backend, *runs["auto"][2])


def test_regularisers_act_relative_to_the_start_brightness_by_default_and_only_where_there_are_some(backend):
    """The default is regularize = "relative" (docs/fusion.md "The scene suite"); without a
    regulariser the change of variable would only re-scale the path, so it is not made;
    "absolute" keeps the penalties on the cube."""
    assert ImagingOptions().regularize == "relative"

    def built(regs, **options):
        problem = Fusion(SimpleNamespace(run=SimpleNamespace(seed=0)), backend, SimpleNamespace(shape=SHAPE),
                         _observations(backend), regs, xhsi.get("likelihood", "poisson"),
                         options=ImagingOptions(**options))
        problem.build()
        return problem

    assert built([xhsi.get("regularizer", "sobolev")(weight=0.1)]).relative is not None
    assert built([]).relative is None
    assert built([xhsi.get("regularizer", "sobolev")(weight=0.1)], regularize="absolute").relative is None


def _dark_fit(backend, regs, **options):
    """(solver variable at the start, at the end, the cube, the costs at the start and the
    end, ``floor_pixels``) of 100 FISTA iterations of a fusion whose sky has a dark corner."""
    problem = Fusion(SimpleNamespace(run=SimpleNamespace(seed=0)), backend, SimpleNamespace(shape=SHAPE),
                     _observations(backend, dark=True), regs, xhsi.get("likelihood", "poisson"),
                     options=ImagingOptions(**options))
    x0, smooth, prox, to_cube = problem.build()
    solver = FISTA(max_iter=100, tol=0.0, report_every=50)
    solver.setup(x0, smooth, prox)
    out = solver.run()
    held = None if problem.floor is None else floor_pixels(out.x, problem.floor)
    return to_numpy(x0), to_numpy(out.x), to_numpy(to_cube.apply(out.x)), (out.history[0][1], out.history[-1][1]), held


@pytest.mark.parametrize("regs", ["none", "lowrank"])
def test_the_fit_keeps_the_start_s_spectra_where_the_data_hold_no_counts(backend, regs):
    """[problem] start_floor (default 1e-6): every unknown stays at or above that fraction of
    its start (of 1e-3 of the start's mean where the start is zero), so pixels without
    counts, which the Poisson fit drives to exactly zero (a spectrum with no direction: 90°
    of spectral angle), keep a spectrum; with 0 the bound is x >= 0 again and they are zero;
    the objective reached is the same to 1e-3 of its fall."""
    def make():
        if regs == "none":
            return []
        cls = xhsi.get("regularizer", "lowrank_pca")
        return [cls(from_dict(cls.Options, {"rank": 2, "basis": "nmf"}, Context(file="<test>")))]

    assert ImagingOptions().start_floor == 1e-6
    x0, x, cube, (cost0, cost), held = _dark_fit(backend, make())
    floor = 1e-6 * np.maximum(x0, 1e-3 * x0.mean(axis=(1, 2), keepdims=True))
    assert np.all(x >= floor * (1 - 1e-6)) and np.any(x <= floor * (1 + 1e-5))  # the bound is met, and holds
    assert np.all(cube.sum(axis=0) > 0)
    at_floor = np.all(x <= floor * (1 + 1e-4), axis=0)
    assert held == {"pixels": int(at_floor.sum()), "of": 64} and 0 < held["pixels"] <= 16  # in the dark corner
    _, _, zero_floor, (_, zero_cost), zero_held = _dark_fit(backend, make(), start_floor=0.0)
    assert np.any(zero_floor.sum(axis=0) == 0) and zero_held is None
    assert abs(cost - zero_cost) <= 1e-3 * (cost0 - zero_cost)


def test_the_run_summary_says_how_many_pixels_sit_at_the_floor(tmp_path):
    from xhsi.outputs import summary
    from xhsi.results import Result

    def text(held):
        return summary(Result(arrays={}, metadata={"problem": "fusion", "floor_pixels": held}), tmp_path)

    assert "7 of 64 sky pixels hold no counts the fit could use" in text({"pixels": 7, "of": 64})
    assert "no counts" not in text({"pixels": 0, "of": 64})
