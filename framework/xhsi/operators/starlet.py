"""The starlet analysis as a linear operator (``xhsi.wavelets``: Starck, Fadili & Murtagh
2007): x → (J+1, *x.shape), its true adjoint, and so ‖Φ‖ by the shared power iteration
(``LinearOperator.norm``). Composed, two of them give the 2D-1D frame of a cube."""
from __future__ import annotations

from ..wavelets import starlet1d, starlet1d_adjoint, starlet2d, starlet2d_adjoint
from .base import LinearOperator


class StarletAnalysis(LinearOperator):
    """The starlet coefficients (J detail scales, then the coarse one) of arrays of ``shape``:
    2-D over the last two axes (``axis`` None), or 1-D along ``axis``."""

    def __init__(self, shape, n_scales: int, axis: int | None = None):
        super().__init__(shape, (n_scales + 1,) + tuple(shape))
        self.n_scales, self.axis = n_scales, axis

    def _apply(self, x):
        if self.axis is None:
            return starlet2d(x, self.n_scales)
        return starlet1d(x, self.n_scales, axis=self.axis)

    def _adjoint(self, c):
        return starlet2d_adjoint(c) if self.axis is None else starlet1d_adjoint(c, axis=self.axis)


def starlet2d1d(shape, scales_2d: int, scales_1d: int) -> LinearOperator:
    """The 2D-1D analysis of cubes (..., n_e, ny, nx) (Starck et al. 2009): the 2-D starlet
    of every slice, then the 1-D starlet along energy of every 2-D band; coefficients
    (L+1, J+1, ..., n_e, ny, nx)."""
    spatial = StarletAnalysis(shape, scales_2d)
    return StarletAnalysis(spatial.shape_out, scales_1d, axis=len(shape) - 2) @ spatial
