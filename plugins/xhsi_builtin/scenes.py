"""Built-in scenes: ground-truth sky cubes for ``[simulate]``.

- ``casa_like``: a young supernova remnant in the spirit of the Cas A toy model of
  Lascar et al. 2024 (A&A 686, A259): a clumpy thermal shell whose temperature and
  line-of-sight velocity vary across it, plus a synchrotron filament whose photon index
  varies along it.
- ``cluster_beta``: a galaxy-cluster β-model with a radial temperature gradient.
- ``fits``: a ground-truth cube read from a FITS file.
- ``boundary``, ``image_components``: in ``xhsi_builtin.mixture_scenes``.

Sizes are fractions of the half-width of the field, r = 1 at the middle of the shorter
edge, so a scene fits any grid; physical values (keV, km/s) carry their sources.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from xhsi import hookimpl
from xhsi.backend import Backend, array_namespace, to_numpy
from xhsi.schema import option
from xhsi.grid import ModelGrid
from xhsi.io.sky import check_sky_cube, read_sky_cube
from xhsi.simulate import ComponentTruth, Scene, SceneTruth
from xhsi.spectral import spectra


# -- shared helpers -------------------------------------------------------------------
def pixel_coordinates(grid: ModelGrid):
    """Pixel-centre coordinates (y, x), in units of half the shorter field side."""
    half = 0.5 * min(grid.ny, grid.nx)
    y = (np.arange(grid.ny) - 0.5 * (grid.ny - 1)) / half
    x = (np.arange(grid.nx) - 0.5 * (grid.nx - 1)) / half
    return np.meshgrid(y, x, indexing="ij")


def _polar(grid: ModelGrid):
    """Radius (in units of half the shorter field side) and azimuth (rad) of pixel centres."""
    yy, xx = pixel_coordinates(grid)
    return np.hypot(yy, xx), np.arctan2(yy, xx), 0.5 * min(grid.ny, grid.nx)


def smooth_field(rng: np.random.Generator, shape, scale_px: float) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field with correlation length ``scale_px``."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=max(scale_px, 1e-3), mode="wrap")
    f = f - f.mean()
    sd = f.std()
    return f / sd if sd > 0 else f


def _bounded(f: np.ndarray) -> np.ndarray:
    """A field rescaled into [-1, 1]."""
    m = np.abs(f).max()
    return f / m if m > 0 else f


def _component(name, model, amplitude, spectrum, parameters, fixed) -> ComponentTruth:
    """Amplitude map (backend) × unit-flux spectra (backend) → the component on the host."""
    xp = array_namespace(spectrum)
    cube = to_numpy(spectrum * xp.expand_dims(amplitude, axis=0))
    return ComponentTruth(name=name, model=model, amplitude=np.asarray(to_numpy(amplitude), dtype=np.float64),
                          parameters={k: np.asarray(v, dtype=np.float64) for k, v in parameters.items()},
                          fixed=dict(fixed), cube=cube)


def _absorbed(edges, spec, nh_1e22: float, xp):
    """Multiply by the foreground absorption and renormalise to unit flux over the grid."""
    if nh_1e22 <= 0:
        return spec
    t = spectra.absorption(edges, xp.asarray(nh_1e22, dtype=spec.dtype))  # (n_e,): the same everywhere
    s = spec * xp.reshape(t, (t.shape[0],) + (1,) * (spec.ndim - 1))
    return s / xp.sum(s, axis=0, keepdims=True)


def _on_backend(backend: Backend, grid: ModelGrid, maps: dict):
    edges = backend.asarray(grid.energy_edges_kev)
    return edges, {k: backend.asarray(v) for k, v in maps.items()}


# -- casa_like ------------------------------------------------------------------------
class CasALike(Scene):
    """A young supernova remnant: a clumpy thermal shell plus a synchrotron filament.

    Thermal component (``xhsi.spectral.spectra.thermal``): a Gaussian ring of radius ``radius``
    and width ``shell_width`` modulated by log-normal clumps (a seeded Gaussian random
    field of correlation length ``clump_scale_px``, exponentiated with rms
    ``clumpiness`` e-folds) plus a faint diffuse interior; its temperature varies
    between ``kT_min_keV`` and ``kT_max_keV`` as a large-scale azimuthal gradient plus
    random structure; its line-of-sight velocity is a dipole (one side receding, the
    other approaching, as the Si/Fe ejecta of Cas A, Willingale et al. 2002, A&A 381,
    1039; DeLaney et al. 2010, ApJ 725, 2038) plus random structure, bounded by
    ``max_velocity_kms``, giving the redshift map z.

    Synchrotron component (``xhsi.spectral.spectra.powerlaw``): a thin arc just outside the shell
    (the forward shock), covering ``filament_arc_deg`` of azimuth, plus a faint diffuse
    part following the shell; the photon index goes linearly from ``index_start`` to
    ``index_end`` along the arc (Cas A rim filaments: Γ ≈ 2.5–3.2, Helder & Vink 2008,
    ApJ 686, 1094).

    Truth: components ``thermal`` (parameters ``kT`` (keV), ``z``; fixed ``abundance``,
    ``nh_1e22``) and ``synchrotron`` (parameter ``index``; fixed ``nh_1e22``)."""

    name = "casa_like"

    @dataclass
    class Options:
        total_flux: float = option(1.0, unit="photons/s/cm2", min=0.0, exclusive_min=True,
                                   doc="photon flux of the whole scene over the model energy grid")
        synchrotron_fraction: float = option(0.25, min=0.0, max=1.0, doc="share of total_flux in the synchrotron component")
        radius: float = option(0.55, min=0.0, exclusive_min=True, doc="shell radius, fraction of half the field side")
        shell_width: float = option(0.12, min=0.0, exclusive_min=True, doc="Gaussian sigma of the shell, fraction of half the field side")
        clumpiness: float = option(0.6, min=0.0, doc="rms of the log-normal clump modulation (e-folds)")
        clump_scale_px: float = option(1.5, unit="pixels", min=0.0, exclusive_min=True, doc="correlation length of the clumps")
        kT_min_keV: float = option(1.0, unit="keV", min=0.0, exclusive_min=True,
                                   doc="lowest shell temperature (Cas A ejecta: ~1-3 keV, Hwang & Laming 2012, ApJ 746, 130)")
        kT_max_keV: float = option(3.0, unit="keV", min=0.0, exclusive_min=True, doc="highest shell temperature")
        max_velocity_kms: float = option(2000.0, unit="km/s", min=0.0, max=30000.0,
                                         doc="largest line-of-sight speed (|z| <= ~0.0067 by default)")
        abundance: float = option(1.0, min=0.0, doc="line strengths relative to solar (thermal component)")
        sigma_v_kms: float = option(0.0, unit="km/s", min=0.0,
                                    doc="line-of-sight velocity dispersion broadening the thermal lines (Cas A: "
                                        "~200-2000 km/s, Vink et al. 2025, PASJ, arXiv:2505.04691); 0: thermal "
                                        "broadening only")
        index_start: float = option(2.3, min=0.0, doc="photon index at the start of the synchrotron arc")
        index_end: float = option(3.1, min=0.0, doc="photon index at the end of the synchrotron arc")
        filament_arc_deg: float = option(200.0, unit="deg", min=1.0, max=360.0, doc="azimuthal extent of the synchrotron arc")
        nh_1e22: float = option(0.0, unit="1e22 cm-2", min=0.0,
                                doc="foreground absorption column (Cas A: ~1.2-1.5); 0 keeps the pure spectral shapes")
        seed: int = option(0, min=0, doc="seed of the random structure")

        def check(self):
            if self.kT_max_keV < self.kT_min_keV:
                raise ValueError(f"kT_max_keV ({self.kT_max_keV}) must be >= kT_min_keV ({self.kT_min_keV}).")

    def maps(self, grid: ModelGrid) -> dict[str, np.ndarray]:
        """The host maps (float64, ``(ny, nx)``): ``thermal_amplitude``, ``kT_keV``, ``z``,
        ``synchrotron_amplitude``, ``index``."""
        o = self.options
        rng = np.random.default_rng(o.seed)
        r, theta, half = _polar(grid)
        shape = (grid.ny, grid.nx)
        clumps = np.exp(o.clumpiness * smooth_field(rng, shape, o.clump_scale_px))
        shell = np.exp(-0.5 * ((r - o.radius) / o.shell_width) ** 2)
        interior = 0.03 * np.exp(-0.5 * (r / (o.radius + o.shell_width)) ** 4)
        thermal_map = shell * clumps + interior + 1e-4  # strictly positive everywhere

        large = max(3.0, 0.15 * half)  # large-scale structure: ~15 % of the field
        phase_t, phase_v, phase_f = rng.uniform(0.0, 2.0 * np.pi, size=3)
        taper = np.tanh(r / (0.5 * o.radius))  # azimuthal gradients fade to the centre: no singular point
        t = np.clip(0.5 + 0.35 * taper * np.cos(theta - phase_t)
                    + 0.15 * _bounded(smooth_field(rng, shape, large)), 0.0, 1.0)
        kT = o.kT_min_keV + (o.kT_max_keV - o.kT_min_keV) * t
        v = o.max_velocity_kms * np.clip(0.7 * taper * np.cos(theta - phase_v)
                                         + 0.3 * _bounded(smooth_field(rng, shape, large)), -1.0, 1.0)
        z = spectra.redshift_from_velocity(v)

        arc = np.deg2rad(o.filament_arc_deg)
        dphi = np.mod(theta - phase_f, 2.0 * np.pi)
        on_arc = dphi <= arc
        # Position along the arc in [0, 1]; off the arc it returns linearly to 0 across the
        # gap, so the index map has no jump where the filament is absent.
        gap = max(2.0 * np.pi - arc, 1e-9)
        along = np.where(on_arc, dphi / arc, 1.0 - (dphi - arc) / gap)
        window = np.where(on_arc, np.sqrt(np.sin(np.pi * np.clip(dphi / arc, 0.0, 1.0))), 0.0)
        r_f = o.radius + 1.8 * o.shell_width
        thickness = max(0.8 / half, 0.02)  # at least ~1 pixel wide
        filament = np.exp(-0.5 * ((r - r_f) / thickness) ** 2) * window
        synchrotron_map = filament + 0.05 * shell + 1e-4
        index = o.index_start + (o.index_end - o.index_start) * along

        f_sync = o.total_flux * o.synchrotron_fraction
        return {
            "thermal_amplitude": (o.total_flux - f_sync) * thermal_map / thermal_map.sum(),
            "kT_keV": kT, "z": z,
            "synchrotron_amplitude": f_sync * synchrotron_map / synchrotron_map.sum(),
            "index": index,
        }

    def generate_components(self, grid: ModelGrid, backend: Backend) -> SceneTruth:
        o = self.options
        return thermal_and_powerlaw(grid, backend, self.maps(grid), o.abundance, o.sigma_v_kms, o.nh_1e22)


def thermal_and_powerlaw(grid: ModelGrid, backend: Backend, m: dict, abundance: float, sigma_v_kms: float,
                         nh_1e22: float) -> SceneTruth:
    """The components ``thermal`` (kT, z) and ``synchrotron`` (power-law index) from host maps
    ``m`` (``thermal_amplitude``, ``kT_keV``, ``z``, ``synchrotron_amplitude``, ``index``),
    each spectrum of unit flux over the grid after the foreground absorption: casa_like's,
    and the scenes of ``mixture_scenes``."""
    edges, b = _on_backend(backend, grid, m)
    xp = backend.xp
    s_th = _absorbed(edges, spectra.thermal(edges, b["kT_keV"], b["z"], abundance, sigma_v_kms), nh_1e22, xp)
    s_pl = _absorbed(edges, spectra.powerlaw(edges, b["index"]), nh_1e22, xp)
    thermal = _component("thermal", "thermal", b["thermal_amplitude"], s_th,
                         {"kT": m["kT_keV"], "z": m["z"]}, {"abundance": abundance, "nh": nh_1e22})
    sync = _component("synchrotron", "powerlaw", b["synchrotron_amplitude"], s_pl,
                      {"index": m["index"]}, {"nh": nh_1e22})
    return SceneTruth(cube=thermal.cube + sync.cube, components=[thermal, sync])


# -- cluster_beta ---------------------------------------------------------------------
class ClusterBeta(Scene):
    """A galaxy cluster: β-model surface brightness with a radial temperature gradient.

    Photon surface brightness Σ(r) ∝ (1 + (r/r_c)²)^(1/2 - 3β) (Cavaliere &
    Fusco-Femiano 1976, A&A 49, 137), applied to the band photon flux (it strictly holds
    for the bolometric emissivity of an isothermal gas; here an approximation), times a
    seeded log-normal fluctuation of rms ``fluctuation``. Temperature
    kT(r) = kT_outer + (kT_center - kT_outer) / (1 + (r/r_T)²): hot centre, cooler
    outskirts as in the declining profiles of Vikhlinin et al. 2006 (ApJ 640, 691) beyond
    the core. Constant redshift ``redshift`` and abundance (ICM metallicity ≈ 0.3 solar,
    e.g. De Grandi & Molendi 2001, ApJ 551, 153).

    Truth: one component ``thermal`` (parameters ``kT`` (keV), ``z``; fixed ``abundance``,
    ``nh_1e22``)."""

    name = "cluster_beta"

    @dataclass
    class Options:
        total_flux: float = option(1.0, unit="photons/s/cm2", min=0.0, exclusive_min=True,
                                   doc="photon flux of the whole scene over the model energy grid")
        core_radius: float = option(0.2, min=0.0, exclusive_min=True, doc="r_c, fraction of half the field side")
        beta: float = option(2.0 / 3.0, min=0.2, max=2.0, doc="β slope (typical 0.6-0.7, Jones & Forman 1984, ApJ 276, 38)")
        kT_center_keV: float = option(6.0, unit="keV", min=0.0, exclusive_min=True)
        kT_outer_keV: float = option(3.0, unit="keV", min=0.0, exclusive_min=True)
        temperature_radius: float = option(0.6, min=0.0, exclusive_min=True,
                                           doc="r_T where kT is half-way between centre and outskirts")
        redshift: float = option(0.05, min=0.0, doc="cosmological redshift (constant over the field)")
        abundance: float = option(0.3, min=0.0, doc="line strengths relative to solar")
        fluctuation: float = option(0.05, min=0.0, doc="rms of the seeded log-normal substructure (e-folds)")
        fluctuation_scale_px: float = option(2.0, unit="pixels", min=0.0, exclusive_min=True)
        nh_1e22: float = option(0.0, unit="1e22 cm-2", min=0.0, doc="foreground absorption column")
        seed: int = option(0, min=0)

    def maps(self, grid: ModelGrid) -> dict[str, np.ndarray]:
        o = self.options
        rng = np.random.default_rng(o.seed)
        r, _, _ = _polar(grid)
        shape = (grid.ny, grid.nx)
        sb = (1.0 + (r / o.core_radius) ** 2) ** (0.5 - 3.0 * o.beta)
        sb = sb * np.exp(o.fluctuation * smooth_field(rng, shape, o.fluctuation_scale_px))
        kT = o.kT_outer_keV + (o.kT_center_keV - o.kT_outer_keV) / (1.0 + (r / o.temperature_radius) ** 2)
        return {"thermal_amplitude": o.total_flux * sb / sb.sum(), "kT_keV": kT,
                "z": np.full(shape, o.redshift)}

    def generate_components(self, grid: ModelGrid, backend: Backend) -> SceneTruth:
        o = self.options
        m = self.maps(grid)
        edges, b = _on_backend(backend, grid, m)
        s = _absorbed(edges, spectra.thermal(edges, b["kT_keV"], b["z"], o.abundance), o.nh_1e22, backend.xp)
        thermal = _component("thermal", "thermal", b["thermal_amplitude"], s,
                             {"kT": m["kT_keV"], "z": m["z"]}, {"abundance": o.abundance, "nh": o.nh_1e22})
        return SceneTruth(cube=thermal.cube, components=[thermal])


# -- fits -----------------------------------------------------------------------------


class FitsScene(Scene):
    """A ground-truth sky cube from a FITS file.

    The primary HDU (or ``hdu``) holds the cube ``(n_e, ny, nx)`` (FITS axes 3, 2, 1) in
    the model's units. Its energy grid comes from an ``EBOUNDS`` extension (columns
    ``E_MIN``, ``E_MAX``, keV unless TUNIT says eV) or, failing that, a linear spectral
    WCS on axis 3 (``CTYPE3`` starting with ``ENER``, ``CRVAL3``/``CDELT3``/``CRPIX3`` at
    bin centres, ``CUNIT3`` keV or eV). Its pixel size, if the header has ``CDELT1`` (deg),
    is checked against the model's.

    The cube is resampled onto the model grid when the two differ, on each axis, by an
    integer factor k only (energy edges must coincide every k bins; the spatial factor is
    the same on both axes): with ``resample = "sum"`` (the default, for fluxes per bin
    per pixel, which add up) coarsening sums k (or k×k) cells and refining splits a cell
    equally into k (k×k); with ``"mean"`` (for intensive quantities such as surface
    brightness per keV per arcsec²) coarsening averages and refining replicates. Any
    other mismatch raises a DataError."""

    name = "fits"

    @dataclass
    class Options:
        path: Path = option(doc="FITS file with the true sky cube (n_e, ny, nx)")
        hdu: int = option(0, min=0, doc="index of the HDU holding the cube")
        resample: str = option("sum", choices=("sum", "mean"),
                               doc="sum: flux per cell (conserves totals); mean: intensive quantity")

    def check(self, grid: ModelGrid) -> None:
        check_sky_cube(self.options.path, grid, self.options.hdu)

    def generate_components(self, grid: ModelGrid, backend: Backend) -> SceneTruth:
        cube = read_sky_cube(self.options.path, grid, self.options.hdu, self.options.resample)
        return SceneTruth(cube=cube.astype(backend.dtype_name), components=[])


@hookimpl
def xhsi_register_scenes():
    from .mixture_scenes import Boundary, ImageComponents

    return [CasALike, ClusterBeta, FitsScene, Boundary, ImageComponents]
