"""Simulated observations: the ``Scene`` base class of ground-truth sky
generators (plugins of kind ``scene``), and Poisson counts from a truth cube.

A scene fills the model grid with a sky cube Z[e, y, x] in photons / s / cm² per true-energy
bin per sky pixel. Scenes built from physical components (``casa_like``,
``cluster_beta``) also return the components — amplitude and parameter maps — as the
ground truth of unmixing (Lascar et al. 2024, A&A 686, A259).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .backend import Backend, to_numpy
from .errors import DataError, ShapeError
from .grid import ModelGrid
from .schema import Context, NoOptions, from_dict

__all__ = ["Scene", "ComponentTruth", "SceneTruth", "simulate_counts"]




@dataclass
class ComponentTruth:
    """One physical component of a simulated scene.

    ``model`` names the spectral shape in ``xhsi.spectral.spectra`` (``"thermal"``, ``"powerlaw"``);
    ``amplitude`` is the component's photon flux per pixel over the grid band
    (photons / s / cm², ``(ny, nx)``); ``parameters`` maps each varying spectral parameter
    (named as the spectral model's parameters: ``kT`` in keV, ``z``, ``index``) to its ``(ny, nx)``
    map; ``fixed`` holds the parameters that are constant over the field (``abundance``, ``nh``); ``cube`` is the
    component's contribution to the sky cube, ``(n_e, ny, nx)``. All numpy, float64 for
    maps, the backend dtype for ``cube``."""

    name: str
    model: str
    amplitude: np.ndarray
    parameters: dict[str, np.ndarray] = field(default_factory=dict)
    fixed: dict[str, float] = field(default_factory=dict)
    cube: np.ndarray | None = None


@dataclass
class SceneTruth:
    """A simulated sky cube (``(n_e, ny, nx)``, photons/s/cm² per bin per pixel) and the
    components it is the sum of (empty for scenes read from files)."""

    cube: np.ndarray
    components: list[ComponentTruth] = field(default_factory=list)

    def component(self, name: str) -> ComponentTruth:
        for c in self.components:
            if c.name == name:
                return c
        raise KeyError(f"no component `{name}`; components: {', '.join(c.name for c in self.components) or 'none'}")


class Scene:
    """Base class of ground-truth sky generators (plugin kind ``scene``).

    Subclasses set ``name`` (the ``[simulate] scene`` value), an ``Options`` schema, and
    implement ``generate_components`` (physical scenes) or override ``generate``. Both
    return numpy arrays on the host: a scene is drawn once per run, and the caller moves
    the cube to the run's backend (``backend.asarray``). Random structure comes from the
    scene's own ``seed`` option, so the truth does not depend on the run's other draws."""

    name: str = ""
    Options = NoOptions

    def __init__(self, options: Any = None):
        if options is None:
            options = self.Options()
        elif isinstance(options, dict):
            options = from_dict(self.Options, options, Context(file=f"scene `{self.name}` options"), "options")
        self.options = options

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options!r})"

    def check(self, grid: ModelGrid) -> None:
        """The checks of the scene's options against ``grid`` that need no drawing (e.g. a
        file exists and maps onto the grid), run by a run's ``check_config`` before anything
        is computed or written; raise an XhsiError. Default: none."""

    def generate_components(self, grid: ModelGrid, backend: Backend) -> SceneTruth:
        raise NotImplementedError(f"scene `{self.name}` does not provide components")

    def generate(self, grid: ModelGrid, backend: Backend) -> np.ndarray:
        """The sky cube ``(n_e, ny, nx)`` in photons/s/cm² per bin per pixel, as a numpy
        array of the backend's dtype."""
        return self.generate_components(grid, backend).cube


def simulate_counts(truth_cube, forward_operator, backend: Backend, background=None):
    """Poisson counts ~ P(A(Z) + B): ``forward_operator`` (a LinearOperator whose
    ``shape_in`` is the cube's shape) applied to the truth cube, plus the expected
    background counts (same shape as the counts, or None), drawn with the backend's seeded
    generator (``Backend.poisson``): the same seed gives the same counts on every backend.
    Returns counts on the backend, in its float dtype."""
    z = backend.asarray(truth_cube)
    if tuple(z.shape) != tuple(forward_operator.shape_in):
        raise ShapeError(f"the truth cube has shape {tuple(z.shape)} but the forward operator takes "
                         f"{tuple(forward_operator.shape_in)}; simulate the scene on the model grid.")
    expected = forward_operator.apply(z)
    if background is not None:
        bkg = backend.asarray(background)
        if tuple(bkg.shape) != tuple(expected.shape):
            raise ShapeError(f"background has shape {tuple(bkg.shape)}, the counts have {tuple(expected.shape)}.")
        expected = expected + bkg
    host = to_numpy(expected)
    if not np.all(np.isfinite(host)):
        raise DataError("the expected counts are not finite: check the truth cube, exposure and background.")
    # FFT convolutions leave round-off negatives (~1e-16 of the peak): those are clipped.
    if host.size and host.min() < -1e-6 * max(float(np.abs(host).max()), np.finfo(np.float64).tiny):
        raise DataError(f"the expected counts are negative (min {host.min():.3g}): the truth cube and "
                        "background must be non-negative.")
    return backend.poisson(host)
