"""The run's sky grid: the true-energy bins and sky pixels of the unknown cube Z[e, y, x]
(``[model]`` of a run config)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DataError

__all__ = ["ModelGrid"]


@dataclass(frozen=True)
class ModelGrid:
    """The grid of the unknown sky cube: true-energy bin edges (keV, ``(n_e + 1,)``,
    increasing), ``ny`` × ``nx`` sky pixels of ``pixel_arcsec`` arcsec."""

    energy_edges_kev: np.ndarray
    ny: int
    nx: int
    pixel_arcsec: float

    def __post_init__(self):
        edges = np.asarray(self.energy_edges_kev, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2:
            raise DataError(f"energy_edges_kev must be 1-D with at least 2 edges, got shape {edges.shape}.")
        if not (np.all(np.isfinite(edges)) and edges[0] > 0 and np.all(np.diff(edges) > 0)):
            raise DataError("energy_edges_kev must be positive, finite and strictly increasing (keV).")
        if int(self.ny) < 1 or int(self.nx) < 1:
            raise DataError(f"the model grid needs at least 1 x 1 pixels, got {self.ny} x {self.nx}.")
        if not self.pixel_arcsec > 0:
            raise DataError(f"pixel_arcsec must be > 0, got {self.pixel_arcsec}.")
        edges.setflags(write=False)
        object.__setattr__(self, "energy_edges_kev", edges)
        object.__setattr__(self, "ny", int(self.ny))
        object.__setattr__(self, "nx", int(self.nx))
        object.__setattr__(self, "pixel_arcsec", float(self.pixel_arcsec))

    @classmethod
    def from_config(cls, model) -> "ModelGrid":
        """From a run config's ``[model]`` section (``xhsi.config.ModelSection``): a linear
        grid of ``energy.bins`` bins from ``energy.min_kev`` to ``energy.max_kev``."""
        edges = np.linspace(model.energy.min_kev, model.energy.max_kev, model.energy.bins + 1)
        ny, nx = model.pixels
        return cls(edges, ny, nx, model.pixel_arcsec)

    @property
    def n_e(self) -> int:
        return self.energy_edges_kev.size - 1

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of the sky cube, ``(n_e, ny, nx)``."""
        return (self.n_e, self.ny, self.nx)

    @property
    def energy_mid_kev(self) -> np.ndarray:
        e = self.energy_edges_kev
        return 0.5 * (e[:-1] + e[1:])

    @property
    def energy_width_kev(self) -> np.ndarray:
        return np.diff(self.energy_edges_kev)

    def __eq__(self, other) -> bool:
        return (isinstance(other, ModelGrid) and self.shape == other.shape
                and self.pixel_arcsec == other.pixel_arcsec
                and bool(np.array_equal(self.energy_edges_kev, other.energy_edges_kev)))

    __hash__ = None  # mutable-array field: not hashable
