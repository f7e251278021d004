"""Arrays an operator holds (a PSF transform, a response matrix, a weight), kept in the
dtype of each input they meet.

An operator built from float64 calibration data and applied to a float32 cube must return
float32 (and the reverse): mixing dtypes would silently promote the run's arrays. The held
array is converted once per dtype on first use and reused, so the hot loop never casts.
"""
from __future__ import annotations

from typing import Any, Callable


def complex_of(xp, dtype):
    """The complex dtype whose real and imaginary parts have ``dtype``."""
    return xp.complex64 if dtype == xp.float32 else xp.complex128


def real_float(xp, dtype, fallback):
    """``dtype`` when it is float32 or float64, else ``fallback`` (the operator's own)."""
    return dtype if dtype in (xp.float32, xp.float64) else fallback


class PerDtype:
    """One held array, converted once to each dtype asked for.

    ``convert(array, dtype)`` does the conversion (``xp.astype`` by default; scipy.sparse
    matrices pass their own ``astype``)."""

    def __init__(self, array: Any, convert: Callable[[Any, Any], Any]):
        self._source = array
        self._convert = convert
        # A list, not a dict: numpy's ``np.float32`` and ``np.dtype("float32")`` compare
        # equal but hash differently.
        self._by_dtype: list = [(array.dtype, array)]

    @classmethod
    def of(cls, xp, array) -> "PerDtype":
        return cls(array, xp.astype)

    @property
    def dtype(self):
        return self._source.dtype

    def __call__(self, dtype):
        for known, held in self._by_dtype:
            if known == dtype:
                return held
        held = self._convert(self._source, dtype)
        self._by_dtype.append((dtype, held))
        return held


def c_contiguous(xp, array):
    """``array`` in C order on numpy (a copy when it is a transposed view), else unchanged.
    OpenBLAS is up to 400× slower on a transposed (Fortran-order) left operand with few
    rows, e.g. a (3, 2400) view times a (2400, 225) block (measured, numpy 2.4)."""
    from array_api_compat import is_numpy_namespace

    if is_numpy_namespace(xp):
        import numpy

        return numpy.ascontiguousarray(array)
    return array
