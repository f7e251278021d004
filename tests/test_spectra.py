"""Physical spectral shapes: normalisation, power-law slope, Doppler shifts, absorption,
derivatives, and the special functions behind them."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special

from xhsi.spectral import spectra
from xhsi.backend import Backend, to_numpy
from xhsi.errors import DataError
from xhsi.testing import assert_close, rtol_for

EDGES = np.linspace(0.5, 10.0, 41)  # 40 bins of 0.2375 keV


def _maps(backend, values):
    return backend.asarray(np.asarray(values, dtype=np.float64))


# -- normalisation, shape, namespace, dtype -------------------------------------------
@pytest.mark.parametrize("shape_fn", ["powerlaw", "thermal"])
def test_emission_shapes_have_unit_flux_per_pixel(backend, shape_fn):
    edges = backend.asarray(EDGES)
    if shape_fn == "powerlaw":
        params = _maps(backend, [[1.0, 1.5, 2.0], [2.5, 3.0, 0.5]])
        s = spectra.powerlaw(edges, params)
    else:
        params = _maps(backend, [[0.3, 1.0, 2.0], [4.0, 8.0, 15.0]])
        s = spectra.thermal(edges, params, z=_maps(backend, [[0.0, 0.01, -0.01], [0.005, 0.0, 0.1]]),
                            abundance=2.0)
    xp = backend.xp
    assert tuple(s.shape) == (40, 2, 3)
    assert s.dtype == backend.dtype
    assert_close(xp.sum(s, axis=0), xp.ones((2, 3), dtype=backend.dtype), xp=xp)
    assert bool(xp.all(s > 0))


def test_scalar_parameters_use_the_edges_dtype_and_namespace(xp):
    edges = xp.asarray(EDGES, dtype=xp.float32)
    s = spectra.thermal(edges, 2.0)
    assert s.shape == (40,) and s.dtype == xp.float32
    s = spectra.powerlaw(edges, 2.0)
    assert s.shape == (40,) and s.dtype == xp.float32


def test_numpy_edges_with_backend_parameters(backend):
    s = spectra.powerlaw(EDGES, _maps(backend, [2.0, 3.0]))
    assert s.dtype == backend.dtype and tuple(s.shape) == (40, 2)


def test_bad_edges_raise_a_data_error():
    with pytest.raises(DataError, match="increasing"):
        spectra.powerlaw(EDGES[::-1], 2.0)
    with pytest.raises(DataError, match="1-D"):
        spectra.powerlaw(np.array([1.0]), 2.0)


# -- power law ------------------------------------------------------------------------
def test_powerlaw_matches_hand_integrals_for_gamma_2():
    # ∫ E^-2 dE = 1/lo - 1/hi; total over 0.5-10 keV = 2 - 0.1 = 1.9.
    s = spectra.powerlaw(EDGES, 2.0)
    expected = (1.0 / EDGES[:-1] - 1.0 / EDGES[1:]) / 1.9
    assert_close(s, expected)


@pytest.mark.parametrize("gamma", [0.0, 1.0, 1.7, 2.5, 4.0])
def test_powerlaw_slope_matches_index(gamma):
    edges = np.geomspace(1.0, 8.0, 401)  # narrow bins: N/ΔE ≈ E^-Γ at the bin's log-centre
    s = spectra.powerlaw(edges, gamma) / np.diff(edges)
    mid = np.sqrt(edges[:-1] * edges[1:])
    slope = np.polyfit(np.log(mid), np.log(s), 1)[0]
    assert slope == pytest.approx(-gamma, abs=1e-4)


def test_powerlaw_is_continuous_through_gamma_1():
    expected = np.log(EDGES[1:] / EDGES[:-1]) / np.log(EDGES[-1] / EDGES[0])
    assert_close(spectra.powerlaw(EDGES, 1.0), expected)
    assert_close(spectra.powerlaw(EDGES, 1.0 + 1e-9), expected, rtol=1e-8)


@pytest.mark.parametrize("backend_name", ["numpy", "array_api_strict"])
def test_powerlaw_derivative_matches_finite_differences(backend_name):
    be = Backend(backend_name, "float64")
    gamma = np.array([[0.5, 1.0, 1.0 + 1e-5], [2.0, 3.3, 5.0]])
    out = spectra.powerlaw_derivatives(be.asarray(EDGES), be.asarray(gamma))
    h = 1e-6
    fd = (to_numpy(spectra.powerlaw(EDGES, gamma + h)) - to_numpy(spectra.powerlaw(EDGES, gamma - h))) / (2 * h)
    assert_close(out["spectrum"], be.asarray(to_numpy(spectra.powerlaw(EDGES, gamma))), xp=be.xp)
    np.testing.assert_allclose(to_numpy(out["index"]), fd, rtol=1e-6, atol=1e-9)


# -- thermal --------------------------------------------------------------------------
FE_XXV = spectra.LINES[8]


def _line_centroid(z: float, dtype=np.float64) -> float:
    edges = np.arange(6.40, 6.90, 0.002).astype(dtype)  # Fe XXV only (Fe XXVI is at 6.97 keV)
    strong = spectra.Line("Fe XXV", FE_XXV.energy_kev, FE_XXV.mass_u, FE_XXV.kT_peak_kev, 1e4)
    s = spectra.thermal(edges, np.asarray(5.0, dtype=dtype), z=z, lines=(strong,))
    mid = 0.5 * (edges[:-1] + edges[1:])
    return float(np.sum(s * mid) / np.sum(s))


@pytest.mark.parametrize("z", [-0.005, 0.0, 0.005, 0.02])
def test_line_centroid_moves_as_rest_energy_over_one_plus_z(z):
    # EW of 1e4 keV: the continuum biases the centroid by < 1e-5 keV.
    assert _line_centroid(z) == pytest.approx(FE_XXV.energy_kev / (1.0 + z), abs=2e-5)


def test_line_centroid_in_float32():
    assert _line_centroid(0.005, np.float32) == pytest.approx(FE_XXV.energy_kev / 1.005, abs=2e-4)


def test_line_width_is_thermal_doppler():
    edges = np.arange(6.60, 6.80, 0.0005)
    strong = spectra.Line("Fe XXV", FE_XXV.energy_kev, FE_XXV.mass_u, FE_XXV.kT_peak_kev, 1e5)
    kT = 5.0
    s = spectra.thermal(edges, kT, lines=(strong,))
    mid = 0.5 * (edges[:-1] + edges[1:])
    mean = np.sum(s * mid)
    sigma = math.sqrt(np.sum(s * (mid - mean) ** 2) - 0.0005 ** 2 / 12)  # minus the bin-width variance
    # σ = E √(kT / (m c²)), m c² = 55.845 × 931 494 keV: 6.7004 × √(5/52 019 288) = 2.077 eV.
    assert sigma == pytest.approx(6.7004 * math.sqrt(5.0 / (55.845 * 931494.10242)), rel=0.02)


def test_thermal_continuum_hardens_with_temperature():
    s = spectra.thermal(EDGES, np.array([0.5, 1.0, 2.0, 4.0, 8.0]), abundance=0.0)
    hard = s[EDGES[:-1] >= 5.0].sum(axis=0)
    assert np.all(np.diff(hard) > 0)


def test_thermal_continuum_is_bremsstrahlung_shape():
    # Without lines, N(E)/ΔE ∝ ḡ(E/kT) e^{-E/kT} / E: check two narrow bins' ratio by hand.
    edges = np.array([2.0, 2.001, 6.0, 6.001])
    kT = 3.0
    s = spectra.thermal(edges, kT, abundance=0.0)
    def c(e):
        return spectra.gaunt_factor_born(np, e / kT) * np.exp(-e / kT) / e
    assert s[2] / s[0] == pytest.approx(c(6.0005) / c(2.0005), rel=1e-6)


def test_line_strength_follows_temperature_law():
    # Fe XXV peaks near 5.4 keV: the 6.7 keV line is far stronger at 5 keV than at 1 keV.
    edges = np.linspace(6.0, 7.2, 121)
    def line_to_continuum(kT):
        with_lines = spectra.thermal(edges, kT)
        continuum = spectra.thermal(edges, kT, abundance=0.0)
        window = (edges[:-1] > 6.6) & (edges[1:] < 6.8)
        return (with_lines[window].sum() / with_lines[~window].sum()) / (continuum[window].sum() / continuum[~window].sum())
    assert line_to_continuum(5.0) > 3.0 * line_to_continuum(1.0)
    assert line_to_continuum(1.0) > 1.0


def test_abundance_scales_lines_only():
    s0 = spectra.thermal(EDGES, 1.0, abundance=0.0)
    s1 = spectra.thermal(EDGES, 1.0, abundance=1.0)
    s3 = spectra.thermal(EDGES, 1.0, abundance=3.0)
    si_bin = np.searchsorted(EDGES, 1.865) - 1
    assert s0[si_bin] < s1[si_bin] < s3[si_bin]


def test_thermal_float32_survives_cold_plasma_on_a_wide_grid():
    s = spectra.thermal(np.geomspace(0.3, 12.0, 200).astype(np.float32), np.asarray([0.1, 0.2, 50.0], np.float32))
    assert s.dtype == np.float32 and np.all(np.isfinite(s)) and np.allclose(s.sum(axis=0), 1.0, rtol=1e-5)


def test_thermal_backends_agree(backend_name):
    be = Backend(backend_name, "float64")
    kT = np.array([[0.8, 2.0], [5.0, 9.0]])
    z = np.array([[0.0, 0.004], [-0.004, 0.01]])
    s = spectra.thermal(be.asarray(EDGES), be.asarray(kT), be.asarray(z), abundance=be.asarray(np.full((2, 2), 1.5)))
    ref = spectra.thermal(EDGES, kT, z, abundance=1.5)
    np.testing.assert_allclose(to_numpy(s), ref, rtol=1e-12)


# -- absorption -----------------------------------------------------------------------
def test_absorption_reduces_soft_flux_most(xp):
    t = spectra.absorption(xp.asarray(EDGES), xp.asarray([0.0, 0.1, 1.0, 10.0]))
    t = to_numpy(t)
    assert np.allclose(t[:, 0], 1.0)
    assert np.all((t[:, 1:] > 0) & (t[:, 1:] < 1))
    assert np.all(np.diff(t, axis=1) < 0)      # more gas, less light
    assert np.all(t[0, 1:] < t[-1, 1:])        # soft absorbed more than hard


def test_absorption_at_1kev_by_hand():
    # Morrison & McCammon 0.867-1.303 keV: σE³ = 120.6 + 169.3E - 47.7E²; at 1 keV σ = 242.2e-24 cm².
    sigma = spectra.morrison_mccammon_cross_section(np.array([1.0, 3.0]))
    assert sigma[0] == pytest.approx(242.2)
    assert sigma[1] == pytest.approx((342.7 + 18.7 * 3.0) / 27.0)
    t = spectra.absorption(np.array([0.9999, 1.0001]), 1.0)  # 1e22 cm⁻² × 242.2e-24 cm² = 2.422
    assert t[0] == pytest.approx(math.exp(-2.422), rel=1e-4)


def test_cross_section_jumps_up_at_the_edges():
    for edge in (0.284, 0.532, 0.867, 1.840, 4.038, 7.111):
        below, above = spectra.morrison_mccammon_cross_section(np.array([edge - 1e-6, edge]))
        assert above > below * 0.999, edge


def test_absorption_derivative_matches_finite_differences():
    nh = np.array([0.0, 0.3, 2.0])
    out = spectra.absorption_derivatives(EDGES, nh)
    h = 1e-6
    fd = (spectra.absorption(EDGES, nh + h) - spectra.absorption(EDGES, nh - h)) / (2 * h)
    assert_close(out["spectrum"], spectra.absorption(EDGES, nh))
    np.testing.assert_allclose(out["nh_1e22"], fd, rtol=1e-6, atol=1e-10)


# -- special functions and conversions ------------------------------------------------
def test_erfc_matches_scipy(xp):
    x = np.linspace(-6.0, 9.0, 3001)
    got = to_numpy(spectra._erfc(xp, xp.asarray(x)))
    np.testing.assert_allclose(got, scipy.special.erfc(x), rtol=1.3e-7)


def test_gaussian_bin_fractions_sum_to_one():
    edges = np.linspace(-8.0, 8.0, 161)
    f = spectra._gauss_bin_fraction(np, edges)
    assert f.sum() == pytest.approx(1.0, abs=1e-7)
    assert np.all(f >= 0)


def test_gaussian_bin_fractions_keep_tails_accurate():
    from scipy.stats import norm

    edges = np.array([-7.0, -6.0, -5.0, -0.5, 0.25, 5.0, 6.0, 7.0])
    expected = np.diff(norm.cdf(edges))
    expected[-3:] = norm.sf(edges[-4:-1]) - norm.sf(edges[-3:])   # upper tail, without cancellation
    np.testing.assert_allclose(spectra._gauss_bin_fraction(np, edges), expected, rtol=3e-7)


def test_k0e_matches_scipy():
    y = np.geomspace(1e-4, 300.0, 2000)
    np.testing.assert_allclose(spectra._k0e(np, y), scipy.special.k0e(y), rtol=3e-7)


def test_gaunt_factor_limits():
    # Born approximation: ḡ → (√3/π) ln(4/(ζ x)) for x ≪ 1, ζ = e^γ (Rybicki & Lightman eq. 5.19 regime),
    # and √(3/(π x)) for x ≫ 1.
    x = 1e-4
    assert spectra.gaunt_factor_born(np, x) == pytest.approx(math.sqrt(3) / math.pi * math.log(4 / (math.exp(0.5772156649) * x)), rel=1e-3)
    x = 400.0
    assert spectra.gaunt_factor_born(np, x) == pytest.approx(math.sqrt(3 / (math.pi * x)), rel=2e-3)


def test_velocity_redshift_round_trip():
    assert spectra.redshift_from_velocity(3000.0) == pytest.approx(3000.0 / spectra.SPEED_OF_LIGHT_KMS, rel=0.011)
    assert spectra.redshift_from_velocity(-1500.0) < 0
    v = np.array([-5000.0, 0.0, 2000.0])
    np.testing.assert_allclose(spectra.velocity_from_redshift(spectra.redshift_from_velocity(v)), v, rtol=rtol_for("float64"), atol=1e-9)
