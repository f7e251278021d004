"""Dimension reduction of the unmixing problems (``[problem] reduce``, ``table_tol``), shared by
``unmixing`` and ``fusion_unmixing``: each component's model is replaced by a low-rank basis
W_c and an interpolated table of its coefficients h_c(θ) (``xhsi.problems.spectral_table``),
so the mixture is the stack of rank maps H = [a_c · h_c(θ_c)]_c and each forward operator is
folded onto the stacked basis, A_k ∘ W (``xhsi.problems.fusion_operators``, exact: k maps
instead of n_e energy slices). The n_e × ny × nx cube is formed only for the result, from the
exact models at the solution. The table's spectral error (``table_tol``, relative L2 per
spectrum) is the approximation.

Why: on the SUSHI toy at its published size (configs/unmixing_casa_chandra.toml) the exact
models made a PALM iteration 16–21 s on 2 cores, almost all of it in evaluating the spectra
and their vector–Jacobian products on the whole cube (docs/unmixing.md, "Speed").

``reduce = "auto"`` tabulates when every component allows it: at most
``MAX_TABLE_PARAMETERS`` fitted maps, and not a learnt model with ``physical_parameters``
(the IAE: its maps are read out through its own model, ``Unmixing._physical_maps``).
"""
from __future__ import annotations

from dataclasses import replace

from ..errors import ConfigError
from ..spectral.models import latent_factors
from .mixture import Mixture
from .spectral_table import MAX_TABLE_PARAMETERS, CoefficientView, TabulatedModel, stacked_basis


class FoldedMixture(Mixture):
    """The mixture of rank maps, each component's coefficients h_c(θ_c) kept for the
    parameter maps they were computed at: a PALM block update of an amplitude, or of
    another component's map, reuses them (and the maps are held so their ids stay theirs)."""

    def __init__(self, *args):
        super().__init__(*args)
        self._kept: dict = {}

    def spectrum(self, comp, xs):
        maps = [xs[self.n_amp + slot] for slot in sorted(set(comp.slots.values()))]
        key = tuple(id(m) for m in maps)
        kept = self._kept.get(comp.name)
        if kept is None or kept[0] != key:
            kept = (key, maps, super().spectrum(comp, xs))
            self._kept[comp.name] = kept
        return kept[2]


def tabulable(component) -> bool:
    """Whether ``reduce = "auto"`` may tabulate a resolved component (module docstring)."""
    return len(component.slots) <= MAX_TABLE_PARAMETERS and not latent_factors(component.model)


def check_reduction(source, options, components) -> None:
    """``reduce = "table"`` with a component of more than ``MAX_TABLE_PARAMETERS`` fitted
    maps: a ConfigError that says what to change."""
    if getattr(options, "reduce", "auto") != "table":
        return
    for c in components:
        if len(c.slots) > MAX_TABLE_PARAMETERS:
            raise ConfigError(f"{source}: component `{c.name}` fits {len(c.slots)} parameter maps; "
                              f"reduce = \"table\" tabulates at most {MAX_TABLE_PARAMETERS}: fix some, or "
                              "set [problem] reduce = \"none\".")


class SpectralReduction:
    """The reduction as a mixin of a problem that holds ``components``, ``map_blocks``,
    ``options`` (with ``reduce`` and ``table_tol``), ``grid``, ``backend`` and
    ``observations``. ``_tabulate`` (end of ``__init__``) keeps the exact components in
    ``exact_components`` and, when reducing, puts the tabulated models in ``components``
    (the per-pixel fits of the start, the metric and the error maps then fold W through each
    response once); ``_mixture`` and ``_output_mixture`` give the solver's and the
    result's mixtures."""

    exact_components: list
    tables: list[TabulatedModel]

    def _tabulate(self) -> None:
        self.exact_components = self.components
        self.tables = []
        check_reduction(self.config.source, self.options, self.components)
        if not self._reduced():
            return
        xp, dtype = self.backend.xp, self.backend.dtype
        for comp in self.exact_components:
            fitted = {p.name: self.map_blocks[comp.slots[p.name]].bounds for p in comp.model.parameters
                      if p.name in comp.slots}
            self.tables.append(TabulatedModel(comp.model, fitted, comp.constants, xp, dtype,
                                              tol=self.options.table_tol, where=f"component `{comp.name}`"))
        self.components = [replace(c, model=t) for c, t in zip(self.exact_components, self.tables)]

    def _reduced(self) -> bool:
        if self.options.reduce == "none":
            return False
        return self.options.reduce == "table" or all(tabulable(c) for c in self.components)

    def _mixture(self, n_amp: int, scale) -> tuple[Mixture, list]:
        """The mixture the solver iterates on and the operator of each observation from its
        cube to the counts. With tables: the mixture of rank maps and each forward operator
        folded onto the stacked basis W (exact); without: the sky cube of the exact models and
        the compiled forward operators."""
        xp, dtype = self.backend.xp, self.backend.dtype
        if not self.tables:
            return Mixture(self.components, n_amp, scale, self.grid.shape, xp, dtype), \
                [o.forward for o in self.observations]
        from .fusion_operators import folded_forward

        basis, offsets, total = stacked_basis(self.tables, xp, dtype)
        views = [replace(c, model=CoefficientView(t, off, total))
                 for c, t, off in zip(self.components, self.tables, offsets)]
        shape = (total, self.grid.ny, self.grid.nx)
        operators = [folded_forward(obs.forward, basis, shape) for obs in self.observations]
        return FoldedMixture(views, n_amp, scale, shape, xp, dtype), operators

    def _output_mixture(self, mixture: Mixture) -> Mixture:
        """The mixture whose cubes the result holds: the exact models at the solution (the
        result's cubes are not tabulated)."""
        if not self.tables:
            return mixture
        comps = [replace(c, model=e.model) for c, e in zip(mixture.components, self.exact_components)]
        return Mixture(comps, mixture.n_amp, mixture.scale, self.grid.shape, self.backend.xp, self.backend.dtype)

    def spectral_tables(self) -> dict:
        """``run.json``'s ``spectral_tables``: per tabulated component its rank, intervals per
        fitted parameter, interpolation error and the ``table_tol`` asked (empty without
        tables). A table that stopped at its size limit has an error above the tolerance: the
        run's summary says so (``xhsi.outputs.summary``)."""
        return {c.name: {"rank": t.rank, "intervals": t.grid.intervals, "relative_error": t.table_error,
                         "tolerance": self.options.table_tol}
                for c, t in zip(self.exact_components, self.tables)}
