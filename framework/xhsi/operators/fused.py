"""PSF blur followed by an integer spatial rebin (and optionally the spectral redistribution)
in one operator: the spatial part of a forward model in one pass over the cube instead of
three (blur, crop, rebin). ``BlurRebin`` equals
``SpatialRebin(f) ∘ SpectralResponse(R) ∘ SpatialConvolution(psf)`` (R optional) up to
float rounding. Two exact methods, the cheaper chosen per PSF (flop estimate):

**Separable** (small images, low-rank PSF). A PSF of numerical rank r (SVD; a Gaussian is
rank 1, the shipped pixel-integrated ones rank ~3) is Σ_t u_t ⊗ v_t, so along each axis the
blur, the zero or periodic boundary, the box sum and the decimation are one small
(coarse × fine) matrix: ``y = Σ_t B_y,t · x · B_x,tᵀ`` per slice — 2r matrix products,
no padding, no transform.

**Fourier** (any PSF), with n_e input slices of ny × nx on an N1 × N2 FFT grid:
- forward: real FFT of the n_e slices; product with the precomputed transform of
  ``box ⊛ psf`` (box: the fy × fx rebinning sum, a convolution too); along y the decimation
  by fy is an alias sum of the spectrum onto the coarse grid of N1 / fy frequencies
  (DFT decimation identity, Oppenheim & Schafer, *Discrete-Time Signal Processing*, 3rd
  ed. 2010, §4.6.1); the optional spectral matrix R (true energy → channels) acts in
  Fourier space, so only n_chan slices are transformed back, on the coarse grid along y;
  along x the inverse is taken on the fine grid for those my rows only and sampled every
  fx pixels.
- adjoint: the exact transpose (zero insertion along x, spectrum tiling along y, Rᵀ,
  correlation with the kernel, crop).
Zero boundary as in ``SpatialConvolution``: the FFT grid holds ``n + k // 2`` samples per
axis (rounded up to a fast length that the rebin factor divides), so the kept outputs never
see wrap-around; ``"periodic"`` works on the ny × nx torus. Each 1-D pass takes only the
rows it needs (the x transform runs on the ny input rows, not the N1 padded ones), which
makes the separated transforms cheaper than ``rfftn`` with padding.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..backend import FFT, array_namespace, fft_namespace, is_numpy_namespace, to_numpy
from ..errors import ConfigError, ShapeError
from ._held import PerDtype, c_contiguous, complex_of, real_float
from .base import LinearOperator, _shape
from .convolution import check_psf, wrap_kernel
from .rebin import _factors

__all__ = ["BlurRebin", "blur_respond_rebin", "response_matrix"]


def _grid_length(n: int, half: int, factor: int, boundary: str) -> int:
    """FFT length along one axis: n (periodic) or the smallest fast length ≥ n + half that
    ``factor`` divides (zero boundary), so the spectrum folds onto length / factor bins."""
    if boundary == "periodic":
        return n
    return factor * FFT.next_fast_len(-(-(n + half) // factor))


def _is_sparse(matrix) -> bool:
    import scipy.sparse

    return scipy.sparse.issparse(matrix)


class BlurRebin(LinearOperator):
    """``y = Rebin_f(Rᵀ(psf ⊛ x))`` for cubes ``x`` of shape ``(n_e, ny, nx)``, in Fourier
    space (see the module docstring).

    Parameters
    ----------
    psf : ``(ky, kx)`` (one PSF for every slice) or ``(n_e, ky, kx)`` (one per energy
        bin), odd sizes, centred at ``(ky // 2, kx // 2)``, fraction of a point source's
        counts per pixel. Its namespace and dtype are the operator's.
    shape : ``(n_e, ny, nx)``; ``ny``, ``nx`` divisible by the rebin factor.
    factor : rebin block ``f`` or ``(fy, fx)`` in model pixels (1: no rebin).
    boundary : ``"zero"`` (default) or ``"periodic"``, as in ``SpatialConvolution``.
    response : optional ``(n_e, n_chan)`` redistribution matrix (OGIP RMF convention: row =
        true-energy bin, column = channel), a backend array or, on numpy, a scipy.sparse
        matrix. It is applied to the spectra in Fourier space, which saves the inverse
        transforms of ``n_e − n_chan`` slices: worth it when the PSF depends on energy and
        ``n_chan < n_e``. For an energy-independent PSF the spectral map commutes with the
        spatial one; put a ``SpectralResponse`` on whichever side has fewer slices instead.
    """

    name = "blur_rebin"

    def __init__(self, psf, shape: Sequence[int], factor: int | Sequence[int] = 1, boundary: str = "zero",
                 response=None, method: str = "auto"):
        shape = _shape(shape)
        psf_shape = check_psf("BlurRebin", psf, shape, boundary, cubes_only=True)
        n_e, ny, nx = shape
        ky, kx = psf_shape[-2:]
        self.factor = _factors(factor, 2, "BlurRebin")
        fy, fx = self.factor
        if ny % fy or nx % fx:
            raise ShapeError(f"BlurRebin: the cube shape {shape} is not divisible by the rebin factor {self.factor} "
                             "(fy, fx); crop or pad the cube to a multiple of it.")
        xp = array_namespace(psf)
        n_out = n_e
        self.sparse = False
        self._response = self._response_t = None
        if response is not None:
            m_shape = tuple(response.shape)
            if len(m_shape) != 2 or m_shape[0] != n_e:
                raise ShapeError(f"BlurRebin: a response of shape {m_shape} (true energies × channels) cannot act on "
                                 f"cubes of shape {shape}; it needs {n_e} rows.")
            n_out = m_shape[1]
            self._hold_response(xp, response)
        super().__init__(shape, (n_out, ny // fy, nx // fx))
        self.xp, self.dtype, self.boundary, self.psf_shape = xp, psf.dtype, boundary, psf_shape
        self.psf = psf  # kept for the low-rank variant (xhsi.operators.lowrank)
        self._fft = fft_namespace(xp)
        self._grid = (_grid_length(ny, ky // 2, fy, boundary), _grid_length(nx, kx // 2, fx, boundary))
        if method not in METHODS:
            raise ConfigError(f"BlurRebin: method must be one of {', '.join(METHODS)}, got `{method}`.")
        factors = _separable_factors(psf, psf.dtype) if method != "fourier" else None
        self.rank = None if factors is None else int(factors[0].shape[1])
        if factors is not None and (method == "separable" or self._separable_is_cheaper()):
            self.method = "separable"
            self._hold_separable(xp, *factors)
        else:
            self.method = "fourier"
            self._hold_fourier(xp, psf)

    def _separable_is_cheaper(self) -> bool:
        """Flop estimates per slice: the 2·rank small matrix products vs a forward and an
        inverse real FFT (≈ 2.5·N·log2 N each; Cooley & Tukey 1965)."""
        (ny, nx), (my, mx), r = self.shape_in[1:], self.shape_out[1:], self.rank
        n = self._grid[0] * self._grid[1]
        return 2 * r * (ny * nx * mx + ny * mx * my) < 5 * n * math.log2(n)

    def _hold_separable(self, xp, u, v) -> None:
        """psf = Σ_t u_t ⊗ v_t: along each axis the blur, box sum, decimation and boundary of
        term t as one (coarse × fine) matrix, ``y = Σ_t B_y,t · x · B_x,tᵀ`` per slice.
        Held as (r, my, ny) and (r, mx, nx) (with a plane axis after r for a stack)."""
        (ny, nx), (my, mx), (fy, fx) = self.shape_in[1:], self.shape_out[1:], self.factor
        planes, r = u.shape[:2]
        by = _axis_matrix(u.reshape(planes * r, -1), ny, fy, self.boundary).reshape(planes, r, my, ny)
        bx = _axis_matrix(v.reshape(planes * r, -1), nx, fx, self.boundary).reshape(planes, r, mx, nx)
        by, bx = np.swapaxes(by, 0, 1), np.swapaxes(bx, 0, 1)
        if len(self.psf_shape) == 2:
            by, bx = by[:, 0], bx[:, 0]
        self._by = PerDtype.of(xp, xp.asarray(np.ascontiguousarray(by), dtype=self.dtype))
        self._bx = PerDtype.of(xp, xp.asarray(np.ascontiguousarray(bx), dtype=self.dtype))

    def _hold_fourier(self, xp, psf) -> None:
        (n1, n2), (fy, fx), nd = self._grid, self.factor, psf.ndim
        ky, kx = self.psf_shape[-2:]
        # Kernel = box ⊛ psf; the box sums s[i] = Σ_{a<f} c[i + a] (offsets −(f−1)..0, so
        # its centre is its last sample) and every kept output reads only the first ny rows.
        kernel = self._fft.rfftn(wrap_kernel(xp, wrap_kernel(xp, psf, nd - 2, n1, ky // 2), nd - 1, n2, kx // 2),
                                 axes=(-2, -1))
        box = xp.ones((fy, fx), dtype=psf.dtype)
        box = wrap_kernel(xp, wrap_kernel(xp, box, 0, n1, fy - 1), 1, n2, fx - 1)
        kernel = kernel * self._fft.rfftn(box, axes=(-2, -1))
        # The alias sum along y is (1/fy)·Σ_q S[k + q·N1/fy]; the 1/fy goes into the
        # forward kernel. The adjoint (tiling) has no such factor.
        self._kernel = PerDtype.of(xp, kernel / fy if fy > 1 else kernel)
        self._kernel_conj = PerDtype.of(xp, xp.conj(kernel))

    # -- the spectral matrix ------------------------------------------------------------
    def _hold_response(self, xp, response) -> None:
        if _is_sparse(response):
            if not is_numpy_namespace(xp):
                response = xp.asarray(response.toarray())
            else:
                csr = response.tocsr()
                self.sparse = True
                self._response = PerDtype(csr, lambda m, dtype: m.astype(dtype))
                self._response_t = PerDtype(csr.T.tocsr(), lambda m, dtype: m.astype(dtype))
                return
        if array_namespace(response) is not xp:
            response = xp.asarray(to_numpy(response))
        self._response = PerDtype.of(xp, c_contiguous(xp, response))
        self._response_t = PerDtype(c_contiguous(xp, response.T), lambda m, dtype: xp.astype(m, dtype))

    def _spectral(self, held: PerDtype, spectrum, real_dtype):
        """``held`` (n_out × n_in) applied along axis 0 of a complex spectrum: on the real
        and imaginary parts, which is what a real matrix does to a complex vector."""
        xp = self.xp
        n_out = held(real_dtype).shape[0]
        rest = tuple(spectrum.shape[1:])
        m = held(real_dtype)
        if is_numpy_namespace(xp):
            # numpy: the interleaved (re, im) float view, one product, no copies.
            import numpy

            flat = numpy.ascontiguousarray(spectrum).view(real_dtype).reshape(spectrum.shape[0], -1)
            out = m @ flat if self.sparse else numpy.matmul(m, flat)
            return numpy.ascontiguousarray(out).view(spectrum.dtype).reshape((n_out,) + rest)
        flat_re = xp.reshape(xp.real(spectrum), (spectrum.shape[0], -1))
        flat_im = xp.reshape(xp.imag(spectrum), (spectrum.shape[0], -1))
        re, im = xp.matmul(m, flat_re), xp.matmul(m, flat_im)
        cdtype = spectrum.dtype
        out = xp.astype(re, cdtype) + xp.astype(im, cdtype) * xp.asarray(1j, dtype=cdtype)
        return xp.reshape(out, (n_out,) + rest)

    # -- the passes shared with the low-rank variant (xhsi.operators.lowrank) ------------
    def _spectrum(self, x):
        """Input slices → spectra on the fine grid (n, N1, N2 // 2 + 1). The x transform
        runs on the ny input rows only, the y transform pads them to N1."""
        spectrum = self._fft.rfft(x, n=self._grid[1], axis=-1)
        return self._fft.fftn(spectrum, s=(self._grid[0],), axes=(-2,))

    def _alias(self, spectrum):
        """Fine → coarse spectrum along y: Σ_q S[k + q·N1/fy] (the 1/fy is in the kernel)."""
        fy = self.factor[0]
        if fy == 1:
            return spectrum
        n, n1, n2h = spectrum.shape
        return self.xp.sum(self.xp.reshape(spectrum, (n, fy, n1 // fy, n2h)), axis=1)

    def _image(self, spectrum):
        """Coarse spectra (n_out, N1/fy, N2 // 2 + 1) → output images (n_out, my, mx):
        inverse along y on the coarse grid, keep my rows, inverse along x, every fx-th."""
        (n1, n2), (fy, fx) = self._grid, self.factor
        rows = self._fft.ifftn(spectrum, s=(n1 // fy,), axes=(-2,))[:, :self.shape_out[1], :]
        return self._fft.irfft(rows, n=n2, axis=-1)[:, :, :self.shape_in[2]:fx]

    def _image_adjoint(self, y):
        """Transpose of ``_image``: zero insertion along x, transforms on the coarse grid."""
        xp, (n1, n2), (fy, fx) = self.xp, self._grid, self.factor
        n_out, my, mx = y.shape
        if fx > 1:
            zeros = xp.zeros((n_out, my, mx, fx - 1), dtype=y.dtype)
            y = xp.reshape(xp.concat([xp.reshape(y, (n_out, my, mx, 1)), zeros], axis=-1), (n_out, my, mx * fx))
        spectrum = self._fft.rfft(y, n=n2, axis=-1)
        return self._fft.fftn(spectrum, s=(n1 // fy,), axes=(-2,))

    def _tile(self, spectrum):
        """Transpose of ``_alias``: the coarse spectrum repeated fy times along y."""
        fy = self.factor[0]
        return spectrum if fy == 1 else self.xp.concat([spectrum] * fy, axis=-2)

    def _spectrum_adjoint(self, spectrum):
        """Transpose of ``_spectrum`` followed by the crop to the input rows and columns."""
        ny, nx = self.shape_in[1:]
        rows = self._fft.ifftn(spectrum, s=(self._grid[0],), axes=(-2,))[:, :ny, :]
        return self._fft.irfft(rows, n=self._grid[1], axis=-1)[:, :, :nx]

    # -- apply / adjoint ----------------------------------------------------------------
    def _apply(self, x):
        if self.method == "separable":
            return self._apply_separable(x)
        xp = self.xp
        real_dtype = real_float(xp, x.dtype, self.dtype)
        spectrum = self._spectrum(x)
        spectrum *= self._kernel(complex_of(xp, real_dtype))
        spectrum = self._alias(spectrum)
        if self._response_t is not None:
            spectrum = self._spectral(self._response_t, spectrum, real_dtype)
        return self._image(spectrum)

    def _adjoint(self, y):
        if self.method == "separable":
            return self._adjoint_separable(y)
        xp = self.xp
        real_dtype = real_float(xp, y.dtype, self.dtype)
        spectrum = self._image_adjoint(y)
        if self._response is not None:
            spectrum = self._spectral(self._response, spectrum, real_dtype)
        spectrum = self._tile(spectrum) * self._kernel_conj(complex_of(xp, real_dtype))
        return self._spectrum_adjoint(spectrum)

    # -- separable PSFs: two small matrix products per slice and term ------------------
    def _real_response(self, held, x):
        xp = self.xp
        m = held(real_float(xp, x.dtype, self.dtype))
        flat = xp.reshape(x, (x.shape[0], -1))
        out = m @ flat if self.sparse else xp.matmul(m, flat)
        return xp.reshape(out, (int(m.shape[0]),) + tuple(x.shape[1:]))

    def _apply_separable(self, x):
        # Along y first (one small product per slice, no copy of the cube), then along x as
        # one large product over all slices and rows; terms summed (rank r is small).
        xp = self.xp
        dtype = real_float(xp, x.dtype, self.dtype)
        by, bx = self._by(dtype), self._bx(dtype)
        y = None
        for t in range(self.rank):
            term = xp.matmul(xp.matmul(by[t, ...], x), xp.matrix_transpose(bx[t, ...]))
            y = term if y is None else y + term
        return y if self._response_t is None else self._real_response(self._response_t, y)

    def _adjoint_separable(self, y):
        xp = self.xp
        dtype = real_float(xp, y.dtype, self.dtype)
        if self._response is not None:
            y = self._real_response(self._response, y)
        by, bx = self._by(dtype), self._bx(dtype)
        x = None
        for t in range(self.rank):
            term = xp.matmul(xp.matrix_transpose(by[t, ...]), xp.matmul(y, bx[t, ...]))
            x = term if x is None else x + term
        return x

    @classmethod
    def example(cls, xp, dtype) -> "BlurRebin":
        """A small instance for contract tests: an energy-dependent asymmetric 3×5 PSF stack,
        a 4 → 3 channel response and a 2 × 3 rebin of 6 × 9 images."""
        rng = np.random.default_rng(21)
        psf = xp.asarray(rng.uniform(0.0, 1.0, (4, 3, 5)), dtype=dtype)
        response = xp.asarray(rng.uniform(0.0, 1.0, (4, 3)), dtype=dtype)
        return cls(psf, (4, 6, 9), (2, 3), response=response)

    def __repr__(self) -> str:
        resp = f", response({self.shape_in[0]}, {self.shape_out[0]})" if self._response is not None else ""
        how = f"separable rank {self.rank}" if self.method == "separable" else "fourier"
        return (f"BlurRebin(psf{self.psf_shape}, {self.shape_in} -> {self.shape_out}, factor={self.factor}, "
                f"boundary={self.boundary!r}{resp}, {how})")


METHODS = ("auto", "fourier", "separable")


def _separable_factors(psf, dtype):
    """psf = Σ_t u_t ⊗ v_t (per plane for a stack): (U (planes, r, ky), V (planes, r, kx)),
    host float64, r the largest numerical rank of a plane in ``dtype`` (singular values above
    4·eps·the first; the others are below the rounding of the PSF itself). A Gaussian is
    rank 1; pixel integration of its core only (the shipped PSFs) makes it rank ~3."""
    host = np.asarray(to_numpy(psf), dtype=np.float64)
    planes = host.reshape((-1,) + host.shape[-2:])
    u, s, vt = np.linalg.svd(planes)
    eps = float(np.finfo("float32" if "float32" in str(dtype) else "float64").eps)
    rank = max(1, int(np.max(np.sum(s > 4 * eps * s[:, :1], axis=1))))
    root = np.sqrt(s[:, :rank])
    uu = np.transpose(u[:, :, :rank], (0, 2, 1)) * root[:, :, None]
    return uu, vt[:, :rank, :] * root[:, :, None]


def _axis_matrix(kernel, n: int, factor: int, boundary: str) -> np.ndarray:
    """Along one axis: 'same' convolution with the centred odd ``kernel`` (zero or periodic
    boundary) followed by sums over blocks of ``factor`` samples, as a (n / factor, n)
    matrix; a (m, k) stack of kernels gives (m, n / factor, n)."""
    single = np.ndim(kernel) == 1
    kernel = np.atleast_2d(kernel)
    k = kernel.shape[-1]
    out_idx, in_idx = np.arange(n)[:, None], np.arange(n)[None, :]
    offsets = out_idx - in_idx + k // 2  # kernel index linking output m to input j
    conv = np.zeros((kernel.shape[0], n, n))
    wraps = range(-(k // n) - 1, k // n + 2) if boundary == "periodic" else (0,)
    for q in wraps:  # periodic: every image of the input on the torus
        idx = offsets + q * n
        ok = (idx >= 0) & (idx < k)
        conv += np.where(ok, kernel[:, np.clip(idx, 0, k - 1)], 0.0)
    blocks = conv.reshape(kernel.shape[0], n // factor, factor, n).sum(axis=2)
    return blocks[0] if single else blocks


#: Above this fraction of non-zero entries the response is held dense (BLAS) on CPU, else
#: as scipy.sparse CSR. Measured on the 2-core benchmark machine with its cores shared (the
#: normal case there): the 34 %-full EPIC-pn 2400 × 60 matrix in BlurRebin is 15–30 % faster
#: as CSR (single-threaded, immune to the BLAS threads' contention); on an idle machine
#: dense BLAS wins by a few ms at that fill, and by far above one half.
DENSE_ABOVE = 0.5


def response_matrix(matrix, xp, dtype):
    """The redistribution matrix as the cheapest exact-to-rounding representation for
    ``xp``: entries below ``eps(dtype) · max |M|`` are dropped (each adds less than the
    rounding of the largest term of a channel's sum in that dtype; a Gaussian line-spread
    function tabulated to 10⁻³⁰ is otherwise mostly such tails), then, on numpy, a
    scipy.sparse CSR matrix when at most ``DENSE_ABOVE`` of the entries remain, else a
    dense array of ``xp`` in ``dtype``."""
    import scipy.sparse

    dense = matrix.toarray() if scipy.sparse.issparse(matrix) else np.array(to_numpy(matrix), dtype=np.float64)
    peak = float(np.max(np.abs(dense))) if dense.size else 0.0
    name = "float32" if "float32" in str(dtype) else "float64"
    dense[np.abs(dense) < float(np.finfo(name).eps) * peak] = 0.0
    if is_numpy_namespace(xp) and np.count_nonzero(dense) <= DENSE_ABOVE * dense.size:
        return scipy.sparse.csr_matrix(dense.astype(name))
    return xp.asarray(dense, dtype=dtype)


def blur_respond_rebin(psf, matrix, shape: Sequence[int], factor: int = 1, boundary: str = "zero") -> list:
    """The operators (innermost first) of ``Rebin_f ∘ R ∘ PSF`` for cubes ``shape``
    (n_e, ny, nx), arranged so the FFTs run on as few slices as possible:

    - one PSF for every energy: the spectral and spatial maps commute, so the spectral map
      goes on the side with fewer slices (before the blur when n_chan < n_e);
    - one PSF per energy: ``BlurRebin`` with the response inside (Fourier space) when
      n_chan < n_e, else the response after it, on the coarse pixels.

    ``psf`` is a backend array (its namespace and dtype are the run's); ``matrix`` the
    (n_e, n_chan) redistribution (numpy or scipy.sparse), see :func:`response_matrix`."""
    from .response import SpectralResponse

    xp = array_namespace(psf)
    n_e, ny, nx = _shape(shape)
    held = response_matrix(matrix, xp, psf.dtype)
    n_chan = int(held.shape[1])
    if psf.ndim == 2 and n_chan < n_e:
        spectral = SpectralResponse(held, shape)
        return [spectral, BlurRebin(psf, spectral.shape_out, factor, boundary)]
    if psf.ndim == 3 and n_chan < n_e:
        return [BlurRebin(psf, shape, factor, boundary, response=held)]
    spatial = BlurRebin(psf, shape, factor, boundary)
    return [spatial, SpectralResponse(held, spatial.shape_out)]
