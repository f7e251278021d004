"""Pointwise weighting: exposure time × effective area (ARF) per energy, vignetting maps,
or any full cube of weights."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..backend import array_namespace
from ..errors import ShapeError
from ._held import PerDtype, real_float
from .base import LinearOperator, _shape


class Diagonal(LinearOperator):
    """``y = weight * x``, with ``weight`` broadcast to ``shape``.

    Typical use: ``weight`` of shape ``(n_e, 1, 1)`` holding exposure [s] × effective area
    [cm²] per true-energy bin, turning a sky cube in photons / s / cm² into expected counts.
    The operator is self-adjoint (real weights) and ‖A‖₂ = max |weight| exactly.

    Parameters
    ----------
    weight : array (any namespace), broadcastable to ``shape``. Its namespace and dtype are
        the operator's ``xp``/``dtype``; inputs of the other float dtype use a converted copy.
    shape : the shape of the cubes the operator acts on.
    """

    name = "diagonal"

    def __init__(self, weight, shape: Sequence[int]):
        shape = _shape(shape)
        w_shape = tuple(weight.shape)
        try:
            full = np.broadcast_shapes(w_shape, shape)
        except ValueError:
            full = None
        if full != shape:
            raise ShapeError(f"Diagonal: the weight of shape {w_shape} does not broadcast to the "
                             f"operator shape {shape}; give a weight of shape {shape} or one with 1 on "
                             "the axes it does not vary along (e.g. (n_e, 1, 1)).")
        super().__init__(shape, shape)
        self.xp = array_namespace(weight)
        self.dtype = weight.dtype
        self._weight = PerDtype.of(self.xp, weight)

    @property
    def weight(self):
        return self._weight(self.dtype)

    def _apply(self, x):
        return self._weight(real_float(self.xp, x.dtype, self.dtype)) * x

    _adjoint = _apply

    def norm(self, *args, **kwargs) -> float:
        if self._norm is None:
            self._norm = float(self.xp.max(self.xp.abs(self.weight))) if self.weight.size else 0.0
        return self._norm

    @classmethod
    def example(cls, xp, dtype) -> "Diagonal":
        """A small instance for contract tests: a full cube of weights in [0.5, 2]."""
        shape = (3, 5, 6)
        rng = np.random.default_rng(11)
        return cls(xp.asarray(rng.uniform(0.5, 2.0, shape), dtype=dtype), shape)

    def __repr__(self) -> str:
        return f"Diagonal(weight{tuple(self.weight.shape)}, {self.shape_in})"
