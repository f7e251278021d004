"""Semi-blind spectral unmixing (SUSHI, Lascar, Bobin & Acero 2024, A&A 686, A259).

The sky cube is a mixture of components, each a spectral model S_c with parameter maps θ_c
and an amplitude map a_c (photon flux per pixel over the model band, photons / s / cm²):

    Z(E, y, x) = Σ_c a_c(y, x) · S_c(E; θ_c(y, x)),

observed through each instrument's forward operator: counts_k ~ Poisson(A_k Z + B_k). The
unknowns are solved by PALM (Bolte, Sabach & Teboulle 2014) with one block per amplitude map
and one block per fitted parameter map, so that each map gets its own step size (a
temperature in keV and a redshift of order 1e-3 have curvatures many decades apart).
Amplitudes are projected on a ≥ 0, parameters on their bounds; optional starlet sparsity of
the maps (thresholds k·σ, σ the MAD of the counting noise of each block's gradient).

Parameters may be *fixed* (a constant, e.g. the abundance) or *linked* to another
component's map (one velocity map shared by two plasmas: one block, gradients summed).
Amplitudes are solved relative to a per-pixel flux scale (the mean initial amplitude of the
pixel), which evens out their curvatures; maps are written back in physical units.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..backend import Backend, to_numpy
from ..errors import ConfigError
from ..results import Result
from ..schema import option
from .base import ObservationData, Problem, solver_report
from .imaging import backprojection, gradient_noise


class Box:
    """Projection onto lo ≤ x ≤ hi (exact prox of the box indicator)."""

    def __init__(self, lo: float, hi: float):
        self.lo, self.hi = float(lo), float(hi)

    def prox(self, x, step: float):
        from ..backend import array_namespace

        return array_namespace(x).clip(x, min=self.lo, max=self.hi)

    def value(self, x) -> float:
        return 0.0


@dataclass
class ResolvedComponent:
    """A component with its spectral model set up and each parameter resolved to a block
    index (``slots``), a constant (``constants``) or a link."""

    name: str
    model: Any
    slots: dict[str, int] = field(default_factory=dict)
    constants: dict[str, float] = field(default_factory=dict)
    amplitude_slot: int | None = None
    amplitude_init: Any = None


@dataclass
class MapBlock:
    """One fitted map: its name, initial value, bounds (for the projection), unit and the
    starlet sparsity it asked for."""

    name: str
    init: Any
    bounds: tuple[float, float]
    unit: str
    sparsity_k: float | None
    scales: int


def resolve_components(sections, grid, backend: Backend, source: str,
                       base_dir=".") -> tuple[list[ResolvedComponent], list[MapBlock]]:
    """Build the spectral models of ``[[components]]`` and assign blocks. Every user error
    (unknown model or parameter, init out of bounds, bad links) is a ConfigError naming the
    dotted key."""
    from ..spectral_models import build_spectral_model

    if not sections:
        raise ConfigError(f"{source}: problem `unmixing` needs [[components]] (name, model, ...).")
    ny, nx = grid.ny, grid.nx
    xp = backend.xp
    comps: list[ResolvedComponent] = []
    blocks: list[MapBlock] = []
    by_name: dict[str, tuple[ResolvedComponent, Any]] = {}
    for i, sec in enumerate(sections):
        where = f"{source}: `components[{i}]`"
        if sec.name in by_name:
            raise ConfigError(f"{where}.name: component names must be unique; `{sec.name}` is repeated.")
        model = build_spectral_model(sec.model, sec.options, where=f"{where}.model", base_dir=base_dir).setup(
            grid.energy_edges_kev, xp, backend.dtype)
        params = {p.name: p for p in model.parameters}
        for key in ("init", "bounds", "link"):
            for pname in getattr(sec, key):
                if pname not in params:
                    from ..errors import did_you_mean

                    raise ConfigError(f"{where}.{key}.{pname}: `{sec.model}` has no parameter `{pname}`"
                                      f"{did_you_mean(pname, params)}; parameters: {', '.join(params)}.")
        for pname in sec.fixed:
            if pname not in params:
                raise ConfigError(f"{where}.fixed: `{sec.model}` has no parameter `{pname}`; parameters: "
                                  f"{', '.join(params)}.")
        comp = ResolvedComponent(sec.name, model)
        for pname, par in params.items():
            lo, hi = par.bounds
            if pname in sec.bounds:
                b = sec.bounds[pname]
                if not (isinstance(b, list) and len(b) == 2 and all(isinstance(v, (int, float)) for v in b)):
                    raise ConfigError(f"{where}.bounds.{pname}: expected [lower, upper] in {par.unit or 'no unit'}.")
                lo, hi = max(lo, float(b[0])), min(hi, float(b[1]))
                if not lo < hi:
                    raise ConfigError(f"{where}.bounds.{pname}: [{b[0]}, {b[1]}] leaves nothing inside the model's "
                                      f"range {par.bounds}.")
            value = sec.init.get(pname, par.default)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ConfigError(f"{where}.init.{pname}: expected a number in {par.unit or 'no unit'}.")
            if not lo <= value <= hi:
                raise ConfigError(f"{where}.init.{pname}: {value} {par.unit} is outside the bounds [{lo}, {hi}].")
            if pname in sec.link:
                continue  # resolved once every component is known
            if pname in sec.fixed:
                comp.constants[pname] = float(value)
                continue
            comp.slots[pname] = len(blocks)
            blocks.append(MapBlock(f"{sec.name}.{pname}", xp.full((ny, nx), float(value), dtype=backend.dtype),
                                   (lo, hi), par.unit, sec.parameter_k, sec.scales))
        comps.append(comp)
        by_name[sec.name] = (comp, params)
    for i, sec in enumerate(sections):
        comp, params = by_name[sec.name]
        for pname, target in sec.link.items():
            where = f"{source}: `components[{i}].link.{pname}`"
            other, _, tparam = str(target).partition(".")
            if other not in by_name or not tparam:
                raise ConfigError(f"{where}: `{target}` must be \"component.parameter\" with a component among "
                                  f"{', '.join(by_name)}.")
            ocomp, oparams = by_name[other]
            if tparam not in ocomp.slots:
                raise ConfigError(f"{where}: `{target}` is not a fitted map (it is fixed, linked or unknown).")
            if oparams[tparam].unit != params[pname].unit:
                raise ConfigError(f"{where}: cannot link `{pname}` ({params[pname].unit or 'no unit'}) to `{target}` "
                                  f"({oparams[tparam].unit or 'no unit'}): the units differ.")
            comp.slots[pname] = ocomp.slots[tparam]
    return comps, blocks


class Mixture:
    """Z = Σ_c s·â_c ⊙ S_c(θ_c) over the variables ``xs`` = [amplitude blocks..., map
    blocks...], and the gradients of f(Z) with respect to each variable."""

    def __init__(self, components: list[ResolvedComponent], n_amp: int, scale, shape, xp, dtype):
        self.components, self.n_amp, self.scale = components, n_amp, scale
        self.shape, self.xp, self.dtype = tuple(shape), xp, dtype

    def theta(self, comp: ResolvedComponent, xs):
        xp = self.xp
        ny, nx = self.shape[1:]
        rows = []
        for p in comp.model.parameters:
            if p.name in comp.slots:
                rows.append(xs[self.n_amp + comp.slots[p.name]])
            else:
                rows.append(xp.full((ny, nx), comp.constants[p.name], dtype=self.dtype))
        return xp.stack(rows, axis=0)

    def amplitude(self, comp: ResolvedComponent, xs):
        return xs[comp.amplitude_slot] if comp.amplitude_slot is not None else comp.amplitude_init

    def spectra(self, xs) -> list:
        return [comp.model.evaluate(self.theta(comp, xs)) for comp in self.components]

    def cube(self, xs, spectra=None):
        spectra = self.spectra(xs) if spectra is None else spectra
        z = None
        for comp, s in zip(self.components, spectra):
            term = (self.scale * self.amplitude(comp, xs))[None, :, :] * s
            z = term if z is None else z + term
        return z

    def component_cubes(self, xs) -> dict:
        return {comp.name: (self.scale * self.amplitude(comp, xs))[None, :, :] * s
                for comp, s in zip(self.components, self.spectra(xs))}

    def partial(self, i: int, xs, g_cube):
        """∂f/∂xs[i] given g_cube = ∂f/∂Z."""
        xp = self.xp
        if i < self.n_amp:
            comp = next(c for c in self.components if c.amplitude_slot == i)
            return self.scale * xp.sum(g_cube * comp.model.evaluate(self.theta(comp, xs)), axis=0)
        slot = i - self.n_amp
        out = None
        for comp in self.components:
            names = [p.name for p in comp.model.parameters]
            rows = [k for k, name in enumerate(names) if comp.slots.get(name) == slot]
            if not rows:
                continue
            cot = (self.scale * self.amplitude(comp, xs))[None, :, :] * g_cube
            grads = comp.model.vjp(self.theta(comp, xs), cot)
            for k in rows:
                out = grads[k, ...] if out is None else out + grads[k, ...]
        return out


@dataclass
class UnmixingOptions:
    init_bin: int = option(2, min=0, doc="initialise the maps by per-pixel fits of the first observation binned "
                                          "bin × bin (0: start from the [[components]] init values)")
    init_iter: int = option(30, min=1, unit="iterations", doc="Levenberg–Marquardt iterations of that fit")
    precondition: bool = option(False, doc="per-pixel step sizes: PALM in the metric of each map's pixel-local "
                                           "Fisher information at the start (measured: no gain yet on the "
                                           "CasA toy, see docs/unmixing.md)")


class Unmixing(Problem):
    """Semi-blind unmixing of one or several observations into ``[[components]]``."""

    name = "unmixing"
    Options = UnmixingOptions
    observations_allowed = (1, None)

    def __init__(self, config, backend: Backend, grid, observations: list[ObservationData], regularizers: list,
                 likelihood_cls, pm=None, options: UnmixingOptions | None = None):
        self.options = options if options is not None else UnmixingOptions()
        if regularizers:
            raise ConfigError(f"{config.source}: problem `unmixing` takes its regularisers per component "
                              "(amplitude_k, parameter_k, scales in [[components]]), not [[regularizers]].")
        self.config, self.backend, self.grid = config, backend, grid
        self.observations, self.likelihood_cls, self.pm = observations, likelihood_cls, pm
        self.components, self.map_blocks = resolve_components(config.components, grid, backend, str(config.source),
                                                              _config_dir(config))
        self.amp_names = [c.name for c, s in zip(self.components, config.components) if not s.fixed_amplitude]

    # -- building -------------------------------------------------------------------------
    def build(self):
        """(x0 list, smooth value, PALM blocks, mixture)."""
        from ..likelihoods import DataTerm
        from ..solvers import Block, NonNegative, ProxChain
        from .. import plugins

        xp, dtype = self.backend.xp, self.backend.dtype
        n_comp = len(self.components)
        start = self.initial_maps()
        if start is None:
            flux0 = xp.sum(backprojection(self.observations, xp), axis=0)  # photons / s / cm² per pixel
            start = {f"{c.name}.amplitude": flux0 / n_comp for c in self.components}
            start.update({b.name: b.init for b in self.map_blocks})
        map_starts = [xp.clip(self.backend.asarray(start[b.name]), min=b.bounds[0], max=b.bounds[1])
                      for b in self.map_blocks]
        # Amplitudes are solved relative to a per-pixel flux scale s_p (the mean initial
        # amplitude of the pixel, floored at 1e-3 of the image mean): the Poisson curvature
        # of a_p scales like counts_p / a_p², so in absolute units faint pixels would set one
        # tiny step for the whole map and a step sized for them empties bright ones.
        total = None
        for c in self.components:
            a = self.backend.asarray(start[f"{c.name}.amplitude"])
            total = a if total is None else total + a
        mean = float(xp.mean(total)) / n_comp
        scale = xp.clip(total / n_comp, min=1e-3 * mean if mean > 0 else 1e-30)
        amps = []
        for comp, sec in zip(self.components, self.config.components):
            init = self.backend.asarray(start[f"{comp.name}.amplitude"]) / scale
            if sec.fixed_amplitude:
                comp.amplitude_init = init
            else:
                comp.amplitude_slot = len(amps)
                amps.append(init)
        mixture = Mixture(self.components, len(amps), scale, self.grid.shape, xp, dtype)
        terms = [DataTerm(self.likelihood_cls.for_counts(o.counts), o.forward, o.counts, o.background,
                          what=f"counts of `{o.name}`") for o in self.observations]

        def cube_gradient(xs):
            z = mixture.cube(xs)
            g = None
            for t in terms:
                gi = t.gradient(z)
                g = gi if g is None else g + gi
            return g

        def value(xs) -> float:
            z = mixture.cube(xs)
            return sum(t.value(z) for t in terms)

        x0 = amps + map_starts
        metrics = self.block_metrics(mixture, x0) if self.options.precondition else [None] * len(x0)
        starlet = plugins.get("regularizer", "starlet2d_l1")
        noise = gradient_noise(terms, self.backend, self.config.run.seed)  # ∂f/∂Z noise, see imaging
        blocks = []
        specs = [(name, (0.0, None), self._amp_k(name), self._scales(name)) for name in self.amp_names]
        specs += [(b.name, b.bounds, b.sparsity_k, b.scales) for b in self.map_blocks]
        for i, (name, (lo, hi), k, scales) in enumerate(specs):
            proxes: list[Any] = []
            if k is not None and k > 0:
                reg = starlet(starlet.Options(scales=scales, k=k), weight=1.0)
                reg.setup((self.grid.ny, self.grid.nx), xp, dtype)
                reg.calibrate_noise(mixture.partial(i, x0, noise))
                proxes.append(reg)
            proxes.append(NonNegative() if hi is None else Box(lo, hi))
            blocks.append(Block(gradient=(lambda xs, i=i: mixture.partial(i, xs, cube_gradient(xs))),
                                prox=ProxChain(proxes), name=name, metric=metrics[i]))
        return x0, value, blocks, mixture

    def block_metrics(self, mixture, x0) -> list:
        """A diagonal metric per block: the pixel-local Poisson Fisher information of each
        variable at the start (first observation, PSF neglected), normalised to mean 1 and
        floored at 1e-3 so that empty pixels keep a finite step. PALM then takes a step per
        pixel in proportion to its own curvature (see xhsi.solvers.palm)."""
        from .pixelfit import PixelFit, PixelFitOptions

        xp = self.backend.xp
        maps = {}
        for comp in self.components:
            maps[f"{comp.name}.amplitude"] = to_numpy(mixture.scale * mixture.amplitude(comp, x0))
        for i, block in enumerate(self.map_blocks):
            maps[block.name] = to_numpy(x0[mixture.n_amp + i])
        fit = PixelFit(self.config, self.backend, self.grid, self.observations[:1], [], _Poisson,
                       options=PixelFitOptions(bin=1))
        fit.components, fit.map_blocks = self.components, self.map_blocks
        u, fisher = fit.fisher_at_maps(maps)
        p = fisher.shape[-1]
        diag = to_numpy(xp.sum(fisher * xp.eye(p, dtype=fisher.dtype), axis=-1))  # (npix, P)
        factor = fit.rebin
        ny, nx = self.grid.ny // factor, self.grid.nx // factor
        scale = to_numpy(mixture.scale) if hasattr(mixture.scale, "shape") else float(mixture.scale)
        out: list[Any] = [None] * len(x0)
        for j, comp in enumerate(self.components):
            if comp.amplitude_slot is None:
                continue
            # x = a / scale, and a detector block's amplitude is the sum of factor² model pixels
            curv = np.kron(np.reshape(diag[:, j], (ny, nx)), np.ones((factor, factor))) * scale ** 2
            out[comp.amplitude_slot] = curv
        for i in range(len(self.map_blocks)):
            curv = np.kron(np.reshape(diag[:, len(self.components) + i], (ny, nx)), np.ones((factor, factor)))
            out[mixture.n_amp + i] = curv / factor ** 2
        for k, curv in enumerate(out):
            if curv is None:
                continue
            curv = np.where(np.isfinite(curv), curv, 0.0)
            mean = float(curv.mean()) if curv.mean() > 0 else 1.0
            out[k] = self.backend.asarray(np.clip(curv / mean, 1e-3, None))
        return out

    def initial_maps(self) -> dict | None:
        """Maps from per-pixel fits of the binned first observation (SUSHI's coarse
        initialisation), or None when ``init_bin = 0`` or the grid does not divide."""
        b = self.options.init_bin
        counts = self.observations[0].counts
        if b == 0 or counts.shape[1] % b or counts.shape[2] % b:
            return None
        maps = self._pixel_fit(b)
        if b == 1:
            self._pixelfit_maps = maps
        return maps

    def _pixel_fit(self, b: int) -> dict:
        from .pixelfit import PixelFit, PixelFitOptions

        fit = PixelFit(self.config, self.backend, self.grid, self.observations[:1], [], _Poisson,
                       options=PixelFitOptions(bin=b))
        fit.components, fit.map_blocks = self.components, self.map_blocks
        u, _, _, _ = fit.fit(self.options.init_iter, 0.0)
        return fit.maps_from(u, None)[0]

    def baseline_maps(self) -> dict:
        """The conventional per-pixel fit (pixelfit, unbinned, ``init_iter`` iterations) of
        the first observation, as maps: the yardstick of ``metrics.json``."""
        if getattr(self, "_pixelfit_maps", None) is None:
            self._pixelfit_maps = self._pixel_fit(1)
        return self._pixelfit_maps

    def _section(self, name):
        return next(s for s in self.config.components if s.name == name)

    def _amp_k(self, name):
        return self._section(name).amplitude_k

    def _scales(self, name):
        return self._section(name).scales

    # -- solving ---------------------------------------------------------------------------
    def solve(self, solver, callback: Callable | None = None, checkpoint_path=None, checkpoint_every: int = 0,
              resume_from=None, config_digest: str | None = None) -> Result:
        if getattr(solver, "name", "") != "palm":
            raise ConfigError(f"{self.config.source}: problem `unmixing` has one block per map: use "
                              "[solver] name = \"palm\".")
        x0, value, blocks, mixture = self.build()
        solver.setup(x0, value, blocks)
        t0 = time.perf_counter()
        out = solver.run(callback, checkpoint_path=checkpoint_path, checkpoint_every=checkpoint_every,
                         resume_from=resume_from, config_digest=config_digest)
        xs = out.x
        arrays: dict[str, np.ndarray] = {"cube": to_numpy(mixture.cube(xs))}
        maps: dict[str, np.ndarray] = {}
        units: dict[str, str] = {}
        for comp in self.components:
            maps[f"{comp.name}.amplitude"] = to_numpy(mixture.scale * mixture.amplitude(comp, xs))
            units[f"{comp.name}.amplitude"] = "photon / (s cm2)"
        for i, block in enumerate(self.map_blocks):
            maps[block.name] = to_numpy(xs[mixture.n_amp + i])
            units[block.name] = block.unit
        components = {name: to_numpy(c) for name, c in mixture.component_cubes(xs).items()}
        errors = self.error_maps(maps)
        history, meta = solver_report(self.name, solver.name, out, time.perf_counter() - t0)
        return Result(arrays=arrays, history=history, metadata=meta, maps=maps, map_units=units,
                      map_errors=errors, components=components)

    def error_maps(self, maps: dict) -> dict:
        """1-σ error maps from the Poisson Fisher information of each detector pixel of the
        first observation at the solution. Pixel-local: correlations through the PSF and the
        sparsity regularisation are neglected, so they are the errors of a per-pixel fit at
        the unmixing solution (documented approximation; none of the published codes gives
        any)."""
        from .pixelfit import PixelFit, PixelFitOptions

        fit = PixelFit(self.config, self.backend, self.grid, self.observations[:1], [], _Poisson,
                       options=PixelFitOptions(bin=1))
        fit.components, fit.map_blocks = self.components, self.map_blocks
        u, fisher = fit.fisher_at_maps(maps)
        return fit.maps_from(u, fit.errors(fisher))[1]

    def baselines(self) -> dict[str, Any]:
        xp = self.backend.xp
        return {obs.name: to_numpy(backprojection([obs], xp)) for obs in self.observations}


def _config_dir(config):
    from pathlib import Path

    return Path(config.source).resolve().parent if config.source is not None else Path(".")


class _Poisson:
    name = "poisson"


def map_metrics(maps: dict[str, np.ndarray], truth) -> dict[str, dict[str, float]]:
    """Median and flux-weighted relative error of each fitted parameter map against the
    scene's component truth (``SceneTruth``), over the pixels where the component's true
    amplitude is above 1 % of its maximum (elsewhere a parameter is not constrained)."""
    out: dict[str, dict[str, float]] = {}
    for comp in getattr(truth, "components", []):
        amp = np.asarray(comp.amplitude, dtype=np.float64)
        mask = amp > 0.01 * amp.max() if amp.size and amp.max() > 0 else np.zeros_like(amp, dtype=bool)
        for pname, true_map in list(comp.parameters.items()) + [("amplitude", amp)]:
            key = f"{comp.name}.{pname}"
            if key not in maps or not mask.any():
                continue
            est = np.asarray(maps[key], dtype=np.float64)
            t = np.asarray(true_map, dtype=np.float64)
            denom = np.abs(t[mask])
            floor = max(float(np.median(denom)) * 1e-3, 1e-12)
            rel = np.abs(est[mask] - t[mask]) / np.maximum(denom, floor)
            w = amp[mask] / amp[mask].sum()
            out[key] = {"median_relative_error": float(np.median(rel)),
                        "flux_weighted_relative_error": float(np.sum(w * rel)),
                        "median_absolute_error": float(np.median(np.abs(est[mask] - t[mask])))}
    return out
