"""The scenes of the fusion suite (issue 25 item 3; ``bench/fusion_suite.py`` runs them).

Each scene is a true sky cube, two observations of it and a run config, written into a
folder of its own: ``truth.fits`` (read by the ``fits`` scene), the instrument TOMLs of the
fictional instruments, and the configs a user who tunes nothing writes (:data:`UNTUNED`:
``config.toml`` with no ``[[regularizers]]`` and no ``[solver]``; ``config_<kind>.toml``
naming regularisers without options). None of them is a shipped plugin.

The cubes are built here with ``xhsi.spectral.spectra`` (thermal plasma with K-shell lines,
power law, photoelectric absorption). Flux is scaled so that the two observations together
expect ``counts`` counts (computed through the compiled forward operators). Morphologies:
a clumpy shell, a cluster, filaments, point sources on diffuse emission, knots, a broadened
disk, and three scenes whose images are real Chandra images (``../shared/research/data``,
PROVENANCE.md there; those scenes are skipped, with a message, when the folder is absent).

Physical choices (typical values, not fits): Cas A kT 1–3 keV and ejecta velocities of a
few 1000 km/s (Hwang & Laming 2012, ApJ 746, 130; DeLaney et al. 2010, ApJ 725, 2038);
cluster kT 6 → 3 keV, z = 0.05 and bulk shear / turbulence of a few 100 km/s (Hitomi
Collaboration 2016, Nature 535, 117: σ_v ≈ 160 km/s in Perseus); Crab photon index 1.9 at
the torus softening outward (Mori et al. 2004, ApJ 609, 186), N_H ≈ 0.35e22 cm⁻² (Kirsch et
al. 2005, SPIE 5898); Tycho ejecta σ_v up to ~1500 km/s (Hayato et al. 2010, ApJ 725, 894).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from xhsi.spectral.spectra import absorption, powerlaw, redshift_from_velocity, thermal

ROOT = Path(__file__).resolve().parents[1]
#: the real Chandra images (never shipped; read only when present)
SHARED_DATA = ROOT.parent / "shared" / "research" / "data"

#: Two fictional instruments the suite writes as TOML (a CCD-like imager and a
#: calorimeter with coarse pixels): numbers chosen between the shipped ones, no source.
FICTIONAL = {
    "suite_imager": {
        "instrument": {"name": "suite_imager", "mission": "fictional", "detector": "CCD imager",
                       "description": "Fictional CCD imager of the fusion suite (bench/suite_scenes.py): numbers "
                                      "chosen between XMM-pn's and Chandra ACIS's, not a real instrument."},
        "channels": {"min_kev": 0.2, "max_kev": 12.0, "count": 2360},             # 5 eV channels
        "spectral_response": {"kind": "gaussian",
                              "fwhm_ev": {"energies_kev": [1.0, 10.0], "values": [80.0, 160.0]}},
        "effective_area": {"kind": "constant", "cm2": 400.0},
        "spatial": {"pixel_arcsec": 4.0},
        "psf": {"kind": "gaussian", "fwhm_arcsec": 6.0},
    },
    "suite_calorimeter": {
        "instrument": {"name": "suite_calorimeter", "mission": "fictional", "detector": "calorimeter",
                       "description": "Fictional microcalorimeter of the fusion suite (bench/suite_scenes.py): "
                                      "6 eV FWHM, coarse PSF; not a real instrument."},
        "channels": {"min_kev": 0.2, "max_kev": 12.0, "count": 23600},            # 0.5 eV channels
        "spectral_response": {"kind": "gaussian", "fwhm_ev": 6.0},
        "effective_area": {"kind": "table", "energies_kev": [2.0, 6.0, 10.0], "cm2": [150.0, 250.0, 120.0]},
        "spatial": {"pixel_arcsec": 20.0},
        "psf": {"kind": "gaussian", "fwhm_arcsec": 50.0},
    },
}


@dataclass(frozen=True)
class Pair:
    """The two observations: ``imager`` (spectral_rebin) and ``spectrometer`` (spatial_rebin);
    exposures in s."""

    imager: str
    spectrometer: str
    spectral_rebin: int
    spatial_rebin: int
    imager_exposure_s: float = 1.0e5
    spectrometer_exposure_s: float = 2.0e5


@dataclass(frozen=True)
class SceneSpec:
    name: str
    what: str
    band_kev: tuple[float, float]
    bins: int
    pixels: int
    pixel_arcsec: float
    counts: float
    pair: Pair
    build: Callable[..., np.ndarray]      # (edges_kev, n, data_dir) -> cube (n_e, n, n), any scale
    data_file: str | None = None          # a file of SHARED_DATA the scene needs
    tags: tuple[str, ...] = field(default=())


# -- spatial pieces ------------------------------------------------------------------------
def _coords(n: int):
    """(r, θ, x, y): x, y in [−1, 1] at pixel centres, r = 1 at the middle of an edge."""
    c = (np.arange(n) + 0.5) / n * 2 - 1
    y, x = np.meshgrid(c, c, indexing="ij")
    return np.hypot(x, y), np.arctan2(y, x), x, y


def _lognormal(n: int, rng, scale_px: float, efolds: float) -> np.ndarray:
    """Smooth seeded log-normal structure (Gaussian field smoothed by ``scale_px``)."""
    f = np.fft.fft2(rng.standard_normal((n, n)))
    k = np.fft.fftfreq(n)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    g = np.real(np.fft.ifft2(f * np.exp(-2 * (np.pi * scale_px) ** 2 * k2)))
    return np.exp(efolds * g / (g.std() + 1e-12))


def _rank(values: np.ndarray) -> np.ndarray:
    """Each pixel's rank among ``values`` as a fraction in [0, 1], equal values sharing the
    lowest rank of their group: equal pixels (e.g. a real image's empty sky) get equal
    parameters, not ones set by the order a sort leaves ties in."""
    flat = values.ravel()
    return (np.searchsorted(np.sort(flat), flat, side="left") / (flat.size - 1)).reshape(values.shape)


def _real_image(data_dir: Path, name: str, crop: int, n: int) -> np.ndarray:
    """The central ``crop`` × ``crop`` pixels of a shared Chandra image, summed into n × n."""
    from astropy.io import fits

    with fits.open(data_dir / name) as hdul:
        img = np.asarray(hdul[0].data, dtype=np.float64)
    img = np.nan_to_num(img, nan=0.0)
    cy, cx = (s // 2 for s in img.shape)
    img = img[cy - crop // 2: cy + crop // 2, cx - crop // 2: cx + crop // 2]
    b = crop // n
    img = img[: n * b, : n * b].reshape(n, b, n, b).sum(axis=(1, 3))
    return np.clip(img, 0, None)


def _norm(img: np.ndarray) -> np.ndarray:
    return img / img.sum()


def _mix(*terms) -> np.ndarray:
    """Σ amplitude-map × unit-flux spectra, as (n_e, ny, nx)."""
    return sum(a[None] * s for a, s in terms)


# -- scene builders: cube in photons / s / cm² per bin per pixel, up to one scale factor ----
def shell(edges, n, data_dir=None):
    """Clumpy thermal shell, kT 1–3 keV around it, a velocity dipole ±2000 km/s (lines shift)."""
    r, th, _, y = _coords(n)
    rng = np.random.default_rng(11)
    amp = (np.exp(-0.5 * ((r - 0.6) / 0.12) ** 2) * _lognormal(n, rng, 1.5, 0.6) + 0.01) * (r < 1.3)
    kT = 2.0 + np.cos(th)
    z = redshift_from_velocity(2000.0 * y)
    return _mix((_norm(amp), thermal(edges, kT, z=z, sigma_v_kms=np.full_like(r, 300.0))))


def cluster(edges, n, data_dir=None):
    """β-model cluster (z = 0.05), kT 6 → 3 keV outward, a bulk shear ±600 km/s across x and
    line broadening σ_v 100 → 600 km/s outward."""
    r, _, x, _ = _coords(n)
    rng = np.random.default_rng(12)
    amp = (1 + (r / 0.25) ** 2) ** (0.5 - 3 * 2 / 3) * _lognormal(n, rng, 2.0, 0.05)
    kT = 3.0 + 3.0 / (1 + (r / 0.6) ** 2)
    z = (1 + 0.05) * (1 + redshift_from_velocity(600.0 * x)) - 1
    return _mix((_norm(amp), thermal(edges, kT, z=z, abundance=np.full_like(r, 0.3),
                                     sigma_v_kms=100.0 + 500.0 * np.clip(r, 0, 1))))


def filaments(edges, n, data_dir=None):
    """Thin power-law filaments (Γ 2 → 3 along them) over faint thermal emission that has lines
    in the left half of the field and none (abundance 0: continuum only) in the right half."""
    r, _, x, y = _coords(n)
    fil = np.zeros((n, n))
    for k, (a, b, c) in enumerate([(0.8, 0.3, 0.0), (-0.5, -0.2, 1.0), (0.2, -0.6, 2.0)]):
        d = y - (a * x ** 2 + b * x + 0.3 * np.sin(3 * x + c))     # distance to a curve y = f(x)
        fil += np.exp(-0.5 * (d / 0.04) ** 2) * (0.5 + 0.5 * k)
    index = 2.0 + 0.5 * (x + 1)
    diffuse = 0.3 * np.exp(-0.5 * (r / 0.7) ** 2)
    abundance = np.where(x < 0, 1.0, 0.0)
    return _mix((_norm(fil) * 0.7, powerlaw(edges, index)),
                (_norm(diffuse) * 0.3, thermal(edges, np.full_like(r, 2.5), abundance=abundance)))


def points(edges, n, data_dir=None):
    """Six point sources (power laws, Γ 1.5–2.5, continuum only) on diffuse 4 keV plasma."""
    r, _, _, _ = _coords(n)
    rng = np.random.default_rng(14)
    pts = np.zeros((n, n))
    index = np.full((n, n), 2.0)
    for k in range(6):
        iy, ix = rng.integers(3, n - 3, size=2)
        pts[iy, ix] += 0.5 + k / 5
        index[iy, ix] = 1.5 + 0.2 * k
    diffuse = np.exp(-0.5 * (r / 0.8) ** 2) * _lognormal(n, rng, 3.0, 0.2)
    return _mix((0.5 * _norm(pts), powerlaw(edges, index)),
                (0.5 * _norm(diffuse), thermal(edges, np.full_like(r, 4.0), sigma_v_kms=np.full_like(r, 200.0))))


def knots(edges, n, data_dir=None):
    """Five Gaussian knots of different sizes, each with its own kT (3–7 keV) and velocity
    (−1500…+1500 km/s), on a faint 5 keV floor."""
    r, _, x, y = _coords(n)
    amp = np.full((n, n), 0.02)
    kT = np.full((n, n), 5.0)
    v = np.zeros((n, n))
    for k, (cy, cx, s) in enumerate([(-0.5, -0.5, 0.08), (0.4, -0.3, 0.15), (0.0, 0.5, 0.1),
                                     (-0.6, 0.4, 0.2), (0.6, 0.6, 0.06)]):
        g = np.exp(-0.5 * ((x - cx) ** 2 + (y - cy) ** 2) / s ** 2)
        amp += g
        kT = np.where(g > 0.3, 3.0 + k, kT)
        v = np.where(g > 0.3, -1500.0 + 750.0 * k, v)
    return _mix((_norm(amp), thermal(edges, kT, z=redshift_from_velocity(v), sigma_v_kms=np.full_like(r, 150.0))))


def broadening(edges, n, data_dir=None):
    """A smooth disk whose lines broaden from σ_v = 0 to 2000 km/s across x; its bottom third
    is continuum only (abundance 0)."""
    r, _, x, y = _coords(n)
    amp = np.exp(-0.5 * (r / 0.6) ** 2) + 0.05
    abundance = np.where(y < -1 / 3, 0.0, 1.0)
    return _mix((_norm(amp), thermal(edges, np.full_like(r, 5.0), abundance=abundance,
                                     sigma_v_kms=1000.0 * (x + 1))))


def casa_real(edges, n, data_dir):
    """Cas A: its Chandra 1.5–3 and 4–6 keV images (2007) set the brightness and, through their
    ratio, kT (1–3 keV, by rank of the hardness) and a synchrotron fraction (up to 0.4 where the
    hard band dominates); a velocity dipole ±2500 km/s; σ_v 500 km/s."""
    soft = _real_image(data_dir, "casa_1p5_3p0_keV.fits.gz", 960, n)
    hard = _real_image(data_dir, "casa_4p0_6p0_keV.fits.gz", 960, n)
    r, _, x, y = _coords(n)
    total = soft + hard + 1e-3 * (soft + hard).mean()
    hardness = hard / total
    rank = _rank(hardness)
    kT, sync = 1.0 + 2.0 * rank, 0.4 * rank ** 3
    z = redshift_from_velocity(2500.0 * (0.7 * x + 0.7 * y))
    nh = np.full_like(r, 1.3)
    return absorption(edges, nh) * _mix(((1 - sync) * _norm(total), thermal(edges, kT, z=z, sigma_v_kms=np.full_like(r, 500.0))),
                                        (sync * _norm(total), powerlaw(edges, 2.3 + 0.8 * (1 - rank))))


def crab_real(edges, n, data_dir):
    """The Crab (Chandra 0.3–10 keV image, 2001): continuum only, a power law whose index goes
    from 1.9 at the brightest pixels to 2.6 in the faintest (by brightness rank), N_H 0.35e22."""
    img = _real_image(data_dir, "crab_0p3_10p0_keV.fits.gz", 1024, n) + 1e-4
    rank = _rank(img)
    return absorption(edges, np.full((n, n), 0.35)) * _mix((_norm(img), powerlaw(edges, 2.6 - 0.7 * rank)))


def tycho_real(edges, n, data_dir):
    """Tycho (Chandra 4.1–6.1 keV image, 2003): thermal Fe-rich ejecta (kT 2–4 keV, abundance 3)
    with σ_v 1500 km/s at the centre falling to 300 at the rim, a velocity dipole ±3000 km/s,
    and a power-law rim (Γ 2.7) on the outer fifth."""
    img = _real_image(data_dir, "tycho_4p1_6p1_keV.fits.gz", 640, n) + 1e-4
    r, _, x, _ = _coords(n)
    rim = np.clip((r - 0.6) / 0.3, 0, 1) * 0.5
    kT = 2.0 + 2.0 * np.clip(r, 0, 1)
    z = redshift_from_velocity(3000.0 * x * np.clip(1 - r, 0, 1))
    sig = 300.0 + 1200.0 * np.clip(1 - r, 0, 1)
    return _mix(((1 - rim) * _norm(img), thermal(edges, kT, z=z, abundance=np.full_like(r, 3.0), sigma_v_kms=sig)),
                (rim * _norm(img), powerlaw(edges, np.full_like(r, 2.7))))


PN_RESOLVE = {"imager": "xmm_epic_pn", "spectrometer": "xrism_resolve"}
ACIS_RESOLVE = {"imager": "chandra_acis_s", "spectrometer": "xrism_resolve", "imager_exposure_s": 5.0e4}
PN_XIFU = {"imager": "xmm_epic_pn", "spectrometer": "athena_xifu", "spectrometer_exposure_s": 1.0e5}
FICT = {"imager": "suite_imager", "spectrometer": "suite_calorimeter"}

SCENES: dict[str, SceneSpec] = {s.name: s for s in [
    SceneSpec("shell", "clumpy shell, lines shifted by a ±2000 km/s dipole", (2.0, 8.0), 240, 30, 4.1, 1e6,
              Pair(**PN_RESOLVE, spectral_rebin=8, spatial_rebin=3), shell),
    SceneSpec("cluster", "β cluster, shear ±600 km/s, σ_v 100→600 km/s", (5.6, 7.2), 200, 32, 4.1, 1e7,
              Pair(**PN_RESOLVE, spectral_rebin=10, spatial_rebin=4), cluster),
    SceneSpec("filaments", "power-law filaments on diffuse plasma, right half line-free", (2.0, 7.0), 200, 32, 2.0,
              1e5, Pair(**ACIS_RESOLVE, spectral_rebin=8, spatial_rebin=4), filaments),
    SceneSpec("points", "6 power-law points on diffuse 4 keV plasma", (5.6, 7.2), 160, 32, 2.05, 3e6,
              Pair(**PN_XIFU, spectral_rebin=16, spatial_rebin=2), points),
    SceneSpec("knots", "5 low-count knots, kT 3–7 keV, ±1500 km/s", (6.0, 7.2), 200, 30, 4.0, 1e5,
              Pair(**FICT, spectral_rebin=40, spatial_rebin=5), knots),
    SceneSpec("broadening", "disk, σ_v 0→2000 km/s across, bottom third line-free", (6.3, 7.1), 160, 30, 4.0, 1e7,
              Pair(**FICT, spectral_rebin=4, spatial_rebin=2), broadening),
    SceneSpec("casa_real", "Cas A Chandra images: kT and synchrotron from hardness", (1.8, 7.0), 208, 32, 14.76,
              3e7, Pair(**ACIS_RESOLVE, spectral_rebin=8, spatial_rebin=2), casa_real,
              data_file="casa_4p0_6p0_keV.fits.gz"),
    SceneSpec("crab_real", "Crab Chandra image, power law Γ 1.9→2.6, no lines", (2.0, 10.0), 200, 32, 7.87, 1e8,
              Pair(**PN_XIFU, spectral_rebin=5, spatial_rebin=2), crab_real, data_file="crab_0p3_10p0_keV.fits.gz"),
    SceneSpec("tycho_real", "Tycho Chandra image, Fe ejecta, σ_v 1500→300 km/s", (5.8, 7.0), 240, 32, 19.68, 1e6,
              Pair(**FICT, spectral_rebin=20, spatial_rebin=2), tycho_real, data_file="tycho_4p1_6p1_keV.fits.gz"),
]}


# -- held-out scenes -----------------------------------------------------------------------
# Written on 2026-12-08, after every default of the fusion run had been chosen, and run once
# with those defaults: nothing was chosen on them. `bench/fusion_suite.py --scenes` takes them
# by name; the default list is SCENES only.
def bipolar(edges, n, data_dir=None):
    """Two lobes along a tilted axis receding and approaching at ±1500 km/s, kT 1.2 → 3 keV
    along the axis, σ_v 400 km/s, and a compact power-law core (Γ 1.8, 10 % of the flux)."""
    r, _, x, y = _coords(n)
    rng = np.random.default_rng(21)
    u, w = 0.8 * x + 0.6 * y, -0.6 * x + 0.8 * y            # along and across the axis
    lobes = np.exp(-0.5 * ((np.abs(u) - 0.45) / 0.2) ** 2 - 0.5 * (w / 0.22) ** 2) * _lognormal(n, rng, 1.5, 0.4)
    kT = 2.1 + 0.9 * np.clip(u, -1, 1)
    z = redshift_from_velocity(1500.0 * np.tanh(4 * u))
    core = np.exp(-0.5 * (r / 0.06) ** 2)
    return _mix((0.9 * _norm(lobes), thermal(edges, kT, z=z, sigma_v_kms=np.full_like(r, 400.0))),
                (0.1 * _norm(core), powerlaw(edges, np.full_like(r, 1.8))))


def cool_core(edges, n, data_dir=None):
    """A cool-core cluster at z = 0.02: kT 2 keV in the core rising to 7 keV, abundance 0.8 →
    0.3 outward, a sloshing spiral of ±300 km/s, σ_v 150 km/s; few counts."""
    r, th, _, _ = _coords(n)
    amp = (1 + (r / 0.15) ** 2) ** -1.5 + 0.02
    kT = 7.0 - 5.0 / (1 + (r / 0.3) ** 2)
    abundance = 0.3 + 0.5 / (1 + (r / 0.3) ** 2)
    v = 300.0 * np.sin(th + 6.0 * r)
    z = (1 + 0.02) * (1 + redshift_from_velocity(v)) - 1
    return _mix((_norm(amp), thermal(edges, kT, z=z, abundance=abundance, sigma_v_kms=np.full_like(r, 150.0))))


def pwn_shell(edges, n, data_dir=None):
    """A power-law nebula (elliptical, Γ 1.6 at its centre → 2.3 at its edge) inside a thin,
    clumpy thermal shell (kT 0.9 keV, Si and S lines) that holds 60 % of the flux."""
    r, _, x, y = _coords(n)
    rng = np.random.default_rng(23)
    q = np.hypot(x / 0.3, y / 0.18)
    nebula = np.exp(-0.5 * q ** 2)
    shell_ = np.exp(-0.5 * ((r - 0.75) / 0.06) ** 2) * _lognormal(n, rng, 1.0, 0.7)
    return _mix((0.4 * _norm(nebula), powerlaw(edges, 1.6 + 0.7 * np.clip(q / 2, 0, 1))),
                (0.6 * _norm(shell_), thermal(edges, np.full_like(r, 0.9), sigma_v_kms=np.full_like(r, 200.0))))


HELD_OUT: dict[str, SceneSpec] = {s.name: s for s in [
    SceneSpec("bipolar", "bipolar lobes ±1500 km/s, kT 1.2→3 keV, a power-law core", (1.7, 4.3), 210, 30, 4.1, 3e6,
              Pair(**ACIS_RESOLVE, spectral_rebin=6, spatial_rebin=3), bipolar),
    SceneSpec("cool_core", "cool-core cluster, kT 2→7 keV, sloshing ±300 km/s, few counts", (5.8, 7.2), 180, 30, 4.1,
              3e5, Pair(**PN_RESOLVE, spectral_rebin=12, spatial_rebin=3), cool_core),
    SceneSpec("pwn_shell", "power-law nebula Γ 1.6→2.3 inside a 0.9 keV shell", (1.6, 3.0), 200, 32, 4.0, 1e7,
              Pair(**FICT, spectral_rebin=10, spatial_rebin=4), pwn_shell),
]}
ALL_SCENES: dict[str, SceneSpec] = {**SCENES, **HELD_OUT}


def missing_data(spec: SceneSpec, data_dir: Path = SHARED_DATA) -> str | None:
    """Why ``spec`` cannot be built here (its shared file is absent), or None."""
    if spec.data_file is None or (data_dir / spec.data_file).exists():
        return None
    return f"{spec.name}: skipped, {data_dir / spec.data_file} is absent (real Chandra data, ../shared)."


def edges_of(spec: SceneSpec) -> np.ndarray:
    return np.linspace(spec.band_kev[0], spec.band_kev[1], spec.bins + 1)


def instrument_ref(name: str, folder: Path) -> str:
    """A shipped name as it is; a fictional one as the TOML written into ``folder``."""
    return f"{name}.toml" if name in FICTIONAL else name


def observations(spec: SceneSpec, folder: Path) -> list[dict]:
    p = spec.pair
    return [{"name": "imager", "instrument": instrument_ref(p.imager, folder), "exposure_s": p.imager_exposure_s,
             "spectral_rebin": p.spectral_rebin},
            {"name": "spectrometer", "instrument": instrument_ref(p.spectrometer, folder),
             "exposure_s": p.spectrometer_exposure_s, "spatial_rebin": p.spatial_rebin}]


def expected_counts(cube: np.ndarray, spec: SceneSpec, folder: Path) -> dict[str, float]:
    """Σ A_k Z of each observation (the compiled forward operators, float64)."""
    from xhsi.instruments import compile_forward

    out = {}
    for obs in observations(spec, folder):
        ref = obs["instrument"]
        inst = folder / ref if ref.endswith(".toml") else ref
        fwd = compile_forward(inst, edges_of(spec), (spec.pixels, spec.pixels), spec.pixel_arcsec,
                              exposure_s=obs["exposure_s"], spatial_rebin=obs.get("spatial_rebin", 1),
                              spectral_rebin=obs.get("spectral_rebin", 1))
        out[obs["name"]] = float(np.sum(np.asarray(fwd.apply(cube))))
    return out


def write_scene(spec: SceneSpec, folder: Path, data_dir: Path = SHARED_DATA) -> tuple[Path, np.ndarray]:
    """Write the scene's truth, fictional instruments and untuned config into ``folder``;
    return (config path, truth cube in photons / s / cm² per bin per pixel)."""
    from xhsi.io.cubes import write_cube
    from xhsi.tomlio import dumps_toml

    folder.mkdir(parents=True, exist_ok=True)
    for name in (spec.pair.imager, spec.pair.spectrometer):
        if name in FICTIONAL:
            (folder / f"{name}.toml").write_text(dumps_toml(FICTIONAL[name]))
    edges = edges_of(spec)
    cube = np.asarray(spec.build(edges, spec.pixels, data_dir), dtype=np.float64)
    counts = expected_counts(cube, spec, folder)
    cube *= spec.counts / sum(counts.values())
    write_cube(folder / "truth.fits", cube.astype(np.float32), edges, pixel_arcsec=spec.pixel_arcsec,
               bunit="photon / (s cm2)")
    config = {
        "run": {"problem": "fusion", "output": "run", "backend": "numpy", "dtype": "float32", "seed": 0,
                "quicklook": False, "checkpoint_every": 0},
        "model": {"energy": {"min_kev": spec.band_kev[0], "max_kev": spec.band_kev[1], "bins": spec.bins},
                  "pixels": [spec.pixels, spec.pixels], "pixel_arcsec": spec.pixel_arcsec},
        "observations": observations(spec, folder),
        "simulate": {"scene": "fits", "options": {"path": "truth.fits"}},
    }
    for kind, regs in UNTUNED.items():
        extra = {"problem": PROBLEM[kind]} if kind in PROBLEM else {}
        text = dumps_toml({**config, **extra, "regularizers": regs} if regs is not None else {**config, **extra})
        (folder / config_name(kind)).write_text(f"# fusion suite scene `{spec.name}`: {spec.what}; untuned config "
                                                f"`{kind}`, written by bench/suite_scenes.py\n" + text)
    return folder / config_name("none"), cube.astype(np.float32)


#: The untuned configs of each scene (what a user who tunes nothing writes): no regulariser
#: and no [solver] at all (`none`: since 2026-12-07 the run then chooses the regularisers of
#: `lowrank`, xhsi.selection.candidates.DEFAULT_REGULARIZERS); `regularizers = []` written
#: (`stop`: no regulariser, the stopping iteration chosen; what `none` was before);
#: regularisers named without options (the low-rank and the 2D-1D recipes of
#: docs/fusion.md, untuned).
UNTUNED: dict[str, list[dict] | None] = {
    "none": None,
    "stop": [],
    "lowrank": [{"name": "lowrank_pca"}, {"name": "sobolev"}],
    "starlet": [{"name": "starlet2d1d_l1"}],
    "lowrank_absolute": [{"name": "lowrank_pca"}, {"name": "sobolev"}],
    "lowrank_passes2": [{"name": "lowrank_pca"}, {"name": "sobolev"}],
}
#: [problem] options of an untuned config, where it sets any: `lowrank_absolute`, the same
#: regularisers on the cube itself instead of relative to the start's brightness (the default
#: since 2026-12-07; docs/fusion.md "Relative regularisation"; the suite's `lowrank` rows before
#: that date are this config).
PROBLEM: dict[str, dict] = {"lowrank_absolute": {"regularize": "absolute"},
                            "lowrank_passes2": {"basis_passes": 2}}


def config_name(kind: str) -> str:
    return "config.toml" if kind == "none" else f"config_{kind}.toml"
