"""Convolutions by FFT, batched over the energy axis: the spatial PSF blur of every energy
slice (one PSF or one per energy) and a 1-D convolution along energy.

Both use the convolution theorem with real FFTs (Cooley & Tukey 1965; zero padding against
wrap-around as in Press et al., *Numerical Recipes*, 3rd ed. 2007, §13.1). The kernel is
placed with its centre at index 0 of the FFT grid ("wrapped"), so the circular convolution
of the zero-padded input directly gives the 'same'-size output, and the grid only needs
``n + max(centre, K - 1 - centre)`` samples per axis (rounded up by ``next_fast_len``)
instead of ``n + K - 1``: an output sample ``i`` reads inputs ``i - k + centre`` that either
fall in ``[0, n)`` or on the zero padding, never on the other side of the image.
The kernel transform is computed once; the adjoint multiplies by its complex conjugate
(correlation), which is exactly the transpose of crop ∘ circular convolution ∘ zero pad.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from array_api_compat import device as _device

from ..backend import FFT, array_namespace, fft_namespace
from ..errors import ConfigError, ShapeError
from ._held import PerDtype, complex_of, real_float
from .base import LinearOperator, _shape

BOUNDARIES = ("zero", "periodic")


def wrap_kernel(xp, kernel, axis: int, length: int, centre: int):
    """Kernel values moved so that index ``centre`` lands on 0 of a periodic grid of
    ``length`` samples along ``axis`` (negative offsets at the end); kernels longer than the
    grid are folded (summed modulo ``length``), which is what a periodic grid means."""
    n = kernel.shape[axis]
    folds = -(-n // length)
    if folds * length > n:
        pad_shape = list(kernel.shape)
        pad_shape[axis] = folds * length - n
        zeros = xp.zeros(tuple(pad_shape), dtype=kernel.dtype, device=_device(kernel))
        kernel = xp.concat([kernel, zeros], axis=axis)
    kernel = xp.roll(kernel, -centre, axis=axis)
    if folds > 1:
        shape = tuple(kernel.shape)
        kernel = xp.sum(xp.reshape(kernel, shape[:axis] + (folds, length) + shape[axis + 1:]), axis=axis)
    return kernel


class _FFTConvolution(LinearOperator):
    """Shared apply/adjoint: forward transform over ``_axes`` with grid ``_grid``, multiply
    by the held kernel transform (or its conjugate), inverse transform, keep ``_keep``."""

    _axes: tuple[int, ...]
    _grid: tuple[int, ...]

    def _setup_transform(self, xp, transform) -> None:
        self.xp = xp
        self._fft: FFT = fft_namespace(xp)
        self._transform = PerDtype.of(xp, transform)
        self._transform_conj: PerDtype | None = None  # built on the first adjoint

    def _forward(self, x):
        raise NotImplementedError

    def _inverse(self, X):
        raise NotImplementedError

    def _multiply(self, x, conj: bool):
        if conj and self._transform_conj is None:
            self._transform_conj = PerDtype.of(self.xp, self.xp.conj(self._transform(self._transform.dtype)))
        held = self._transform_conj if conj else self._transform
        X = self._forward(x)
        # In place: the spectrum is a fresh array, and this saves one cube-sized allocation.
        X *= held(complex_of(self.xp, real_float(self.xp, x.dtype, self.dtype)))
        return self._inverse(X)

    def _apply(self, x):
        return self._multiply(x, conj=False)

    def _adjoint(self, y):
        return self._multiply(y, conj=True)


def check_psf(who: str, psf, shape: tuple[int, ...], boundary: str, cubes_only: bool = False) -> tuple[int, ...]:
    """The PSF's shape, checked against the cubes' ``shape`` and ``boundary`` for operator
    ``who``: a PSF (ky, kx) or a stack (n_e, ky, kx) with one plane per energy bin, odd
    sizes (the centre is a pixel). ``cubes_only``: the operator takes cubes (n_e, ny, nx)
    only, not single images."""
    if boundary not in BOUNDARIES:
        raise ConfigError(f"{who}: boundary must be one of {', '.join(BOUNDARIES)}, got `{boundary}`.")
    psf_shape = tuple(psf.shape)
    ndims = (3,) if cubes_only else (2, 3)
    if len(psf_shape) not in (2, 3) or len(shape) not in ndims or (len(psf_shape) == 3 and len(shape) != 3):
        raise ShapeError(f"{who}: a PSF of shape {psf_shape} cannot blur cubes of shape {shape}; "
                         "give a PSF (ky, kx) or a stack (n_e, ky, kx) for cubes (n_e, ny, nx).")
    if len(psf_shape) == 3 and psf_shape[0] != shape[0]:
        raise ShapeError(f"{who}: the PSF stack of shape {psf_shape} has {psf_shape[0]} energies "
                         f"but the cube shape {shape} has {shape[0]}; give one PSF per energy bin.")
    if psf_shape[-2] % 2 == 0 or psf_shape[-1] % 2 == 0:
        raise ShapeError(f"{who}: the PSF of shape {psf_shape} must have odd sizes so that its "
                         f"centre is a pixel (cube shape {shape}); crop or pad it by one pixel.")
    return psf_shape


class SpatialConvolution(_FFTConvolution):
    """Blur every energy slice of a cube by the PSF: ``y[e] = psf[e] ⊛ x[e]``, 'same' size.

    Parameters
    ----------
    psf : array ``(ky, kx)`` (one PSF for every energy) or ``(n_e, ky, kx)`` (one per energy
        bin), odd sizes, centred at index ``(ky // 2, kx // 2)``; values are fractions of a
        point source's counts per pixel (sum 1 for a flux-conserving PSF). Its namespace and
        dtype are the operator's.
    shape : ``(n_e, ny, nx)`` of the cubes (``(ny, nx)`` is accepted with a 2-D PSF).
    boundary : ``"zero"`` — linear convolution of the zero-extended image, no wrap-around
        (flux falling off the edge is lost); ``"periodic"`` — circular convolution on the
        ``ny × nx`` torus.
    """

    name = "spatial_convolution"

    def __init__(self, psf, shape: Sequence[int], boundary: str = "zero"):
        shape = _shape(shape)
        psf_shape = check_psf("SpatialConvolution", psf, shape, boundary)
        ky, kx = psf_shape[-2:]
        super().__init__(shape, shape)
        ny, nx = shape[-2:]
        self.boundary = boundary
        self.psf_shape = psf_shape
        if boundary == "zero":
            self._grid = (FFT.next_fast_len(ny + ky // 2), FFT.next_fast_len(nx + kx // 2))
        else:
            self._grid = (ny, nx)
        xp = array_namespace(psf)
        self.dtype = psf.dtype
        nd = len(psf_shape)
        wrapped = wrap_kernel(xp, psf, nd - 2, self._grid[0], ky // 2)
        wrapped = wrap_kernel(xp, wrapped, nd - 1, self._grid[1], kx // 2)
        fft = fft_namespace(xp)
        self._setup_transform(xp, fft.rfftn(wrapped, axes=(-2, -1)))

    def _forward(self, x):
        return self._fft.rfftn(x, s=self._grid, axes=(-2, -1))

    def _inverse(self, X):
        y = self._fft.irfftn(X, s=self._grid, axes=(-2, -1))
        if self.boundary == "periodic":
            return y
        ny, nx = self.shape_in[-2:]
        return y[..., :ny, :nx]

    @classmethod
    def example(cls, xp, dtype) -> "SpatialConvolution":
        """A small instance for contract tests: an energy-dependent, asymmetric 3×5 PSF stack."""
        rng = np.random.default_rng(12)
        shape = (3, 7, 8)
        return cls(xp.asarray(rng.uniform(0.0, 1.0, (3, 3, 5)), dtype=dtype), shape)

    def __repr__(self) -> str:
        return f"SpatialConvolution(psf{self.psf_shape}, {self.shape_in}, boundary={self.boundary!r})"


class SpectralConvolution(_FFTConvolution):
    """Convolve every pixel's spectrum with a 1-D kernel along the energy axis (axis 0):
    ``y[e] = Σ_k kernel[k] x[e - (k - center)]``, 'same' length, zero outside the band.

    A Gaussian line-spread function of constant width in bins is the usual kernel; an
    asymmetric one (low-energy tail) is allowed.

    Parameters
    ----------
    kernel : 1-D array of length K (fraction of the counts of a bin moved by each shift).
    shape : shape of the cubes, energy first.
    center : index of the kernel that maps to zero shift (default ``K // 2``).
    """

    name = "spectral_convolution"

    def __init__(self, kernel, shape: Sequence[int], center: int | None = None):
        shape = _shape(shape)
        if len(tuple(kernel.shape)) != 1 or len(shape) < 1:
            raise ShapeError(f"SpectralConvolution: the kernel must be 1-D (got shape {tuple(kernel.shape)}) and "
                             f"the cubes at least 1-D (got shape {shape}).")
        size = int(kernel.shape[0])
        center = size // 2 if center is None else int(center)
        if not 0 <= center < size:
            raise ShapeError(f"SpectralConvolution: center={center} is not an index of a kernel of shape ({size},).")
        super().__init__(shape, shape)
        self.center = center
        self.kernel_size = size
        self._grid = (FFT.next_fast_len(shape[0] + max(center, size - 1 - center)),)
        xp = array_namespace(kernel)
        self.dtype = kernel.dtype
        fft = fft_namespace(xp)
        transform = fft.rfft(wrap_kernel(xp, kernel, 0, self._grid[0], center))
        self._setup_transform(xp, xp.reshape(transform, (transform.shape[0],) + (1,) * (len(shape) - 1)))

    def _forward(self, x):
        return self._fft.rfft(x, n=self._grid[0], axis=0)

    def _inverse(self, X):
        return self._fft.irfft(X, n=self._grid[0], axis=0)[:self.shape_in[0], ...]

    @classmethod
    def example(cls, xp, dtype) -> "SpectralConvolution":
        """A small instance for contract tests: an asymmetric kernel of length 4, centre 1."""
        kernel = np.asarray([0.2, 0.5, 0.25, 0.05])
        return cls(xp.asarray(kernel, dtype=dtype), (7, 4, 5), center=1)

    def __repr__(self) -> str:
        return f"SpectralConvolution(kernel({self.kernel_size},), {self.shape_in}, center={self.center})"
