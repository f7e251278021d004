"""Cropping to a box and zero padding: the field of view of one instrument inside the model
grid, or a margin around it. ``Pad`` is the adjoint of ``Crop`` (and the reverse); both
have ‖A‖₂ = 1."""
from __future__ import annotations

from typing import Sequence

from array_api_compat import device as _device

from ..backend import array_namespace
from ..errors import ShapeError
from .base import LinearOperator, _shape


def _pairs(value, n: int, who: str, what: str) -> tuple[tuple[int, int], ...]:
    try:
        pairs = tuple((int(a), int(b)) for a, b in value)
    except (TypeError, ValueError):
        pairs = None
    if pairs is None or len(pairs) != n:
        raise ShapeError(f"{who}: {what} must be one (int, int) pair per axis of the shape ({n} axes), got {value!r}.")
    return pairs


def _embed(y, shape, slices):
    """``y`` placed at ``slices`` of a zero array of ``shape`` (same namespace, dtype, device)."""
    xp = array_namespace(y)
    out = xp.zeros(shape, dtype=y.dtype, device=_device(y))
    out[slices] = y
    return out


class Crop(LinearOperator):
    """Keep the box ``x[start_0:stop_0, start_1:stop_1, ...]``.

    Parameters
    ----------
    shape_in : shape of the input arrays.
    box : one ``(start, stop)`` pair per axis (Python slice bounds, ``0 ≤ start < stop ≤ n``).

    ``apply`` returns a view of its input where the library has views (numpy, cupy): no copy.
    """

    name = "crop"

    def __init__(self, shape_in: Sequence[int], box: Sequence[tuple[int, int]]):
        shape_in = _shape(shape_in)
        self.box = _pairs(box, len(shape_in), "Crop", "box")
        for (start, stop), n in zip(self.box, shape_in):
            if not 0 <= start < stop <= n:
                raise ShapeError(f"Crop: the box {self.box} does not fit in the input shape {shape_in}; every "
                                 "(start, stop) needs 0 <= start < stop <= the axis length.")
        self._slices = tuple(slice(start, stop) for start, stop in self.box)
        super().__init__(shape_in, tuple(stop - start for start, stop in self.box))

    def _apply(self, x):
        return x[self._slices]

    def _adjoint(self, y):
        return _embed(y, self.shape_in, self._slices)

    def norm(self, *args, **kwargs) -> float:
        return 1.0

    @classmethod
    def example(cls, xp, dtype) -> "Crop":
        """A small instance for contract tests: a (2, 4, 5) box of a (3, 7, 6) cube."""
        return cls((3, 7, 6), ((1, 3), (2, 6), (0, 5)))

    def __repr__(self) -> str:
        return f"Crop({self.shape_in} -> {self.shape_out}, box={self.box})"


class Pad(LinearOperator):
    """Surround the input with zeros: ``pad_width[k] = (before, after)`` samples on axis k.

    Parameters
    ----------
    shape_in : shape of the input arrays.
    pad_width : one ``(before, after)`` pair of non-negative integers per axis.
    """

    name = "pad"

    def __init__(self, shape_in: Sequence[int], pad_width: Sequence[tuple[int, int]]):
        shape_in = _shape(shape_in)
        self.pad_width = _pairs(pad_width, len(shape_in), "Pad", "pad_width")
        if any(a < 0 or b < 0 for a, b in self.pad_width):
            raise ShapeError(f"Pad: pad_width {self.pad_width} for the input shape {shape_in} must be non-negative.")
        shape_out = tuple(n + a + b for n, (a, b) in zip(shape_in, self.pad_width))
        self._slices = tuple(slice(a, a + n) for n, (a, _) in zip(shape_in, self.pad_width))
        super().__init__(shape_in, shape_out)

    def _apply(self, x):
        return _embed(x, self.shape_out, self._slices)

    def _adjoint(self, y):
        return y[self._slices]

    def norm(self, *args, **kwargs) -> float:
        return 1.0

    @classmethod
    def example(cls, xp, dtype) -> "Pad":
        """A small instance for contract tests: (2, 4, 5) padded unevenly to (3, 7, 8)."""
        return cls((2, 4, 5), ((1, 0), (2, 1), (0, 3)))

    def __repr__(self) -> str:
        return f"Pad({self.shape_in} -> {self.shape_out}, pad_width={self.pad_width})"


class Select(LinearOperator):
    """Keep the slices ``keep`` (increasing integer indices) of the first axis: the channels
    of a spectrum that a fit uses (QUALITY, notice ranges). The adjoint puts them back in
    place among zeros; ‖A‖₂ = 1."""

    name = "select"

    def __init__(self, shape_in: Sequence[int], keep):
        import numpy as np

        shape_in = _shape(shape_in)
        idx = np.asarray(keep, dtype=np.int64).reshape(-1)
        if not idx.size or np.any(np.diff(idx) <= 0) or idx[0] < 0 or idx[-1] >= shape_in[0]:
            raise ShapeError(f"Select: keep must be increasing indices in [0, {shape_in[0]}), got {idx.tolist()}.")
        self.keep = idx
        self._keep = {}
        super().__init__(shape_in, (idx.size,) + tuple(shape_in[1:]))

    def _index(self, xp, x):
        key = (id(xp), str(_device(x)))
        if key not in self._keep:
            self._keep[key] = xp.asarray(self.keep, device=_device(x))
        return self._keep[key]

    def _apply(self, x):
        xp = array_namespace(x)
        return xp.take(x, self._index(xp, x), axis=0)

    def _adjoint(self, y):
        xp = array_namespace(y)
        out = xp.zeros(self.shape_in, dtype=y.dtype, device=_device(y))
        out[self._index(xp, y), ...] = y
        return out

    def norm(self, *args, **kwargs) -> float:
        return 1.0

    def __repr__(self) -> str:
        return f"Select({self.shape_in} -> {self.shape_out}, {self.keep.size} of {self.shape_in[0]})"
