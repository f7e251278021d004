"""The Problem base class and the data of one observation as problems see it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..schema import NoOptions


@dataclass
class ObservationData:
    """One observation ready for a problem: its forward operator A (sky cube → expected
    counts), counts Y and expected background counts B (same shape as Y, or None), all on
    the run's backend."""

    name: str
    forward: Any
    counts: Any
    background: Any = None
    instrument: Any = None

    @property
    def channel_edges_kev(self):
        return getattr(self.forward, "channel_edges_kev", None)

    @property
    def pixel_arcsec(self) -> float | None:
        return getattr(self.forward, "detector_pixel_arcsec", None)


class Problem:
    """Base class of problem plugins (kind ``problem``).

    ``Problem(config, backend, grid, observations)`` then ``solve(...) -> Result``; the
    runner (``xhsi.runner``) reads data, compiles operators and writes outputs around it."""

    name: str = ""
    Options = NoOptions
    #: (minimum, maximum or None) number of observations the problem takes.
    observations_allowed: tuple[int, int | None] = (1, None)
