"""Built-in spectral models: agreement with ``xhsi.spectral.spectra``, options, products of models,
XSPEC/OGIP table models read from FITS, and the errors a user can cause."""
from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

import xhsi
from xhsi.spectral import spectra
from xhsi.backend import Backend, to_numpy
from xhsi.errors import ConfigError, DataError
from xhsi.spectral.models import Parameter, Product, build_spectral_model
from xhsi.testing import assert_close

EDGES = np.linspace(0.5, 10.0, 39)


def _model(expression, options=None, backend=None):
    be = backend or Backend("numpy", "float64")
    return build_spectral_model(expression, options).setup(EDGES, be.xp, be.dtype), be


def test_every_builtin_model_is_registered():
    assert {"powerlaw", "thermal", "absorption", "table", "surrogate"} <= set(xhsi.available("spectral_model"))


@pytest.mark.parametrize("name", ["powerlaw", "thermal"])
def test_emission_models_match_xhsi_spectra_and_have_unit_flux(name, backend):
    model, be = _model(name, backend=backend)
    theta_host = np.stack([np.full((2, 3), p.default) for p in model.parameters])
    theta_host[0] = [[1.2, 1.9, 2.6], [3.1, 1.5, 2.2]]
    out = model.evaluate(be.asarray(theta_host))
    if name == "powerlaw":
        expected = spectra.powerlaw(EDGES, theta_host[0])
    else:
        expected = spectra.thermal(EDGES, theta_host[0], theta_host[1], theta_host[2])
    assert_close(out, expected, xp=be.xp, dtype=be.dtype)
    assert_close(be.xp.sum(out, axis=0), np.ones((2, 3)), xp=be.xp)


def test_thermal_options_fix_the_abundance_and_broaden_lines():
    model, be = _model("thermal", {"fit_abundance": False, "abundance": 2.0, "sigma_v_kms": 800.0})
    assert model.parameter_names == ("kT", "z")
    theta = np.array([[3.0, 6.0], [0.01, -0.005]])
    assert_close(model.evaluate(theta), spectra.thermal(EDGES, theta[0], theta[1], 2.0, 800.0))
    # The derivatives follow the options too (fourth-order finite differences along kT and z).
    c = np.random.default_rng(0).standard_normal((EDGES.size - 1, 2))
    for k, h in ((0, 1e-4), (1, 1e-6)):
        d = np.zeros_like(theta)
        d[k] = 1.0
        f = lambda s: model.evaluate(theta + s * h * d)  # noqa: E731
        fd = (8.0 * (f(1) - f(-1)) - (f(2) - f(-2))) / (12.0 * h)
        assert_close(model.vjp(theta, c)[k], np.sum(fd * c, axis=0), rtol=1e-7)


@pytest.mark.parametrize("abundance", [True, False])
def test_thermal_sigma_v_is_a_parameter_with_an_exact_derivative(abundance):
    """fit_sigma_v: the dispersion (km/s) is the last parameter; the model equals `thermal`
    at that dispersion, and its vjp matches fourth-order finite differences in every
    parameter (σ_v included) on a grid that resolves the Fe XXV line's width."""
    edges = np.linspace(6.0, 7.2, 121)
    model = build_spectral_model("thermal", {"fit_sigma_v": True, "fit_abundance": abundance}).setup(edges)
    assert model.parameter_names == (("kT", "z", "abundance", "sigma_v") if abundance else ("kT", "z", "sigma_v"))
    rows = [[3.0, 6.0], [0.01, -0.005]] + [[1.0, 0.5]] * abundance + [[300.0, 1500.0]]
    theta = np.array(rows)
    ab = theta[2] if abundance else 1.0
    assert_close(model.evaluate(theta), spectra.thermal(edges, theta[0], theta[1], ab, theta[-1]))
    assert not np.allclose(model.evaluate(theta), spectra.thermal(edges, theta[0], theta[1], ab, 0.0))
    c = np.random.default_rng(1).standard_normal((edges.size - 1, 2))
    for k, h in enumerate((1e-4, 1e-6) + (1e-5,) * abundance + (1e-2,)):
        d = np.zeros_like(theta)
        d[k] = 1.0
        f = lambda s: model.evaluate(theta + s * h * d)  # noqa: E731
        fd = (8.0 * (f(1) - f(-1)) - (f(2) - f(-2))) / (12.0 * h)
        assert_close(model.vjp(theta, c)[k], np.sum(fd * c, axis=0), rtol=1e-6)


def test_thermal_redshift_moves_the_iron_line():
    edges = np.linspace(5.5, 7.5, 201)
    model = build_spectral_model("thermal").setup(edges)
    theta = np.array([[5.0, 5.0], [0.0, 0.03], [1.0, 1.0]])
    s = model.evaluate(theta)
    mid = 0.5 * (edges[:-1] + edges[1:])
    peak = mid[np.argmax(s, axis=0)]
    assert peak[0] == pytest.approx(6.70, abs=0.02)
    assert peak[1] == pytest.approx(6.70 / 1.03, abs=0.02)


def test_absorption_is_a_transmission_decreasing_with_the_column(xp):
    model = build_spectral_model("absorption").setup(EDGES, xp, xp.float64)
    assert not model.additive and model.parameter_names == ("nh",)
    t = to_numpy(model.evaluate(xp.asarray([[0.0, 0.1, 1.0, 10.0]])))
    assert np.allclose(t[:, 0], 1.0)
    assert np.all(t > 0) and np.all(t <= 1.0)
    assert np.all(np.diff(t, axis=1) < 0)
    assert t[0, 3] < t[t.shape[0] // 2, 3] < t[-1, 3]  # harder photons pass more easily (edges aside)


def test_product_multiplies_and_concatenates_parameters(backend):
    model, be = _model("absorption * powerlaw", backend=backend)
    assert isinstance(model, Product) and model.additive
    assert model.parameter_names == ("nh", "index")
    theta = np.array([[[0.5, 2.0]], [[1.5, 2.5]]])
    expected = spectra.absorption(EDGES, theta[0]) * spectra.powerlaw(EDGES, theta[1])
    out = model.evaluate(be.asarray(theta))
    assert_close(out, expected, xp=be.xp, dtype=be.dtype)
    # The amplitude carries the unabsorbed flux: an absorbed spectrum sums to less than 1.
    assert np.all(to_numpy(be.xp.sum(out, axis=0)) < 1.0)


def test_product_options_are_keyed_by_model_name():
    model, _ = _model("absorption * thermal", {"thermal": {"fit_abundance": False}})
    assert model.parameter_names == ("nh", "kT", "z")


@pytest.mark.parametrize("expression, options, message", [
    ("powerlaw * thermal", None, "at most one additive"),
    ("absorption * absorption", None, "repeats a model"),
    ("powerlw", None, "did you mean `powerlaw`"),
    ("absorption *", None, "not a spectral model expression"),
    ("thermal", {"fit_abundanse": False}, "did you mean `fit_abundance`"),
    ("thermal", {"sigma_v_kms": -1.0}, "must be >= 0"),
    ("absorption * thermal", {"powerlaw": {}}, "not a factor"),
    ("table", {}, "options.file"),
    ("surrogate", {}, "options.file"),
])
def test_bad_model_specifications_are_config_errors(expression, options, message):
    with pytest.raises(ConfigError, match=message):
        build_spectral_model(expression, options)


def test_parameters_validate_their_bounds_and_lookup_names_the_alternatives():
    with pytest.raises(DataError, match="outside its bounds"):
        Parameter("kT", "keV", 50.0, (0.1, 20.0))
    with pytest.raises(DataError, match="lower < upper"):
        Parameter("kT", "keV", 1.0, (2.0, 1.0))
    model, _ = _model("thermal")
    assert model.parameter("z").unit == ""
    with pytest.raises(ConfigError, match="did you mean `abundance`"):
        model.parameter("abundanc")


def test_bad_energy_grid_is_a_data_error():
    with pytest.raises(DataError, match="increasing"):
        build_spectral_model("powerlaw").setup(EDGES[::-1])


# -- OGIP table models (OGIP memo 92-009) ------------------------------------------------------
TABLE_EDGES = np.linspace(0.3, 12.0, 118)
GAMMAS = np.array([1.0, 2.0, 3.0])
CUTOFFS = np.array([1.0, 4.0, 16.0])  # logarithmic interpolation (METHOD = 1)


def _table_spectrum(gamma, cutoff):
    mid = 0.5 * (TABLE_EDGES[:-1] + TABLE_EDGES[1:])
    return mid ** -gamma * np.exp(-mid / cutoff) * np.diff(TABLE_EDGES)


def write_table(path, *, rows=None, redshift=False, hduclas1="XSPEC TABLE MODEL", drop_last=False):
    """An additive table model FITS laid out as OGIP memo 92-009 describes: primary keywords,
    PARAMETERS (one row per parameter), ENERGIES (bin edges), SPECTRA (one row per grid
    point: PARAMVAL and INTPSPEC), the last parameter varying fastest."""
    primary = fits.PrimaryHDU()
    for key, value in (("HDUCLASS", "OGIP"), ("HDUCLAS1", hduclas1), ("HDUVERS", "1.0.0"), ("MODLNAME", "cutpl"),
                       ("MODLUNIT", "photons/cm^2/s"), ("REDSHIFT", redshift), ("ADDMODEL", True)):
        primary.header[key] = value
    values = np.zeros((2, 3), dtype=np.float32)
    values[0], values[1] = GAMMAS, CUTOFFS
    par = fits.BinTableHDU.from_columns([
        fits.Column("NAME", "12A", array=np.array(["PhoIndex", "Ecut"])),
        fits.Column("METHOD", "J", array=np.array([0, 1])),
        fits.Column("INITIAL", "E", array=np.array([2.0, 4.0])),
        fits.Column("DELTA", "E", array=np.array([0.01, -1.0])),
        fits.Column("MINIMUM", "E", array=np.array([1.0, 1.0])),
        fits.Column("BOTTOM", "E", array=np.array([1.0, 1.0])),
        fits.Column("TOP", "E", array=np.array([3.0, 16.0])),
        fits.Column("MAXIMUM", "E", array=np.array([3.0, 16.0])),
        fits.Column("NUMBVALS", "J", array=np.array([3, 3])),
        fits.Column("VALUE", "3E", array=values),
    ], name="PARAMETERS")
    par.header["HDUCLASS"], par.header["HDUCLAS1"], par.header["HDUCLAS2"] = "OGIP", "XSPEC TABLE MODEL", "PARAMETERS"
    par.header["NINTPARM"], par.header["NADDPARM"] = 2, 0
    ene = fits.BinTableHDU.from_columns([
        fits.Column("ENERG_LO", "E", array=TABLE_EDGES[:-1]),
        fits.Column("ENERG_HI", "E", array=TABLE_EDGES[1:]),
    ], name="ENERGIES")
    grid = [(g, c) for g in GAMMAS for c in CUTOFFS]
    order = list(range(len(grid))) if rows is None else rows
    if drop_last:
        order = order[:-1]
    spec = fits.BinTableHDU.from_columns([
        fits.Column("PARAMVAL", "2E", array=np.array([grid[i] for i in order])),
        fits.Column("INTPSPEC", f"{TABLE_EDGES.size - 1}E", array=np.array([_table_spectrum(*grid[i]) for i in order])),
    ], name="SPECTRA")
    fits.HDUList([primary, par, ene, spec]).writeto(path)
    return path


def _f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


@pytest.fixture
def table_file(tmp_path):
    return write_table(tmp_path / "cutpl.fits")


def test_table_reproduces_its_nodes_and_interpolates(table_file):
    model = build_spectral_model("table", {"file": str(table_file)}).setup(TABLE_EDGES)
    assert model.parameter_names == ("PhoIndex", "Ecut")
    assert model.parameters[1].bounds == (1.0, 16.0) and model.parameters[0].default == 2.0
    theta = np.array([[2.0, 1.5, 2.0], [4.0, 4.0, 2.0]])
    out = model.evaluate(theta)
    # The file stores energies in float32 (TFORM E), so the re-binning onto the float64 grid
    # moves ~1e-7 keV of each bin to its neighbour: agreement to 1e-5, not to rounding.
    node = _f32(_table_spectrum(2.0, 4.0))
    assert_close(out[:, 0], node / node.sum(), rtol=1e-5)
    # Linear in Γ halfway between 1 and 2; logarithmic in E_c at √(1 · 4) = 2.
    raw = 0.5 * (_f32(_table_spectrum(1.0, 4.0)) + _f32(_table_spectrum(2.0, 4.0)))
    assert_close(out[:, 1], raw / raw.sum(), rtol=1e-5)
    raw = 0.5 * (_f32(_table_spectrum(2.0, 1.0)) + _f32(_table_spectrum(2.0, 4.0)))
    assert_close(out[:, 2], raw / raw.sum(), rtol=1e-5)
    wrong = (2.0 * _f32(_table_spectrum(2.0, 1.0)) + _f32(_table_spectrum(2.0, 4.0))) / 3.0  # linear in E_c
    assert not np.allclose(out[:, 2], wrong / wrong.sum(), rtol=1e-3)


def test_table_rows_in_any_order_give_the_same_model(tmp_path, table_file):
    shuffled = write_table(tmp_path / "shuffled.fits", rows=list(np.random.default_rng(3).permutation(9)))
    theta = np.array([[1.3, 2.7], [1.7, 9.0]])
    a = build_spectral_model("table", {"file": str(table_file)}).setup(EDGES).evaluate(theta)
    b = build_spectral_model("table", {"file": str(shuffled)}).setup(EDGES).evaluate(theta)
    assert_close(a, b)


def test_table_rebinning_keeps_the_photons(table_file):
    coarse = TABLE_EDGES[::3]  # each model bin holds three table bins
    model = build_spectral_model("table", {"file": str(table_file), "normalise": False}).setup(coarse)
    out = model.evaluate(np.array([[3.0], [16.0]]))[:, 0]
    expected = _f32(_table_spectrum(3.0, 16.0))[: 3 * (coarse.size - 1)].reshape(-1, 3).sum(axis=1)
    assert_close(out, expected, rtol=1e-5)


def test_table_gradient_from_a_file(table_file):
    model = build_spectral_model("table", {"file": str(table_file)}).setup(EDGES)
    rng = np.random.default_rng(0)
    theta = np.array([[1.25, 2.6, 1.9], [1.4, 7.0, 12.5]])
    c = rng.standard_normal((EDGES.size - 1, 3))
    g = model.vjp(theta, c)
    for k, h in ((0, 1e-6), (1, 1e-6)):
        d = np.zeros_like(theta)
        d[k] = 1.0
        fd = (model.evaluate(theta + h * d) - model.evaluate(theta - h * d)) / (2 * h)
        assert_close(g[k], np.sum(fd * c, axis=0), rtol=1e-6)


def test_table_energy_grid_must_cover_the_model_grid(table_file):
    model = build_spectral_model("table", {"file": str(table_file)})
    with pytest.raises(DataError, match=r"covers 0\.3–12 keV.*0\.1–10 keV"):
        model.setup(np.linspace(0.1, 10.0, 50))


@pytest.mark.parametrize("kwargs, message", [
    ({"drop_last": True}, "exactly once"),
    ({"redshift": True}, "REDSHIFT"),
    ({"hduclas1": "SPECTRUM"}, "not a table model"),
])
def test_bad_table_files_are_data_errors(tmp_path, kwargs, message):
    path = write_table(tmp_path / "bad.fits", **kwargs)
    with pytest.raises(DataError, match=message):
        build_spectral_model("table", {"file": str(path)})


def test_missing_table_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no such"):
        build_spectral_model("table", {"file": str(tmp_path / "none.fits")})
