"""The spectral redistribution of a detector: true energy → detector channels (the RMF)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..backend import array_namespace, compat_namespace, is_numpy_namespace, to_numpy
from ..errors import ShapeError
from ._held import PerDtype, c_contiguous, real_float
from .base import LinearOperator, _shape


def _is_sparse(matrix) -> bool:
    try:
        import scipy.sparse
    except ImportError:  # pragma: no cover - scipy is a dependency
        return False
    return scipy.sparse.issparse(matrix)


class SpectralResponse(LinearOperator):
    """``y[c, i, j] = Σ_e M[e, c] x[e, i, j]``: every pixel's spectrum in true-energy bins
    redistributed to detector channels.

    ``matrix`` follows the OGIP RMF convention (George et al. 1992, OGIP Calibration Memo
    CAL/GEN/92-002; Arnaud et al., OGIP/92-002a): row = true-energy bin, column = channel,
    entry = probability that a photon of that energy is recorded in that channel
    (dimensionless; the effective area goes in a ``Diagonal``).

    Parameters
    ----------
    matrix : ``(n_e, n_chan)`` dense array of any namespace, or a scipy.sparse matrix.
        A sparse matrix stays sparse on numpy (its ``@`` does the work, which is what makes
        a 2400 × 2400 banded RMF affordable on CPU); for another namespace ``xp`` it is
        converted to a dense array there.
    shape_in : ``(n_e, ny, nx)`` (any trailing shape; energy first).
    xp : namespace to hold the matrix in; default the matrix's own (numpy for sparse).
    """

    name = "spectral_response"

    def __init__(self, matrix, shape_in: Sequence[int], xp=None):
        shape_in = _shape(shape_in)
        xp = compat_namespace(xp)
        m_shape = tuple(matrix.shape)
        if len(m_shape) != 2 or len(shape_in) < 1 or shape_in[0] != m_shape[0]:
            raise ShapeError(f"SpectralResponse: a matrix of shape {m_shape} (true energies × channels) cannot act "
                             f"on cubes of shape {shape_in}; the cube's first axis must have the matrix's "
                             f"{m_shape[0] if m_shape else '?'} true-energy bins.")
        super().__init__(shape_in, (m_shape[1],) + shape_in[1:])
        self.sparse = _is_sparse(matrix)
        if self.sparse and (xp is None or is_numpy_namespace(xp)):
            import array_api_compat.numpy as np_xp

            self.xp = np_xp
            csr = matrix.tocsr()
            self._matrix = PerDtype(csr, lambda m, dtype: m.astype(dtype))
            self._matrix_t = PerDtype(csr.T.tocsr(), lambda m, dtype: m.astype(dtype))
        else:
            if self.sparse:
                matrix = xp.asarray(matrix.toarray())
                self.sparse = False
            elif xp is not None and array_namespace(matrix) is not xp:
                matrix = xp.asarray(to_numpy(matrix))
            self.xp = array_namespace(matrix)
            # Both orientations held in C order (see c_contiguous: BLAS is slow on
            # transposed views with few rows); the matrices are small next to the cubes.
            self._matrix = PerDtype.of(self.xp, c_contiguous(self.xp, matrix))
            self._matrix_t = PerDtype(c_contiguous(self.xp, matrix.T), lambda m, dtype: self.xp.astype(m, dtype))
        self.dtype = matrix.dtype

    @property
    def matrix(self):
        return self._matrix(self.dtype)

    def _product(self, held: PerDtype, x, n_out: int):
        dtype = real_float(self.xp, x.dtype, self.dtype)
        flat = self.xp.reshape(x, (x.shape[0], -1))
        m = held(dtype)
        out = m @ flat if self.sparse else self.xp.matmul(m, flat)
        return self.xp.reshape(out, (n_out,) + tuple(x.shape[1:]))

    def _apply(self, x):
        return self._product(self._matrix_t, x, self.shape_out[0])

    def _adjoint(self, y):
        return self._product(self._matrix, y, self.shape_in[0])

    @classmethod
    def example(cls, xp, dtype) -> "SpectralResponse":
        """A small instance for contract tests: 6 true-energy bins to 4 channels."""
        rng = np.random.default_rng(13)
        return cls(xp.asarray(rng.uniform(0.0, 1.0, (6, 4)), dtype=dtype), (6, 5, 4))

    def __repr__(self) -> str:
        kind = "sparse " if self.sparse else ""
        return f"SpectralResponse({kind}matrix({self.shape_in[0]}, {self.shape_out[0]}), {self.shape_in} -> {self.shape_out})"
