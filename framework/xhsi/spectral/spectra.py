"""Physical X-ray spectral shapes on a true-energy grid, evaluated for whole parameter maps.

Every function takes the grid as bin **edges** in keV (shape ``(n_e + 1,)``) and parameters
as scalars or arrays of any common shape ``S`` (typically maps ``(ny, nx)``), and returns
an array ``(n_e, *S)`` in the array namespace and float dtype of the parameters (of the
edges when every parameter is a Python number). No Python loop runs over energies or
pixels; the only loops are over the handful of emission lines and of Morrison & McCammon
energy intervals. The functions are pure array expressions so that a later
``spectral_model`` plugin can add a vjp; where the derivative is simple it is given
(``powerlaw_derivatives``, ``thermal_derivatives``, ``absorption_derivatives``).

Units: emission shapes (``powerlaw``, ``thermal``) are **photons per bin**, normalised so
that they sum to 1 over the grid (an amplitude map then carries the photon flux in
photons/s/cm² of the band); ``absorption`` is a dimensionless transmission per bin.

How bins are integrated:

- power law: the exact integral of E^-Γ over each bin;
- thermal continuum and absorption: Simpson's rule on (lo, mid, hi) of each bin
  (error O(ΔE⁴ f⁗), negligible for bins much narrower than kT);
- emission lines: exact integrals of Gaussians over each bin (difference of erfc).

Over 500 lines because the three shapes and their derivatives share these bin-integration
helpers; split, the helpers would become a public module of their own for no other user.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..backend import array_namespace
from ..errors import DataError

__all__ = [
    "powerlaw", "powerlaw_derivatives", "thermal", "thermal_derivatives", "absorption", "absorption_derivatives",
    "morrison_mccammon_cross_section", "gaunt_factor_born", "redshift_from_velocity",
    "velocity_from_redshift", "Line", "LINES", "SPEED_OF_LIGHT_KMS",
]

#: Speed of light in km/s (exact, SI definition of the metre; CODATA 2018).
SPEED_OF_LIGHT_KMS = 299_792.458
#: Atomic mass unit × c², in keV (CODATA 2018: 931.494 102 42 MeV).
_AMU_C2_KEV = 931_494.10242


# -- helpers --------------------------------------------------------------------------
def _is_array(x) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


def _setup(edges_kev, *params):
    """Namespace, dtype, edges reshaped to broadcast against the parameters, parameters
    as arrays of one broadcast shape. The namespace and dtype are those of the first
    array parameter (of the edges when every parameter is a number; float64 for lists)."""
    arrays = [p for p in params if _is_array(p)]
    if arrays:
        xp = array_namespace(*arrays)
        dtype = arrays[0].dtype
    elif _is_array(edges_kev):
        xp = array_namespace(edges_kev)
        dtype = edges_kev.dtype
    else:
        xp = array_namespace(np.asarray(0.0))
        dtype = xp.float64
    if not xp.isdtype(dtype, "real floating"):
        dtype = xp.float64
    if _is_array(edges_kev) and array_namespace(edges_kev) == xp:
        edges = xp.astype(edges_kev, dtype)
    else:  # a list, or numpy edges with parameters on another library: bring them over once
        edges = xp.asarray(np.asarray(_host(edges_kev) if _is_array(edges_kev) else edges_kev, dtype=np.float64),
                           dtype=dtype)
    if edges.ndim != 1 or edges.shape[0] < 2:
        raise DataError(f"energy edges must be a 1-D array of at least 2 values in keV, got shape {tuple(edges.shape)}.")
    if isinstance(edges_kev, (np.ndarray, list, tuple)):
        host = np.asarray(edges_kev, dtype=np.float64)
        if not (np.all(np.isfinite(host)) and host[0] > 0 and np.all(np.diff(host) > 0)):
            raise DataError("energy edges must be positive, finite and strictly increasing (keV).")
    out = []
    for p in params:
        out.append(xp.astype(p, dtype) if _is_array(p) else xp.asarray(float(p), dtype=dtype))
    if len(out) > 1:
        out = list(xp.broadcast_arrays(*out))
    shape = tuple(out[0].shape) if out else ()
    edges = xp.reshape(edges, (edges.shape[0],) + (1,) * len(shape))
    return xp, dtype, edges, out


def _host(x):
    from ..backend import to_numpy

    return to_numpy(x)


def _normalise(xp, s):
    """Divide by the sum over the energy axis (unit photon flux over the grid)."""
    return s / xp.sum(s, axis=0, keepdims=True)


def _simpson(xp, f_edges, f_mid):
    """Bin average of f from its values at the edges and mid-points (Simpson's rule)."""
    return (f_edges[:-1, ...] + 4.0 * f_mid + f_edges[1:, ...]) / 6.0


def _exprel(xp, u):
    """(e^u - 1)/u, continuous at u = 0."""
    small = xp.abs(u) < 1e-4
    safe = xp.where(small, xp.ones_like(u), u)
    return xp.where(small, 1.0 + u / 2.0 + u * u / 6.0, xp.expm1(safe) / safe)


def _dlog_exprel(xp, u):
    """d ln((e^u - 1)/u) / du = 1/(1 - e^-u) - 1/u, continuous at u = 0 (Bernoulli series)."""
    small = xp.abs(u) < 1e-2
    safe = xp.where(small, xp.ones_like(u), u)
    return xp.where(small, 0.5 + u / 12.0 - u * u * u / 720.0, 1.0 / (-xp.expm1(-safe)) - 1.0 / safe)


def _horner(t, coeffs):
    """c0 + t (c1 + t (c2 + ...)): the nested form the sources print, evaluated innermost first."""
    p = coeffs[-1]
    for c in reversed(coeffs[:-1]):
        p = c + t * p
    return p


def _horner_derivative(t, coeffs):
    """d/dt of ``_horner(t, coeffs)``."""
    return _horner(t, tuple(k * c for k, c in enumerate(coeffs))[1:]) if len(coeffs) > 1 else 0.0 * t


# Press et al., Numerical Recipes (2nd ed., 1992), §6.2, ``erfcc``: erfc(z) ≈ t exp(-z² + P(t)).
_ERFCC = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398,
          1.48851587, -0.82215223, 0.17087277)


def _erfc_abs(xp, z):
    """erfc(z) for z >= 0, fractional error < 1.2e-7.

    Chebyshev-fitted approximation of Press et al., *Numerical Recipes* (2nd ed., 1992,
    §6.2, ``erfcc``). Written with array operations only so that every namespace gives the
    same numbers (the array API has no erf) and so that it differentiates trivially
    (``_erfc_abs_derivative``)."""
    t = 1.0 / (1.0 + 0.5 * z)
    return t * xp.exp(-z * z + _horner(t, _ERFCC))


def _erfc_abs_derivative(xp, z):
    """d/dz of ``_erfc_abs`` — the exact derivative of the approximation (≈ -2/√π e^{-z²}),
    so that gradients agree with finite differences of the function actually evaluated."""
    t = 1.0 / (1.0 + 0.5 * z)
    value = t * xp.exp(-z * z + _horner(t, _ERFCC))
    # d/dz [t e^{-z² + P(t)}] with dt/dz = -t²/2.
    return value * (-0.5 * t * (1.0 + t * _horner_derivative(t, _ERFCC)) - 2.0 * z)


def _erfc(xp, x):
    """Complementary error function of any real x (see ``_erfc_abs``)."""
    ans = _erfc_abs(xp, xp.abs(x))
    return xp.where(x >= 0, ans, 2.0 - ans)


def _gauss_bin_fraction(xp, x):
    """Fraction of a unit Gaussian in each bin, from the standardised bin edges ``x``
    ((n + 1, ...), increasing along axis 0) → (n, ...). Upper and lower tail
    probabilities come from one erfc per edge, and each bin uses the pair that keeps
    small differences accurate (both tails above, both below, or straddling the centre)."""
    c = 0.5 * _erfc_abs(xp, xp.abs(x) * (1.0 / math.sqrt(2.0)))
    upper = xp.where(x >= 0, c, 1.0 - c)   # P(X > x)
    lower = xp.where(x >= 0, 1.0 - c, c)   # P(X < x)
    a, b = x[:-1, ...], x[1:, ...]
    right = upper[:-1, ...] - upper[1:, ...]
    left = lower[1:, ...] - lower[:-1, ...]
    middle = 1.0 - lower[:-1, ...] - upper[1:, ...]
    return xp.where(a >= 0, right, xp.where(b <= 0, left, middle))


def _gauss_bin_density(xp, x):
    """-d P(X > x)/dx of the tail probabilities ``_gauss_bin_fraction`` uses (the unit
    Gaussian density, to the accuracy of ``_erfc_abs``): every branch of that function is
    P(X > a) - P(X > b), so d fraction_i = density(b) db - density(a) da."""
    return (-0.5 / math.sqrt(2.0)) * _erfc_abs_derivative(xp, xp.abs(x) * (1.0 / math.sqrt(2.0)))


# -- power law ------------------------------------------------------------------------
def powerlaw(edges_kev, index):
    """Photon power law N(E) ∝ E^-Γ, photons per bin, unit photon flux over the grid.

    ``index`` is the photon index Γ (dimensionless), a scalar or a map. Each bin holds the
    exact integral ∫ E^-Γ dE (continuous through Γ = 1). Returns ``(n_e, *index.shape)``."""
    xp, _, e, (gamma,) = _setup(edges_kev, index)
    lo, hi = e[:-1, ...], e[1:, ...]
    a = 1.0 - gamma
    width_log = xp.log(hi / lo)
    # Scaled by the lowest edge so that E^(1-Γ) stays in range for large grids and indices.
    f = xp.exp(a * xp.log(lo / e[0:1, ...])) * width_log * _exprel(xp, a * width_log)
    return _normalise(xp, f)


def powerlaw_derivatives(edges_kev, index) -> dict:
    """The power law and its exact derivative with respect to Γ:
    ``{"spectrum": N, "index": ∂N/∂Γ}``, both ``(n_e, *shape)``.

    With f_i the bin integrals and N_i = f_i / Σf, ∂N_i/∂Γ = N_i (g_i - Σ_j N_j g_j) where
    g_i = ∂ln f_i/∂Γ = -(ln lo_i + ln(hi_i/lo_i) · h(u_i)), u_i = (1-Γ) ln(hi_i/lo_i),
    h(u) = 1/(1-e^-u) - 1/u."""
    xp, _, e, (gamma,) = _setup(edges_kev, index)
    lo, hi = e[:-1, ...], e[1:, ...]
    a = 1.0 - gamma
    width_log = xp.log(hi / lo)
    u = a * width_log
    log_lo = xp.log(lo / e[0:1, ...])
    n = _normalise(xp, xp.exp(a * log_lo) * width_log * _exprel(xp, u))
    g = -(log_lo + width_log * _dlog_exprel(xp, u))
    return {"spectrum": n, "index": n * (g - xp.sum(n * g, axis=0, keepdims=True))}


# -- thermal plasma -------------------------------------------------------------------
@dataclass(frozen=True)
class Line:
    """One K-shell emission line of the thermal model.

    energy_kev: rest energy. mass_u: ion mass in atomic mass units (thermal broadening).
    kT_peak_kev: temperature of peak emissivity. ew_peak_kev: equivalent width at that
    temperature for solar abundance (see ``thermal`` for what is and is not physical)."""

    ion: str
    energy_kev: float
    mass_u: float
    kT_peak_kev: float
    ew_peak_kev: float


# Rest energies: He-like resonance lines w (1s2p ¹P₁ → 1s² ¹S₀) and H-like Lyα (the 2:1
# statistical-weight mean of Lyα1/Lyα2), from the NIST Atomic Spectra Database
# (Kramida et al., NIST ASD v5, wavelengths of Drake 1988 Can. J. Phys. 66, 586 for
# He-like ions and of Johnson & Soff 1985 At. Data Nucl. Data Tables 33, 405 for H-like
# ions), converted with hc = 12.398 42 keV Å. They agree to < 1 eV with AtomDB 3.0.
# Masses: IUPAC standard atomic weights (Si 28.085, S 32.06, Ar 39.95, Ca 40.078,
# Fe 55.845 u). Peak temperatures: where each line's emissivity peaks in collisional
# ionisation equilibrium, read (to ~0.1 dex) from the AtomDB/APEC emissivity curves
# (Foster et al. 2012, ApJ 756, 128): 10^7.0 K ≈ 0.86 keV (k = 8.617e-8 keV/K) etc.
# Peak equivalent widths: order-of-magnitude values at solar abundance in the spirit of
# Rothenflug & Arnaud 1985 (A&A 144, 431); they are an approximation for simulations,
# not a fit to any plasma code.
LINES: tuple[Line, ...] = (
    Line("Si XIII", 1.8650, 28.085, 0.86, 0.50),   # 6.6479 Å, peak log T ≈ 7.0
    Line("Si XIV", 2.0055, 28.085, 1.36, 0.30),    # 6.1822 Å, peak log T ≈ 7.2
    Line("S XV", 2.4606, 32.06, 1.36, 0.35),       # 5.0387 Å, peak log T ≈ 7.2
    Line("S XVI", 2.6217, 32.06, 2.16, 0.20),      # 4.7292 Å, peak log T ≈ 7.4
    Line("Ar XVII", 3.1396, 39.95, 1.93, 0.10),    # 3.9491 Å, peak log T ≈ 7.35
    Line("Ar XVIII", 3.3214, 39.95, 3.43, 0.06),   # 3.7329 Å, peak log T ≈ 7.6
    Line("Ca XIX", 3.9024, 40.078, 2.73, 0.08),    # 3.1772 Å, peak log T ≈ 7.5
    Line("Ca XX", 4.1051, 40.078, 4.85, 0.05),     # 3.0203 Å, peak log T ≈ 7.75
    Line("Fe XXV", 6.7004, 55.845, 5.42, 0.80),    # 1.8504 Å, peak log T ≈ 7.8
    Line("Fe XXVI", 6.9661, 55.845, 10.8, 0.40),   # 1.7798 Å, peak log T ≈ 8.1
)

#: Width (in ln kT) of the log-normal temperature dependence of every line's strength:
#: emissivity curves of K-shell lines fall to half their peak ≈ 0.3 dex either side of it
#: (AtomDB, Foster et al. 2012), i.e. σ_log10 ≈ 0.26, σ_ln ≈ 0.6.
LINE_LOG_WIDTH = 0.6


def gaunt_factor_born(xp, x):
    """Thermally averaged free-free Gaunt factor in the Born approximation,
    ḡ(x) = (√3/π) e^{x/2} K₀(x/2), x = E/kT (Rybicki & Lightman 1979, *Radiative
    Processes in Astrophysics*, §5.3 and Fig. 5.2; Karzas & Latter 1961). Valid for
    kT ≫ Z² Ry, i.e. the keV plasmas simulated here; accurate to ~10-20 % against exact
    Gaunt factors (e.g. van Hoof et al. 2014). K₀ uses the polynomial approximations of
    Abramowitz & Stegun (1964) 9.8.1, 9.8.5 and 9.8.6 (|error| < 2e-7)."""
    return (math.sqrt(3.0) / math.pi) * _k0e(xp, 0.5 * x)


# Abramowitz & Stegun (1964): 9.8.1 I₀(y) in t = (y/3.75)²; 9.8.5 K₀(y) + ln(y/2) I₀(y) in
# q = y²/4 (0 < y ≤ 2); 9.8.6 √y e^y K₀(y) in w = 2/y (y ≥ 2).
_AS_I0 = (1.0, 3.5156229, 3.0899424, 1.2067492, 0.2659732, 0.0360768, 0.0045813)
_AS_K0_SMALL = (-0.57721566, 0.42278420, 0.23069756, 0.03488590, 0.00262698, 0.00010750, 0.00000740)
_AS_K0_LARGE = (1.25331414, -0.07832358, 0.02189568, -0.01062446, 0.00587872, -0.00251540, 0.00053208)


def _k0e(xp, y):
    """e^y K₀(y) for y > 0 (Abramowitz & Stegun 9.8.1, 9.8.5, 9.8.6)."""
    ys = xp.minimum(y, 2.0)  # each branch sees only its own domain: no overflow, no NaN
    yl = xp.maximum(y, 2.0)
    t = (ys / 3.75) ** 2
    i0 = _horner(t, _AS_I0)
    q = ys * ys / 4.0
    k0_small = -xp.log(ys / 2.0) * i0 + _horner(q, _AS_K0_SMALL)
    w = 2.0 / yl
    k0e_large = _horner(w, _AS_K0_LARGE) / xp.sqrt(yl)
    return xp.where(y <= 2.0, xp.exp(ys) * k0_small, k0e_large)


def _k0e_and_derivative(xp, y):
    """``_k0e(y)`` and its exact derivative d/dy (of the same polynomial approximations)."""
    ys = xp.minimum(y, 2.0)
    yl = xp.maximum(y, 2.0)
    t = (ys / 3.75) ** 2
    i0 = _horner(t, _AS_I0)
    q = ys * ys / 4.0
    log_half = xp.log(ys / 2.0)
    k0_small = -log_half * i0 + _horner(q, _AS_K0_SMALL)
    dk0_small = (-i0 / ys - log_half * _horner_derivative(t, _AS_I0) * (2.0 * ys / 3.75 ** 2)
                 + _horner_derivative(q, _AS_K0_SMALL) * (ys / 2.0))
    w = 2.0 / yl
    root = xp.sqrt(yl)
    large = _horner(w, _AS_K0_LARGE)
    k0e_large = large / root
    dk0e_large = _horner_derivative(w, _AS_K0_LARGE) * (-2.0 / (yl * yl)) / root - 0.5 * k0e_large / yl
    small = y <= 2.0
    exp_ys = xp.exp(ys)
    return (xp.where(small, exp_ys * k0_small, k0e_large),
            xp.where(small, exp_ys * (k0_small + dk0_small), dk0e_large))


def redshift_from_velocity(v_kms):
    """Doppler redshift of a line-of-sight velocity (km/s, positive = receding):
    1 + z = √((1 + β)/(1 - β)), β = v/c (special-relativistic Doppler; z ≈ β for β ≪ 1)."""
    if _is_array(v_kms):
        xp = array_namespace(v_kms)
        beta = v_kms / SPEED_OF_LIGHT_KMS
        return xp.sqrt((1.0 + beta) / (1.0 - beta)) - 1.0
    beta = float(v_kms) / SPEED_OF_LIGHT_KMS
    return math.sqrt((1.0 + beta) / (1.0 - beta)) - 1.0


def velocity_from_redshift(z):
    """Inverse of ``redshift_from_velocity``: v = c ((1+z)² - 1)/((1+z)² + 1) in km/s."""
    s = (1.0 + z) * (1.0 + z)
    return SPEED_OF_LIGHT_KMS * (s - 1.0) / (s + 1.0)


def thermal(edges_kev, kT_keV, z=0.0, abundance=1.0, sigma_v_kms=0.0, lines: tuple[Line, ...] = LINES):
    """Analytic approximation of an optically thin, collisionally ionised plasma:
    photons per bin, unit photon flux over the grid, shape ``(n_e, *S)``.

    Parameters (scalars or arrays broadcasting to one shape S):
    ``kT_keV`` electron temperature (keV, > 0); ``z`` Doppler/cosmological redshift
    (dimensionless, E_obs = E_rest/(1+z); from a line-of-sight velocity with
    ``redshift_from_velocity``; negative for blueshift); ``abundance`` scales every line
    (relative to the solar-abundance strengths in ``LINES``); ``sigma_v_kms`` adds a
    turbulent velocity dispersion to the thermal line broadening.

    Model (rest frame, photons keV⁻¹, arbitrary normalisation):

    - continuum: thermal bremsstrahlung, C(E) = ḡ(E/kT) e^{-E/kT} / E, with the Born
      Gaunt factor ``gaunt_factor_born`` (Rybicki & Lightman 1979, eq. 5.14a divided by E
      to count photons);
    - lines: for each line i of ``LINES``, a Gaussian at E_i holding
      ``abundance · EW_i · s_i(kT) · C(E_i)`` photons, i.e. an equivalent width
      EW_i s_i(kT) over the local continuum, with the strength law
      s_i(kT) = exp(-ln²(kT/kT_i) / (2 · 0.6²)): a log-normal in kT peaking at the line's
      emissivity peak — a stand-in for ionisation balance × excitation, not a plasma code;
      width σ_i = E_i √(kT/(m_i c²) + (σ_v/c)²) (thermal Doppler broadening with ion
      temperature = electron temperature, plus turbulence).

    The spectrum is Doppler shifted by evaluating the rest-frame spectrum on the edges
    times (1+z) (photons in an observed bin are the photons emitted in the corresponding
    rest-frame bin), then normalised over the grid. Line energies, masses and temperature
    laws are sourced in ``LINES``; the line strengths are an approximation, good enough
    for simulated scenes and unmixing tests, not for fitting real data.
    """
    xp, _, e, (kt, zz, ab, sv) = _setup(edges_kev, kT_keV, z, abundance, sigma_v_kms)
    e_rest = e * (1.0 + zz)
    # A common reference energy keeps e^{-E/kT} in float32 range; it cancels on normalising.
    e_ref = e[0:1, ...]

    def continuum(energy):
        x = energy / kt
        return gaunt_factor_born(xp, x) * xp.exp(-(energy - e_ref) / kt) / energy

    mid = 0.5 * (e_rest[:-1, ...] + e_rest[1:, ...])
    width = e_rest[1:, ...] - e_rest[:-1, ...]
    spectrum = _simpson(xp, continuum(e_rest), continuum(mid)) * width
    v_frac2 = (sv / SPEED_OF_LIGHT_KMS) ** 2
    for line in lines:
        strength = ab * line.ew_peak_kev * xp.exp(
            -(xp.log(kt / line.kT_peak_kev) ** 2) / (2.0 * LINE_LOG_WIDTH ** 2))
        photons = strength * continuum(line.energy_kev)
        sigma = line.energy_kev * xp.sqrt(kt / (line.mass_u * _AMU_C2_KEV) + v_frac2)
        spectrum = spectrum + photons * _gauss_bin_fraction(xp, (e_rest - line.energy_kev) / sigma)
    return _normalise(xp, spectrum)


def thermal_derivatives(edges_kev, kT_keV, z=0.0, abundance=1.0, sigma_v_kms=0.0,
                        lines: tuple[Line, ...] = LINES) -> dict:
    """The ``thermal`` spectrum and its exact derivatives with respect to its parameters:
    ``{"spectrum": N, "kT_keV": ∂N/∂kT (per keV), "z": ∂N/∂z, "abundance": ∂N/∂A,
    "sigma_v_kms": ∂N/∂σ_v (per km/s; 0 at σ_v = 0, where the width is stationary)}``,
    each ``(n_e, *S)``.

    The derivatives are those of the functions ``thermal`` evaluates — Simpson continuum
    with the Abramowitz & Stegun Gaunt factor, line fractions from the Numerical Recipes
    erfc — differentiated analytically (chain rule through E_rest = E (1+z), the line
    strengths, widths and standardised edges, then the quotient rule of the normalisation
    N = F/ΣF: ∂N = (∂F - N Σ∂F)/ΣF), so they match finite differences of ``thermal`` to
    rounding."""
    xp, _, e, (kt, zz, ab, sv) = _setup(edges_kev, kT_keV, z, abundance, sigma_v_kms)
    opz = 1.0 + zz
    e_rest = e * opz
    e_ref = e[0:1, ...]

    def continuum(energy):
        """C, ∂C/∂kT and ∂C/∂E of C(E) = ḡ(E/kT) e^{-(E - E_ref)/kT} / E."""
        x = energy / kt
        k, dk = _k0e_and_derivative(xp, 0.5 * x)
        dlog_g = 0.5 * dk / k  # d ln ḡ / dx
        c = (math.sqrt(3.0) / math.pi) * k * xp.exp(-(energy - e_ref) / kt) / energy
        return c, c * ((energy - e_ref) / kt - x * dlog_g) / kt, c * ((dlog_g - 1.0) / kt - 1.0 / energy)

    mid_obs = 0.5 * (e[:-1, ...] + e[1:, ...])
    width_obs = e[1:, ...] - e[:-1, ...]
    width = width_obs * opz
    c_e, ct_e, cE_e = continuum(e_rest)
    c_m, ct_m, cE_m = continuum(mid_obs * opz)
    average = _simpson(xp, c_e, c_m)
    f = average * width
    df_dkt = _simpson(xp, ct_e, ct_m) * width
    df_dz = _simpson(xp, cE_e * e, cE_m * mid_obs) * width + average * width_obs  # ∂E_rest/∂z = E
    df_dab = xp.zeros_like(f)
    df_dsv = xp.zeros_like(f)
    v_frac2 = (sv / SPEED_OF_LIGHT_KMS) ** 2
    for line in lines:
        log_ratio = xp.log(kt / line.kT_peak_kev)
        s = xp.exp(-(log_ratio ** 2) / (2.0 * LINE_LOG_WIDTH ** 2))
        ds = -s * log_ratio / (LINE_LOG_WIDTH ** 2 * kt)
        c_line, ct_line, _ = continuum(line.energy_kev)
        per_abundance = line.ew_peak_kev * s * c_line
        photons = ab * per_abundance
        dphotons_dkt = ab * line.ew_peak_kev * (ds * c_line + s * ct_line)
        mc2 = line.mass_u * _AMU_C2_KEV
        sigma = line.energy_kev * xp.sqrt(kt / mc2 + v_frac2)
        dsigma_dkt = line.energy_kev ** 2 / (2.0 * sigma * mc2)
        dsigma_dsv = line.energy_kev ** 2 * sv / (SPEED_OF_LIGHT_KMS ** 2 * sigma)
        x = (e_rest - line.energy_kev) / sigma
        frac = _gauss_bin_fraction(xp, x)
        density = _gauss_bin_density(xp, x)
        dx_dkt = -x * dsigma_dkt / sigma
        dx_dz = e / sigma
        dfrac_dkt = density[1:, ...] * dx_dkt[1:, ...] - density[:-1, ...] * dx_dkt[:-1, ...]
        dfrac_dz = density[1:, ...] * dx_dz[1:, ...] - density[:-1, ...] * dx_dz[:-1, ...]
        dx_dsv = -x * dsigma_dsv / sigma
        dfrac_dsv = density[1:, ...] * dx_dsv[1:, ...] - density[:-1, ...] * dx_dsv[:-1, ...]
        df_dsv = df_dsv + photons * dfrac_dsv
        f = f + photons * frac
        df_dkt = df_dkt + dphotons_dkt * frac + photons * dfrac_dkt
        df_dz = df_dz + photons * dfrac_dz
        df_dab = df_dab + per_abundance * frac
    total = xp.sum(f, axis=0, keepdims=True)
    n = f / total

    def normalised(df):
        return (df - n * xp.sum(df, axis=0, keepdims=True)) / total

    return {"spectrum": n, "kT_keV": normalised(df_dkt), "z": normalised(df_dz), "abundance": normalised(df_dab),
            "sigma_v_kms": normalised(df_dsv)}


# -- absorption -----------------------------------------------------------------------
# Morrison & McCammon 1983, ApJ 270, 119, Table 2: σ(E) E³ = c0 + c1 E + c2 E² in
# 1e-24 cm² keV³ per hydrogen atom (solar abundances, gas + grains), E in keV, valid
# 0.03–10 keV. Rows: lower bound of the interval (keV), c0, c1, c2. The table could not be
# checked against the paper itself; it was transcribed from several independent public
# implementations that agree on every value (MOSFiT, and three other codes), except one
# IDL transcription with c2 = -0.75 in 4.038–7.111 keV; +0.75 is kept because σE³ must
# rise across the Ca K edge at 4.038 keV (427.7 below, 436.4 above with +0.75, but 411.9
# with -0.75, which would be a drop).
_MM83 = (
    (0.030, 17.3, 608.1, -2150.0),
    (0.100, 34.6, 267.9, -476.1),
    (0.284, 78.1, 18.8, 4.3),
    (0.400, 71.4, 66.8, -51.4),
    (0.532, 95.5, 145.8, -61.1),
    (0.707, 308.9, -380.6, 294.0),
    (0.867, 120.6, 169.3, -47.7),
    (1.303, 141.3, 146.8, -31.5),
    (1.840, 202.7, 104.7, -17.0),
    (2.471, 342.7, 18.7, 0.0),
    (3.210, 352.2, 18.7, 0.0),
    (4.038, 433.9, -2.4, 0.75),
    (7.111, 629.0, 30.9, 0.0),
    (8.331, 701.2, 25.2, 0.0),
)
_MM83_MAX_KEV = 10.0


def morrison_mccammon_cross_section(energy_kev):
    """Photo-electric cross-section per H atom, in units of 1e-24 cm², at ``energy_kev``
    (any shape; Morrison & McCammon 1983, ApJ 270, 119, Table 2). Below 0.03 keV the first
    interval and above 10 keV the last one are extrapolated (σ ∝ E⁻³ roughly)."""
    xp = array_namespace(energy_kev)
    e = energy_kev
    c0 = xp.zeros_like(e)
    c1 = xp.zeros_like(e)
    c2 = xp.zeros_like(e)
    # Loop over the 14 intervals (not over energies): each row overwrites from its lower bound up.
    for k, (lower, a0, a1, a2) in enumerate(_MM83):
        inside = e >= lower if k > 0 else xp.ones_like(e, dtype=xp.bool)
        c0 = xp.where(inside, a0, c0)
        c1 = xp.where(inside, a1, c1)
        c2 = xp.where(inside, a2, c2)
    return (c0 + c1 * e + c2 * e * e) / (e * e * e)


def _transmission_nodes(xp, e, nh):
    """exp(-N_H σ(E)) at the edges and mid-points; N_H in 1e22 cm⁻², σ in 1e-24 cm²."""
    mid = 0.5 * (e[:-1, ...] + e[1:, ...])
    sig_e = morrison_mccammon_cross_section(e) * 1e-2
    sig_m = morrison_mccammon_cross_section(mid) * 1e-2
    return sig_e, sig_m, xp.exp(-nh * sig_e), xp.exp(-nh * sig_m)


def absorption(edges_kev, nh_1e22):
    """Photo-electric absorption by cold gas, exp(-N_H σ(E)) with σ from Morrison &
    McCammon (1983, ApJ 270, 119), averaged over each bin with Simpson's rule (so a bin
    containing an edge gets an approximate average). ``nh_1e22`` is the hydrogen column
    in units of 1e22 cm⁻² (scalar or map). Dimensionless, shape ``(n_e, *S)``; multiply an
    emission spectrum by it (and renormalise if the amplitude is to stay the absorbed flux)."""
    xp, _, e, (nh,) = _setup(edges_kev, nh_1e22)
    _, _, t_e, t_m = _transmission_nodes(xp, e, nh)
    return _simpson(xp, t_e, t_m)


def absorption_derivatives(edges_kev, nh_1e22) -> dict:
    """``{"spectrum": T, "nh_1e22": ∂T/∂N_H}`` (per 1e22 cm⁻²), exact for the
    Simpson-averaged transmission of ``absorption``."""
    xp, _, e, (nh,) = _setup(edges_kev, nh_1e22)
    sig_e, sig_m, t_e, t_m = _transmission_nodes(xp, e, nh)
    return {"spectrum": _simpson(xp, t_e, t_m), "nh_1e22": _simpson(xp, -sig_e * t_e, -sig_m * t_m)}
