"""Assertions for tests of xhsi and of third-party plugins (like ``numpy.testing``)."""
from __future__ import annotations

import numpy as np

from .backend import array_namespace, to_numpy
from .operators import LinearOperator


def rtol_for(dtype) -> float:
    """Comparison tolerance per dtype (never loosened to make a test pass)."""
    name = str(dtype)
    return 2e-4 if "float32" in name else 1e-10


def assert_close(actual, expected, *, rtol=None, atol=0.0, xp=None, dtype=None):
    """Compare shape and values (tolerance per dtype of ``actual`` unless ``rtol`` is given)
    and, when given, the namespace ``xp`` and ``dtype`` of ``actual``: catches silent
    transfers to numpy and dtype promotion."""
    if xp is not None:
        from array_api_compat import array_namespace

        assert array_namespace(actual) == xp, f"result left the namespace: {type(actual)}"
    if dtype is not None:
        assert actual.dtype == dtype, f"dtype {actual.dtype} != {dtype}"
    a, e = to_numpy(actual), to_numpy(expected) if hasattr(expected, "shape") else np.asarray(expected)
    assert a.shape == e.shape, f"shape {a.shape} != {e.shape}"
    tol = rtol if rtol is not None else rtol_for(getattr(actual, "dtype", "float64"))
    np.testing.assert_allclose(a, e, rtol=tol, atol=atol)


class DenseOperator(LinearOperator):
    """A dense matrix acting on flattened arrays of ``shape_in`` (for small test problems)."""

    def __init__(self, matrix, shape_in, shape_out):
        super().__init__(shape_in, shape_out)
        self.matrix, self.xp, self.dtype = matrix, array_namespace(matrix), matrix.dtype

    def _apply(self, x):
        return self.xp.reshape(self.xp.matmul(self.matrix, self.xp.reshape(x, (-1,))), self.shape_out)

    def _adjoint(self, y):
        return self.xp.reshape(self.xp.matmul(self.matrix.T, self.xp.reshape(y, (-1,))), self.shape_in)
