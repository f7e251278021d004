"""Joint fusion and unmixing: component maps at the imager's resolution with the
spectrometer's spectral power, in one run (the "future work" of Lascar, Bobin & Acero 2024,
A&A 686, A259 and Lascar et al. 2025, A&A 694, A34).

The sky is the unmixing mixture on the fine model grid,

    Z(E, y, x) = Σ_c a_c(y, x) · S_c(E; θ_c(y, x)),

seen through every observation's compiled forward operator (exposure × area, PSF,
redistribution, rebinning) with its background: counts_k ~ Poisson(A_k Z + B_k), the
Poisson likelihood summed over the observations. The unknowns, blocks, metric and starlet
prior are unmixing's (``xhsi.problems.unmixing``: PALM, one block per amplitude and per
parameter map); this module changes two things:

- **the start**, from the data only: per-pixel fits of the imager (the observation with
  the most detector pixels, binned ``init_bin``) for every map, except the parameters
  named in ``spectrometer_parameters`` (default the redshift z), taken from per-pixel fits
  of the spectrometer (the observation with the most channels) at its own pixels;
- **the metric and the error maps**: the pixel-local Fisher information of both per-pixel
  fits, added (information of independent data adds up).

It inherits unmixing's dimension reduction (``reduce``, ``table_tol``:
``xhsi.problems.reduction``), each forward operator folded onto the tables' basis.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import ConfigError, did_you_mean
from ..results import Result
from ..schema import option
from .components import map_metrics
from .fusion_unmixing_comparisons import check_comparisons, comparison_metrics
from .starts import imager_and_spectrometer
from .unmixing import Unmixing, UnmixingOptions


@dataclass
class FusionUnmixingOptions(UnmixingOptions):
    spectrometer_parameters: list[str] = option(["z"], doc="parameters whose start maps come from per-pixel fits "
                                                           "of the spectrometer (the observation with the most "
                                                           "channels) instead of the imager's")
    comparisons: list[str] = option([], doc="also solve, and score in metrics.json (maps_<name>), any of "
                                            "imager_alone, spectrometer_alone, fusion_pixelfit "
                                            "(xhsi.problems.fusion_unmixing_comparisons)")
    comparison_fusion: str | None = option(None, doc="fusion config (path relative to this config) whose "
                                                     "[[regularizers]] and [solver] fusion_pixelfit runs")


class FusionUnmixing(Unmixing):
    """Unmixing of several observations of one sky into ``[[components]]`` on the finest
    grid, with a data-only start from the imager and the spectrometer (module docstring)."""

    name = "fusion_unmixing"
    Options = FusionUnmixingOptions
    observations_allowed = (1, None)
    # With tables the cube exists only for the result; without, unmixing's.
    memory_cubes = 40.0

    @classmethod
    def check_config(cls, config, regularizers: list | None = None) -> list:
        """Unmixing's checks (``reduce = "table"`` among them), then:
        ``spectrometer_parameters`` name parameters of the components."""
        from ..backend import Backend
        from .checks import model_grid
        from .components import config_dir, resolve_components

        regularizers = super().check_config(config, regularizers)
        options = config.problem if config.problem is not None else FusionUnmixingOptions()
        comps, _ = resolve_components(config.components, model_grid(config), Backend("numpy", config.run.dtype),
                                      str(config.source), config_dir(config))
        cls._check_options(config, options, comps)
        return regularizers

    @staticmethod
    def _check_options(config, options, comps) -> None:
        """The checks of the [problem] options against the resolved components ``comps``,
        and of the comparisons it names (``fusion_unmixing_comparisons.check_comparisons``)."""
        check_comparisons(config, options)
        names = {p.name for c in comps for p in c.model.parameters}
        for pname in options.spectrometer_parameters:
            if pname not in names:
                raise ConfigError(f"{config.source}: `problem.spectrometer_parameters`: no component has a parameter "
                                  f"`{pname}`{did_you_mean(pname, names)}; parameters: {', '.join(sorted(names))}.")

    def __init__(self, config, backend, grid, observations, regularizers, likelihood_cls,
                 options: FusionUnmixingOptions | None = None):
        options = options if options is not None else FusionUnmixingOptions()
        super().__init__(config, backend, grid, observations, regularizers, likelihood_cls, options)
        self._check_options(config, options, self.components)
        self.imager, self.spectrometer = imager_and_spectrometer(observations)
        self._spectrometer_maps = None

    # -- the start, the metric and the error maps from both instruments ---------------------
    def _fit_observation(self) -> int:
        return self.imager

    def _fisher_observations(self) -> list[int]:
        return [self.imager] + ([self.spectrometer] if self.spectrometer != self.imager else [])

    def spectrometer_maps(self) -> dict | None:
        """Maps of ``init_iter`` Levenberg–Marquardt iterations of the per-pixel fits of the
        spectrometer at its own pixels (on the model grid, each detector pixel's value
        repeated over its model pixels), or None with a single observation."""
        if self.spectrometer == self.imager:
            return None
        if self._spectrometer_maps is None:
            fitter = self._fitter(1, self.spectrometer)
            self._spectrometer_maps = fitter.maps_from(fitter.fit(self.options.init_iter).u)[0]
        return self._spectrometer_maps

    def initial_maps(self) -> dict | None:
        """The imager's per-pixel fits (unmixing's start), with the maps of the parameters in
        ``spectrometer_parameters`` from the spectrometer's fits (its sharper spectra)."""
        maps = super().initial_maps()
        spec = self.spectrometer_maps() if maps is not None and self.options.spectrometer_parameters else None
        if spec is not None:
            maps = dict(maps)  # the imager's fits stay the yardstick (``baseline_maps``)
            wanted = set(self.options.spectrometer_parameters)
            for block in self.map_blocks:
                if block.name.split(".", 1)[1] in wanted:
                    maps[block.name] = spec[block.name]
        return maps

    # -- results -----------------------------------------------------------------------------
    def solve(self, solver, callback: Callable | None = None, checkpoint_path=None, checkpoint_every: int = 0,
              resume_from=None, config_digest: str | None = None) -> Result:
        result = super().solve(solver, callback, checkpoint_path, checkpoint_every, resume_from, config_digest)
        result.metadata["imager"] = self.observations[self.imager].name
        result.metadata["spectrometer"] = self.observations[self.spectrometer].name
        return result

    def extra_metrics(self, result: Result, truth) -> dict:
        """Unmixing's (``maps``; ``maps_pixelfit``: per-pixel fits of the imager),
        ``maps_pixelfit_<spectrometer>``: those of the spectrometer at its own pixels, and
        ``maps_<comparison>`` for each of ``[problem] comparisons`` (solved here)."""
        out = super().extra_metrics(result, truth)
        spec = self.spectrometer_maps()
        if out and spec is not None:
            spec = {**spec, **self._physical_maps(spec)[0]}  # a learnt model's weights read out, as for the result
            out[f"maps_pixelfit_{self.observations[self.spectrometer].name}"] = map_metrics(spec, truth)
        if self.spectrometer != self.imager:
            out.update(comparison_metrics(self, truth))
        return out
