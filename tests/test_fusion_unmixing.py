"""Joint fusion and unmixing (problem ``fusion_unmixing``): the tabulated spectra against the
exact models, the folded forward model against the fusion operators (same sky, same
expected counts), finite-difference gradients of the joint likelihood, the config errors,
and that the joint maps beat either instrument alone on the velocity."""
from __future__ import annotations

import numpy as np
import pytest

from xhsi import plugins
from xhsi.config import load_config
from xhsi.errors import ConfigError
from xhsi.problems.fusion_unmixing import FusionUnmixing, imager_and_spectrometer
from xhsi.problems.fusion_unmixing_comparisons import upsampled
from xhsi.problems import spectral_table
from xhsi.problems.spectral_table import TabulatedModel
from xhsi.runner import check_config, prepare
from xhsi.spectral.models import build_spectral_model
from xhsi.testing import check_gradient

TINY = """\
[run]
problem = "fusion_unmixing"
output = "out"
dtype = "float64"
quicklook = false
seed = 0

[problem]
init_bin = 1
init_iter = {init_iter}
table_tol = {table_tol}
{problem_extra}

[model]
energy = {{ min_kev = 3.0, max_kev = 8.0, bins = {bins} }}
pixels = [{pixels}, {pixels}]
pixel_arcsec = 4.1

[[observations]]
name = "xmm"
instrument = "xmm_epic_pn"
exposure_s = {pn_s}
spectral_rebin = {pn_rebin}

[[observations]]
name = "xrism"
instrument = "xrism_resolve"
exposure_s = {resolve_s}
spatial_rebin = 3

[[components]]
name = "thermal"
model = "{thermal_model}"
options = {thermal_options}
init = {{ kT = 2.0, z = 0.0 }}
bounds = {{ kT = [0.8, 4.0], z = [-0.01, 0.01] }}
parameter_k = 1.0

[[components]]
name = "synchrotron"
model = "powerlaw"
init = {{ index = 2.5 }}
bounds = {{ index = [1.0, 4.0] }}

[solver]
name = "palm"
max_iter = {max_iter}
report_every = 5
options = {{ backtracking = true }}

[simulate]
scene = "casa_like"
options = {{ sigma_v_kms = 1000.0 }}
"""


def tiny(tmp_path, *, bins=40, pixels=6, init_iter=3, max_iter=5, pn_s=1e5, resolve_s=2e5, pn_rebin=4,
         problem_extra="", thermal_model="thermal", table_tol=1e-2, overrides=(),
         thermal_options="{ fit_abundance = false, sigma_v_kms = 1000.0 }"):
    path = tmp_path / "fu.toml"
    path.write_text(TINY.format(bins=bins, pixels=pixels, init_iter=init_iter, max_iter=max_iter, pn_s=pn_s,
                                resolve_s=resolve_s, pn_rebin=pn_rebin, problem_extra=problem_extra,
                                thermal_model=thermal_model, table_tol=table_tol, thermal_options=thermal_options))
    return load_config(path, list(overrides))


def problem_of(cfg, observations=None, grid=None):
    prep = prepare(cfg)
    problem = FusionUnmixing(cfg, prep.backend, grid or prep.grid, observations or prep.observations, [],
                             plugins.get("likelihood", "poisson"), cfg.problem)
    return problem, prep


# -- the tables ---------------------------------------------------------------------------
def _thermal(n_e=60):
    edges = np.linspace(3.0, 8.0, n_e + 1)
    return build_spectral_model("thermal", {"fit_abundance": False, "sigma_v_kms": 1000.0},
                                where="t").setup(edges, np, np.float64)


def test_table_interpolates_the_exact_model_within_its_tolerance():
    model = _thermal()
    table = TabulatedModel(model, {"kT": (1.0, 4.0), "z": (-0.005, 0.005)}, {}, np, np.float64, tol=3e-3)
    rng = np.random.default_rng(3)
    theta = np.stack([rng.uniform(1.0, 4.0, (5, 7)), rng.uniform(-0.005, 0.005, (5, 7))])
    exact, approx = model.evaluate(theta), table.evaluate(theta)
    err = np.linalg.norm((approx - exact).reshape(60, -1), axis=0) / np.linalg.norm(exact.reshape(60, -1), axis=0)
    assert np.median(err) < 3e-3 and err.max() < 1e-2  # checked at 64 mid-points per axis; random points
    assert table.rank < 60 and table.table_error <= 3e-3
    # at a node the table is the exact spectrum projected on the basis (rank error ≤ tol / 4)
    node = np.asarray([[[1.0]], [[-0.005]]])
    exact = model.evaluate(node)
    assert np.linalg.norm(table.evaluate(node) - exact) <= 3e-3 / 4 * np.linalg.norm(exact)


def test_table_derivatives_against_finite_differences():
    table = TabulatedModel(_thermal(), {"kT": (1.0, 4.0), "z": (-0.005, 0.005)}, {}, np, np.float64, tol=3e-2)
    rng = np.random.default_rng(4)
    theta = np.stack([rng.uniform(1.1, 3.9, (3, 4)), rng.uniform(-0.0045, 0.0045, (3, 4))])
    cot = rng.standard_normal((table.rank, 3, 4))
    # f(θ) = <h(θ), cot>: its gradient is coefficients_vjp (cubic pieces: smooth inside a cell)
    f = lambda t: float(np.sum(table.coefficients(t) * cot))  # noqa: E731
    check_gradient(f, lambda t: table.coefficients_vjp(t, cot), theta, h=1e-6)
    tangent = rng.standard_normal(theta.shape)
    lhs = float(np.sum(table.jvp(theta, tangent) * table.evaluate(theta)))
    rhs = float(np.sum(tangent * table.vjp(theta, table.evaluate(theta))))
    assert abs(lhs - rhs) <= 1e-10 * max(abs(lhs), 1.0)


def test_a_table_is_built_once_per_model_box_and_grid(monkeypatch):
    """A selection's candidates and folds build their problems anew: the same model, box and
    energy grid reuse one table (read-only, shared); another box, another grid or other
    options of the same model class build their own."""
    spectral_table.clear_table_cache()
    builds = []
    build = TabulatedModel._build
    monkeypatch.setattr(TabulatedModel, "_build", lambda self, bounds: builds.append(bounds) or build(self, bounds))
    box = {"kT": (1.0, 4.0), "z": (-0.005, 0.005)}
    first = TabulatedModel(_thermal(), box, {}, np, np.float64, tol=3e-2)
    again = TabulatedModel(_thermal(), box, {}, np, np.float64, tol=3e-2)
    assert len(builds) == 1 and again.basis_host is first.basis_host and again.rank == first.rank
    with pytest.raises(ValueError, match="read-only"):
        again.basis_host[0, 0] = 1.0
    TabulatedModel(_thermal(), {"kT": (1.0, 5.0), "z": (-0.005, 0.005)}, {}, np, np.float64, tol=3e-2)
    TabulatedModel(_thermal(n_e=61), box, {}, np, np.float64, tol=3e-2)
    other = build_spectral_model("thermal", {"fit_abundance": False, "sigma_v_kms": 300.0},
                                 where="t").setup(np.linspace(3.0, 8.0, 61), np, np.float64)
    TabulatedModel(other, box, {}, np, np.float64, tol=3e-2)
    assert len(builds) == 4
    spectral_table.clear_table_cache()
    TabulatedModel(_thermal(), box, {}, np, np.float64, tol=3e-2)
    assert len(builds) == 5


# -- the forward model --------------------------------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cfg = tiny(tmp_path_factory.mktemp("fu"))
    problem, prep = problem_of(cfg)
    x0, value, blocks, mixture = problem.build()
    return problem, prep, x0, value, blocks, mixture


def test_folded_forward_gives_the_fusion_operators_counts(built):
    problem, prep, x0, _, _, mixture = built
    assert problem.tables and problem.observations[problem.imager].name == "xmm"
    exact = problem._output_mixture(mixture)
    z = exact.cube(x0)                        # the sky cube of the exact models
    h = mixture.cube(x0)                      # its rank maps on the stacked basis
    from xhsi.problems.spectral_table import stacked_basis

    basis, _, _ = stacked_basis(problem.tables, np, np.float64)
    _, operators = problem._mixture(mixture.n_amp, mixture.scale)
    for obs, op in zip(prep.observations, operators):
        folded = op.apply(h)
        # exact folding: the fusion operator on the tabulated cube W·H gives the same counts
        np.testing.assert_allclose(folded, obs.forward.apply(np.tensordot(basis, h, axes=1)), rtol=1e-9,
                                   atol=1e-12 * float(np.abs(folded).max()))
        # the table's spectral error: same counts as the exact cube to ~table_tol (1e-2 here)
        ref = obs.forward.apply(z)
        assert np.linalg.norm(folded - ref) <= 1e-2 * np.linalg.norm(ref)


def test_joint_likelihood_gradients(built):
    _, _, x0, value, blocks, _ = built
    # Parameters inside their bounds: the table is constant beyond them (PALM projects on
    # them), so a central difference at a bound sees half the slope.
    inside = {"thermal.kT": (0.85, 3.95), "thermal.z": (-0.0095, 0.0095), "synchrotron.index": (1.05, 3.95)}
    for i, block in enumerate(blocks):
        xs = list(x0)
        x = np.clip(xs[i], *inside[block.name]) if block.name in inside else xs[i] + 0.1  # amplitudes off 0
        xs[i] = x

        def f(v, i=i, xs=xs):
            return value(xs[:i] + [v] + xs[i + 1:])

        def g(v, i=i, block=block, xs=xs):
            return block.gradient(xs[:i] + [v] + xs[i + 1:])
        check_gradient(f, g, x, directions=3, rtol=1e-6)


def test_starts_from_both_instruments(built):
    problem, prep, *_ = built
    spec = problem.spectrometer_maps()
    start = problem.initial_maps()
    np.testing.assert_array_equal(start["thermal.z"], spec["thermal.z"])            # Resolve's velocity
    np.testing.assert_array_equal(start["thermal.kT"], problem.baseline_maps()["thermal.kT"])  # pn's kT
    assert not np.array_equal(problem.baseline_maps()["thermal.z"], spec["thermal.z"])  # the yardstick kept
    assert imager_and_spectrometer(prep.observations) == (0, 1)
    errors = problem.error_maps(start)
    pn_only = problem._fitter(1).error_maps(start)
    assert np.all(errors["thermal.z"] <= pn_only["thermal.z"])  # Resolve's information adds up...
    # ... weighted by what its 3 x 3-pixel blocks and PSF keep of one model pixel (as in the
    # metric), not repeated in full onto each model pixel
    (_, w_pn), (_, w_resolve) = problem._fisher_optics
    assert w_pn == 1.0 and 0.0 < w_resolve < 0.1
    resolve_only = problem._fitter(1, problem.spectrometer).error_maps(start)
    expected = (pn_only["thermal.z"] ** -2.0 + w_resolve * resolve_only["thermal.z"] ** -2.0) ** -0.5
    np.testing.assert_allclose(errors["thermal.z"], expected, rtol=1e-10)


FUSION = """\
[run]
problem = "fusion"
output = "out"
quicklook = false

[model]
energy = { min_kev = 3.0, max_kev = 8.0, bins = 40 }
pixels = [9, 9]
pixel_arcsec = 4.1

[[observations]]
name = "xmm"
instrument = "xmm_epic_pn"
exposure_s = 1e5
spectral_rebin = 4

[[observations]]
name = "xrism"
instrument = "xrism_resolve"
exposure_s = 2e5
spatial_rebin = 3

[[regularizers]]
name = "sobolev"
weight = 0.1

[solver]
name = "fista"
max_iter = 3
"""


def test_run_writes_maps_and_metrics(tmp_path):
    """The run's metrics: the joint maps', the per-pixel fits', and each comparison's
    (``[problem] comparisons``), solved by the run itself."""
    from xhsi.runner import run

    (tmp_path / "fusion.toml").write_text(FUSION)
    cfg = tiny(tmp_path, max_iter=3, pixels=9, problem_extra='comparisons = ["imager_alone", "spectrometer_alone", '
               '"fusion_pixelfit"]\ncomparison_fusion = "fusion.toml"')
    result = run(cfg, out=tmp_path / "out", quiet=True)  # SSIM: ≥ 7 × 7
    assert set(result.metrics["maps"]) >= {"thermal.kT", "thermal.z", "synchrotron.index", "thermal.amplitude"}
    assert "maps_pixelfit_xrism" in result.metrics and "maps_pixelfit" in result.metrics
    for name in ("imager_alone", "spectrometer_alone", "fusion_pixelfit"):
        assert set(result.metrics[f"maps_{name}"]) == set(result.metrics["maps"]), name
        assert result.metrics["comparisons"]["wall_s"][name] > 0
    # each comparison is its own fit: not the joint maps again
    assert result.metrics["maps_imager_alone"] != result.metrics["maps"]
    assert result.metadata["spectral_tables"]["thermal"]["rank"] >= 1
    assert result.arrays["cube"].shape == (40, 9, 9)
    assert set(result.map_errors) >= {"thermal.z", "thermal.kT"}


@pytest.mark.parametrize("extra, fragment", [
    ('spectrometer_parameters = ["zz"]', "no component has a parameter `zz`.*did you mean `z`"),
    ('reduce = "tabel"', "reduce"),
    ('comparisons = ["imager_alon"]', "unknown comparison `imager_alon`.*did you mean `imager_alone`"),
    ('comparisons = ["fusion_pixelfit"]', "set `problem.comparison_fusion` to a fusion config"),
    ('comparisons = ["fusion_pixelfit"]\ncomparison_fusion = "nope.toml"', "comparison_fusion.*no such file"),
    ('comparisons = ["fusion_pixelfit"]\ncomparison_fusion = "fu.toml"', "is a config of problem `fusion_unmixing`; "
                                                                          "it must be a fusion config"),
])
def test_config_errors(tmp_path, extra, fragment):
    with pytest.raises(ConfigError, match=fragment):
        check_config(tiny(tmp_path, problem_extra=extra))


def test_table_refuses_four_fitted_parameters(tmp_path):
    cfg = tiny(tmp_path, problem_extra='reduce = "table"', thermal_model="absorption * thermal",
               thermal_options="{ thermal = { fit_abundance = true, sigma_v_kms = 1000.0 } }")
    with pytest.raises(ConfigError, match="tabulates at most 3"):
        check_config(cfg)


def test_upsampled_shares_amplitudes():
    maps = upsampled({"a.amplitude": np.ones((2, 2)), "a.kT": np.full((2, 2), 3.0)}, 3)
    assert maps["a.amplitude"].shape == (6, 6) and np.isclose(maps["a.amplitude"].sum(), 4.0)
    assert np.all(maps["a.kT"] == 3.0)


# -- joint against either instrument alone ---------------------------------------------------
@pytest.mark.slow
def test_joint_beats_either_instrument_alone_on_velocity(tmp_path):
    """Comparisons (a) and (b) of docs/fusion_unmixing.md on the shipped small config (~40 s),
    through the run's own ``[problem] comparisons``: the joint velocity map beats pn alone
    and Resolve alone (at Resolve's pixels). On this grid, run to convergence as shipped,
    the joint run wins z against (a) in 5 of 5 noise draws at these exposures (by 12 ± 3 %;
    docs/fusion_unmixing.md, "To convergence"; this is draw 0) and against (b) in all."""
    from pathlib import Path

    from xhsi.runner import run

    config = Path(__file__).resolve().parents[1] / "configs" / "fusion_unmixing_casa_xmm_xrism_small.toml"
    cfg = load_config(config, ['problem.comparisons=["imager_alone", "spectrometer_alone"]', "run.quicklook=false"])
    metrics = run(cfg, out=tmp_path / "out", quiet=True).metrics
    z = {name: metrics[name]["thermal.z"]["median_absolute_error_kms"]
         for name in ("maps", "maps_imager_alone", "maps_spectrometer_alone")}
    assert z["maps"] < z["maps_imager_alone"] < z["maps_spectrometer_alone"], z


def test_batched_mixing_is_the_mixing_operator(built):
    """The batched kernels (``fusion_operators.BatchedMixing``) give MixingBlurRebin's map;
    both pass the dot test."""
    from xhsi.operators.lowrank import spectral_basis_forward
    from xhsi.problems.fusion_operators import BatchedMixing
    from xhsi.problems.spectral_table import stacked_basis
    from xhsi.testing import dot_test

    problem, prep, *_ = built
    basis, _, _ = stacked_basis(problem.tables, np, np.float64)
    mixer = spectral_basis_forward(prep.observations[0].forward, basis)  # pn: per-energy PSF
    batched = BatchedMixing(mixer)
    x = np.random.default_rng(5).standard_normal(mixer.shape_in)
    np.testing.assert_allclose(batched.apply(x), mixer.apply(x), rtol=1e-10, atol=1e-12 * float(np.abs(mixer.apply(x)).max()))
    y = np.random.default_rng(6).standard_normal(mixer.shape_out)
    np.testing.assert_allclose(batched.adjoint(y), mixer.adjoint(y), rtol=1e-10,
                               atol=1e-12 * float(np.abs(mixer.adjoint(y)).max()))
    dot_test(batched, xp=np, dtype=np.float64)


def test_thresholds_count_the_spectrometer_at_the_scales_its_pixels_and_psf_resolve(built):
    """Each map's information is split between pn (block size 1) and Resolve (its detector
    pixel, its 78″ PSF) and the starlet thresholds count Resolve's share at scale j by what its
    PSF and pixels keep of it relative to pn: below the summed information's noise level at
    every scale, least at the finest, and the metric counts Resolve's curvature by what it
    keeps of the finest scale (docs/fusion_unmixing.md, "Thresholds per scale")."""
    from xhsi.problems.unmixing_prior import coefficient_sigma, finest_scale_weights, shared_coefficient_sigma

    problem, prep, x0, value, blocks, mixture = built
    metrics, sigmas, shares = problem.start_fisher(mixture, x0)
    block = problem._fitter(1, problem.spectrometer).factor
    z = mixture.n_amp + [b.name for b in problem.map_blocks].index("thermal.z")
    assert sorted(share[1] for share in shares[z]) == [1, block] and block > 1
    assert all(share[2] is not None for share in shares[z])  # both PSFs
    np.testing.assert_allclose(sum(share[0] for share in shares[z]), 1.0)
    per_scale = shared_coefficient_sigma(sigmas[z], shares[z], 2)
    summed = coefficient_sigma(sigmas[z], 2)
    assert np.all(per_scale <= summed * (1 + 1e-6)) and np.any(per_scale[0] < 0.9 * summed[0])
    kept = [float(np.median(per_scale[j] / summed[j])) for j in range(3)]
    assert kept[0] <= 1.01 * kept[1] and kept[1] < kept[2]  # scales 1 and 2: about pn's share alone
    weights = finest_scale_weights([(share[1], share[2]) for share in shares[z]])
    assert weights[0] == 1.0 and 0.0 <= weights[1] < 0.01  # Resolve's 78″ PSF keeps ~nothing of 4″ patterns
