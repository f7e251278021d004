"""The :class:`Instrument`: a validated instrument file with its responses loaded, and
what the rest of xhsi asks of it (channels, redistribution, effective area, PSF kernels,
background, descriptions).

Over 500 lines because the class is one concept whose methods share the validated spec and
the loaded responses; its helpers live in ``response.py`` and ``schema.py``."""
from __future__ import annotations

import math
import warnings
from functools import cached_property
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..errors import ConfigError, DataError, ShapeError
from .response import (ARCSEC_PER_ARCMIN, FWHM_PER_SIGMA, SUPERSAMPLE, SUPERSAMPLED_HALF, as_function, block_sum,
                       check_edges, crop_kernel, energy_dependent, gaussian_redistribution, kernel_half, normalise_kernel,
                       image_peak_centre, overlap_matrix, read_response, resample_axis, supersampled_radius2)
from .schema import EnergyTable, InstrumentFile

RESOLUTION_REFERENCE_KEV = 6.0  # energy at which listings quote the resolution (Fe K band)
_GRID_RTOL = 1e-5  # relative tolerance when comparing energy grids of two files


class Instrument:
    """A validated instrument description with its response files loaded.

    Build one with :func:`load_instrument`. The arrays it returns are numpy float64 (calibration
    data, host side); ``compile_forward`` moves what it needs to the run's backend once."""

    def __init__(self, spec: InstrumentFile, path: Path | None = None):
        self.spec = spec
        self.path = Path(path) if path is not None else None
        self._file = str(self.path) if self.path else "<instrument>"
        self.rmf = None
        self.arf = None
        self._find_files()
        self._read_responses()
        self._check_band()

    # -- identity -----------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.instrument.name

    @property
    def mission(self) -> str:
        return self.spec.instrument.mission

    @property
    def detector(self) -> str:
        return self.spec.instrument.detector

    @property
    def references(self) -> list[str]:
        return list(self.spec.instrument.references)

    @property
    def pixel_arcsec(self) -> float:
        return self.spec.spatial.pixel_arcsec

    @property
    def background_rate(self) -> float:
        """Flat background in counts / s / keV / arcmin²."""
        return self.spec.background.rate

    @property
    def spectral_kind(self) -> str:
        return self.spec.spectral_response.kind

    def __repr__(self) -> str:
        return f"Instrument({self.name!r}, {self._file})"

    def _error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self._file}: `{key}`: {message}")

    # -- files --------------------------------------------------------------------------
    def _find_files(self) -> None:
        sr, ea, psf = self.spec.spectral_response, self.spec.effective_area, self.spec.psf
        for section, key in ((sr, "spectral_response"), (ea, "effective_area"), (psf, "psf")):
            path = section.file
            if path is None or Path(path).is_file():
                continue
            shipped = self._shipped(path)
            if shipped is None:
                raise self._error(f"{key}.file", f"the file {path} does not exist (a relative path is taken from the "
                                                 "TOML's folder, then from xhsi's shipped instruments folder).")
            section.file = shipped

    def _shipped(self, path: Path) -> Path | None:
        """``path`` relative to the TOML's folder, looked up in the shipped instruments folder
        instead: a copy of a shipped TOML placed anywhere keeps finding its response files."""
        if self.path is None:
            return None
        try:
            rel = Path(path).relative_to(self.path.parent)
        except ValueError:
            return None
        try:
            from importlib import resources

            candidate = Path(str(resources.files("xhsi_instruments"))) / rel
        except (ModuleNotFoundError, TypeError):
            return None
        return candidate if candidate.is_file() else None

    def _read_responses(self) -> None:
        sr, ea = self.spec.spectral_response, self.spec.effective_area
        try:
            if sr.kind == "rmf":
                self.rmf = read_response("rmf", sr.file)
            if ea.kind == "arf":
                self.arf = read_response("arf", ea.file)
        except DataError as exc:
            key = "spectral_response.file" if self.rmf is None and sr.kind == "rmf" else "effective_area.file"
            raise DataError(f"{self._file}: `{key}`: {exc}") from None
        if self.rmf is not None and self.arf is not None:
            r, a = self.rmf, self.arf
            same = r.energ_lo.size == a.energ_lo.size and np.allclose(r.energ_lo, a.energ_lo, rtol=_GRID_RTOL) \
                and np.allclose(r.energ_hi, a.energ_hi, rtol=_GRID_RTOL)
            if not same:
                raise DataError(
                    f"{self._file}: `effective_area.file` {a.path} and `spectral_response.file` {r.path} have different "
                    f"true-energy grids ({a.energ_lo.size} bins {a.energ_lo[0]:.4g}–{a.energ_hi[-1]:.4g} keV vs "
                    f"{r.energ_lo.size} bins {r.energ_lo[0]:.4g}–{r.energ_hi[-1]:.4g} keV); an ARF must be made for its RMF.")

    def _check_band(self) -> None:
        """Resolve the channel band now, so that a band outside the RMF fails at load time."""
        self._channels = self._native_channels()

    # -- channels -------------------------------------------------------------------------
    def _native_channels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ch = self.spec.channels
        if self.rmf is None:
            edges = np.linspace(ch.min_kev, ch.max_kev, ch.count + 1)
            return np.arange(1, ch.count + 1), edges[:-1], edges[1:]
        r = self.rmf
        lo_all, hi_all = float(r.e_min[0]), float(r.e_max[-1])
        keep = np.ones(r.n_channels, dtype=bool)
        if ch is not None:
            tol = 1e-6
            for key, value in (("min_kev", ch.min_kev), ("max_kev", ch.max_kev)):
                if value is not None and not (lo_all - tol <= value <= hi_all + tol):
                    raise DataError(f"{self._file}: `channels.{key}` = {value} keV is outside the channels of "
                                    f"{r.path} ({lo_all:.4g}–{hi_all:.4g} keV).")
            if ch.min_kev is not None:
                keep &= r.e_min >= ch.min_kev - tol
            if ch.max_kev is not None:
                keep &= r.e_max <= ch.max_kev + tol
            if ch.count is not None and int(keep.sum()) != ch.count:
                raise DataError(f"{self._file}: `channels.count` = {ch.count} but {r.path} has {int(keep.sum())} channels "
                                f"in {ch.min_kev}–{ch.max_kev} keV; fix or remove `count`.")
        if not keep.any():
            raise DataError(f"{self._file}: no channel of {r.path} lies inside the `[channels]` band.")
        idx = np.nonzero(keep)[0]
        return r.channels[idx], r.e_min[idx], r.e_max[idx]

    def channel_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The detector channels in the instrument's band: (channel numbers, E_MIN, E_MAX keV)."""
        return tuple(a.copy() for a in self._channels)

    def channel_edges(self) -> np.ndarray:
        """Edges of the detector channels in the band, keV (n_chan + 1)."""
        _, lo, hi = self._channels
        return np.append(lo, hi[-1])

    @property
    def band_kev(self) -> tuple[float, float]:
        _, lo, hi = self._channels
        return float(lo[0]), float(hi[-1])

    # -- effective area -----------------------------------------------------------------
    def effective_area(self, energies_kev) -> np.ndarray:
        """Effective area in cm² at ``energies_kev`` (keV): table or ARF linearly interpolated
        (ARF at its bin centres; clamped to the table's end values), or the constant.
        Energies outside an ARF raise DataError naming the file."""
        e = np.asarray(energies_kev, dtype=np.float64)
        ea = self.spec.effective_area
        if ea.kind == "constant":
            return np.full(e.shape, ea.cm2)
        if ea.kind == "table":
            return np.interp(e, ea.energies_kev, ea.cm2)
        a = self.arf
        self._inside(e.min(initial=np.inf), e.max(initial=-np.inf), a.energ_lo[0], a.energ_hi[-1], "effective_area.file", a.path)
        return np.interp(e, 0.5 * (a.energ_lo + a.energ_hi), a.specresp)

    def mean_effective_area(self, model_edges_kev) -> np.ndarray:
        """Effective area in cm² averaged over each true-energy bin (ARF: overlap-weighted mean
        of its bins, which keeps sharp edges right; table/constant: value at the bin centre)."""
        edges = check_edges(model_edges_kev)
        if self.spec.effective_area.kind != "arf":
            return self.effective_area(0.5 * (edges[:-1] + edges[1:]))
        a = self.arf
        self._inside(edges[0], edges[-1], a.energ_lo[0], a.energ_hi[-1], "effective_area.file", a.path)
        w = overlap_matrix(a.energy_edges, edges)
        return (w @ a.specresp) / np.diff(edges)

    def _inside(self, lo, hi, f_lo, f_hi, key, path) -> None:
        tol = 1e-6 * max(abs(f_hi), 1.0)
        if lo < f_lo - tol or hi > f_hi + tol:
            raise DataError(f"{self._file}: `{key}`: the model energies {lo:.4g}–{hi:.4g} keV reach outside "
                            f"{path} ({f_lo:.4g}–{f_hi:.4g} keV); choose a model grid inside it.")

    # -- spectral response ------------------------------------------------------------
    def fwhm_ev(self, energies_kev) -> np.ndarray:
        """Spectral resolution FWHM in eV at ``energies_kev``: the Gaussian law, or measured on
        the RMF (width of the row above half its maximum, in channel widths)."""
        e = np.atleast_1d(np.asarray(energies_kev, dtype=np.float64))
        if self.rmf is None:
            return as_function(self.spec.spectral_response.fwhm_ev)(e)
        return np.array([self._rmf_fwhm_ev(x) for x in e])

    def _rmf_fwhm_ev(self, energy_kev: float) -> float:
        r = self.rmf
        i = int(np.clip(np.searchsorted(r.energ_hi, energy_kev), 0, r.n_energies - 1))
        row = r.matrix.getrow(i).toarray().ravel()
        widths = r.e_max - r.e_min
        if row.max() <= 0:
            return float("nan")
        # Density per keV, so that uneven channel widths do not bias the peak.
        density = row / np.where(widths > 0, widths, np.inf)
        return float(widths[density >= 0.5 * density.max()].sum() * 1000.0)

    def detector_channels(self, model_edges_kev, spectral_rebin: int | None = None,
                          channel_edges_kev=None) -> np.ndarray:
        """Edges (keV) of the channels that :meth:`redistribution` maps onto.

        - ``channel_edges_kev`` given: those (for an RMF they must fall on its channel edges);
        - ``spectral_rebin = k`` (what run configs use; default 1): one channel per k model
          bins (the top bins that do not fill a group are left out). For an RMF each of these
          edges is moved to the nearest edge of an RMF channel (channels can be grouped, not
          split), so the edges differ from the model's by less than one RMF channel;
        - ``spectral_rebin = None``: the instrument's own channels in its ``[channels]`` band."""
        model = check_edges(model_edges_kev)
        if channel_edges_kev is not None:
            return check_edges(channel_edges_kev, "channel_edges_kev")
        if spectral_rebin is None:
            return self.channel_edges()
        k = self._rebin(spectral_rebin)
        n = (model.size - 1) // k
        if n < 1:
            raise ShapeError(f"spectral_rebin = {k} is larger than the {model.size - 1} model energy bins.")
        target = model[: n * k + 1: k]
        if self.rmf is None:
            return target
        r = self.rmf
        all_edges = np.union1d(r.e_min, r.e_max)
        idx = np.clip(np.searchsorted(all_edges, target), 1, all_edges.size - 1)
        left, right = all_edges[idx - 1], all_edges[idx]
        snapped = np.where(target - left <= right - target, left, right)
        if np.any(np.diff(snapped) <= 0):
            width = float(np.median(r.e_max - r.e_min)) * 1000.0
            raise ShapeError(
                f"{self._file}: spectral_rebin = {k} makes channels of {k} model bins "
                f"({float(np.min(np.diff(target))) * 1000.0:.3g} eV), narrower than the channels of "
                f"{r.path.name} (≈ {width:.3g} eV) or outside them ({all_edges[0]:.4g}–{all_edges[-1]:.4g} keV); "
                "raise spectral_rebin or use wider model bins.")
        return snapped

    def check_model_grid(self, model_edges_kev, spectral_rebin: int | None = 1) -> np.ndarray:
        """The channel edges (keV, as :meth:`detector_channels`) of an observation on the model
        grid ``model_edges_kev`` with ``spectral_rebin``, after the checks that compiling its
        forward operator would fail on (channels, model energies inside the ARF and the RMF),
        without computing any response: the instrument part of a run's ``check_config``."""
        model = check_edges(model_edges_kev)
        channels = self.detector_channels(model, spectral_rebin)
        for key, table in (("effective_area.file", self.arf), ("spectral_response.file", self.rmf)):
            if table is not None:
                self._inside(model[0], model[-1], table.energ_lo[0], table.energ_hi[-1], key, table.path)
        return channels

    @staticmethod
    def _rebin(spectral_rebin) -> int:
        k = 1 if spectral_rebin is None else spectral_rebin
        if isinstance(k, bool) or int(k) != k or k < 1:
            raise ShapeError(f"spectral_rebin must be a positive integer, got {spectral_rebin!r}.")
        return int(k)

    def redistribution(self, model_edges_kev, spectral_rebin: int | None = None,
                       channel_edges_kev=None) -> np.ndarray | sp.csr_matrix:
        """Redistribution matrix (n_e, n_chan) from the model's true-energy bins to the
        channels of :meth:`detector_channels` (dimensionless; the area is not folded in).

        Gaussian: each bin's Gaussian (FWHM interpolated at the bin centre) integrated over
        the channel edges (dense numpy array). RMF: rows averaged over the RMF's true-energy
        bins each model bin overlaps (flat spectrum within a bin; a model bin inside one RMF
        bin takes that row), then channels summed into the output channels (scipy.sparse CSR).
        A model grid outside the RMF's energies, or output channel edges that do not fall on
        RMF channel edges, raise DataError."""
        model = check_edges(model_edges_kev)
        out_edges = self.detector_channels(model, spectral_rebin, channel_edges_kev)
        if self.rmf is None:
            centres = 0.5 * (model[:-1] + model[1:])
            return gaussian_redistribution(model, out_edges, self.fwhm_ev(centres) / 1000.0)
        r = self.rmf
        self._inside(model[0], model[-1], r.energ_lo[0], r.energ_hi[-1], "spectral_response.file", r.path)
        w = overlap_matrix(r.energy_edges, model)
        w = sp.diags(1.0 / np.diff(model)) @ w
        rows = (w @ r.matrix).tocsr()
        return (rows @ self._channel_grouping(out_edges)).tocsr()

    def _channel_grouping(self, out_edges: np.ndarray) -> sp.csr_matrix:
        """(n_rmf_chan, n_out) 0/1 matrix summing RMF channels into output channels whose
        edges must coincide with RMF channel edges."""
        r = self.rmf
        all_edges = np.union1d(r.e_min, r.e_max)
        tol = 1e-6 * max(1.0, float(all_edges[-1]))
        pos = np.searchsorted(all_edges, out_edges)
        pos = np.clip(pos, 0, all_edges.size - 1)
        near = np.minimum(np.abs(all_edges[pos] - out_edges), np.abs(all_edges[np.clip(pos - 1, 0, None)] - out_edges))
        if np.any(near > tol):
            bad = out_edges[np.argmax(near)]
            raise DataError(f"{self._file}: `spectral_response.file`: the channel edge {bad:.6g} keV is not an edge of a "
                            f"channel of {r.path}; channels of an RMF can only be grouped, not split.")
        centres = 0.5 * (r.e_min + r.e_max)
        col = np.searchsorted(out_edges, centres, side="right") - 1
        ok = (col >= 0) & (col < out_edges.size - 1)
        return sp.csr_matrix((np.ones(int(ok.sum())), (np.nonzero(ok)[0], col[ok])), shape=(r.n_channels, out_edges.size - 1))

    # -- PSF --------------------------------------------------------------------------------
    @property
    def psf_energy_dependent(self) -> bool:
        p = self.spec.psf
        if p.kind == "image":
            return self._psf_planes[0].ndim == 3 and self._psf_planes[0].shape[0] > 1
        return any(energy_dependent(getattr(p, k)) for k in ("fwhm_arcsec", "r0_arcsec", "alpha"))

    def psf_fwhm_arcsec(self, energy_kev: float = 1.5) -> float:
        """PSF FWHM in arcsec at ``energy_kev`` (keV). King: 2 r0 √(2^(1/α) − 1); image: the
        diameter of the disc whose area equals that of the pixels above half the maximum
        (coarse: at best one image pixel)."""
        p = self.spec.psf
        if p.kind == "gaussian":
            return float(as_function(p.fwhm_arcsec)(energy_kev))
        if p.kind == "king":
            r0 = float(as_function(p.r0_arcsec)(energy_kev))
            alpha = float(as_function(p.alpha)(energy_kev))
            return 2.0 * r0 * math.sqrt(2.0 ** (1.0 / alpha) - 1.0)
        image, pix = self._psf_image_at(np.atleast_1d(energy_kev))
        plane = image[0]
        area = float((plane >= 0.5 * plane.max()).sum()) * pix * pix
        return 2.0 * math.sqrt(area / math.pi)

    def _psf_radius_arcsec(self, energies: np.ndarray) -> float:
        p = self.spec.psf
        if p.radius_arcsec is not None:
            return p.radius_arcsec
        if p.kind == "gaussian":
            return 3.0 * float(np.max(as_function(p.fwhm_arcsec)(energies)))
        # King: radius holding 95% of the flux of the untruncated profile, 1 − (1 + x²)^(1−α) = 0.95;
        # for α ≤ 1 the profile has infinite flux, so fall back to 20 r0.
        r0 = as_function(p.r0_arcsec)(energies)
        alpha = as_function(p.alpha)(energies)
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.where(alpha > 1.0, np.sqrt(np.power(0.05, 1.0 / (1.0 - alpha)) - 1.0), 20.0)
        return float(np.max(r0 * np.minimum(x, 200.0)))

    def psf_image(self, pixel_arcsec: float, energies_kev=None, max_half: tuple[int, int] | None = None) -> np.ndarray:
        """The PSF sampled on pixels of ``pixel_arcsec`` arcsec: a (ky, kx) kernel when the PSF
        does not depend on energy (or ``energies_kev`` is None: then at the middle of the band),
        else (n_e, ky, kx) at ``energies_kev`` (keV). Odd sizes, centred, each plane summing to 1.

        Analytic profiles are integrated over each pixel on a 5 × 5 sub-grid (within 10
        pixels of the centre; sampled at pixel centres beyond); images are
        resampled with exact pixel overlaps (flux-conserving). The kernel extends to
        ``[psf] radius_arcsec``. ``max_half = (hy, hx)`` crops it to (2 hy + 1, 2 hx + 1)
        pixels after normalisation (the flux beyond is lost, not put back in the core)."""
        if not pixel_arcsec > 0:
            raise ShapeError(f"pixel_arcsec must be > 0 arcsec, got {pixel_arcsec}.")
        if energies_kev is None or not self.psf_energy_dependent:
            energies = np.array([0.5 * sum(self.band_kev)]) if energies_kev is None else \
                np.atleast_1d(np.asarray(energies_kev, dtype=np.float64))[:1]
            return self._psf_kernels(pixel_arcsec, energies, max_half)[0]
        energies = np.atleast_1d(np.asarray(energies_kev, dtype=np.float64))
        return self._psf_kernels(pixel_arcsec, energies, max_half)

    def _psf_kernels(self, pixel_arcsec: float, energies: np.ndarray, max_half=None) -> np.ndarray:
        p = self.spec.psf
        if p.kind == "image":
            return crop_kernel(self._psf_from_image(pixel_arcsec, energies), max_half)
        half = kernel_half(self._psf_radius_arcsec(energies), pixel_arcsec)
        # Pixel integration matters where the profile curves on the pixel scale, i.e. near the
        # core: the central (2m + 1)² pixels are integrated on a 5 × 5 sub-grid, the others are
        # sampled at their centres (relative error ~ (pixel / r)² / 24 there, < 0.1 % for r > 10 px).
        m = min(half, SUPERSAMPLED_HALF)
        r = (np.arange(2 * half + 1) - half) * pixel_arcsec
        coarse_r2 = (r[None, :] ** 2 + r[:, None] ** 2)[None]
        fine_r2 = supersampled_radius2(m, pixel_arcsec)[None]
        chunk = max(1, int(4e6 // (coarse_r2.size + fine_r2.size)))  # bounded temporaries
        out = []
        for start in range(0, energies.size, chunk):
            profile = self._psf_profile(energies[start: start + chunk])
            kernel = profile(coarse_r2)
            kernel[:, half - m: half + m + 1, half - m: half + m + 1] = block_sum(profile(fine_r2)) / SUPERSAMPLE ** 2
            out.append(crop_kernel(normalise_kernel(kernel), max_half))
        return np.concatenate(out, axis=0)

    def _psf_profile(self, energies: np.ndarray):
        """The analytic PSF profile at ``energies`` as a function of r² (arcsec²) → (n_e, ...)."""
        p = self.spec.psf
        if p.kind == "gaussian":
            sigma2 = ((as_function(p.fwhm_arcsec)(energies) / FWHM_PER_SIGMA) ** 2)[:, None, None]
            return lambda r2: np.exp(-0.5 * r2 / sigma2)
        r0 = as_function(p.r0_arcsec)(energies)[:, None, None]
        alpha = as_function(p.alpha)(energies)[:, None, None]
        return lambda r2: np.power(1.0 + r2 / r0 ** 2, -alpha)

    @cached_property
    def _psf_planes(self) -> tuple[np.ndarray, float, np.ndarray | None]:
        """The PSF file as (planes (n, ky, kx) or (ky, kx), pixel arcsec, plane energies)."""
        from astropy.io import fits

        p = self.spec.psf
        try:
            with fits.open(p.file, memmap=False) as hdul:
                hdu = next((h for h in hdul if getattr(h, "data", None) is not None and h.is_image and h.data.ndim in (2, 3)), None)
                if hdu is None:
                    raise DataError(f"{self._file}: `psf.file`: {p.file} holds no 2-D or 3-D image.")
                data = np.array(hdu.data, dtype=np.float64)
                header = hdu.header
        except OSError as exc:
            raise DataError(f"{self._file}: `psf.file`: cannot read {p.file} as FITS ({exc}).") from None
        pix = p.image_pixel_arcsec
        if pix is None:
            cdelt = header.get("CDELT1", header.get("CD1_1"))
            if cdelt is None:
                raise ConfigError(f"{self._file}: `psf.image_pixel_arcsec`: {p.file} has no CDELT1; give the image's "
                                  "pixel size in arcsec.")
            pix = abs(float(cdelt)) * 3600.0
        if not np.all(np.isfinite(data)) or np.any(data < 0):
            raise DataError(f"{self._file}: `psf.file`: {p.file} has negative or non-finite pixels.")
        energies = None
        if data.ndim == 3:
            if p.energies_kev is None or len(p.energies_kev) != data.shape[0]:
                raise ConfigError(f"{self._file}: `psf.energies_kev`: {p.file} has {data.shape[0]} planes; give "
                                  "their energies (keV), one per plane.")
            energies = np.asarray(p.energies_kev, dtype=np.float64)
        if data.shape[-1] % 2 == 0 or data.shape[-2] % 2 == 0:
            warnings.warn(f"{self._file}: `psf.file`: {p.file} has an even size {data.shape[-2:]}; its centre is taken "
                          "on its peak and it is resampled onto an odd kernel centred there.", stacklevel=3)
        sums = data.sum(axis=(-2, -1))
        if np.any(sums <= 0):
            raise DataError(f"{self._file}: `psf.file`: {p.file} has an image plane with zero total.")
        if np.any(np.abs(sums - 1.0) > 1e-3):
            warnings.warn(f"{self._file}: `psf.file`: {p.file} sums to {np.ravel(sums)[0]:.6g}, not 1; it is "
                          "normalised to 1.", stacklevel=3)
        data = data / (sums[..., None, None] if data.ndim == 3 else sums)
        return data, pix, energies

    def _psf_image_at(self, energies: np.ndarray) -> tuple[np.ndarray, float]:
        data, pix, plane_e = self._psf_planes
        if data.ndim == 2:
            return data[None], pix
        # Linear interpolation between planes in energy, clamped (vectorised over energies).
        x = np.interp(energies, plane_e, np.arange(plane_e.size))
        lo = np.floor(x).astype(int)
        hi = np.minimum(lo + 1, plane_e.size - 1)
        t = (x - lo)[:, None, None]
        return (1.0 - t) * data[lo] + t * data[hi], pix

    def _psf_from_image(self, pixel_arcsec: float, energies: np.ndarray) -> np.ndarray:
        images, pix = self._psf_image_at(energies)
        _, ny, nx = images.shape
        radius = self.spec.psf.radius_arcsec
        centres = [image_peak_centre(plane) for plane in images]  # the peak, not the array's middle
        half_y = kernel_half(radius if radius else max(max(c, ny - c) for c, _ in centres) * pix, pixel_arcsec)
        half_x = kernel_half(radius if radius else max(max(c, nx - c) for _, c in centres) * pix, pixel_arcsec)
        ry = np.stack([resample_axis(ny, pix, 2 * half_y + 1, pixel_arcsec, cy) for cy, _ in centres])
        rx = np.stack([resample_axis(nx, pix, 2 * half_x + 1, pixel_arcsec, cx) for _, cx in centres])
        return normalise_kernel(np.einsum("eyi,eij,exj->eyx", ry, images, rx, optimize=True))

    # -- background -------------------------------------------------------------------------
    def background_counts(self, channel_edges_kev, pixel_arcsec: float, exposure_s: float) -> np.ndarray:
        """Expected flat-background counts per channel and detector pixel (n_chan,):
        rate [counts/s/keV/arcmin²] × channel width [keV] × pixel area [arcmin²] × exposure [s]."""
        edges = check_edges(channel_edges_kev, "channel_edges_kev")
        return self.background_rate * np.diff(edges) * (pixel_arcsec / ARCSEC_PER_ARCMIN) ** 2 * float(exposure_s)

    # -- listings ----------------------------------------------------------------------------
    def resolution_ev(self, energy_kev: float = RESOLUTION_REFERENCE_KEV) -> float:
        """FWHM resolution in eV at ``energy_kev`` (6 keV by default)."""
        return float(self.fwhm_ev([energy_kev])[0])

    def summary_row(self) -> dict:
        lo, hi = self.band_kev
        return {
            "name": self.name, "mission": self.mission, "detector": self.detector,
            "band_kev": [round(lo, 4), round(hi, 4)], "channels": int(self._channels[0].size),
            "resolution_fwhm_ev_at_6kev": round(self.resolution_ev(), 2),
            "pixel_arcsec": self.pixel_arcsec,
            "psf_fwhm_arcsec": round(self.psf_fwhm_arcsec(), 3),
        }

    def to_dict(self) -> dict:
        """The validated file as plain values (paths as strings), plus ``file`` and the
        derived ``summary`` row: what ``xhsi instruments NAME --json`` prints."""
        from ..schema import to_dict

        data = to_dict(self.spec)
        data["file"] = self._file
        data["summary"] = self.summary_row()
        return data

    def describe(self) -> str:
        s = self.spec
        lo, hi = self.band_kev
        lines = [f"{self.name}: {self.mission} {self.detector}".rstrip(), f"  file: {self._file}"]
        if s.instrument.description:
            lines.append(f"  {s.instrument.description}")
        ch_src = f"EBOUNDS of {self.rmf.path.name}" if self.rmf is not None else "[channels]"
        lines.append(f"  channels: {self._channels[0].size} in {lo:.4g}–{hi:.4g} keV ({ch_src})")
        if self.rmf is not None:
            lines.append(f"  spectral response: RMF {self.rmf.path.name} ({self.rmf.n_energies} energies × "
                         f"{self.rmf.n_channels} channels)")
        else:
            lines.append(f"  spectral response: Gaussian, FWHM {_law(s.spectral_response.fwhm_ev, 'eV')}")
        lines.append(f"  resolution: FWHM {self.resolution_ev(1.0):.4g} eV at 1 keV, {self.resolution_ev():.4g} eV at 6 keV")
        ea = s.effective_area
        if ea.kind == "arf":
            a = self.arf
            peak = int(np.argmax(a.specresp))
            lines.append(f"  effective area: ARF {a.path.name} ({a.energ_lo.size} bins, {a.energ_lo[0]:.4g}–"
                         f"{a.energ_hi[-1]:.4g} keV, peak {a.specresp[peak]:.4g} cm² at "
                         f"{0.5 * (a.energ_lo[peak] + a.energ_hi[peak]):.4g} keV)")
        elif ea.kind == "table":
            lines.append(f"  effective area: table {list(zip(ea.energies_kev, ea.cm2))} (keV, cm²)")
        else:
            lines.append(f"  effective area: constant {ea.cm2:.4g} cm²")
        for e in (1.0, 6.0):
            try:
                lines.append(f"    at {e:g} keV: {float(self.effective_area([e])[0]):.4g} cm²")
            except DataError:
                pass
        fov = s.spatial.field_of_view_arcmin
        lines.append(f"  pixel: {self.pixel_arcsec:g} arcsec" + (f"; field of view {fov:g} arcmin" if fov else ""))
        p = s.psf
        if p.kind == "gaussian":
            lines.append(f"  PSF: Gaussian, FWHM {_law(p.fwhm_arcsec, 'arcsec')}")
        elif p.kind == "king":
            lines.append(f"  PSF: King (1 + (r/r0)²)^(−α), r0 {_law(p.r0_arcsec, 'arcsec')}, α {_law(p.alpha, '')}"
                         f" (FWHM {self.psf_fwhm_arcsec():.3g} arcsec)")
        else:
            lines.append(f"  PSF: image {Path(p.file).name} (FWHM ≈ {self.psf_fwhm_arcsec():.3g} arcsec)")
        lines.append(f"  background: {self.background_rate:g} counts / s / keV / arcmin²")
        if self.references:
            lines.append("  references:")
            lines += [f"    - {ref}" for ref in self.references]
        return "\n".join(lines)


def _law(value, unit: str) -> str:
    if isinstance(value, EnergyTable):
        pairs = ", ".join(f"{v:g} at {e:g} keV" for e, v in zip(value.energies_kev, value.values))
        return f"{pairs} {unit}".rstrip() + " (linear in energy)"
    return f"{value:g} {unit}".rstrip()


