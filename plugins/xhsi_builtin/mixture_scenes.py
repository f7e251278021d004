"""Two more physical scenes for unmixing (thermal plasma + synchrotron power law), registered
by ``xhsi_builtin.scenes``:

- ``boundary``: temperature and line-of-sight velocity that jump across a straight line
  (e.g. shocked ejecta against shocked ambient gas at a contact discontinuity), over a
  clumpy disc, plus a smooth synchrotron component whose index varies along the line.
- ``image_components``: amplitude maps taken from two real images (FITS, any 2-D image:
  a band image whose pixels follow the thermal emission and one that follows the hard
  emission), temperature and photon index from their hardness ratio, and a smooth
  velocity gradient.

Sizes are fractions of the half-width of the field (r = 1 at the middle of the shorter
edge), as in ``xhsi_builtin.scenes``; physical values (keV, km/s) carry their sources.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from xhsi.backend import Backend
from xhsi.errors import DataError
from xhsi.grid import ModelGrid
from xhsi.schema import option
from xhsi.simulate import Scene, SceneTruth
from xhsi.spectral import spectra

from .scenes import pixel_coordinates, smooth_field, thermal_and_powerlaw


def _direction(yy, xx, angle_deg: float):
    """Coordinates along (u) and across (w) the direction at ``angle_deg`` from +x."""
    a = np.deg2rad(angle_deg)
    return xx * np.cos(a) + yy * np.sin(a), -xx * np.sin(a) + yy * np.cos(a)


def _split(total_flux: float, synchrotron_fraction: float, thermal: np.ndarray, sync: np.ndarray) -> dict:
    f_sync = total_flux * synchrotron_fraction
    return {"thermal_amplitude": (total_flux - f_sync) * thermal / thermal.sum(),
            "synchrotron_amplitude": f_sync * sync / sync.sum()}


# -- boundary -------------------------------------------------------------------------
class Boundary(Scene):
    """Thermal plasma whose kT and z jump across a straight line, plus a synchrotron component.

    The line is at signed distance ``boundary_offset`` from the field centre, its normal at
    ``boundary_angle_deg`` from +x. On side a (behind the line) kT = ``kT_a_keV`` and the
    line-of-sight speed is ``velocity_a_kms``, on side b ``kT_b_keV`` and ``velocity_b_kms``;
    each side's kT and speed also vary by ±``gradient`` (fraction) along the line, so the
    maps are not piecewise constant. Thermal amplitude: a disc of radius ``radius`` (soft
    edge) times seeded log-normal clumps (rms ``clumpiness`` e-folds, correlation length
    ``clump_scale_px``). Synchrotron: a broad Gaussian of width ``radius``/2 centred on the
    line plus 10 % of the disc; its photon index goes linearly from ``index_start`` to
    ``index_end`` along the line (Cas A rim filaments: Γ ≈ 2.5–3.2, Helder & Vink 2008,
    ApJ 686, 1094). Defaults: Cas A ejecta kT ~1–3 keV (Hwang & Laming 2012, ApJ 746, 130),
    Doppler speeds of ±2000–4000 km/s across the remnant (DeLaney et al. 2010, ApJ 725, 2038).

    Truth: components ``thermal`` (``kT`` (keV), ``z``) and ``synchrotron`` (``index``)."""

    name = "boundary"

    @dataclass
    class Options:
        total_flux: float = option(1.0, unit="photons/s/cm2", min=0.0, exclusive_min=True,
                                   doc="photon flux of the whole scene over the model energy grid")
        synchrotron_fraction: float = option(0.25, min=0.0, max=1.0, doc="share of total_flux in the synchrotron component")
        radius: float = option(0.8, min=0.0, exclusive_min=True, doc="radius of the thermal disc, fraction of half the field side")
        clumpiness: float = option(0.4, min=0.0, doc="rms of the log-normal clump modulation (e-folds)")
        clump_scale_px: float = option(1.5, unit="pixels", min=0.0, exclusive_min=True, doc="correlation length of the clumps")
        boundary_angle_deg: float = option(30.0, unit="deg", doc="direction of the line's normal, from +x")
        boundary_offset: float = option(0.1, doc="signed distance of the line from the centre, fraction of half the field side")
        kT_a_keV: float = option(1.5, unit="keV", min=0.0, exclusive_min=True, doc="temperature behind the line")
        kT_b_keV: float = option(3.0, unit="keV", min=0.0, exclusive_min=True, doc="temperature beyond the line")
        velocity_a_kms: float = option(-1500.0, unit="km/s", min=-30000.0, max=30000.0, doc="line-of-sight speed behind the line")
        velocity_b_kms: float = option(1500.0, unit="km/s", min=-30000.0, max=30000.0, doc="line-of-sight speed beyond the line")
        gradient: float = option(0.1, min=0.0, max=0.5, doc="relative change of kT and speed along the line, each way")
        abundance: float = option(1.0, min=0.0, doc="line strengths relative to solar")
        sigma_v_kms: float = option(0.0, unit="km/s", min=0.0, doc="velocity dispersion broadening the thermal lines")
        index_start: float = option(2.3, min=0.0, doc="photon index at one end of the line")
        index_end: float = option(3.1, min=0.0, doc="photon index at the other end")
        nh_1e22: float = option(0.0, unit="1e22 cm-2", min=0.0, doc="foreground absorption column")
        seed: int = option(0, min=0, doc="seed of the clumps")

    def maps(self, grid: ModelGrid) -> dict[str, np.ndarray]:
        """Host maps (float64, ``(ny, nx)``): ``thermal_amplitude``, ``kT_keV``, ``z``,
        ``synchrotron_amplitude``, ``index``."""
        o = self.options
        yy, xx = pixel_coordinates(grid)
        u, w = _direction(yy, xx, o.boundary_angle_deg)
        along = np.clip(w, -1.0, 1.0)
        side_b = u > o.boundary_offset
        rng = np.random.default_rng(o.seed)
        field = smooth_field(rng, u.shape, o.clump_scale_px)
        disc = 1.0 / (1.0 + np.exp((np.hypot(yy, xx) - o.radius) / 0.05))
        thermal = disc * np.exp(o.clumpiness * field) + 1e-3
        sync = np.exp(-0.5 * ((u - o.boundary_offset) / (0.5 * o.radius)) ** 2) + 0.1 * disc + 1e-3
        kT = np.where(side_b, o.kT_b_keV, o.kT_a_keV) * (1.0 + o.gradient * along)
        v = np.where(side_b, o.velocity_b_kms, o.velocity_a_kms) * (1.0 + o.gradient * along)
        index = o.index_start + (o.index_end - o.index_start) * 0.5 * (along + 1.0)
        return {**_split(o.total_flux, o.synchrotron_fraction, thermal, sync), "kT_keV": kT,
                "z": spectra.redshift_from_velocity(v), "index": index}

    def generate_components(self, grid: ModelGrid, backend: Backend) -> SceneTruth:
        o = self.options
        return thermal_and_powerlaw(grid, backend, self.maps(grid), o.abundance, o.sigma_v_kms, o.nh_1e22)


# -- image_components -----------------------------------------------------------------
def read_template(path: Path, hdu: int, crop: int, ny: int, nx: int) -> np.ndarray:
    """The centred ``crop`` × ``crop`` pixels of a 2-D FITS image (0: the largest centred
    square), summed in b × b blocks onto ``(ny, nx)`` (b = crop // max(ny, nx); the centred
    ny·b × nx·b pixels are used). NaN and negative pixels count as 0. DataError if the file
    is missing or not a 2-D image at least as large as the grid, or sums to 0."""
    from astropy.io import fits

    path = Path(path)
    if not path.is_file():
        raise DataError(f"image template {path} does not exist: give the path of a 2-D FITS image.")
    try:
        with fits.open(path) as hdul:
            if hdu >= len(hdul):
                raise DataError(f"image template {path} has {len(hdul)} HDU(s); `hdu = {hdu}` does not exist.")
            data = hdul[hdu].data
            img = None if data is None else np.squeeze(np.asarray(data, dtype=np.float64))
    except OSError as exc:
        raise DataError(f"image template {path} is not a readable FITS file ({exc}).") from exc
    if img is None or img.ndim != 2:
        raise DataError(f"image template {path} HDU {hdu} is not a 2-D image "
                        f"(shape {None if img is None else img.shape}); give a 2-D image HDU with `hdu`.")
    side = crop or min(img.shape)
    b = side // max(ny, nx)
    if side > min(img.shape) or b < 1:
        raise DataError(f"image template {path} ({img.shape[0]} x {img.shape[1]} pixels) cannot give a centred "
                        f"{side} x {side} crop of at least the grid's {ny} x {nx} pixels: lower `crop` or the grid.")
    cy, cx = img.shape[0] // 2, img.shape[1] // 2
    img = img[cy - ny * b // 2: cy - ny * b // 2 + ny * b, cx - nx * b // 2: cx - nx * b // 2 + nx * b]
    img = np.clip(np.nan_to_num(img, nan=0.0, posinf=0.0, neginf=0.0), 0.0, None)
    out = img.reshape(ny, b, nx, b).sum(axis=(1, 3))
    if not out.sum() > 0:
        raise DataError(f"image template {path}: the crop sums to 0 (no positive pixel); choose another `crop`.")
    return out


class ImageComponents(Scene):
    """Thermal and synchrotron amplitudes from two real images (amplitude templates).

    ``thermal_image`` and ``synchrotron_image`` (2-D FITS, HDU ``hdu``) are cropped to their
    centred ``crop`` × ``crop`` pixels and summed onto the model grid (``read_template``);
    each, plus ``floor`` × its mean, is the shape of its component's amplitude, and the
    fluxes are split by ``synchrotron_fraction``. The hardness h = S/(T+S) of the two
    normalised templates, smoothed by a Gaussian of ``hardness_smooth_px`` pixels, ranked
    over the field into [0, 1], sets kT = kT_min + (kT_max − kT_min)·rank and the photon
    index = index_max − (index_max − index_min)·rank (harder: hotter plasma, flatter
    synchrotron). The line-of-sight speed is a linear gradient reaching ±``max_velocity_kms``
    at the field's edge along ``velocity_angle_deg``. E.g. Cas A's Chandra 1.5–3 keV
    (Si/S lines: thermal) and 4–6 keV (continuum, synchrotron rims) band images.

    Truth: components ``thermal`` (``kT`` (keV), ``z``) and ``synchrotron`` (``index``)."""

    name = "image_components"

    @dataclass
    class Options:
        thermal_image: Path = option(doc="2-D FITS image whose pixels follow the thermal emission")
        synchrotron_image: Path = option(doc="2-D FITS image whose pixels follow the synchrotron emission")
        hdu: int = option(0, min=0, doc="HDU of both images")
        crop: int = option(0, unit="image pixels", min=0, doc="side of the centred square used (0: the largest)")
        floor: float = option(1e-3, min=0.0, doc="added to each template, times its mean (keeps amplitudes > 0)")
        total_flux: float = option(1.0, unit="photons/s/cm2", min=0.0, exclusive_min=True,
                                   doc="photon flux of the whole scene over the model energy grid")
        synchrotron_fraction: float = option(0.25, min=0.0, max=1.0, doc="share of total_flux in the synchrotron component")
        hardness_smooth_px: float = option(1.0, unit="pixels", min=0.0, doc="Gaussian smoothing of the hardness map")
        kT_min_keV: float = option(1.0, unit="keV", min=0.0, exclusive_min=True,
                                   doc="softest temperature (Cas A ejecta ~1-3 keV, Hwang & Laming 2012, ApJ 746, 130)")
        kT_max_keV: float = option(3.0, unit="keV", min=0.0, exclusive_min=True, doc="hardest temperature")
        index_min: float = option(2.3, min=0.0, doc="flattest photon index (Cas A rims 2.5-3.2, Helder & Vink 2008)")
        index_max: float = option(3.1, min=0.0, doc="steepest photon index")
        max_velocity_kms: float = option(2000.0, unit="km/s", min=0.0, max=30000.0, doc="line-of-sight speed at the edge")
        velocity_angle_deg: float = option(45.0, unit="deg", doc="direction of the velocity gradient, from +x")
        abundance: float = option(1.0, min=0.0, doc="line strengths relative to solar")
        sigma_v_kms: float = option(0.0, unit="km/s", min=0.0, doc="velocity dispersion broadening the thermal lines")
        nh_1e22: float = option(0.0, unit="1e22 cm-2", min=0.0, doc="foreground absorption column")

        def check(self):
            if self.kT_max_keV < self.kT_min_keV:
                raise ValueError(f"kT_max_keV ({self.kT_max_keV}) must be >= kT_min_keV ({self.kT_min_keV}).")
            if self.index_max < self.index_min:
                raise ValueError(f"index_max ({self.index_max}) must be >= index_min ({self.index_min}).")

    def _templates(self, grid: ModelGrid):
        o = self.options
        return [read_template(p, o.hdu, o.crop, grid.ny, grid.nx) for p in (o.thermal_image, o.synchrotron_image)]

    def check(self, grid: ModelGrid) -> None:
        self._templates(grid)

    def maps(self, grid: ModelGrid) -> dict[str, np.ndarray]:
        """Host maps (float64, ``(ny, nx)``), as ``Boundary.maps``."""
        o = self.options
        t, s = (img / img.sum() for img in self._templates(grid))
        t, s = t + o.floor * t.mean(), s + o.floor * s.mean()
        hardness = ndimage.gaussian_filter(s / (t + s), sigma=o.hardness_smooth_px, mode="nearest")
        rank = np.argsort(np.argsort(hardness.ravel(), kind="stable")).reshape(hardness.shape) / max(hardness.size - 1, 1)
        yy, xx = pixel_coordinates(grid)
        u, _ = _direction(yy, xx, o.velocity_angle_deg)
        v = o.max_velocity_kms * u / max(float(np.abs(u).max()), 1e-300)
        return {**_split(o.total_flux, o.synchrotron_fraction, t, s),
                "kT_keV": o.kT_min_keV + (o.kT_max_keV - o.kT_min_keV) * rank,
                "z": spectra.redshift_from_velocity(v),
                "index": o.index_max - (o.index_max - o.index_min) * rank}

    def generate_components(self, grid: ModelGrid, backend: Backend) -> SceneTruth:
        o = self.options
        return thermal_and_powerlaw(grid, backend, self.maps(grid), o.abundance, o.sigma_v_kms, o.nh_1e22)
