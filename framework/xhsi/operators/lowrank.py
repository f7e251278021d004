"""A compiled forward operator restricted to a spectral basis: ``A ∘ W`` for cubes
``Z = W·H`` (W: n_e × k spectra, H: k maps), computed on the k maps instead of the n_e
energy slices. Exact (same map up to rounding), not an approximation.

Why it is exact: every part of a forward model acts either on the energy axis only
(exposure × area, redistribution: matrices that fold into W) or on the images (PSF, rebin).
- One PSF for every energy: the spatial part commutes with the spectral one, so
  ``A W H = (Mᵀ·diag(w)·W) · Rebin(PSF ⊛ H)``: k blurred maps and an n_chan × k matrix.
- One PSF per energy P_e: ``(A W H)_c = Σ_r K_{c,r} ⊛ H_r`` with the k·n_chan kernels
  ``K̂_{c,r} = Σ_e M[e,c] w_e W[e,r] P̂_e``, precomputed once in Fourier space: k forward
  and n_chan inverse transforms per application instead of 2 × n_e.
This is the "blur the rank maps" of the low-rank fusion (Lascar et al. 2025, A&A 694 A34,
after Simões et al. 2015, IEEE TGRS 53, 3373, where the same folding gives their speed).
"""
from __future__ import annotations

from ..backend import array_namespace
from ._held import PerDtype, complex_of, real_float
from .base import LinearOperator
from .diagonal import Diagonal
from .fused import BlurRebin
from .rebin import SpatialRebin
from .response import SpectralResponse

__all__ = ["spectral_basis_forward", "MixingBlurRebin"]


class MixingBlurRebin(BlurRebin):
    """``y_c = Rebin_f(Σ_r K_{c,r} ⊛ x_r)``: k input maps mixed into n_out output images by
    one kernel per (output, input) pair, held as transforms (see the module docstring).

    Built by :func:`spectral_basis_forward` from a per-energy ``BlurRebin`` and the spectral
    matrix ``G`` (n_e × n_out·k) that weights its per-energy kernels."""

    name = ""  # internal: built from a compiled forward, not registered

    def __init__(self, blur: BlurRebin, mixing, n_out: int, k: int):
        xp = blur.xp
        LinearOperator.__init__(self, (k,) + blur.shape_in[1:], (n_out,) + blur.shape_out[1:])
        self.xp, self.dtype, self.boundary, self.psf_shape = xp, blur.dtype, blur.boundary, blur.psf_shape
        self.factor, self._grid, self._fft, self.psf = blur.factor, blur._grid, blur._fft, blur.psf
        self.sparse, self._response = False, None
        self._response_t = None
        cdtype = complex_of(xp, blur.dtype)
        self._kernel = PerDtype.of(xp, self._mix_kernels(xp, blur._kernel(cdtype), mixing, n_out, k))
        self._kernel_conj = PerDtype.of(xp, self._mix_kernels(xp, blur._kernel_conj(cdtype), mixing, n_out, k))

    @staticmethod
    def _mix_kernels(xp, kernels, mixing, n_out: int, k: int):
        """K̂_{c,r} = Σ_e G[e, (c, r)] P̂_e, on real and imaginary parts (G is real)."""
        n_e, n1, n2h = kernels.shape
        g = xp.matrix_transpose(xp.astype(mixing, xp.real(kernels).dtype))
        flat_re = xp.reshape(xp.real(kernels), (n_e, n1 * n2h))
        flat_im = xp.reshape(xp.imag(kernels), (n_e, n1 * n2h))
        re, im = xp.matmul(g, flat_re), xp.matmul(g, flat_im)
        mixed = xp.astype(re, kernels.dtype) + xp.astype(im, kernels.dtype) * xp.asarray(1j, dtype=kernels.dtype)
        return xp.reshape(mixed, (n_out, k, n1, n2h))

    def _apply(self, x):
        xp = self.xp
        kernel = self._kernel(complex_of(xp, real_float(xp, x.dtype, self.dtype)))
        spectrum = xp.sum(kernel * self._spectrum(x)[None, ...], axis=1)
        return self._image(self._alias(spectrum))

    def _adjoint(self, y):
        xp = self.xp
        kernel = self._kernel_conj(complex_of(xp, real_float(xp, y.dtype, self.dtype)))
        spectrum = self._tile(self._image_adjoint(y))
        return self._spectrum_adjoint(xp.sum(kernel * spectrum[:, None, ...], axis=0))

    def __repr__(self) -> str:
        return f"MixingBlurRebin(psf{self.psf_shape}, {self.shape_in} -> {self.shape_out}, factor={self.factor})"


def _spectral_only(op) -> bool:
    return isinstance(op, Diagonal) and all(int(s) == 1 for s in tuple(op.weight.shape)[1:])


def _dense(matrix, sparse: bool, xp, dtype):
    """A held matrix (backend array, or scipy.sparse on numpy) as a dense ``xp`` array."""
    return xp.asarray(matrix.toarray(), dtype=dtype) if sparse else xp.astype(matrix, dtype)


def _matrix(op: SpectralResponse, xp, dtype):
    """The (n_in, n_out) matrix of a SpectralResponse as a dense array of ``xp``."""
    return _dense(op.matrix, op.sparse, xp, dtype)


def spectral_basis_forward(forward, basis) -> LinearOperator | None:
    """The operator H ↦ A(W·H) from rank maps ``(k, ny, nx)`` to the counts of ``forward``,
    computed on the k maps (module docstring), or None when ``forward`` has a part this
    folding does not know (then use ``forward @ (H ↦ W·H)``).

    ``forward``: a compiled forward operator (``xhsi.instruments.compile_forward``; its
    ``parts``, innermost first) or any LinearOperator chain of ``Diagonal`` (weights per
    energy), ``SpectralResponse``, ``BlurRebin`` and ``SpatialRebin``. ``basis``: W as a
    backend array (n_e, k) in the run's dtype, e.g. ``lowrank_pca``'s ``basis``."""
    parts = list(getattr(forward, "parts", None) or getattr(forward, "ops", None) or [forward])
    xp = array_namespace(basis)
    dtype = basis.dtype
    k = int(basis.shape[1])
    spectral = basis  # the cube at the current part is spectral · (spatial maps)
    spatial: list[LinearOperator] = []  # applied to the k maps, innermost first
    shape = (k,) + tuple(forward.shape_in[1:])
    for i, op in enumerate(parts):
        if _spectral_only(op):
            spectral = xp.reshape(xp.astype(op.weight, dtype), (-1, 1)) * spectral
        elif isinstance(op, SpectralResponse):
            spectral = xp.matmul(xp.matrix_transpose(_matrix(op, xp, dtype)), spectral)
        elif isinstance(op, BlurRebin) and len(op.psf_shape) == 2:
            # one PSF for every energy: it blurs the rank maps; its response folds into W
            spatial.append(BlurRebin(op.psf, shape, op.factor, op.boundary))
            shape = spatial[-1].shape_out
            if op._response is not None:
                spectral = xp.matmul(xp.matrix_transpose(_response_dense(op, xp, dtype)), spectral)
        elif isinstance(op, SpatialRebin):
            spatial.append(SpatialRebin(shape, op.factor))
            shape = spatial[-1].shape_out
        elif isinstance(op, BlurRebin) and not spatial:
            # Per-energy kernels: fold the spectral matrix and the op's own response into
            # k·n_out kernels, then keep folding the spectral parts after it.
            m = xp.eye(op.shape_in[0], dtype=dtype) if op._response is None else _response_dense(op, xp, dtype)
            n_out = int(m.shape[1])
            mixing = xp.reshape(m[:, :, None] * spectral[:, None, :], (op.shape_in[0], n_out * k))
            fourier = op if op.method == "fourier" else BlurRebin(op.psf, op.shape_in, op.factor, op.boundary,
                                                                   method="fourier")
            mixer = MixingBlurRebin(fourier, mixing, n_out, k)
            rest = _fold_after(parts[i + 1:], xp, dtype, mixer.shape_out)
            return None if rest is None else _chain([mixer] + rest)
        else:
            return None
    return _chain(spatial + [SpectralResponse(_below_rounding_to_zero(xp, xp.matrix_transpose(spectral)), shape)])


def _below_rounding_to_zero(xp, m):
    """Entries below eps · max |m| set to 0: they are below the rounding of the sums they
    enter, and the tails of folded responses reach subnormal floats, which slow BLAS."""
    eps = 1.1920929e-07 if "float32" in str(m.dtype) else 2.220446049250313e-16
    return xp.where(xp.abs(m) < eps * float(xp.max(xp.abs(m))), xp.zeros_like(m), m)


def _response_dense(op: BlurRebin, xp, dtype):
    return _dense(op._response(op._response.dtype), op.sparse, xp, dtype)


def _fold_after(parts, xp, dtype, shape):
    """Spectral parts after a mixing blur, as SpectralResponse operators; None if a spatial
    part follows (it would not commute with the per-channel kernels in general)."""
    out = []
    for op in parts:
        if isinstance(op, SpectralResponse):
            out.append(SpectralResponse(_matrix(op, xp, dtype), shape))
            shape = out[-1].shape_out
        elif _spectral_only(op):
            out.append(Diagonal(xp.astype(op.weight, dtype), shape))
        else:
            return None
    return out


def _chain(ops: list) -> LinearOperator:
    chain = ops[0]
    for op in ops[1:]:
        chain = op @ chain
    return chain
