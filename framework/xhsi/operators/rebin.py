"""Rebinning by block sums: sky pixels to detector pixels, fine energy bins to coarse ones.

Sums (not means) keep counts and fluxes: the total of a rebinned cube equals the total of
the original. Done by reshape-and-sum (no rebinning matrix); the adjoint repeats every
coarse value over its block (broadcast + reshape). ‖A‖₂ = √(block size) exactly.
"""
from __future__ import annotations

import math
import numbers
from typing import Sequence

from ..backend import array_namespace
from ..errors import ShapeError
from .base import LinearOperator, _shape


def _factors(factor, n: int, who: str) -> tuple[int, ...]:
    try:
        factors = tuple(factor)
    except TypeError:
        factors = (factor,) * n
    if len(factors) != n or any(not isinstance(f, numbers.Real) or int(f) != f or f < 1 for f in factors):
        raise ShapeError(f"{who}: factor must be a positive integer or {n} of them, got {factor!r}.")
    return tuple(int(f) for f in factors)


class SpatialRebin(LinearOperator):
    """Sum over ``fy × fx`` blocks of pixels of every energy slice:
    ``y[e, i, j] = Σ_{a<fy, b<fx} x[e, fy·i + a, fx·j + b]``.

    Parameters
    ----------
    shape_in : ``(..., ny, nx)``, the last two axes spatial; ``ny`` divisible by ``fy`` and
        ``nx`` by ``fx``.
    factor : ``f`` (square blocks) or ``(fy, fx)``, in pixels.
    """

    name = "spatial_rebin"

    def __init__(self, shape_in: Sequence[int], factor: int | Sequence[int]):
        shape_in = _shape(shape_in)
        if len(shape_in) < 2:
            raise ShapeError(f"SpatialRebin: the input shape {shape_in} needs two spatial axes (ny, nx).")
        self.factor = _factors(factor, 2, "SpatialRebin")
        (fy, fx), (ny, nx) = self.factor, shape_in[-2:]
        if ny % fy or nx % fx:
            raise ShapeError(f"SpatialRebin: the input shape {shape_in} is not divisible by the rebin factor "
                             f"{self.factor} (fy, fx); crop or pad the cube to a multiple of it.")
        self._lead = shape_in[:-2]
        super().__init__(shape_in, self._lead + (ny // fy, nx // fx))

    def _apply(self, x):
        xp = array_namespace(x)
        (fy, fx), (my, mx) = self.factor, self.shape_out[-2:]
        k = len(self._lead)
        return xp.sum(xp.reshape(x, self._lead + (my, fy, mx, fx)), axis=(k + 1, k + 3))

    def _adjoint(self, y):
        xp = array_namespace(y)
        (fy, fx), (my, mx) = self.factor, self.shape_out[-2:]
        blocks = xp.broadcast_to(xp.reshape(y, self._lead + (my, 1, mx, 1)), self._lead + (my, fy, mx, fx))
        return xp.reshape(blocks, self.shape_in)

    def norm(self, *args, **kwargs) -> float:
        return math.sqrt(self.factor[0] * self.factor[1])

    @classmethod
    def example(cls, xp, dtype) -> "SpatialRebin":
        """A small instance for contract tests: (3, 6, 8) by 2 × 4 blocks."""
        return cls((3, 6, 8), (2, 4))

    def __repr__(self) -> str:
        return f"SpatialRebin({self.shape_in} -> {self.shape_out}, factor={self.factor})"


class SpectralRebin(LinearOperator):
    """Sum over blocks of ``factor`` consecutive energy bins (axis 0):
    ``y[k] = Σ_{a<f} x[f·k + a]``.

    Parameters
    ----------
    shape_in : ``(n_e, ...)`` with ``n_e`` divisible by ``factor``.
    factor : bins per block.
    """

    name = "spectral_rebin"

    def __init__(self, shape_in: Sequence[int], factor: int):
        shape_in = _shape(shape_in)
        if len(shape_in) < 1:
            raise ShapeError("SpectralRebin: the input needs an energy axis, got shape ().")
        (self.factor,) = _factors(factor, 1, "SpectralRebin")
        if shape_in[0] % self.factor:
            raise ShapeError(f"SpectralRebin: the input shape {shape_in} has {shape_in[0]} energy bins, not "
                             f"divisible by the rebin factor {self.factor}; drop or add bins to a multiple of it.")
        self._rest = shape_in[1:]
        super().__init__(shape_in, (shape_in[0] // self.factor,) + self._rest)

    def _apply(self, x):
        xp = array_namespace(x)
        return xp.sum(xp.reshape(x, (self.shape_out[0], self.factor) + self._rest), axis=1)

    def _adjoint(self, y):
        xp = array_namespace(y)
        n = self.shape_out[0]
        blocks = xp.broadcast_to(xp.reshape(y, (n, 1) + self._rest), (n, self.factor) + self._rest)
        return xp.reshape(blocks, self.shape_in)

    def norm(self, *args, **kwargs) -> float:
        return math.sqrt(self.factor)

    @classmethod
    def example(cls, xp, dtype) -> "SpectralRebin":
        """A small instance for contract tests: 6 energy bins by blocks of 3."""
        return cls((6, 4, 5), 3)

    def __repr__(self) -> str:
        return f"SpectralRebin({self.shape_in} -> {self.shape_out}, factor={self.factor})"
