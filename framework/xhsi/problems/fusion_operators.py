"""The forward operators of ``fusion_unmixing`` on the rank maps: each observation's compiled
operator folded onto the stacked spectral basis W of the components' tables,
H ↦ A_k(W·H) (``xhsi.operators.lowrank.spectral_basis_forward``, exact), with the mixing
kernels of a per-energy PSF applied as one batched matrix product per spatial frequency
(``BatchedMixing``).

Why the batched product: ``MixingBlurRebin`` forms the n_out × k × frequencies product of
its kernels with the spectrum and sums over k, then the same with the conjugate kernels in
the adjoint. At the published size (pn: 60 channels, k = 67 rank maps, 45 × 45 pixels,
29 × 29 PSFs, float32, 2 shared cores, 2026-12-06) the whole operator takes 45 ms forward
and 51 ms adjoint that way, 25 ms and 17 ms as a batched matrix product over the held
C-contiguous kernels (same map to 3e-7). PALM takes one adjoint per block and one or two
forwards, so this is ~0.3 s of an iteration. (A candidate for ``MixingBlurRebin`` itself;
kept here so the operator module stays as it is.)
"""
from __future__ import annotations

from ..operators._held import PerDtype, c_contiguous, complex_of, real_float
from ..operators.base import Composition
from ..operators.lowrank import MixingBlurRebin, spectral_basis_forward
from ..operators.response import SpectralResponse


class BatchedMixing(MixingBlurRebin):
    """``MixingBlurRebin`` with its kernels held per frequency, (F, n_out, k) and the
    conjugate transpose (F, k, n_out), F = N1 × (N2 // 2 + 1): the mixing is one batched
    matrix product. Same map (up to rounding)."""

    def __init__(self, mixer: MixingBlurRebin):
        self.__dict__.update(mixer.__dict__)
        xp = mixer.xp
        kernel = mixer._kernel(complex_of(xp, mixer.dtype))  # (n_out, k, N1, N2h)
        n_out, k, n1, n2h = kernel.shape
        flat = xp.reshape(kernel, (n_out, k, n1 * n2h))
        # C-contiguous per frequency: BLAS reads each (n_out, k) matrix in place
        self._kernel = PerDtype.of(xp, c_contiguous(xp, xp.permute_dims(flat, (2, 0, 1))))                # (F, n_out, k)
        self._kernel_conj = PerDtype.of(xp, c_contiguous(xp, xp.conj(xp.permute_dims(flat, (2, 1, 0)))))  # (F, k, n_out)

    def _mix(self, held, spectrum, real_dtype):
        """Σ_j held[f, i, j] · spectrum[j, f] for every frequency f: (n_in, N1, N2h) → (n_out, N1, N2h)."""
        xp = self.xp
        n_in, n1, n2h = spectrum.shape
        kernel = held(complex_of(xp, real_dtype))
        columns = xp.permute_dims(xp.reshape(spectrum, (n_in, n1 * n2h)), (1, 0))[:, :, None]  # (F, n_in, 1)
        mixed = xp.matmul(kernel, columns)[:, :, 0]                                                # (F, n_out)
        return xp.reshape(xp.permute_dims(mixed, (1, 0)), (int(kernel.shape[1]), n1, n2h))

    def _apply(self, x):
        real_dtype = real_float(self.xp, x.dtype, self.dtype)
        return self._image(self._alias(self._mix(self._kernel, self._spectrum(x), real_dtype)))

    def _adjoint(self, y):
        real_dtype = real_float(self.xp, y.dtype, self.dtype)
        return self._spectrum_adjoint(self._mix(self._kernel_conj, self._tile(self._image_adjoint(y)), real_dtype))

    def __repr__(self) -> str:
        return "Batched" + super().__repr__()


def folded_forward(forward, basis, shape):
    """The operator H ↦ A(W·H) from rank maps ``shape`` = (k, ny, nx) to the counts of
    ``forward`` (a compiled forward operator), ``basis`` W (n_e, k) on the run's backend:
    folded onto the k maps where the forward's parts allow it, else A ∘ W."""
    folded = spectral_basis_forward(forward, basis)
    if folded is None:
        xp = forward.xp if hasattr(forward, "xp") else None
        matrix = basis.T if xp is None else xp.matrix_transpose(basis)
        return forward @ SpectralResponse(matrix, shape)
    parts = folded.ops if isinstance(folded, Composition) else [folded]
    parts = [BatchedMixing(op) if type(op) is MixingBlurRebin else op for op in parts]
    chain = parts[0]
    for op in parts[1:]:
        chain = op @ chain
    return chain
