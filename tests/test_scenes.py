"""Scenes: model grid, casa_like and cluster_beta truths, the FITS scene, Poisson counts."""
from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

import xhsi
from xhsi.spectral import spectra
from xhsi.backend import Backend, to_numpy
from xhsi.config import EnergyGrid, ModelSection
from xhsi.errors import ConfigError, DataError, ShapeError
from xhsi.operators.base import Identity
from xhsi.grid import ModelGrid
from xhsi.simulate import Scene, simulate_counts
from xhsi.testing import rtol_for

GRID = ModelGrid(np.linspace(0.5, 10.0, 25), 16, 18, 2.0)


def test_scenes_are_registered():
    names = xhsi.available("scene")
    for name in ("casa_like", "cluster_beta", "fits"):
        assert name in names
        assert issubclass(xhsi.get("scene", name), Scene)


def test_model_grid_from_config():
    grid = ModelGrid.from_config(ModelSection(energy=EnergyGrid(3.0, 8.0, 10), pixels=(4, 5), pixel_arcsec=2.5))
    assert grid.shape == (10, 4, 5)
    np.testing.assert_allclose(grid.energy_edges_kev, np.linspace(3.0, 8.0, 11))
    np.testing.assert_allclose(grid.energy_mid_kev[0], 3.25)
    assert grid.pixel_arcsec == 2.5 and grid == ModelGrid(np.linspace(3.0, 8.0, 11), 4, 5, 2.5)


def test_model_grid_rejects_bad_edges():
    with pytest.raises(DataError, match="increasing"):
        ModelGrid(np.array([2.0, 1.0]), 2, 2, 1.0)


# -- physical scenes ------------------------------------------------------------------
@pytest.mark.parametrize("name, flux", [("casa_like", 3.5), ("cluster_beta", 0.25)])
def test_scene_cube_shape_dtype_positivity_and_flux(backend, name, flux):
    scene = xhsi.get("scene", name)({"total_flux": flux})
    truth = scene.generate_components(GRID, backend)
    cube = truth.cube
    assert isinstance(cube, np.ndarray) and cube.shape == GRID.shape
    assert cube.dtype == np.dtype(backend.dtype_name)
    assert np.all(cube > 0)
    assert float(cube.sum(dtype=np.float64)) == pytest.approx(flux, rel=10 * rtol_for(cube.dtype))
    total = sum(c.cube.astype(np.float64) for c in truth.components)
    np.testing.assert_allclose(total, cube, rtol=rtol_for(cube.dtype))
    for comp in truth.components:
        assert comp.amplitude.shape == (GRID.ny, GRID.nx) and np.all(comp.amplitude > 0)
        np.testing.assert_allclose(comp.cube.sum(axis=0), comp.amplitude, rtol=10 * rtol_for(cube.dtype))
        for value in comp.parameters.values():
            assert value.shape == (GRID.ny, GRID.nx) and np.all(np.isfinite(value))


@pytest.mark.parametrize("name", ["casa_like", "cluster_beta"])
def test_scenes_are_seeded(name):
    be = Backend("numpy", "float64")
    cls = xhsi.get("scene", name)
    a = cls({"seed": 3}).generate(GRID, be)
    b = cls({"seed": 3}).generate(GRID, be)
    c = cls({"seed": 4}).generate(GRID, be)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("name", ["casa_like", "cluster_beta"])
def test_scenes_agree_across_backends(backend_name, name):
    cls = xhsi.get("scene", name)
    ref = cls().generate(GRID, Backend("numpy", "float64"))
    got = cls().generate(GRID, Backend(backend_name, "float64"))
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_casa_like_components_are_the_documented_spectra():
    scene = xhsi.get("scene", "casa_like")({"abundance": 2.0})
    truth = scene.generate_components(GRID, Backend("numpy", "float64"))
    th, sy = truth.component("thermal"), truth.component("synchrotron")
    assert th.model == "thermal" and set(th.parameters) == {"kT", "z"} and th.fixed["abundance"] == 2.0
    assert sy.model == "powerlaw" and set(sy.parameters) == {"index"}
    expected_th = th.amplitude * spectra.thermal(GRID.energy_edges_kev, th.parameters["kT"], th.parameters["z"], 2.0)
    np.testing.assert_allclose(th.cube, expected_th, rtol=1e-12)
    expected_sy = sy.amplitude * spectra.powerlaw(GRID.energy_edges_kev, sy.parameters["index"])
    np.testing.assert_allclose(sy.cube, expected_sy, rtol=1e-12)


def test_casa_like_sigma_v_broadens_the_thermal_lines():
    # 20 eV bins around Fe XXV (6.7 keV): 1500 km/s is σ_E ≈ 34 eV, so the line spreads over
    # several bins with the same flux; 0 (the default) keeps thermal broadening only.
    grid = ModelGrid(np.linspace(6.0, 7.2, 61), 6, 6, 2.0)
    be = Backend("numpy", "float64")
    narrow = xhsi.get("scene", "casa_like")().generate_components(grid, be).component("thermal")
    broad = xhsi.get("scene", "casa_like")({"sigma_v_kms": 1500.0}).generate_components(grid, be).component("thermal")
    expected = broad.amplitude * spectra.thermal(grid.energy_edges_kev, broad.parameters["kT"], broad.parameters["z"],
                                                 1.0, 1500.0)
    np.testing.assert_allclose(broad.cube, expected, rtol=1e-12)
    assert broad.cube.sum() == pytest.approx(narrow.cube.sum(), rel=1e-6)
    assert broad.cube.sum(axis=(1, 2)).max() < 0.8 * narrow.cube.sum(axis=(1, 2)).max()


def test_casa_like_parameters_stay_in_their_documented_ranges():
    opts = {"kT_min_keV": 1.2, "kT_max_keV": 2.5, "max_velocity_kms": 3000.0, "index_start": 2.0, "index_end": 3.0,
            "synchrotron_fraction": 0.4, "total_flux": 2.0}
    truth = xhsi.get("scene", "casa_like")(opts).generate_components(GRID, Backend("numpy", "float64"))
    th, sy = truth.component("thermal"), truth.component("synchrotron")
    kT, z, index = th.parameters["kT"], th.parameters["z"], sy.parameters["index"]
    assert kT.min() >= 1.2 and kT.max() <= 2.5 and kT.max() - kT.min() > 0.5
    z_max = spectra.redshift_from_velocity(3000.0)
    assert z.min() < 0 < z.max() and np.abs(z).max() <= z_max * (1 + 1e-12)
    assert index.min() >= 2.0 and index.max() <= 3.0
    assert sy.amplitude.sum() == pytest.approx(0.8) and th.amplitude.sum() == pytest.approx(1.2)


def test_casa_like_absorption_keeps_the_flux_and_hardens():
    be = Backend("numpy", "float64")
    plain = xhsi.get("scene", "casa_like")().generate(GRID, be)
    absorbed = xhsi.get("scene", "casa_like")({"nh_1e22": 1.5}).generate(GRID, be)
    assert absorbed.sum() == pytest.approx(plain.sum())
    assert absorbed[0].sum() < plain[0].sum()


def test_cluster_beta_profile_and_temperature_gradient():
    grid = ModelGrid(np.linspace(0.5, 10.0, 11), 41, 41, 5.0)
    scene = xhsi.get("scene", "cluster_beta")({"fluctuation": 0.0, "beta": 0.7, "core_radius": 0.25})
    th = scene.generate_components(grid, Backend("numpy", "float64")).component("thermal")
    centre = th.amplitude[20, 20]
    # Pixel (20, 30): r = 10 / 20.5 in units of half the field; Σ ∝ (1 + (r/r_c)²)^(1/2 - 3β).
    r = 10.0 / 20.5
    assert th.amplitude[20, 30] / centre == pytest.approx((1 + (r / 0.25) ** 2) ** (0.5 - 2.1), rel=1e-12)
    kT = th.parameters["kT"]
    assert kT[20, 20] == pytest.approx(6.0) and kT[0, 0] < kT[20, 10] < kT[20, 20]
    np.testing.assert_allclose(th.parameters["z"], 0.05)


def test_scene_options_are_validated():
    with pytest.raises(ConfigError, match="total_flux"):
        xhsi.get("scene", "casa_like")({"total_flux": -1.0})
    with pytest.raises(ConfigError, match="kT_max_keV"):
        xhsi.get("scene", "casa_like")({"kT_min_keV": 4.0, "kT_max_keV": 2.0})
    with pytest.raises(ConfigError, match="did you mean"):
        xhsi.get("scene", "cluster_beta")({"betta": 0.5})


# -- fits scene -----------------------------------------------------------------------
def _write_cube(path, cube, edges, *, ebounds=True, pixel_arcsec=None, unit="keV"):
    hdu = fits.PrimaryHDU(cube)
    if pixel_arcsec is not None:
        hdu.header["CDELT1"] = -pixel_arcsec / 3600.0
        hdu.header["CDELT2"] = pixel_arcsec / 3600.0
    hdus = [hdu]
    scale = 1000.0 if unit == "eV" else 1.0
    if ebounds:
        cols = [fits.Column("CHANNEL", "J", array=np.arange(cube.shape[0])),
                fits.Column("E_MIN", "D", unit=unit, array=edges[:-1] * scale),
                fits.Column("E_MAX", "D", unit=unit, array=edges[1:] * scale)]
        hdus.append(fits.BinTableHDU.from_columns(cols, name="EBOUNDS"))
    else:
        step = edges[1] - edges[0]
        hdu.header.update({"CTYPE3": "ENERGY", "CUNIT3": unit, "CRPIX3": 1.0,
                           "CRVAL3": (edges[0] + 0.5 * step) * scale, "CDELT3": step * scale})
    fits.HDUList(hdus).writeto(path)
    return path


def _fits_scene(path, **opts):
    return xhsi.get("scene", "fits")({"path": str(path), **opts})


@pytest.mark.parametrize("ebounds, unit", [(True, "keV"), (True, "eV"), (False, "keV"), (False, "eV")])
def test_fits_scene_round_trip(tmp_path, ebounds, unit):
    rng = np.random.default_rng(1)
    cube = rng.uniform(0.0, 1.0, GRID.shape)
    path = _write_cube(tmp_path / "truth.fits", cube, GRID.energy_edges_kev, ebounds=ebounds, pixel_arcsec=2.0, unit=unit)
    for dtype in ("float32", "float64"):
        got = _fits_scene(path).generate(GRID, Backend("numpy", dtype))
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_allclose(got, cube, rtol=rtol_for(dtype))


def test_fits_scene_coarsens_by_integer_factors(tmp_path):
    rng = np.random.default_rng(2)
    fine_edges = np.linspace(0.5, 10.0, 2 * GRID.n_e + 1)
    fine = rng.uniform(0.0, 1.0, (2 * GRID.n_e, 3 * GRID.ny, 3 * GRID.nx))
    path = _write_cube(tmp_path / "fine.fits", fine, fine_edges, pixel_arcsec=2.0 / 3.0)
    be = Backend("numpy", "float64")
    summed = _fits_scene(path).generate(GRID, be)
    assert summed.shape == GRID.shape
    assert summed[1, 2, 3] == pytest.approx(fine[2:4, 6:9, 9:12].sum())
    assert summed.sum() == pytest.approx(fine.sum())
    averaged = _fits_scene(path, resample="mean").generate(GRID, be)
    assert averaged[1, 2, 3] == pytest.approx(fine[2:4, 6:9, 9:12].mean())


def test_fits_scene_refines_by_integer_factors(tmp_path):
    coarse_grid = ModelGrid(GRID.energy_edges_kev[::2], GRID.ny // 2, GRID.nx // 2, 4.0)
    coarse = np.random.default_rng(3).uniform(0.5, 1.0, coarse_grid.shape)
    path = _write_cube(tmp_path / "coarse.fits", coarse, coarse_grid.energy_edges_kev, pixel_arcsec=4.0)
    be = Backend("numpy", "float64")
    split = _fits_scene(path).generate(GRID, be)
    assert split.shape == GRID.shape
    assert split.sum() == pytest.approx(coarse.sum())
    assert split[3, 5, 7] == pytest.approx(coarse[1, 2, 3] / 8.0)
    replicated = _fits_scene(path, resample="mean").generate(GRID, be)
    assert replicated[3, 5, 7] == pytest.approx(coarse[1, 2, 3])


def test_fits_scene_rejects_non_integer_factors(tmp_path):
    cube = np.ones((GRID.n_e, 24, 27))  # 24/16 = 1.5
    path = _write_cube(tmp_path / "odd.fits", cube, GRID.energy_edges_kev)
    with pytest.raises(DataError, match="non-integer factor"):
        _fits_scene(path).generate(GRID, Backend("numpy", "float64"))
    cube = np.ones((GRID.n_e, GRID.ny, GRID.nx))
    path = _write_cube(tmp_path / "shifted.fits", cube, GRID.energy_edges_kev + 0.1)
    with pytest.raises(DataError, match="energy bins"):
        _fits_scene(path).generate(GRID, Backend("numpy", "float64"))
    path = _write_cube(tmp_path / "pix.fits", cube, GRID.energy_edges_kev, pixel_arcsec=3.0)
    with pytest.raises(DataError, match="pixel sizes"):
        _fits_scene(path).generate(GRID, Backend("numpy", "float64"))


def test_fits_scene_reports_bad_files(tmp_path):
    with pytest.raises(DataError, match="no file"):
        _fits_scene(tmp_path / "missing.fits").generate(GRID, Backend())
    fits.PrimaryHDU(np.ones((GRID.n_e, GRID.ny, GRID.nx))).writeto(tmp_path / "bare.fits")
    with pytest.raises(DataError, match="EBOUNDS"):
        _fits_scene(tmp_path / "bare.fits").generate(GRID, Backend())
    fits.PrimaryHDU(np.ones((4, 4))).writeto(tmp_path / "flat.fits")
    with pytest.raises(DataError, match="3-D"):
        _fits_scene(tmp_path / "flat.fits").generate(GRID, Backend())


# -- counts ---------------------------------------------------------------------------
def test_simulate_counts_is_seeded_and_poisson(backend_name):
    truth = xhsi.get("scene", "casa_like")({"total_flux": 2e5}).generate(GRID, Backend("numpy", "float64"))
    op = Identity(GRID.shape)
    a = simulate_counts(truth, op, Backend(backend_name, "float32", seed=7))
    b = simulate_counts(truth, op, Backend("numpy", "float32", seed=7))
    c = simulate_counts(truth, op, Backend("numpy", "float32", seed=8))
    a, b, c = to_numpy(a), to_numpy(b), to_numpy(c)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32 and np.all(a >= 0) and np.array_equal(a, np.round(a))
    assert a.sum() == pytest.approx(truth.sum(), rel=5 * truth.sum() ** -0.5)


def test_simulate_counts_adds_background_and_checks_shapes():
    op = Identity((2, 3, 4))
    be = Backend("numpy", "float64", seed=0)
    counts = simulate_counts(np.zeros((2, 3, 4)), op, be, background=np.full((2, 3, 4), 1e6))
    assert counts.mean() == pytest.approx(1e6, rel=1e-3)
    with pytest.raises(ShapeError, match="forward operator"):
        simulate_counts(np.zeros((2, 3, 5)), op, be)
    with pytest.raises(ShapeError, match="background"):
        simulate_counts(np.zeros((2, 3, 4)), op, be, background=np.zeros((3, 4)))
    with pytest.raises(DataError, match="negative"):
        simulate_counts(-np.ones((2, 3, 4)), op, be)
