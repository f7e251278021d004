"""Built-in spectral models plugin: ``powerlaw``, ``thermal``, ``absorption`` (analytic,
from ``xhsi.spectral.spectra``, with exact derivatives), ``table`` (an XSPEC/OGIP table model file,
multilinear interpolation), ``surrogate`` (a learnt emulator, ``xhsi.spectral.surrogate``) and
``iae`` (the decoder of an Interpolatory Auto-Encoder, ``xhsi.spectral.iae``).

See ``xhsi.spectral.models`` for the contract (``setup``, ``evaluate``, ``vjp``, ``jvp``)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from xhsi import hookimpl

from xhsi.spectral import spectra
from xhsi.errors import ConfigError, DataError
from xhsi.schema import option
from xhsi.spectral.models import Parameter, SpectralModel

_EXAMPLE_EDGES = np.linspace(0.5, 8.0, 31)


# -- analytic models -----------------------------------------------------------------------
class PowerLaw(SpectralModel):
    """Photon power law N(E) ∝ E^-Γ: exact bin integrals normalised to unit photon flux over
    the grid (``xhsi.spectral.spectra.powerlaw``), so the amplitude map carries the flux."""

    name = "powerlaw"
    parameters = (Parameter("index", "", 2.0, (0.0, 5.0), doc="photon index Γ, N(E) ∝ E^-Γ"),)

    def _evaluate(self, theta):
        return spectra.powerlaw(self.edges, theta[0, ...])

    def _derivatives(self, theta):
        d = spectra.powerlaw_derivatives(self.edges, theta[0, ...])
        return d["spectrum"], [d["index"]]


@dataclass
class ThermalOptions:
    fit_abundance: bool = option(True, doc="abundance is a parameter; false: held at `abundance`")
    abundance: float = option(1.0, min=0.0, unit="solar", doc="line abundance when not fitted")
    sigma_v_kms: float = option(0.0, min=0.0, unit="km/s",
                                doc="turbulent velocity dispersion added to thermal line broadening (when not "
                                    "fitted)")
    fit_sigma_v: bool = option(False, doc="the dispersion is a parameter `sigma_v` (km/s, start 200: its gradient "
                                          "vanishes at 0); false: held at `sigma_v_kms`")


class Thermal(SpectralModel):
    """Analytic approximation of an optically thin collisional plasma
    (``xhsi.spectral.spectra.thermal``: Born-Gaunt bremsstrahlung with temperature kT plus the
    He- and H-like K-shell lines of Si, S, Ar, Ca and Fe with temperature-dependent
    strengths, every constant sourced there), Doppler shifted by z (E_obs = E_rest/(1+z);
    ``xhsi.spectral.spectra.redshift_from_velocity`` converts a line-of-sight velocity), with an
    optional abundance parameter. Unit photon flux over the grid. Derivatives are exact
    (``xhsi.spectral.spectra.thermal_derivatives``)."""

    name = "thermal"
    Options = ThermalOptions
    _ALL = (
        Parameter("kT", "keV", 2.0, (0.2, 20.0), doc="electron temperature"),
        Parameter("z", "", 0.0, (-0.1, 1.0), doc="redshift: Doppler (v/c ≈ z) or cosmological"),
        Parameter("abundance", "solar", 1.0, (0.0, 10.0), doc="line strengths relative to solar abundance"),
        Parameter("sigma_v", "km/s", 200.0, (0.0, 5000.0), doc="turbulent line-of-sight velocity dispersion"),
    )

    def __init__(self, options=None):
        super().__init__(options)
        o = self.options
        self.parameters = self._ALL[:2] + self._ALL[2:3] * o.fit_abundance + self._ALL[3:] * o.fit_sigma_v

    def _abundance(self, theta):
        return theta[2, ...] if self.options.fit_abundance else self.options.abundance

    def _sigma_v(self, theta):
        return theta[len(self.parameters) - 1, ...] if self.options.fit_sigma_v else self.options.sigma_v_kms

    def _evaluate(self, theta):
        return spectra.thermal(self.edges, theta[0, ...], theta[1, ...], self._abundance(theta), self._sigma_v(theta))

    def _derivatives(self, theta):
        o = self.options
        d = spectra.thermal_derivatives(self.edges, theta[0, ...], theta[1, ...], self._abundance(theta),
                                        self._sigma_v(theta))
        parts = [d["kT_keV"], d["z"]] + [d["abundance"]] * o.fit_abundance + [d["sigma_v_kms"]] * o.fit_sigma_v
        return d["spectrum"], parts


class Absorption(SpectralModel):
    """Multiplicative photoelectric absorption by cold gas, exp(-N_H σ(E)) with the
    Morrison & McCammon (1983, ApJ 270, 119) cross-sections, averaged over each bin
    (``xhsi.spectral.spectra.absorption``). Combine with an emission model:
    ``build_spectral_model("absorption * thermal")``."""

    name = "absorption"
    additive = False
    parameters = (Parameter("nh", "1e22 cm^-2", 0.1, (0.0, 100.0), doc="hydrogen column density N_H"),)

    def _evaluate(self, theta):
        return spectra.absorption(self.edges, theta[0, ...])

    def _derivatives(self, theta):
        d = spectra.absorption_derivatives(self.edges, theta[0, ...])
        return d["spectrum"], [d["nh_1e22"]]


# -- OGIP table models ------------------------------------------------------------------------
@dataclass
class OgipTable:
    """An XSPEC table model read from FITS (OGIP memo 92-009, Arnaud 1992/1995): the
    parameter grid and the spectra on it, ``spectra`` (n_1, ..., n_d, n_table_e) in
    photons / cm² / s per table bin, ``values[k]`` the tabulated values of parameter k."""

    path: Path | None
    model_name: str
    additive: bool
    names: list[str]
    methods: list[int]
    initial: list[float]
    frozen: list[bool]
    hard: list[tuple[float, float]]
    values: list[np.ndarray]
    energy_edges_kev: np.ndarray
    spectra: np.ndarray


def read_table_model(path: str | Path) -> OgipTable:
    """Read an XSPEC/OGIP additive or multiplicative table model. Spectra rows are placed on
    the parameter grid by their PARAMVAL (so any row order is accepted) and every grid
    point must be present once. Tables with REDSHIFT = T or additional (NADDPARM > 0)
    parameters are refused with a DataError (not supported)."""
    from xhsi.io._fits import column, find_hdu, open_fits

    path = Path(path)
    what = "XSPEC table model"
    with open_fits(path, what) as hdul:
        primary = hdul[0].header
        if str(primary.get("HDUCLAS1", "")).strip().upper() != "XSPEC TABLE MODEL":
            raise DataError(f"{path}: primary header HDUCLAS1 = {primary.get('HDUCLAS1')!r}, not 'XSPEC TABLE MODEL' "
                            "(OGIP memo 92-009): not a table model.")
        if bool(primary.get("REDSHIFT", False)):
            raise DataError(f"{path}: REDSHIFT = T tables are not supported; multiply by a redshifted model instead "
                            "or tabulate the redshift as a parameter.")
        unit = str(primary.get("MODLUNIT", "photons/cm^2/s")).replace(" ", "").lower()
        additive = bool(primary.get("ADDMODEL", True))
        if additive and unit not in ("photons/cm^2/s", "photons/cm2/s", "ph/cm^2/s", "ph/cm2/s", ""):
            raise DataError(f"{path}: MODLUNIT = {primary.get('MODLUNIT')!r}; only photons/cm^2/s per bin is supported.")
        par = find_hdu(hdul, ("PARAMETERS",), path, what)
        n_int = int(par.header.get("NINTPARM", len(par.data)))
        if int(par.header.get("NADDPARM", 0)) > 0:
            raise DataError(f"{path}: tables with additional parameters (NADDPARM > 0) are not supported.")
        names = [str(n).strip() for n in column(par, "NAME", path)][:n_int]
        methods = [int(m) for m in column(par, "METHOD", path)][:n_int]
        numbvals = [int(m) for m in column(par, "NUMBVALS", path)][:n_int]
        raw_values = column(par, "VALUE", path)
        values = [np.asarray(raw_values[k], dtype=np.float64)[:numbvals[k]] for k in range(n_int)]
        initial = [float(v) for v in column(par, "INITIAL", path)][:n_int]
        frozen = [float(v) < 0 for v in column(par, "DELTA", path)][:n_int]
        hard = list(zip((float(v) for v in column(par, "MINIMUM", path)),
                        (float(v) for v in column(par, "MAXIMUM", path))))[:n_int]
        ene = find_hdu(hdul, ("ENERGIES",), path, what)
        lo = np.asarray(column(ene, "ENERG_LO", path), dtype=np.float64)
        hi = np.asarray(column(ene, "ENERG_HI", path), dtype=np.float64)
        spec = find_hdu(hdul, ("SPECTRA",), path, what)
        paramval = np.asarray(column(spec, "PARAMVAL", path), dtype=np.float64).reshape(len(spec.data), -1)
        intpspec = np.asarray(column(spec, "INTPSPEC", path), dtype=np.float64).reshape(len(spec.data), -1)
        model_name = str(primary.get("MODLNAME", path.stem)).strip()
    for k, (name, v, method) in enumerate(zip(names, values, methods)):
        if v.size < 2 or np.any(np.diff(v) <= 0) or not np.all(np.isfinite(v)):
            raise DataError(f"{path}: parameter `{name}` needs at least 2 increasing tabulated values; got {v.tolist()}.")
        if method not in (0, 1):
            raise DataError(f"{path}: parameter `{name}` has METHOD = {method}; 0 (linear) or 1 (logarithmic) expected.")
        if method == 1 and v[0] <= 0:
            raise DataError(f"{path}: parameter `{name}` is interpolated in log (METHOD = 1) but has values <= 0.")
    if lo.size < 1 or not np.all(hi > lo) or not np.allclose(lo[1:], hi[:-1], rtol=1e-6) or lo[0] <= 0:
        raise DataError(f"{path}: ENERGIES must be contiguous, increasing bins with ENERG_LO > 0 (keV).")
    edges = np.append(lo, hi[-1])
    if intpspec.shape[1] != lo.size or paramval.shape[1] != n_int:
        raise DataError(f"{path}: SPECTRA rows hold {intpspec.shape[1]} bins and {paramval.shape[1]} parameter values; "
                        f"ENERGIES has {lo.size} bins and PARAMETERS {n_int} interpolation parameters.")
    shape = tuple(v.size for v in values)
    grid_index = []
    for k, v in enumerate(values):
        pos = np.clip(np.searchsorted(v, paramval[:, k]), 0, v.size - 1)
        left = np.clip(pos - 1, 0, v.size - 1)
        pos = np.where(np.abs(v[left] - paramval[:, k]) < np.abs(v[pos] - paramval[:, k]), left, pos)
        if not np.allclose(v[pos], paramval[:, k], rtol=1e-5, atol=1e-12):
            bad = int(np.argmax(np.abs(v[pos] - paramval[:, k])))
            raise DataError(f"{path}: SPECTRA row {bad + 1} has {names[k]} = {paramval[bad, k]}, not a tabulated value.")
        grid_index.append(pos)
    flat = np.ravel_multi_index(tuple(grid_index), shape)
    if flat.size != int(np.prod(shape)) or np.unique(flat).size != flat.size:
        raise DataError(f"{path}: SPECTRA has {flat.size} rows for a grid of {int(np.prod(shape))} parameter points "
                        f"({' x '.join(map(str, shape))}); each point must appear exactly once.")
    grid = np.empty((int(np.prod(shape)), lo.size))
    grid[flat] = intpspec
    if not np.all(np.isfinite(grid)):
        raise DataError(f"{path}: SPECTRA holds non-finite values.")
    return OgipTable(path, model_name, additive, names, methods, initial, frozen, hard, values, edges,
                     grid.reshape(shape + (lo.size,)))


@dataclass
class TableOptions:
    file: Path | None = option(None, doc="XSPEC/OGIP table model FITS file (OGIP memo 92-009)")
    normalise: bool = option(True, doc="additive tables: unit photon flux over the grid (the amplitude carries the flux); "
                                       "false keeps the table's photons/cm^2/s")


class TableModel(SpectralModel):
    """An XSPEC table model (OGIP memo 92-009): spectra tabulated on a grid of parameter
    values, multilinearly interpolated in the parameters (in log for METHOD = 1), with the
    exact gradient of that interpolation. The table spectra are re-binned once to the model
    grid (flat within each table bin: a model bin takes the overlapping fraction of every
    table bin), which must lie inside the table's energies. Parameters outside the
    tabulated range are clamped to it (zero gradient beyond). Bounds are the tabulated
    range (within MINIMUM/MAXIMUM); defaults are INITIAL, clamped to it."""

    name = "table"
    Options = TableOptions

    def __init__(self, options=None, table: OgipTable | None = None):
        super().__init__(options)
        if table is None:
            if self.options.file is None:
                raise ConfigError("spectral model `table` needs options.file, the table model FITS file.")
            table = read_table_model(self.options.file)
        self.table = table
        self.additive = table.additive
        params = []
        for name, v, init, frozen, (hmin, hmax), method in zip(table.names, table.values, table.initial, table.frozen,
                                                               table.hard, table.methods):
            lo, hi = max(float(v[0]), hmin), min(float(v[-1]), hmax)
            if not lo < hi:
                lo, hi = float(v[0]), float(v[-1])
            params.append(Parameter(name, "", min(max(init, lo), hi), (lo, hi),
                                    doc=f"table parameter ({'log' if method == 1 else 'linear'} interpolation"
                                        f"{', frozen by default in XSPEC' if frozen else ''})"))
        self.parameters = tuple(params)

    def _setup(self) -> None:
        from xhsi.instruments import overlap_matrix

        t = self.table
        e, te = self.energy_edges_kev, t.energy_edges_kev
        tol = 1e-6 * te[-1]
        if e[0] < te[0] - tol or e[-1] > te[-1] + tol:
            where = f"{t.path}" if t.path else "the table"
            raise DataError(f"{where} covers {te[0]:.6g}–{te[-1]:.6g} keV, but the model grid spans "
                            f"{e[0]:.6g}–{e[-1]:.6g} keV: make the model energy grid fit inside the table's energies, "
                            "or use a table that covers it.")
        weights = overlap_matrix(te, e).toarray() / np.diff(te)[None, :]  # (n_e, n_table_e)
        n_grid = int(np.prod([v.size for v in t.values]))
        rebinned = t.spectra.reshape(n_grid, -1) @ weights.T  # (n_grid, n_e)
        if self.additive and self.options.normalise and np.any(rebinned.sum(axis=1) <= 0):
            raise DataError(f"{t.path or 'the table'}: a tabulated spectrum has no flux on the model grid, so it "
                            "cannot be normalised; set options.normalise = false.")
        self._grid = self._to_xp(rebinned)
        self._nodes = []
        strides = np.cumprod([1] + [v.size for v in t.values[::-1]])[:-1][::-1]
        for v, method, stride in zip(t.values, t.methods, strides):
            nodes = np.log(v) if method == 1 else v
            self._nodes.append((self._to_xp(nodes), method == 1, int(stride), int(v.size), float(v[0]), float(v[-1])))

    def _weights(self, theta2):
        """Per parameter: (index of the lower node, weight of the upper node, d weight/dθ)."""
        xp = self.xp
        out = []
        for k, (nodes, log, _, n, v0, v1) in enumerate(self._nodes):
            raw = theta2[k, :]
            inside = (raw >= v0) & (raw <= v1)
            p = xp.clip(raw, min=v0, max=v1)
            u = xp.log(p) if log else p
            idx = xp.searchsorted(nodes, u, side="right") - 1
            idx = xp.clip(idx, 0, n - 2)
            lo, hi = xp.take(nodes, idx), xp.take(nodes, idx + 1)
            w = (u - lo) / (hi - lo)
            dw = 1.0 / (hi - lo)
            dw = dw / p if log else dw
            out.append((idx, w, xp.where(inside, dw, xp.zeros_like(dw))))
        return out

    def _corners(self, theta2):
        """Yield (spectra (P, n_e), weight (P,), [∂weight/∂θ_k (P,)]) for the 2^d corners."""
        xp = self.xp
        parts = self._weights(theta2)
        d = len(parts)
        for corner in range(2 ** d):
            bits = [(corner >> (d - 1 - k)) & 1 for k in range(d)]
            flat = None
            factors, dfactors = [], []
            for (idx, w, dw), bit, (_, _, stride, _, _, _) in zip(parts, bits, self._nodes):
                term = (idx + bit) * stride
                flat = term if flat is None else flat + term
                factors.append(w if bit else 1.0 - w)
                dfactors.append(dw if bit else -dw)
            weight = factors[0]
            for f in factors[1:]:
                weight = weight * f
            dweights = []
            for k in range(d):
                g = dfactors[k]
                for j in range(d):
                    if j != k:
                        g = g * factors[j]
                dweights.append(g)
            yield xp.take(self._grid, flat, axis=0), weight, dweights

    def _flatten(self, theta):
        return self.xp.reshape(theta, (self.n_params, -1))

    def _raw(self, theta2):
        """Interpolated spectra before normalisation, (n_e, P)."""
        out = None
        for spec, weight, _ in self._corners(theta2):
            term = spec * weight[:, None]
            out = term if out is None else out + term
        return self.xp.permute_dims(out, (1, 0))

    def _normalised(self) -> bool:
        return self.additive and self.options.normalise

    def _evaluate(self, theta):
        f = self._raw(self._flatten(theta))
        if self._normalised():
            f = f / self.xp.sum(f, axis=0, keepdims=True)
        return self.xp.reshape(f, (self.n_e,) + tuple(theta.shape[1:]))

    def _vjp(self, theta, cotangent):
        xp = self.xp
        theta2 = self._flatten(theta)
        c = xp.reshape(cotangent, (self.n_e, -1))
        if self._normalised():
            f = self._raw(theta2)
            total = xp.sum(f, axis=0, keepdims=True)
            n = f / total
            c = (c - xp.sum(c * n, axis=0, keepdims=True)) / total  # quotient rule of N = F/ΣF
        grads = [None] * self.n_params
        ct = xp.permute_dims(c, (1, 0))  # (P, n_e)
        for spec, _, dweights in self._corners(theta2):
            proj = xp.sum(spec * ct, axis=1)
            for k, dw in enumerate(dweights):
                grads[k] = dw * proj if grads[k] is None else grads[k] + dw * proj
        return xp.reshape(xp.stack(grads, axis=0), tuple(theta.shape))

    def _jvp(self, theta, tangent):
        xp = self.xp
        theta2, t2 = self._flatten(theta), self._flatten(tangent)
        df = None
        for spec, _, dweights in self._corners(theta2):
            rate = dweights[0] * t2[0, :]
            for k in range(1, self.n_params):
                rate = rate + dweights[k] * t2[k, :]
            term = spec * rate[:, None]
            df = term if df is None else df + term
        df = xp.permute_dims(df, (1, 0))
        if self._normalised():
            f = self._raw(theta2)
            total = xp.sum(f, axis=0, keepdims=True)
            df = (df - (f / total) * xp.sum(df, axis=0, keepdims=True)) / total
        return xp.reshape(df, (self.n_e,) + tuple(theta.shape[1:]))

    @classmethod
    def example(cls, xp, dtype) -> "TableModel":
        return cls(TableOptions(), table=example_table()).setup(_EXAMPLE_EDGES, xp, dtype)


def example_table() -> OgipTable:
    """A small in-memory table (no file): a cut-off power law E^-Γ e^{-E/E_c} tabulated on
    Γ (linear, 4 values) × E_c (log, 3 values), 0.3–12 keV in 60 bins. For tests and docs."""
    te = np.geomspace(0.3, 12.0, 61)
    gamma = np.array([1.0, 1.7, 2.4, 3.0])
    cutoff = np.array([2.0, 6.0, 20.0])
    mid = np.sqrt(te[:-1] * te[1:])
    spec = (mid[None, None, :] ** -gamma[:, None, None]) * np.exp(-mid[None, None, :] / cutoff[None, :, None]) * np.diff(te)
    return OgipTable(None, "cutoffpl_example", True, ["Gamma", "Ecut"], [0, 1], [1.7, 6.0], [False, False],
                     [(0.0, 10.0), (0.1, 100.0)], [gamma, cutoff], te, spec)


# -- surrogate -------------------------------------------------------------------------------
@dataclass
class SurrogateOptions:
    file: Path | None = option(None, doc="surrogate NAME.npz written by `xhsi train-model` (NAME.json beside it)")


class _LearntModel(SpectralModel):
    """A learnt model on the run's namespace: ``_setup`` puts a device object (forward pass,
    vjp, jvp on parameters (n_params, N)) in ``self._device``; maps of any shape are
    flattened to (n_params, N) and back."""

    def _flat(self, a, rows):
        return self.xp.reshape(a, (rows, -1))

    def _evaluate(self, theta):
        out = self._device.evaluate(self._flat(theta, self.n_params))
        return self.xp.reshape(out, (self.n_out,) + tuple(theta.shape[1:]))

    def _vjp(self, theta, cotangent):
        g = self._device.vjp(self._flat(theta, self.n_params), self._flat(cotangent, self.n_out))
        return self.xp.reshape(g, tuple(theta.shape))

    def _jvp(self, theta, tangent):
        out = self._device.jvp(self._flat(theta, self.n_params), self._flat(tangent, self.n_params))
        return self.xp.reshape(out, (self.n_out,) + tuple(theta.shape[1:]))


class SurrogateModel(_LearntModel):
    """A learnt emulator of another spectral model (``xhsi.spectral.surrogate``): PCA of sampled
    spectra + a small tanh network from the parameters to the PCA coefficients, with
    exact vjp/jvp of the network. Its parameters, bounds (the training range) and energy
    grid come from the file; ``setup`` refuses another energy grid. When trained after an
    instrument response, ``response`` holds that response's identity, the output has one
    value per channel (``n_out``), and ``check_response`` refuses any other response."""

    name = "surrogate"
    Options = SurrogateOptions

    def __init__(self, options=None, surrogate=None):
        from xhsi.spectral.surrogate import load_surrogate

        super().__init__(options)
        if surrogate is None:
            if self.options.file is None:
                raise ConfigError("spectral model `surrogate` needs options.file, the .npz written by xhsi train-model.")
            surrogate = load_surrogate(self.options.file)
        self.surrogate = surrogate
        self.parameters = surrogate.parameters
        self.additive = bool(surrogate.metadata.get("additive", True))
        self.response = surrogate.response
        self.emulated = surrogate.metadata.get("emulated_model", "?")

    @property
    def n_out(self) -> int:
        return self.surrogate.n_out

    def _setup(self) -> None:
        from xhsi.spectral.pairfiles import check_trained_grid
        from xhsi.spectral.surrogate import DeviceSurrogate

        check_trained_grid(self.surrogate.metadata, self.energy_edges_kev, self.options.file or "this surrogate")
        self._device = DeviceSurrogate(self.surrogate, self.xp, self.dtype)

    @classmethod
    def example(cls, xp, dtype) -> "SurrogateModel":
        return cls(SurrogateOptions(), surrogate=_example_surrogate()).setup(_EXAMPLE_EDGES, xp, dtype)


@lru_cache(maxsize=1)
def _example_surrogate():
    """A quickly trained (not accurate) emulator of ``absorption * powerlaw`` on the example grid."""
    from xhsi.spectral.models import Product
    from xhsi.spectral.training import TrainSurrogateSection, train_surrogate

    model = Product([Absorption(), PowerLaw()]).setup(_EXAMPLE_EDGES)
    settings = TrainSurrogateSection(model="absorption * powerlaw", n_samples=200, n_components=4, hidden=[8],
                                     epochs=20, batch_size=50, bounds={"nh": [0.05, 2.0], "index": [1.0, 3.0]},
                                     log_parameters=["nh"])
    return train_surrogate(model, settings)


# -- interpolatory auto-encoder -----------------------------------------------------------
@dataclass
class IAEOptions:
    file: Path | None = option(None, doc="IAE NAME.npz written by `xhsi train-model` (NAME.json beside it)")


class IAEModel(_LearntModel):
    """The decoder of an Interpolatory Auto-Encoder (Bobin et al. 2023, A&A 670, A163;
    ``xhsi.spectral.iae``): spectra decoded from barycentric combinations of the latent codes
    of anchor spectra. Its parameters ``w1 ...`` are the free barycentric weights (the
    last anchor has 1 - Σ w; all k without the sum-to-one constraint), or their coordinates
    aligned with the physical parameters when the file has an alignment, bounded by the
    training set's range; ``physical(theta)`` reads the physical parameters back and
    ``encode(spectra)`` gives the parameters of spectra. Unit sum (additive). ``setup``
    refuses another energy grid, ``check_response`` another response."""

    name = "iae"
    Options = IAEOptions

    def __init__(self, options=None, iae=None):
        from xhsi.spectral.iae import load_iae

        super().__init__(options)
        if iae is None:
            if self.options.file is None:
                raise ConfigError("spectral model `iae` needs options.file, the .npz written by xhsi train-model.")
            iae = load_iae(self.options.file)
        self.iae = iae
        self.parameters = iae.parameters
        self.physical_parameters = iae.physical_parameters
        self.response = iae.response

    @property
    def n_out(self) -> int:
        return self.iae.n_out

    def _setup(self) -> None:
        from xhsi.spectral.iae import DeviceIAE, check_energy_grid

        check_energy_grid(self.iae, self.energy_edges_kev, self.options.file or "this IAE")
        self._device = DeviceIAE(self.iae, self.xp, self.dtype)

    def physical(self, theta) -> dict:
        """{name: map} of the physical parameters read out from the weights ``theta``
        (n_params, *S) by the learnt polynomial, clipped to the training range."""
        self._check_theta(theta)
        out = self._device.physical(self._flat(theta, self.n_params))
        return {k: self.xp.reshape(v, tuple(theta.shape[1:])) for k, v in out.items()}

    def fit_physical(self, theta, iterations: int = 30) -> dict:
        """{name: map} of the physical parameters by a per-pixel fit of the model the IAE
        was trained on to the decoded spectra, from the read-out of ``physical``
        (``xhsi.spectral.iae.DeviceIAE.fit_physical``; ConfigError for an IAE trained on a
        library or after a response)."""
        self._check_theta(theta)
        out = self._device.fit_physical(self._flat(theta, self.n_params), iterations,
                                        where=self.options.file or "this IAE")
        return {k: self.xp.reshape(v, tuple(theta.shape[1:])) for k, v in out.items()}

    def encode(self, spectra):
        """The weights (n_params, *S) of spectra (n_out, *S) given by the encoder."""
        self._require_setup()
        out = self._device.encode(self._flat(spectra, self.n_out))
        return self.xp.reshape(out, (self.n_params,) + tuple(spectra.shape[1:]))

    @classmethod
    def example(cls, xp, dtype) -> "IAEModel":
        return cls(IAEOptions(), iae=_example_iae()).setup(_EXAMPLE_EDGES, xp, dtype)


@lru_cache(maxsize=1)
def _example_iae():
    """A quickly trained (not accurate) IAE of ``absorption * powerlaw`` on the example grid."""
    from xhsi.spectral.iae_data import TrainIAESection, sample_model
    from xhsi.spectral.iae_training import train_iae
    from xhsi.spectral.models import Product

    model = Product([Absorption(), PowerLaw()]).setup(_EXAMPLE_EDGES)
    settings = TrainIAESection(model="absorption * powerlaw", n_samples=120, width=8, layers=1, epochs=10,
                               batch_size=30, bounds={"nh": [0.05, 2.0], "index": [1.0, 3.0]}, log_parameters=["nh"],
                               readout_degree=2)
    return train_iae(sample_model(model, settings), settings)


@hookimpl
def xhsi_register_spectral_models():
    return [PowerLaw, Thermal, Absorption, TableModel, SurrogateModel, IAEModel]
