"""Instruments described by TOML files, and their compilation into forward operators.

An instrument file (schema: :class:`InstrumentFile`; reference: docs/instruments.md) states
the detector channels, the spectral redistribution (an OGIP RMF or a Gaussian FWHM(E) law),
the effective area (an OGIP ARF, a table or a constant), the pixel size, the PSF (Gaussian,
King profile or FITS image) and a flat background, every number with its unit in the key
name and a source in ``references`` or a comment.

Two grids are kept apart throughout:

- the **model grid**: the sky cube's true-energy bins (``model_energy_edges_kev``) and sky
  pixels, chosen by the run config;
- the **channel grid**: the channels of the counts cube. A run (``spectral_rebin = k``,
  default 1) uses one channel per k model bins — moved onto the nearest RMF channel edges
  for an RMF instrument; ``spectral_rebin = None`` gives the detector's own channels (the
  RMF's EBOUNDS or the ``[channels]`` table) in the instrument's band.

``load_instrument(name_or_path)`` gives an :class:`Instrument`;
``compile_forward(...)`` builds the forward operator

    A = SpatialRebin ∘ SpectralResponse ∘ SpatialConvolution(PSF) ∘ Diagonal(exposure × area)

that maps a sky cube (photons / s / cm² per true-energy bin and sky pixel) to expected
counts per channel and detector pixel. Compiled operators are cached.

Energy tables ``{ energies_kev = [...], values = [...] }`` are interpolated linearly in
energy and held constant beyond their first and last energies (clamped).
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, fields, is_dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp
from scipy.special import ndtr

from .errors import ConfigError, DataError, PluginError, ShapeError
from .operators.base import LinearOperator
from .schema import Context, from_dict, option
from .tomlio import load_toml

__all__ = [
    "InstrumentFile", "EnergyTable", "Instrument", "ForwardOperator", "load_instrument", "compile_forward",
    "summary_rows", "describe", "clear_caches",
]

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))  # 2.3548: Gaussian FWHM = 2.3548 σ
ARCSEC_PER_ARCMIN = 60.0
RESOLUTION_REFERENCE_KEV = 6.0  # energy at which listings quote the resolution (Fe K band)
_SUPERSAMPLE = 5  # analytic PSFs are integrated over each pixel on a 5 × 5 sub-grid...
_SUPERSAMPLED_HALF = 10  # ...within 10 pixels of the centre (point-sampled beyond)
_GRID_RTOL = 1e-5  # relative tolerance when comparing energy grids of two files


# ----------------------------------------------------------------------------- schema
@dataclass(kw_only=True)
class EnergyTable:
    """A quantity tabulated against energy; linear in energy, clamped at both ends."""

    energies_kev: list[float] = option(unit="keV", min=0.0, doc="energies of the tabulated values, increasing")
    values: list[float] = option(doc="the quantity at those energies, in the unit of the key holding the table")

    def check(self):
        if len(self.energies_kev) != len(self.values) or not self.values:
            raise ValueError(f"`energies_kev` ({len(self.energies_kev)} values) and `values` ({len(self.values)}) "
                             "must be non-empty and of the same length.")
        if any(b <= a for a, b in zip(self.energies_kev, self.energies_kev[1:])):
            raise ValueError("`energies_kev` must be strictly increasing.")

    def __call__(self, energies_kev) -> np.ndarray:
        return np.interp(np.asarray(energies_kev, dtype=np.float64), self.energies_kev, self.values)


@dataclass(kw_only=True)
class InstrumentInfo:
    name: str = option(doc="the name run configs use (`instrument = \"...\"`)")
    mission: str = option("", doc="observatory, e.g. XMM-Newton")
    detector: str = option("", doc="detector, e.g. EPIC-pn")
    references: list[str] = option([], doc="sources of the numbers in this file")
    description: str = option("", doc="a paragraph shown by `xhsi instruments NAME`")


@dataclass(kw_only=True)
class ChannelsSection:
    min_kev: float | None = option(None, unit="keV", min=0.0,
                                   doc="lower edge of the first channel (gaussian) / of the band kept (rmf)")
    max_kev: float | None = option(None, unit="keV", min=0.0, exclusive_min=True,
                                   doc="upper edge of the last channel (gaussian) / of the band kept (rmf)")
    count: int | None = option(None, min=1, unit="channels",
                               doc="number of channels (gaussian: equal widths; rmf: optional check)")

    def check(self):
        if self.min_kev is not None and self.max_kev is not None and self.max_kev <= self.min_kev:
            raise ValueError(f"`max_kev` ({self.max_kev}) must be larger than `min_kev` ({self.min_kev}).")


SPECTRAL_KINDS = ("gaussian", "rmf")
AREA_KINDS = ("table", "arf", "constant")
PSF_KINDS = ("gaussian", "king", "image")


@dataclass(kw_only=True)
class SpectralResponseSection:
    kind: str = option(choices=SPECTRAL_KINDS, doc="gaussian: FWHM(E) law; rmf: an OGIP RMF file")
    fwhm_ev: float | dict | None = option(None, unit="eV", min=0.0, exclusive_min=True,
                                          doc="gaussian: FWHM, a number or an energy table")
    file: Path | None = option(None, doc="rmf: OGIP RMF, relative to this TOML")

    def check(self):
        if self.kind == "gaussian":
            if self.fwhm_ev is None:
                raise ValueError("`fwhm_ev` is required when kind = \"gaussian\".")
            if self.file is not None:
                raise ValueError("`file` is for kind = \"rmf\"; remove it or set kind = \"rmf\".")
        else:
            if self.file is None:
                raise ValueError("`file` (an OGIP RMF) is required when kind = \"rmf\".")
            if self.fwhm_ev is not None:
                raise ValueError("`fwhm_ev` is for kind = \"gaussian\"; an RMF sets the resolution itself.")


@dataclass(kw_only=True)
class EffectiveAreaSection:
    kind: str = option(choices=AREA_KINDS, doc="table: cm² against energy; arf: OGIP ARF file; constant")
    energies_kev: list[float] | None = option(None, unit="keV", min=0.0, doc="table: energies, increasing")
    cm2: float | list[float] | None = option(None, unit="cm²", doc="table: areas; constant: one area")
    file: Path | None = option(None, doc="arf: OGIP ARF, relative to this TOML")

    def check(self):
        if self.kind == "table":
            if self.energies_kev is None or not isinstance(self.cm2, list):
                raise ValueError("kind = \"table\" needs `energies_kev` and `cm2`, two arrays of the same length.")
            if len(self.energies_kev) != len(self.cm2) or not self.cm2:
                raise ValueError(f"`energies_kev` ({len(self.energies_kev)} values) and `cm2` ({len(self.cm2)}) "
                                 "must be non-empty and of the same length.")
            if any(b <= a for a, b in zip(self.energies_kev, self.energies_kev[1:])):
                raise ValueError("`energies_kev` must be strictly increasing.")
            if any(a < 0 for a in self.cm2):
                raise ValueError(f"`cm2` holds a negative area ({min(self.cm2)} cm²); areas must be >= 0 cm².")
        elif self.kind == "constant":
            if not isinstance(self.cm2, float) or self.energies_kev is not None:
                raise ValueError("kind = \"constant\" needs one number `cm2` (cm²) and no `energies_kev`.")
            if self.cm2 < 0:
                raise ValueError(f"`cm2` is negative ({self.cm2} cm²); an area must be >= 0 cm².")
        else:
            if self.file is None:
                raise ValueError("`file` (an OGIP ARF) is required when kind = \"arf\".")
            if self.cm2 is not None or self.energies_kev is not None:
                raise ValueError("kind = \"arf\" takes only `file`; remove `cm2`/`energies_kev`.")
        if self.kind != "arf" and self.file is not None:
            raise ValueError(f"`file` is for kind = \"arf\", not \"{self.kind}\".")


@dataclass(kw_only=True)
class SpatialSection:
    pixel_arcsec: float = option(unit="arcsec", min=0.0, exclusive_min=True, doc="detector pixel size on the sky")
    field_of_view_arcmin: float | None = option(None, unit="arcmin", min=0.0, exclusive_min=True,
                                                doc="field of view (side or diameter), for listings")


@dataclass(kw_only=True)
class PsfSection:
    kind: str = option(choices=PSF_KINDS, doc="gaussian | king (1 + (r/r0)²)^(−alpha) | image (FITS)")
    fwhm_arcsec: float | dict | None = option(None, unit="arcsec", min=0.0, exclusive_min=True,
                                              doc="gaussian: FWHM, a number or an energy table")
    r0_arcsec: float | dict | None = option(None, unit="arcsec", min=0.0, exclusive_min=True,
                                            doc="king: core radius, a number or an energy table")
    alpha: float | dict | None = option(None, min=0.0, exclusive_min=True,
                                        doc="king: slope (dimensionless), a number or an energy table")
    file: Path | None = option(None, doc="image: FITS image (ky, kx) or cube (n_e, ky, kx), relative to this TOML")
    image_pixel_arcsec: float | None = option(None, unit="arcsec", min=0.0, exclusive_min=True,
                                              doc="image: pixel size of the file (default: from its CDELT)")
    energies_kev: list[float] | None = option(None, unit="keV", min=0.0,
                                              doc="image cube: energy of each plane, increasing")
    radius_arcsec: float | None = option(None, unit="arcsec", min=0.0, exclusive_min=True,
                                         doc="kernel half-width (default: 3 FWHM, king: 95% of the flux, "
                                             "image: its own extent)")

    def check(self):
        needs = {"gaussian": ("fwhm_arcsec",), "king": ("r0_arcsec", "alpha"), "image": ("file",)}[self.kind]
        for key in needs:
            if getattr(self, key) is None:
                raise ValueError(f"`{key}` is required when kind = \"{self.kind}\".")
        allowed = set(needs) | {"radius_arcsec"} | ({"image_pixel_arcsec", "energies_kev"} if self.kind == "image" else set())
        for key in ("fwhm_arcsec", "r0_arcsec", "alpha", "file", "image_pixel_arcsec", "energies_kev"):
            if getattr(self, key) is not None and key not in allowed:
                raise ValueError(f"`{key}` does not apply to kind = \"{self.kind}\"; remove it.")
        if self.energies_kev is not None and any(b <= a for a, b in zip(self.energies_kev, self.energies_kev[1:])):
            raise ValueError("`energies_kev` must be strictly increasing.")


@dataclass(kw_only=True)
class BackgroundSection:
    rate: float = option(0.0, unit="counts / s / keV / arcmin²", min=0.0, doc="flat background")


@dataclass(kw_only=True)
class InstrumentFile:
    """The whole instrument TOML."""

    instrument: InstrumentInfo = option()
    channels: ChannelsSection | None = option(None, doc="required for gaussian responses; optional band for rmf")
    spectral_response: SpectralResponseSection = option()
    effective_area: EffectiveAreaSection = option()
    spatial: SpatialSection = option()
    psf: PsfSection = option()
    background: BackgroundSection = option(BackgroundSection())

    def check(self):
        if self.spectral_response.kind == "gaussian":
            ch = self.channels
            if ch is None or ch.min_kev is None or ch.max_kev is None or ch.count is None:
                raise ValueError("a gaussian spectral response needs `[channels]` with `min_kev`, `max_kev` and `count`.")


# Keys that hold a number or an energy table, with the unit of the table's values.
_TABLE_KEYS = {("spectral_response", "fwhm_ev"): "eV", ("psf", "fwhm_arcsec"): "arcsec",
               ("psf", "r0_arcsec"): "arcsec", ("psf", "alpha"): ""}


def _unitless_keys(data: Any, cls: type, ctx: Context, path: str = "") -> None:
    """Reject a key that is a valid key without its unit suffix (``pixel`` for
    ``pixel_arcsec``): the unit is part of every xhsi key that holds a physical number."""
    if not isinstance(data, dict) or not is_dataclass(cls):
        return
    import typing

    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    for key, value in data.items():
        sub = f"{path}.{key}" if path else key
        if key in names:
            tp = hints[key]
            for arg in (typing.get_args(tp) or (tp,)):
                if is_dataclass(arg):
                    _unitless_keys(value, arg, ctx, sub)
            continue
        with_unit = [n for n in names if n.startswith(f"{key}_")]
        if with_unit and isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ctx.error(sub, f"a number without a unit; write `{with_unit[0]}` (its unit is in the key name).")


def parse_instrument(data: dict, file: str = "<instrument>", base_dir: Path = Path(".")) -> InstrumentFile:
    """Validate a parsed instrument TOML; ConfigError names the file and the dotted key."""
    ctx = Context(file=file, base_dir=base_dir)
    _unitless_keys(data, InstrumentFile, ctx)
    spec = from_dict(InstrumentFile, data, ctx)
    for (section, key), unit in _TABLE_KEYS.items():
        obj = getattr(spec, section)
        value = getattr(obj, key)
        if isinstance(value, dict):
            table = from_dict(EnergyTable, value, ctx, f"{section}.{key}")
            if any(v <= 0 for v in table.values):
                raise ctx.error(f"{section}.{key}.values", f"must all be > 0{(' ' + unit) if unit else ''}, "
                                                          f"got {min(table.values)}.")
            setattr(obj, key, table)
    return spec


def _as_function(value: float | EnergyTable):
    """A scalar or an energy table as a function of energy (keV) → array."""
    if isinstance(value, EnergyTable):
        return value
    return lambda e: np.full(np.shape(e), float(value))


def _energy_dependent(value) -> bool:
    return isinstance(value, EnergyTable) and len(set(value.values)) > 1


# ----------------------------------------------------------------------------- grids
def _edges(edges_kev, what: str = "model_energy_edges_kev") -> np.ndarray:
    from .backend import to_numpy

    edges = np.asarray(to_numpy(edges_kev) if not isinstance(edges_kev, (list, tuple)) else edges_kev, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0) or edges[0] < 0:
        raise ShapeError(f"{what} must be at least two finite, increasing energies >= 0 keV; got {edges!r:.200}.")
    return edges


def overlap_matrix(src_edges: np.ndarray, dst_edges: np.ndarray) -> sp.csr_matrix:
    """Sparse (n_dst, n_src) matrix of overlap lengths between the bins of two edge lists."""
    if dst_edges.size * src_edges.size < 4e6:
        lo = np.maximum(dst_edges[:-1, None], src_edges[None, :-1])
        hi = np.minimum(dst_edges[1:, None], src_edges[None, 1:])
        return sp.csr_matrix(np.clip(hi - lo, 0.0, None))
    # Large grids: only the few source bins each destination bin touches.
    first = np.searchsorted(src_edges, dst_edges[:-1], side="right") - 1
    last = np.searchsorted(src_edges, dst_edges[1:], side="left")
    counts = np.clip(last - first, 0, None)
    rows = np.repeat(np.arange(dst_edges.size - 1), counts)
    cols = np.repeat(first, counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
    ok = (cols >= 0) & (cols < src_edges.size - 1)
    rows, cols = rows[ok], cols[ok]
    w = np.minimum(dst_edges[1:][rows], src_edges[1:][cols]) - np.maximum(dst_edges[:-1][rows], src_edges[:-1][cols])
    keep = w > 0
    return sp.csr_matrix((w[keep], (rows[keep], cols[keep])), shape=(dst_edges.size - 1, src_edges.size - 1))


def _antiderivative_ndtr(x):
    """∫ Φ(u) du = x Φ(x) + φ(x), with Φ the standard normal CDF and φ its density."""
    return x * ndtr(x) + np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def gaussian_redistribution(model_edges_kev: np.ndarray, channel_edges_kev: np.ndarray,
                            fwhm_kev: np.ndarray) -> np.ndarray:
    """Dense (n_e, n_chan) matrix: probability that a photon drawn uniformly in true-energy
    bin i lands in channel c, for a Gaussian line-spread function of FWHM ``fwhm_kev[i]``.

    Exact box-average: the CDF Φ((e − E)/σ) at each channel edge e is averaged over
    E ∈ [a, b] with the closed form σ [G((e−a)/σ) − G((e−b)/σ)] / (b − a), G(x) = xΦ(x) + φ(x),
    so bins wider than σ (a 5 eV Resolve FWHM on 10 eV model bins) are handled exactly;
    bins much narrower than σ use Φ at the bin centre."""
    a, b = model_edges_kev[:-1, None], model_edges_kev[1:, None]
    sigma = (np.asarray(fwhm_kev, dtype=np.float64) / FWHM_PER_SIGMA)[:, None]
    e = channel_edges_kev[None, :]
    narrow = (b - a) < 1e-3 * sigma
    with np.errstate(invalid="ignore", divide="ignore"):
        boxed = sigma * (_antiderivative_ndtr((e - a) / sigma) - _antiderivative_ndtr((e - b) / sigma)) / (b - a)
    cdf = np.where(narrow, ndtr((e - 0.5 * (a + b)) / sigma), boxed)
    return np.clip(np.diff(cdf, axis=1), 0.0, None)


# ----------------------------------------------------------------------------- PSF kernels
def _kernel_half(radius_arcsec: float, pixel_arcsec: float) -> int:
    return max(1, int(math.ceil(radius_arcsec / pixel_arcsec - 0.5)))


def _supersampled_radius2(half: int, pixel_arcsec: float) -> np.ndarray:
    """Squared radius (arcsec²) of a (2h+1)·s square sub-grid whose s × s blocks are pixels."""
    s = _SUPERSAMPLE
    n = (2 * half + 1) * s
    offsets = (np.arange(n) + 0.5) / s - (half + 0.5)  # pixel units, 0 at the centre pixel's centre
    r = offsets * pixel_arcsec
    return r[None, :] ** 2 + r[:, None] ** 2


def _block_sum(fine: np.ndarray) -> np.ndarray:
    s = _SUPERSAMPLE
    *lead, ny, nx = fine.shape
    return fine.reshape(*lead, ny // s, s, nx // s, s).sum(axis=(-3, -1))


def _normalise(kernel: np.ndarray) -> np.ndarray:
    total = kernel.sum(axis=(-2, -1), keepdims=True)
    return kernel / total


def _crop(kernel: np.ndarray, max_half) -> np.ndarray:
    """Keep at most (2 hy + 1, 2 hx + 1) central pixels of (..., ky, kx) odd kernels."""
    if max_half is None:
        return kernel
    ky, kx = kernel.shape[-2:]
    cy, cx = min(ky // 2, int(max_half[0])), min(kx // 2, int(max_half[1]))
    return kernel[..., ky // 2 - cy: ky // 2 + cy + 1, kx // 2 - cx: kx // 2 + cx + 1]


def _resample_axis(n_in: int, p_in: float, n_out: int, p_out: float) -> np.ndarray:
    """(n_out, n_in) fractions of each input pixel falling in each output pixel, both grids
    centred on the same point (flux-conserving resampling)."""
    e_in = (np.arange(n_in + 1) - n_in / 2.0) * p_in
    e_out = (np.arange(n_out + 1) - n_out / 2.0) * p_out
    return (overlap_matrix(e_in, e_out) / p_in).toarray()


# ----------------------------------------------------------------------------- the instrument
_RESPONSES: dict[tuple, Any] = {}


def _read_response(kind: str, path: Path):
    """read_rmf / read_arf, cached per file and modification time (several instrument files
    may share one response; the objects are not modified after reading)."""
    from .io import read_arf, read_rmf

    path = Path(path).resolve()
    key = (kind, str(path), path.stat().st_mtime_ns)
    if key not in _RESPONSES:
        _RESPONSES[key] = read_rmf(path) if kind == "rmf" else read_arf(path)
    return _RESPONSES[key]


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
                self.rmf = _read_response("rmf", sr.file)
            if ea.kind == "arf":
                self.arf = _read_response("arf", ea.file)
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
        edges = _edges(model_edges_kev)
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
            return _as_function(self.spec.spectral_response.fwhm_ev)(e)
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
        model = _edges(model_edges_kev)
        if channel_edges_kev is not None:
            return _edges(channel_edges_kev, "channel_edges_kev")
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
        model = _edges(model_edges_kev)
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
        return any(_energy_dependent(getattr(p, k)) for k in ("fwhm_arcsec", "r0_arcsec", "alpha"))

    def psf_fwhm_arcsec(self, energy_kev: float = 1.5) -> float:
        """PSF FWHM in arcsec at ``energy_kev`` (keV). King: 2 r0 √(2^(1/α) − 1); image: the
        diameter of the disc whose area equals that of the pixels above half the maximum
        (coarse: at best one image pixel)."""
        p = self.spec.psf
        if p.kind == "gaussian":
            return float(_as_function(p.fwhm_arcsec)(energy_kev))
        if p.kind == "king":
            r0 = float(_as_function(p.r0_arcsec)(energy_kev))
            alpha = float(_as_function(p.alpha)(energy_kev))
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
            return 3.0 * float(np.max(_as_function(p.fwhm_arcsec)(energies)))
        # King: radius holding 95% of the flux of the untruncated profile, 1 − (1 + x²)^(1−α) = 0.95;
        # for α ≤ 1 the profile has infinite flux, so fall back to 20 r0.
        r0 = _as_function(p.r0_arcsec)(energies)
        alpha = _as_function(p.alpha)(energies)
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
            return _crop(self._psf_from_image(pixel_arcsec, energies), max_half)
        half = _kernel_half(self._psf_radius_arcsec(energies), pixel_arcsec)
        # Pixel integration matters where the profile curves on the pixel scale, i.e. near the
        # core: the central (2m + 1)² pixels are integrated on a 5 × 5 sub-grid, the others are
        # sampled at their centres (relative error ~ (pixel / r)² / 24 there, < 0.1 % for r > 10 px).
        m = min(half, _SUPERSAMPLED_HALF)
        r = (np.arange(2 * half + 1) - half) * pixel_arcsec
        coarse_r2 = (r[None, :] ** 2 + r[:, None] ** 2)[None]
        fine_r2 = _supersampled_radius2(m, pixel_arcsec)[None]
        chunk = max(1, int(4e6 // (coarse_r2.size + fine_r2.size)))  # bounded temporaries
        out = []
        for start in range(0, energies.size, chunk):
            profile = self._psf_profile(energies[start: start + chunk])
            kernel = profile(coarse_r2)
            kernel[:, half - m: half + m + 1, half - m: half + m + 1] = _block_sum(profile(fine_r2)) / _SUPERSAMPLE ** 2
            out.append(_crop(_normalise(kernel), max_half))
        return np.concatenate(out, axis=0)

    def _psf_profile(self, energies: np.ndarray):
        """The analytic PSF profile at ``energies`` as a function of r² (arcsec²) → (n_e, ...)."""
        p = self.spec.psf
        if p.kind == "gaussian":
            sigma2 = ((_as_function(p.fwhm_arcsec)(energies) / FWHM_PER_SIGMA) ** 2)[:, None, None]
            return lambda r2: np.exp(-0.5 * r2 / sigma2)
        r0 = _as_function(p.r0_arcsec)(energies)[:, None, None]
        alpha = _as_function(p.alpha)(energies)[:, None, None]
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
                          "at the middle of the image and it is resampled onto an odd, centred kernel.", stacklevel=3)
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
        half_y = _kernel_half(radius if radius else ny * pix / 2.0, pixel_arcsec)
        half_x = _kernel_half(radius if radius else nx * pix / 2.0, pixel_arcsec)
        ry = _resample_axis(ny, pix, 2 * half_y + 1, pixel_arcsec)
        rx = _resample_axis(nx, pix, 2 * half_x + 1, pixel_arcsec)
        out = np.einsum("yi,eij,xj->eyx", ry, images, rx, optimize=True)
        return _normalise(out)

    # -- background -------------------------------------------------------------------------
    def background_counts(self, channel_edges_kev, pixel_arcsec: float, exposure_s: float) -> np.ndarray:
        """Expected flat-background counts per channel and detector pixel (n_chan,):
        rate [counts/s/keV/arcmin²] × channel width [keV] × pixel area [arcmin²] × exposure [s]."""
        edges = _edges(channel_edges_kev, "channel_edges_kev")
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
        from .schema import to_dict

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


# ----------------------------------------------------------------------------- loading
_INSTRUMENTS: dict[tuple, Instrument] = {}


def _resolve(name_or_path: str | os.PathLike) -> Path:
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.suffix.lower() == ".toml" or os.sep in text or "/" in text:
        if not path.is_file():
            raise ConfigError(f"{path}: no such instrument file.")
        return path.resolve()
    from . import plugins

    try:
        return Path(plugins.get("instrument", text)).resolve()
    except PluginError as exc:
        raise ConfigError(f"{exc} Or give the path to an instrument TOML file.") from None


def load_instrument(name_or_path: str | os.PathLike | Instrument) -> Instrument:
    """The instrument registered as ``name`` (see ``xhsi instruments``) or described by the
    TOML file at a path. Validated, response files read and checked; cached per file and
    modification time."""
    if isinstance(name_or_path, Instrument):
        return name_or_path
    path = _resolve(name_or_path)
    key = (str(path), path.stat().st_mtime_ns)
    if key not in _INSTRUMENTS:
        spec = parse_instrument(load_toml(path), str(path), path.parent)
        _INSTRUMENTS[key] = Instrument(spec, path)
    return _INSTRUMENTS[key]


def summary_rows() -> list[dict]:
    """One row per registered instrument: name, mission, detector, band (keV), channels,
    resolution FWHM at 6 keV (eV), pixel (arcsec), PSF FWHM (arcsec)."""
    from . import plugins

    return [load_instrument(name).summary_row() for name in plugins.available("instrument")]


def describe(name_or_path: str | os.PathLike) -> str:
    """The full human-readable description of one instrument."""
    return load_instrument(name_or_path).describe()


# ----------------------------------------------------------------------------- compilation
class ForwardOperator(LinearOperator):
    """The compiled forward operator of one observation (built by :func:`compile_forward`):
    sky cube (n_e, ny, nx) in photons / s / cm² per true-energy bin and sky pixel → expected
    counts (n_chan, ny / r, nx / r). ``parts`` lists the operators, innermost first."""

    def __init__(self, op: LinearOperator, *, instrument: "Instrument", model_energy_edges_kev: np.ndarray,
                 channel_edges_kev: np.ndarray, model_pixel_arcsec: float, detector_pixel_arcsec: float,
                 exposure_s: float):
        super().__init__(op.shape_in, op.shape_out)
        self.op = op
        self.instrument = instrument
        self.model_energy_edges_kev = model_energy_edges_kev
        self.channel_edges_kev = channel_edges_kev
        self.model_pixel_arcsec = model_pixel_arcsec
        self.detector_pixel_arcsec = detector_pixel_arcsec
        self.exposure_s = exposure_s
        self.parts = list(getattr(op, "ops", [op]))

    def _apply(self, x):
        return self.op._apply(x)

    def _adjoint(self, y):
        return self.op._adjoint(y)

    def background_counts(self) -> np.ndarray:
        """Flat background counts per channel and detector pixel, numpy (n_chan, 1, 1)."""
        b = self.instrument.background_counts(self.channel_edges_kev, self.detector_pixel_arcsec, self.exposure_s)
        return b[:, None, None]

    def __repr__(self) -> str:
        return f"Forward[{self.instrument.name}]({self.op!r})"


_FORWARD_CACHE: dict[tuple, Any] = {}
_FORWARD_CACHE_SIZE = 16


def compile_forward(instrument: str | Path | Instrument, model_energy_edges_kev, model_pixels: Sequence[int],
                    model_pixel_arcsec: float, exposure_s: float, spatial_rebin: int = 1,
                    spectral_rebin: int | None = 1, backend=None, channel_edges_kev=None,
                    boundary: str = "zero", psf_size: int | None = None, cache: bool = True):
    """The forward operator of one observation,

        A = SpatialRebin(r) ∘ SpectralResponse(R) ∘ SpatialConvolution(PSF) ∘ Diagonal(exposure × area),

    computed as Diagonal followed by :func:`xhsi.operators.fused.blur_respond_rebin`'s
    operators (the same map, FFTs on the fewest slices),

    from sky cubes (n_e, ny, nx) [photons / s / cm² per true-energy bin and sky pixel] to
    expected counts (n_chan, ny / r, nx / r).

    - ``model_energy_edges_kev``: n_e + 1 true-energy edges (keV); ``model_pixels`` (ny, nx);
      ``model_pixel_arcsec``: sky pixel (arcsec); ``exposure_s`` (s);
    - ``spatial_rebin`` r: detector pixel = r × model pixel (ny, nx divisible by r);
    - ``spectral_rebin`` k: one channel per k model bins (for an RMF, edges moved to the
      nearest RMF channel edges); None: the instrument's own channels in its band (see
      :meth:`Instrument.detector_channels`);
    - ``channel_edges_kev``: explicit channel edges instead (e.g. a counts cube's EBOUNDS);
    - ``psf_size``: crop the PSF kernel to psf_size × psf_size model pixels (odd; the flux
      outside is dropped, as the instrument's ``[psf] radius_arcsec`` cut does), e.g. the
      29 × 29 kernels of Lascar et al. 2025; default: the instrument's own cut;
    - ``backend``: an :class:`xhsi.backend.Backend` (default numpy float64);
    - ``cache``: keep the operator for later calls with the same arguments (default).

    The redistribution matrix R is computed directly on the output channels (one
    ``SpectralResponse``; for Gaussian responses this is exact where SpectralRebin ∘
    SpectralConvolution would need an energy-independent kernel). The area is averaged over
    each true-energy bin; the PSF (energy-dependent: one kernel per bin, batched by FFT) is
    sampled at the model pixel and cropped to at most twice the image size.

    The result is a LinearOperator with attributes ``channel_edges_kev``,
    ``model_energy_edges_kev``, ``detector_pixel_arcsec``, ``exposure_s``, ``instrument``,
    ``parts`` and ``background_counts()``; compiled operators are cached (16 most recent)."""
    from .backend import Backend

    inst = load_instrument(instrument)
    backend = backend or Backend("numpy", "float64")
    edges = _edges(model_energy_edges_kev)
    ny, nx = (int(n) for n in model_pixels)
    if ny < 1 or nx < 1:
        raise ShapeError(f"model_pixels must be two positive sizes (ny, nx), got {tuple(model_pixels)}.")
    if not model_pixel_arcsec > 0 or not exposure_s > 0:
        raise ShapeError(f"model_pixel_arcsec ({model_pixel_arcsec}) and exposure_s ({exposure_s}) must be > 0.")
    ch_key = None if channel_edges_kev is None else tuple(_edges(channel_edges_kev, "channel_edges_kev"))
    if psf_size is not None and (int(psf_size) < 1 or int(psf_size) % 2 == 0):
        raise ShapeError(f"psf_size must be a positive odd number of model pixels, got {psf_size}.")
    key = (inst.path, id(inst), tuple(edges), ny, nx, float(model_pixel_arcsec), float(exposure_s), spatial_rebin,
           spectral_rebin, backend.name, backend.dtype_name, ch_key, boundary, psf_size)
    if cache and key in _FORWARD_CACHE:
        return _FORWARD_CACHE[key]

    from .operators.diagonal import Diagonal
    from .operators.fused import blur_respond_rebin

    n_e = edges.size - 1
    shape = (n_e, ny, nx)
    weight = float(exposure_s) * inst.mean_effective_area(edges)
    ops = [Diagonal(backend.asarray(weight.reshape(n_e, 1, 1)), shape)]
    centres = 0.5 * (edges[:-1] + edges[1:])
    # A kernel wider than twice the image cannot reach any pixel from any other: crop it.
    half = (ny - 1, nx - 1) if psf_size is None else (min(ny - 1, psf_size // 2), min(nx - 1, psf_size // 2))
    psf = inst.psf_image(model_pixel_arcsec, centres, max_half=half)
    matrix = inst.redistribution(edges, spectral_rebin, channel_edges_kev)
    out_edges = inst.detector_channels(edges, spectral_rebin, channel_edges_kev)
    # PSF, redistribution and rebin fused and ordered so the FFTs run on the fewest slices
    # (xhsi.operators.fused; equal to SpatialRebin ∘ SpectralResponse ∘ SpatialConvolution).
    ops += blur_respond_rebin(backend.asarray(np.ascontiguousarray(psf)), matrix, shape, spatial_rebin, boundary)
    chain = ops[0]
    for op in ops[1:]:
        chain = op @ chain
    forward = ForwardOperator(chain, instrument=inst, model_energy_edges_kev=edges, channel_edges_kev=out_edges,
                               model_pixel_arcsec=float(model_pixel_arcsec),
                               detector_pixel_arcsec=float(model_pixel_arcsec) * spatial_rebin, exposure_s=float(exposure_s))
    if not cache:
        return forward
    if len(_FORWARD_CACHE) >= _FORWARD_CACHE_SIZE:
        _FORWARD_CACHE.pop(next(iter(_FORWARD_CACHE)))
    _FORWARD_CACHE[key] = forward
    return forward


def clear_caches() -> None:
    """Forget loaded instruments and compiled operators."""
    _INSTRUMENTS.clear()
    _FORWARD_CACHE.clear()
    _RESPONSES.clear()
