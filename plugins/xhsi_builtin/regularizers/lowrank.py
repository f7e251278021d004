"""Spectral low rank: the cube is Z = W·H with W (n_e, rank) the first principal spectra of
an initial estimate and H (rank, ny, nx) the rank maps the solver works on (the low-rank
fusion of Lascar et al. 2025, A&A 694 A34, after Simões et al. 2015, IEEE TGRS 53, 3373).

W is computed without mean-centring: the model Z = W·H must be linear (the solver needs
the adjoint Wᵀ), and the uncentred SVD gives the best rank-k linear approximation of the
initial cube (Eckart & Young 1936). The parametrisation has no penalty of its own (prox =
identity); combine it with ``sobolev`` or ``starlet2d_l1`` acting on H.

With ``basis = "nmf"`` W is instead a non-negative factorisation of the initial cube
(``nmf.py``) and H is constrained to H ≥ 0, so that the cube W·H is ≥ 0 by construction:
the principal spectra have negative parts, and with them W·H < 0 in faint voxels, where
the Poisson model sits on its floor and its curvature (y / floor²) stalls the solver's
step (docs/fusion.md). The non-negative cone of W is smaller than the principal subspace
but holds every mixture of non-negative spectra the factorisation found.
"""
from __future__ import annotations

from dataclasses import dataclass

from xhsi.backend import array_namespace
from xhsi.errors import DataError, ShapeError
from xhsi.regularizers import Parametrisation
from xhsi.schema import option

__all__ = ["LowRankPCA"]


@dataclass
class LowRankPCAOptions:
    rank: int = option(3, min=1, unit="spectra", doc="number of principal spectra kept (columns of W)")
    basis: str = option("pca", choices=("pca", "nmf"),
                        doc="pca: orthonormal principal spectra (published), H free; nmf: non-negative spectra "
                            "from a factorisation of the initial cube, H >= 0 so that W·H >= 0")
    nmf_iter: int = option(100, min=1, unit="sweeps", doc="HALS sweeps of the NMF (basis = nmf)")


class LowRankPCA(Parametrisation):
    """Z = W·H, W the ``rank`` leading left singular vectors of the (n_e, ny·nx) matrix of an
    initial cube (orthonormal columns, sign fixed so that each column sums to ≥ 0), or with
    ``basis = "nmf"`` its non-negative factorisation's spectra (unit ℓ2 columns, H ≥ 0)."""

    name = "lowrank_pca"
    selection_grid = {"options.rank": (4, 8, 16), "options.basis": ("nmf",)}

    @classmethod
    def selection_grid_for(cls, shape) -> dict[str, tuple]:
        """The grid's ranks up to min(n_e, ny·nx), the largest the cube allows (that alone
        when every rank of the grid is above it)."""
        top = min(int(shape[0]), int(shape[1]) * int(shape[2]))
        ranks = tuple(r for r in cls.selection_grid["options.rank"] if r <= top) or (top,)
        return {**cls.selection_grid, "options.rank": ranks}

    def spatial_reach(self) -> int:
        """Pixel by pixel, Z = W·H; but W is learnt from the whole cube, so a tile learns its
        own basis: tiles match the untiled run only as far as the two bases agree."""
        return 0
    Options = LowRankPCAOptions
    smooth = False
    exact_prox = True  # the identity is the exact prox of the zero penalty

    basis = None  #: W, (n_e, rank), set by fit(), in the variable's dtype
    _basis64 = None  #: W in float64, for from_cube
    singular_values = None  #: the rank leading singular values of the initial cube, decreasing

    @classmethod
    def example(cls, xp, dtype):
        import numpy as np

        rng = np.random.default_rng(1)
        spectra = rng.random((6, 2))
        maps = rng.random((2, 8 * 8))
        cube = xp.asarray((spectra @ maps).reshape(6, 8, 8), dtype=dtype)
        reg = cls(cls.Options(rank=2))
        reg.setup((6, 8, 8), xp, dtype)
        reg.fit(cube)
        return reg

    def setup(self, shape, xp, dtype) -> None:
        """``shape`` is the cube's (n_e, ny, nx); the variable is (rank, ny, nx)."""
        if len(shape) != 3:
            raise ShapeError(f"lowrank_pca needs a cube shape (n_e, ny, nx), got {tuple(shape)}.")
        super().setup(shape, xp, dtype)

    def fit(self, cube) -> None:
        """Learn W from an initial estimate of the cube (n_e, ny, nx), e.g. a smoothed or
        deconvolved data cube. Uses the eigen-decomposition of the smaller Gram matrix:
        MMᵀ (n_e × n_e) when n_e ≤ ny·nx, else MᵀM (npix × npix) and W = M V Σ⁻¹."""
        xp = array_namespace(cube)
        if cube.ndim != 3:
            raise ShapeError(f"lowrank_pca.fit needs a cube (n_e, ny, nx), got shape {tuple(cube.shape)}.")
        if not hasattr(self, "shape") or tuple(self.shape) != tuple(cube.shape):
            self.setup(tuple(cube.shape), xp, cube.dtype)
        n_e, ny, nx = cube.shape
        npix = ny * nx
        k = self.options.rank
        if k > min(n_e, npix):
            raise ShapeError(f"lowrank_pca: rank {k} exceeds min(n_e, ny·nx) = {min(n_e, npix)}; lower `rank`.")
        # Fitted in float64 whatever the run's dtype, then cast to the variable's dtype (from
        # setup): a float32 Gram matrix or factorisation of a 2400-bin cube moves the basis
        # by more than float32 iterations can, and float32 and float64 runs must agree.
        m = xp.astype(xp.reshape(cube, (n_e, npix)), xp.float64)
        w, sv = self._fit_nmf(m, k) if self.options.basis == "nmf" else self._fit_pca(m, k)
        self._basis64 = w
        self.basis = xp.astype(w, self.dtype)
        self.singular_values = xp.astype(sv, self.dtype)

    def _fit_pca(self, m, k: int):
        """(W, singular values) of the principal spectra of m (n_e, npix), float64."""
        xp = array_namespace(m)
        n_e, npix = m.shape
        if n_e <= npix:
            evals, evecs = xp.linalg.eigh(m @ xp.matrix_transpose(m))
            evals = xp.flip(evals[n_e - k:], axis=0)
            w = xp.flip(evecs[:, n_e - k:], axis=1)
        else:
            evals, evecs = xp.linalg.eigh(xp.matrix_transpose(m) @ m)
            evals = xp.flip(evals[npix - k:], axis=0)
            v = xp.flip(evecs[:, npix - k:], axis=1)
            if float(xp.min(evals)) <= float(evals[0]) * 1e-12:
                raise DataError(f"lowrank_pca: the initial cube has numerical rank < {k}; lower `rank`.")
            w = (m @ v) / xp.sqrt(evals)
        sign = xp.where(xp.sum(w, axis=0) < 0, -xp.ones_like(evals), xp.ones_like(evals))
        return w * sign, xp.sqrt(xp.clip(evals, min=0.0))

    def _fit_nmf(self, m, k: int):
        """(W, ‖rows of H‖) of the NMF of m (n_e, npix), float64."""
        from .nmf import nmf

        xp = array_namespace(m)
        if float(xp.min(m)) < 0:
            raise DataError("lowrank_pca with basis = \"nmf\" needs a non-negative initial cube.")
        scale = float(xp.mean(m)) or 1.0
        w, h = nmf(m / scale, k, self.options.nmf_iter)
        return w, xp.linalg.vector_norm(h, axis=1) * scale

    def from_cube(self, z):
        """The rank maps whose cube is closest to ``z`` in least squares (Wᵀz for the
        orthonormal principal spectra; (WᵀW)⁻¹Wᵀz clipped at 0 for basis = nmf), computed
        in float64 with the float64 basis (the NMF's Gram matrix can be ill-conditioned
        enough for float32 to move the start), returned in the variable's dtype."""
        self._check_fitted()
        xp = array_namespace(z)
        if tuple(z.shape) != tuple(self.shape):
            raise ShapeError(f"lowrank_pca.from_cube takes cubes of shape {self.shape}, got {tuple(z.shape)}.")
        w = self._basis64
        h = xp.matrix_transpose(w) @ xp.astype(xp.reshape(z, (w.shape[0], -1)), xp.float64)
        if self.options.basis == "nmf":
            h = xp.clip(xp.linalg.solve(xp.matrix_transpose(w) @ w, h), min=0.0)
        return xp.astype(xp.reshape(h, self.variable_shape), self.dtype)

    def _check_fitted(self):
        if self.basis is None or self._basis64 is None:
            raise ShapeError("lowrank_pca is used before fit(cube) computed its spectral basis.")

    @property
    def nonnegative(self) -> bool:
        """Whether the rank maps H are constrained to H ≥ 0 (basis = nmf)."""
        return self.options.basis == "nmf"

    @property
    def variable_shape(self) -> tuple[int, ...]:
        return (self.options.rank,) + tuple(self.shape[1:])

    def to_cube(self, h):
        """Z = W·H: (rank, ny, nx) → (n_e, ny, nx)."""
        self._check_fitted()
        xp = array_namespace(h)
        if tuple(h.shape) != self.variable_shape:
            raise ShapeError(f"lowrank_pca.to_cube takes rank maps of shape {self.variable_shape}, got {tuple(h.shape)}.")
        k, ny, nx = h.shape
        return xp.reshape(self.basis @ xp.reshape(h, (k, ny * nx)), tuple(self.shape))

    def to_cube_adjoint(self, z):
        """Wᵀ·Z: (n_e, ny, nx) → (rank, ny, nx); also the least-squares ``from_cube``
        because the columns of W are orthonormal."""
        self._check_fitted()
        xp = array_namespace(z)
        if tuple(z.shape) != tuple(self.shape):
            raise ShapeError(f"lowrank_pca.to_cube_adjoint takes cubes of shape {self.shape}, got {tuple(z.shape)}.")
        n_e, ny, nx = z.shape
        return xp.reshape(xp.matrix_transpose(self.basis) @ xp.reshape(z, (n_e, ny * nx)), self.variable_shape)
