"""Sparsity in the starlet domain: ℓ1 of the 2-D starlet coefficients of every slice
(``starlet2d_l1``) and of the 2-D × 1-D starlet coefficients of a cube (``starlet2d1d_l1``).

φ(x) = Σ_b λ_b ‖c_b(x)‖₁ over the detail bands b (the coarse band is not penalised), with
c = Φx the starlet analysis (``xhsi.sparsity.wavelets``; Starck, Fadili & Murtagh 2007) and
λ_b = k·σ_b (k-sigma thresholding; Starck & Murtagh 2006, *Astronomical Image and Data
Analysis*, §2.3). The starlet is redundant and not a tight frame, so the exact prox of
‖Φx‖₁ has no closed form; ``prox`` is the usual approximation used in astronomy:
soft-threshold every detail band by step·weight·λ_b, then reconstruct by the sum of the
bands. ``starlet2d1d_l1`` streams its (L+1)(J+1) bands instead of materialising them
(``xhsi.sparsity.frame2d1d``): prox, value and MAD calibration hold a few cubes at a time.
See docs/regularizers.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from array_api_compat import device

from xhsi.sparsity import frame2d1d
from xhsi.sparsity.analysis_prox import analysis_l1_prox_nonnegative
from xhsi.sparsity.dual_steps import metric_dual_steps
from xhsi.backend import array_namespace, to_numpy
from xhsi.errors import ConfigError, ShapeError
from xhsi.regularizers import Regularizer
from xhsi.schema import option
from xhsi.operators import StarletAnalysis
from xhsi.operators import Starlet2d1d
from xhsi.sparsity.wavelets import mad_sigma, soft_threshold, starlet1d, starlet2d

__all__ = ["Starlet2dL1", "Starlet2d1dL1", "starlet_noise_norms"]


def starlet_noise_norms(n_scales: int, ndim: int) -> np.ndarray:
    """ℓ2 norm of the starlet analysis filter of each band (details then coarse) in ``ndim``
    = 1 or 2 dimensions: the standard deviation of the coefficients of unit white noise
    (≈ 0.889, 0.200, 0.086 for the first 2-D scales; Starck & Murtagh 2006, *Astronomical
    Image and Data Analysis*, ch. 2).
    Computed exactly from a Dirac far from the borders, once, on the host."""
    half = 2 * (2 ** n_scales - 1)  # half-width of the widest filter, in samples
    n = 2 * half + 1
    dirac = np.zeros((n,) * ndim)
    dirac[(half,) * ndim] = 1.0
    coeffs = starlet2d(dirac, n_scales) if ndim == 2 else starlet1d(dirac, n_scales, axis=0)
    return np.sqrt(np.sum(coeffs.reshape(n_scales + 1, -1) ** 2, axis=1))


class _StarletL1(Regularizer):
    """Shared machinery: band thresholds λ_b (explicit, from a noise level, or by MAD),
    soft-thresholding of the detail bands with optional re-weighting, synthesis by sum."""

    smooth = False
    exact_prox = False
    _lam = None  # λ_b as an array broadcastable against the coefficients (frozen once set)

    # -- to implement --------------------------------------------------------------
    n_band_axes = 1

    def spatial_reach(self) -> int:
        """The widest spatial B3-spline filter of J dyadic scales reaches 2·(2^J − 1) pixels."""
        o = self.options
        return 2 * (2 ** int(getattr(o, "scales_2d", getattr(o, "scales", 0))) - 1)

    def _analysis(self, x):
        raise NotImplementedError

    def _band_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def _noise_norms(self) -> np.ndarray:
        raise NotImplementedError

    def _explicit_thresholds(self) -> np.ndarray | None:
        raise NotImplementedError

    def _mad_axes(self, coeffs) -> tuple[int, ...]:
        return tuple(range(self.n_band_axes, coeffs.ndim))

    # -- shared --------------------------------------------------------------------
    def _coarse(self) -> tuple[int, ...]:
        return tuple(s - 1 for s in self._band_shape())

    def _free(self) -> np.ndarray:
        """Bool mask of band shape: the bands never thresholded (the coarse band)."""
        free = np.zeros(self._band_shape(), dtype=bool)
        free[self._coarse()] = True
        return free

    def _synthesis(self, coeffs):
        xp = array_namespace(coeffs)
        return xp.sum(coeffs, axis=tuple(range(self.n_band_axes)))

    def setup(self, shape, xp, dtype) -> None:
        super().setup(shape, xp, dtype)
        self._lam = None
        lam = self._explicit_thresholds()
        if lam is None and self.options.noise_sigma is not None:
            lam = self.options.k * self.options.noise_sigma * self._noise_norms()
        if lam is not None:
            self._freeze_host(self._host_thresholds(lam), xp)

    def _host_thresholds(self, lam: np.ndarray) -> np.ndarray:
        lam = np.array(lam, dtype=np.float64).reshape(self._band_shape())
        lam[self._free()] = 0.0  # the coarse band is never thresholded
        return lam

    def _freeze_host(self, lam: np.ndarray, xp) -> None:
        """Store host thresholds of band shape as an array broadcastable against the
        coefficients (band axes, then one singleton axis per axis of the variable)."""
        lam = lam.reshape(lam.shape + (1,) * len(self.shape))
        self._lam = xp.asarray(lam, dtype=self.dtype)

    def calibrate(self, x) -> None:
        """Estimate σ_b by MAD of the starlet coefficients of ``x`` (e.g. a noise realisation,
        the data, or an initial estimate, in the units of the variable), set λ_b = k·σ_b and
        freeze them. Without ``thresholds``/``noise_sigma`` and without a call to this
        method, the first ``prox`` input whose estimate is not all zero is used."""
        self._lam = self._estimate_thresholds(self._check_shape(x))

    def calibrate_noise(self, noise) -> None:
        """λ_b = k·σ_b with σ_b the MAD of the coefficients of a realisation of the
        gradient's counting noise (see ``Regularizer.calibrate_noise``), unless thresholds
        or noise_sigma are given."""
        if self.options.thresholds is None and self.options.noise_sigma is None:
            self.calibrate(noise)

    def _check_shape(self, x):
        if not hasattr(self, "shape"):
            self.setup(tuple(x.shape), array_namespace(x), x.dtype)
        if tuple(x.shape) != self.shape:
            raise ShapeError(f"{self.name} was set up for shape {self.shape}, got {tuple(x.shape)}.")
        return x

    def _estimate_thresholds(self, x, coeffs=None):
        """λ_b = k·σ_b, σ_b the MAD of the coefficients of ``x`` (``coeffs`` when the caller
        has them already); the coarse band 0."""
        coeffs = self._analysis(x) if coeffs is None else coeffs
        xp = array_namespace(x)
        lam = self.options.k * mad_sigma(coeffs, self._mad_axes(coeffs), keepdims=True)
        # zero the free bands without item assignment (array API): multiply by a mask
        mask = (~self._free()).astype(np.float64)
        mask = xp.asarray(mask.reshape(mask.shape + (1,) * (lam.ndim - mask.ndim)), dtype=lam.dtype,
                          device=device(x))
        return lam * mask

    @property
    def thresholds(self):
        """λ_b as a numpy array (band shape, plus slice axes when estimated per slice, or
        the sky axes when per pixel), or None before calibration."""
        return None if self._lam is None else to_numpy(self._lam)

    def _thresholds_for(self, x, coeffs, freeze: bool):
        """The frozen λ, or an estimate from ``x`` (frozen when ``freeze``)."""
        if self._lam is not None:
            return self._lam
        lam = self._estimate_thresholds(x, coeffs)
        # An all-zero estimate (a constant or all-zero initial iterate) must not freeze
        # λ = 0 for the whole run: keep estimating until the input carries some noise.
        if freeze and float(array_namespace(x).max(lam)) > 0:
            self._lam = lam
        return lam

    def value(self, x) -> float:
        """weight·Σ_b λ_b‖c_b‖₁ (base λ_b, also when re-weighting). Before the thresholds
        are frozen, they are estimated from ``x`` for this call only."""
        xp = array_namespace(x)
        coeffs = self._analysis(self._check_shape(x))
        lam = self._thresholds_for(x, coeffs, freeze=False)
        return self.weight * float(xp.sum(lam * xp.abs(coeffs)))

    def prox(self, x, step: float):
        xp = array_namespace(x)
        coeffs = self._analysis(self._check_shape(x))
        lam = self._thresholds_for(x, coeffs, freeze=True)
        tau = (step * self.weight) * lam
        out = soft_threshold(coeffs, tau)
        for _ in range(self.options.reweight):
            # Re-weighted ℓ1 (Candès, Wakin & Boyd 2008): τ ← τ / (1 + |ĉ|/τ) with ĉ the
            # coefficients kept by the previous pass; bands with τ = 0 stay at 0.
            den = tau + xp.abs(out)
            w = (tau * tau) / xp.where(den > 0, den, xp.ones_like(den))
            out = soft_threshold(coeffs, w)
        return self._synthesis(out)

@dataclass
class Starlet2dL1Options:
    scales: int = option(3, min=1, unit="scales", doc="number of starlet detail scales J (dyadic)")
    k: float = option(3.0, min=0.0, unit="σ", doc="threshold λ_j = k·σ_j, σ_j the noise level of scale j")
    thresholds: list[float] | None = option(
        None, unit="units of the variable",
        doc="explicit λ_j for the J detail scales (finest first); overrides k, noise_sigma and MAD")
    noise_sigma: float | None = option(
        None, min=0.0, unit="units of the variable",
        doc="std of white noise in the variable; σ_j = noise_sigma·‖ψ_j‖ at setup instead of MAD")
    per_slice: bool = option(True, doc="MAD per slice (energy bin or rank map) and scale; false: per scale only")
    reweight: int = option(0, min=0, unit="passes", doc="re-weighted ℓ1 passes inside each prox (0: plain ℓ1)")

    def check(self):
        if self.thresholds is not None and len(self.thresholds) != self.scales:
            raise ValueError(f"`thresholds` needs one value per detail scale ({self.scales}), got {len(self.thresholds)}.")
        if self.thresholds is not None and min(self.thresholds) < 0:
            raise ValueError("`thresholds` must be >= 0.")


class Starlet2dL1(_StarletL1):
    """ℓ1 of the 2-D starlet detail coefficients of every (ny, nx) slice of the variable
    (cube or rank maps), coarse scale free. Approximate prox (see module docstring)."""

    name = "starlet2d_l1"
    selection_grid = {"options.k": (1.0, 2.0, 4.0)}
    Options = Starlet2dL1Options
    n_band_axes = 1

    @classmethod
    def example(cls, xp, dtype):
        reg = cls(cls.Options(scales=3, k=1.0), weight=0.5)
        reg.setup((4, 16, 16), xp, dtype)
        return reg

    def setup(self, shape, xp, dtype) -> None:
        if len(shape) < 2:
            raise ShapeError(f"starlet2d_l1 acts on images (..., ny, nx), got shape {tuple(shape)}.")
        super().setup(shape, xp, dtype)

    def _analysis(self, x):
        return starlet2d(x, self.options.scales)

    def _band_shape(self):
        return (self.options.scales + 1,)

    def _noise_norms(self):
        return starlet_noise_norms(self.options.scales, 2)

    def _explicit_thresholds(self):
        t = self.options.thresholds
        return None if t is None else np.array(list(t) + [0.0])

    def _mad_axes(self, coeffs):
        return (coeffs.ndim - 2, coeffs.ndim - 1) if self.options.per_slice else tuple(range(1, coeffs.ndim))

    @property
    def diagonal_metric(self) -> str | None:
        """"slices" when the thresholds are MAD estimates per slice (``per_slice``, no
        explicit ``thresholds`` or ``noise_sigma``): scaling a slice by c scales its
        coefficients, their noise σ and so its thresholds by c, and the penalty in the
        scaled units is the same penalty (re-weighting too: τ²/(τ + |ĉ|) scales by c)."""
        o = self.options
        return "slices" if o.per_slice and o.thresholds is None and o.noise_sigma is None else None


@dataclass
class Starlet2d1dL1Options:
    scales_2d: int = option(3, min=1, unit="scales", doc="spatial starlet detail scales J")
    scales_1d: int = option(4, min=1, unit="scales", doc="spectral (energy axis) starlet detail scales L")
    k: float = option(3.0, min=0.0, unit="σ", doc="threshold λ_{l,j} = k·σ_{l,j}")
    thresholds: list[list[float]] | None = option(
        None, unit="units of the variable",
        doc="explicit λ as (scales_1d+1) rows × (scales_2d+1) columns, coarse last in both; "
            "the coarse × coarse entry must be 0")
    noise_sigma: float | None = option(
        None, min=0.0, unit="units of the variable",
        doc="std of white noise in the variable; σ_{l,j} = noise_sigma·‖ψ_l‖·‖ψ_j‖ at setup instead of MAD")
    reweight: int = option(0, min=0, unit="passes", doc="re-weighted ℓ1 passes inside each prox (0: plain ℓ1)")
    per_pixel: bool = option(
        False, doc="MAD per band and sky pixel (over energy) instead of per band: thresholds that follow noise "
                   "varying across the field (Poisson counts: faint pixels are noisier relative to their flux)")
    bands: str = option(
        "all", choices=("all", "details"),
        doc="bands penalised: every band but coarse × coarse (all), or only those that are details on both "
            "axes (details: the published HIFReD code; the spectral detail of the spatially coarse cube and "
            "the spatial detail of the spectrally coarse cube are left free)")
    k_faint: float | None = option(
        None, min=0.0, exclusive_min=True, unit="σ",
        doc="k in the faint regions, for the spatial-detail bands (every band but the spatially coarse "
            "column): k(p) = k + (k_faint − k)/(1 + (F(p)/F₀)²), F the start's broad-band image smoothed "
            "to the coarsest spatial scale, F₀ = faint_level·max F (after HIFReD's kmad_var)")
    faint_level: float = option(
        0.01, min=0.0, exclusive_min=True, max=1.0, unit="fraction of the peak",
        doc="F₀ of k_faint: the brightness, as a fraction of the brightest pixel of F, where k(p) is halfway")
    prox: str = option(
        "approximate", choices=("approximate", "exact"),
        doc="approximate: soft-threshold every band and sum them (the usual starlet prox, streamed); exact: "
            "argmin over x >= 0 of ½‖x − z‖² + τ·Σ λ‖c(x)‖₁ by FISTA on its dual, warm-started (materialises "
            "the bands; for non-negative variables: it includes x >= 0)")
    prox_iter: int = option(20, min=1, unit="iterations", doc="most dual iterations per exact prox")
    prox_tol: float = option(
        1e-6, min=0.0, doc="duality gap, relative to the penalty at the prox input (τ·Σ λ|c(z)|), that ends an exact prox")

    def check(self):
        if self.prox == "exact" and self.reweight:
            raise ValueError("`reweight` re-weights the approximate prox's thresholds: drop it with prox = \"exact\".")
        if self.k_faint is not None and (self.thresholds is not None or self.k == 0):
            raise ValueError("`k_faint` scales the thresholds k·σ: it needs k > 0 and no explicit `thresholds`.")
        if self.per_pixel and (self.thresholds is not None or self.noise_sigma is not None):
            raise ValueError("`per_pixel` estimates the noise per pixel by MAD: drop it, or drop `thresholds` "
                             "and `noise_sigma`.")
        t = self.thresholds
        if t is None:
            return
        if self.bands != "all":
            raise ValueError("`bands` applies to MAD or noise_sigma thresholds: with explicit `thresholds`, put 0 "
                             "in the bands to leave free (the last row and column for bands = \"details\").")
        if len(t) != self.scales_1d + 1 or any(len(row) != self.scales_2d + 1 for row in t):
            raise ValueError(f"`thresholds` must be {self.scales_1d + 1} rows of {self.scales_2d + 1} values.")
        if t[-1][-1] != 0:
            raise ValueError("`thresholds`: the last entry (coarse × coarse band) must be 0; it is never thresholded.")
        if min(min(row) for row in t) < 0:
            raise ValueError("`thresholds` must be >= 0.")


class Starlet2d1dL1(_StarletL1):
    """ℓ1 of the 2-D (space) × 1-D (energy, axis -3) starlet coefficients of a cube
    (Starck et al. 2009, A&A 504, 641, the 2D-1D transform for Fermi-LAT cubes). Bands
    (l, j): 1-D scale l (rows) × 2-D scale j (columns); coarse × coarse is free.
    Approximate prox (see module docstring)."""

    #: dual steps of the exact prox in a metric: "local", 1/(‖Φ‖²·max of d² over each
    #: coefficient's support) (``xhsi.sparsity.dual_steps``), or "uniform", 1/(‖Φ‖²·max d²)
    #: (kept for bench/published_speed.py's comparison)
    metric_steps = "local"
    name = "starlet2d1d_l1"
    selection_grid = {"options.k": (1.0, 2.0, 4.0)}
    Options = Starlet2d1dL1Options
    n_band_axes = 2

    @classmethod
    def example(cls, xp, dtype):
        reg = cls(cls.Options(scales_2d=2, scales_1d=2, k=1.0), weight=0.5)
        reg.setup((6, 16, 16), xp, dtype)
        return reg

    def __init__(self, options=None, weight: float = 1.0):
        super().__init__(options, weight)
        self.exact_prox = self.options.prox == "exact"  # the class says False: the default prox

    def setup(self, shape, xp, dtype) -> None:
        if len(shape) < 3:
            raise ShapeError(f"starlet2d1d_l1 acts on cubes (n_e, ny, nx), got shape {tuple(shape)}.")
        super().setup(shape, xp, dtype)
        self._faint = self._faint_dev = None  # k(p)/k of k_faint: host (ny, nx), and as _band_factor
        self._dual = self._norm_sq_value = self._steps = None  # the exact prox's warm start, ‖Φ‖² bound, steps
        self._metric = None  # d of a diagonal metric (use_metric): the variable is u, x = d·u
        self._frame = Starlet2d1d(tuple(shape), self.options.scales_2d, self.options.scales_1d)

    def _analysis(self, x):
        """All bands at once, (L+1, J+1, *x.shape): (L+1)(J+1) cubes. The approximate ``prox``,
        ``value`` and the MAD calibration stream the bands instead (``xhsi.sparsity.frame2d1d``)."""
        return self._frame.apply(x)

    # -- streamed: never more than a few cubes (see xhsi.sparsity.frame2d1d) -------------------
    def _scales(self):
        return self.options.scales_2d, self.options.scales_1d

    def _estimate_thresholds(self, x, coeffs=None):
        """λ_lj = k·σ_lj, σ_lj the MAD of band (l, j) of x over the whole cube (or, with
        ``per_pixel``, over energy in every sky pixel), one band at a time (streamed;
        ``coeffs`` is never materialised here); the coarse × coarse band 0. Band shape, then
        one axis per axis of x: singletons, or (..., 1, ny, nx) per pixel."""
        xp = array_namespace(x)
        sky = tuple(x.shape[-2:]) if self.options.per_pixel else (1, 1)
        sigma = np.zeros(self._band_shape() + sky)
        free = self._free()
        for ell, j, band in frame2d1d.bands(x, *self._scales()):
            if not free[ell, j]:
                # the streamed band is ours (not a view of x) on numpy: MAD in place
                own = isinstance(band, np.ndarray) and not np.may_share_memory(band, x)
                axes = tuple(range(band.ndim - 2 if self.options.per_pixel else band.ndim))
                sigma[ell, j] = to_numpy(mad_sigma(band, axes, overwrite=own))
        lam = (self.options.k * sigma).reshape(self._band_shape() + (1,) * (x.ndim - 2) + sky)
        return xp.asarray(lam, dtype=x.dtype, device=device(x))

    def calibrate_sky(self, image) -> None:
        """With ``k_faint``: the factor k(p)/k from the start's broad-band image."""
        if self.options.k_faint is not None:
            self._faint, self._faint_dev = self._faint_factor(np.asarray(image, dtype=np.float64)), None

    def _faint_factor(self, image: np.ndarray) -> np.ndarray:
        """k(p)/k = 1 + (k_faint/k − 1)/(1 + (F/F₀)²), F the coarse band of the 2-D starlet of
        ``image`` (its brightness smoothed over ±2^J pixels) clipped at 0, F₀ = faint_level·max F.

        Brightness-adaptive thresholds, after the kmad_var option of the published HIFReD
        code (Lascar et al. 2025), which raises k where a mask of the faint sky says so; here
        the map is smooth and relative to the peak, so it does not depend on the units. Where
        the sky is faint its counts are mostly the PSF wings of brighter neighbours and their
        noise: a higher k there keeps those pixels' spatial detail from fitting pn's noise, and
        their spectra come from the spatially coarse band, i.e. from their neighbours
        (docs/fusion.md, "Known limits")."""
        o = self.options
        f = np.maximum(starlet2d(image, o.scales_2d)[-1], 0.0)
        f0 = o.faint_level * float(f.max()) if f.max() > 0 else 1.0
        return 1.0 + (o.k_faint / o.k - 1.0) / (1.0 + (f / f0) ** 2)

    def _thresholds_for(self, x, coeffs, freeze: bool):
        """λ, times k(p)/k in the spatial-detail bands with ``k_faint`` (the factor from
        ``calibrate_sky``, else from the first prox input that holds flux: ``freeze``, as
        the base class does for λ, so that an all-zero start does not fix a flat map)."""
        lam = super()._thresholds_for(x, coeffs, freeze)
        if self.options.k_faint is None:
            return lam
        if self._faint is None:
            image = to_numpy(array_namespace(x).sum(x, axis=-3)).astype(np.float64)
            image = image.reshape((-1,) + image.shape[-2:]).sum(axis=0)
            faint = self._faint_factor(image)
            if not (freeze and image.max() > 0):
                return lam * self._on_device(self._band_factor(faint, x.ndim), x)
            self._faint = faint
        if self._faint_dev is None:
            self._faint_dev = self._on_device(self._band_factor(self._faint, x.ndim), x)
        return lam * self._faint_dev

    def _band_factor(self, faint: np.ndarray, ndim: int) -> np.ndarray:
        """k(p)/k on the spatial-detail bands j < J (every spectral scale), 1 on the spatially
        coarse column, shaped to broadcast against λ of a variable with ``ndim`` axes."""
        factor = np.ones(self._band_shape() + faint.shape)
        factor[:, :-1] = faint
        return factor.reshape(self._band_shape() + (1,) * (ndim - 2) + faint.shape)

    @staticmethod
    def _on_device(a: np.ndarray, x):
        return array_namespace(x).asarray(a, dtype=x.dtype, device=device(x))

    @property
    def thresholds(self):
        """λ as a numpy array, with ``k_faint`` the effective per-pixel λ·k(p)/k (band shape,
        then (1, ny, nx)); None before calibration."""
        lam = super().thresholds
        if lam is None or self.options.k_faint is None or self._faint is None:
            return lam
        return lam * self._band_factor(self._faint, lam.ndim - 2)

    def _host_tau(self, lam) -> np.ndarray:
        """λ (or τ) as the host array ``xhsi.sparsity.frame2d1d`` takes: (L+1, J+1), or
        (L+1, J+1, ny, nx) per pixel."""
        lam, bands = to_numpy(lam), self._band_shape()
        return lam.reshape(bands if lam.size == np.prod(bands) else bands + lam.shape[-2:])

    @property
    def diagonal_metric(self) -> str | None:
        """"weighted" with ``prox = "exact"``: its dual loop takes Φ∘diag(d) as well as Φ
        (``use_metric``), so a problem may iterate in the EM metric; the approximate prox
        (threshold the bands of the cube) has no form in a per-voxel metric."""
        return "weighted" if self.exact_prox else None

    def use_metric(self, d) -> None:
        """Iterate on u with x = d·u (``Regularizer.use_metric``): value and prox of u, the
        exact prox by the same dual loop with Φ∘diag(d), ‖Φ∘diag(d)‖ ≤ ‖Φ‖·max d."""
        if not self.exact_prox:
            raise ConfigError("starlet2d1d_l1 takes a diagonal metric only with prox = \"exact\".")
        self._metric, self._dual, self._steps = d, None, None
        self._metric_max_sq = float(array_namespace(d).max(d)) ** 2

    def _in_x(self, u):
        """The variable the penalty is defined on: x = d·u in a metric, else u itself."""
        return u if self._metric is None else self._metric * u

    def calibrate_noise(self, noise) -> None:
        """As ``_StarletL1.calibrate_noise``, on the noise of the gradient in x (in a metric
        the problem gives that in u, d times it): λ, and so the objective, do not depend on
        the metric the solver iterates in."""
        super().calibrate_noise(noise if self._metric is None else noise / self._metric)

    def value(self, x) -> float:
        """weight·Σ_lj λ_lj‖c_lj‖₁ (base λ, also when re-weighting; per pixel: Σ over pixels
        of λ_lj(p) times the ℓ1 over energy), bands streamed; of d·x in a metric."""
        x = self._in_x(self._check_shape(x))
        lam = self._host_tau(self._thresholds_for(x, None, freeze=False)).astype(np.float64)
        per_pixel = lam.ndim == 4
        norms = frame2d1d.l1_norms(x, *self._scales(), wanted=frame2d1d.wanted_bands(lam), per_pixel=per_pixel)
        return self.weight * float(np.sum(lam * norms))

    def prox(self, x, step: float):
        """Soft-threshold every band by step·weight·λ_lj (re-weighted when asked) and sum the
        bands, streamed (``xhsi.sparsity.frame2d1d.shrink``): same result as thresholding the
        materialised bands, in ~3 cubes of memory instead of (L+1)(J+1) + padding.
        ``prox = "exact"``: argmin_{u ≥ 0} ½‖u − x‖² + step·weight·Σ λ‖c(u)‖₁
        (``xhsi.sparsity.analysis_prox``), warm-started from the previous call's dual; in a
        metric with one dual step per coefficient (``metric_steps``); ~4(L+1)(J+1) cubes of
        memory (5 in a metric: the steps)."""
        lam = self._thresholds_for(self._in_x(self._check_shape(x)), None, freeze=True)
        if self.exact_prox:
            o, d = self.options, self._metric
            analysis, adjoint, norm_sq, steps = self._frame.apply, self._frame.adjoint, self._norm_sq(), None
            if d is not None:  # the prox of u ↦ φ(d·u): the frame Φ∘diag(d)
                analysis, adjoint = (lambda u: self._frame.apply(d * u)), (lambda c: d * self._frame.adjoint(c))
                if self.metric_steps == "local":
                    if self._steps is None:
                        self._steps = metric_dual_steps(d, norm_sq, o.scales_2d, o.scales_1d)
                    steps = self._steps
                norm_sq *= self._metric_max_sq
            out, self._dual, _ = analysis_l1_prox_nonnegative(
                x, analysis, adjoint, (step * self.weight) * lam, norm_sq,
                dual=self._dual, max_iter=o.prox_iter, tol=o.prox_tol, step=steps)
            return out
        return frame2d1d.shrink(x, *self._scales(), self._host_tau((step * self.weight) * lam),
                             reweight=self.options.reweight)

    def _norm_sq(self) -> float:
        """An upper bound of ‖Φ‖²: the 2D-1D analysis is the tensor product of a 1-D starlet
        along energy and a 2-D one over the sky, so ‖Φ‖ = ‖Φ₁‖·‖Φ₂‖, each by power iteration
        on the host (``LinearOperator.norm``, float64) on one spectrum and one image, with a
        1 % margin (power iteration approaches from below), once."""
        if self._norm_sq_value is None:
            n_e, ny, nx = self.shape[-3:]
            one = StarletAnalysis((n_e,), self.options.scales_1d, axis=0).norm()
            two = StarletAnalysis((ny, nx), self.options.scales_2d).norm()
            self._norm_sq_value = 1.01 * (one * two) ** 2
        return self._norm_sq_value

    def _band_shape(self):
        return (self.options.scales_1d + 1, self.options.scales_2d + 1)

    def _free(self) -> np.ndarray:
        """The coarse × coarse band; with ``bands = "details"`` also every band that is coarse
        on either axis (last row and last column)."""
        free = super()._free()
        if self.options.bands == "details":
            free[-1, :] = True
            free[:, -1] = True
        return free

    def _noise_norms(self):
        n1 = starlet_noise_norms(self.options.scales_1d, 1)
        n2 = starlet_noise_norms(self.options.scales_2d, 2)
        return n1[:, None] * n2[None, :]

    def _explicit_thresholds(self):
        t = self.options.thresholds
        return None if t is None else np.array(t, dtype=np.float64)
