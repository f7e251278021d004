"""Wavelet transforms for the sparsity regularisers, written once for every array library.

Every function takes its namespace from its input (numpy, cupy, array_api_strict) and is
batched over leading axes: a cube ``(n_e, ny, nx)`` is transformed in one call, with Python
loops only over the few scales or levels, never over slices or pixels.

Starlet (isotropic undecimated wavelet, "à trous" algorithm with the cubic B-spline kernel
``[1, 4, 6, 4, 1] / 16`` dilated by ``2**j`` at scale ``j``; Starck, Fadili & Murtagh 2007,
IEEE Trans. Image Process. 16, 297; Starck, Murtagh & Fadili 2010, *Sparse Image and Signal
Processing*, §3.5):

* ``starlet2d(x, n_scales)``: ``(..., ny, nx)`` → ``(n_scales + 1, ..., ny, nx)``, the detail
  scales ``w_1 .. w_J`` (finest first) and the coarse scale ``c_J`` last;
  ``x == sum(coeffs, axis=0)`` exactly (``starlet_synthesis``).
* ``starlet1d(x, n_scales, axis)``: the same along one axis (e.g. energy).
* ``starlet2d_adjoint`` / ``starlet1d_adjoint``: the true adjoint of the analysis (it differs
  from the synthesis because the starlet is a redundant, non-tight frame).

Boundary rule of the starlet: whole-sample mirror (``x[-i] = x[i]``, ``x[n-1+i] = x[n-1-i]``,
numpy's ``mode="reflect"``), extended periodically with period ``2(n-1)`` when the dilated
kernel is wider than the axis. It is implemented by padding with slices and ``flip`` and a
separable 1-D convolution of five shifted slices, so it runs under array_api_strict.

Orthonormal 2-D DWT (Mallat 1989; filters of Daubechies 1988, *Ten Lectures on Wavelets*
table 6.1): ``dwt2(x, wavelet, levels)`` with ``wavelet`` "haar" or "db2" (4 taps), periodic
boundary so that the transform is exactly orthonormal and ``idwt2`` is both its inverse and
its adjoint. The coefficients are packed in an array of the input's shape (Mallat layout:
approximation in the top-left ``(ny / 2**levels, nx / 2**levels)`` block, the details
around it). The last two axes must be divisible by ``2**levels``.

``mad_sigma(coeffs, axes)``: robust noise standard deviation by the median absolute
deviation. ``soft_threshold(c, t)``: the prox of ``t·|·|``.
"""
from __future__ import annotations

import math

import numpy as np

from array_api_compat import device as _device

from ..backend import array_namespace, is_numpy_namespace
from ..errors import ShapeError, XhsiError

__all__ = [
    "B3_SPLINE", "starlet2d", "starlet2d_adjoint", "starlet1d", "starlet1d_adjoint",
    "starlet_synthesis", "dwt2", "idwt2", "dwt2_approximation_shape", "dwt2_keep_approximation",
    "WAVELETS", "median", "mad_sigma", "soft_threshold", "MAD_TO_SIGMA",
]

#: The cubic B-spline smoothing kernel of the starlet (Starck et al. 2007, eq. 4).
B3_SPLINE = (1.0 / 16.0, 4.0 / 16.0, 6.0 / 16.0, 4.0 / 16.0, 1.0 / 16.0)

#: Φ⁻¹(3/4): the MAD of a standard normal variable, so σ = MAD / 0.6745 for Gaussian noise
#: (Hampel 1974, JASA 69, 383; Donoho & Johnstone 1994, Biometrika 81, 425).
MAD_TO_SIGMA = 0.6744897501960817


# ---------------------------------------------------------------------------------------
# helpers: slicing along one axis
def _slice(x, axis: int, start, stop, step=None):
    idx = [slice(None)] * x.ndim
    idx[axis] = slice(start, stop, step)
    return x[tuple(idx)]


def _zeros_along(x, axis: int, size: int, xp):
    shape = list(x.shape)
    shape[axis] = size
    return xp.zeros(tuple(shape), dtype=x.dtype, device=_device(x))


def _axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise ShapeError(f"axis {axis} is out of range for an array with {ndim} dimensions.")
    return axis % ndim


# ---------------------------------------------------------------------------------------
# starlet
def _pad_steps(n: int, pad: int) -> list[int]:
    """Widths of the successive single reflections that build a mirror extension by ``pad``.
    Each reflection is about an edge that is a symmetry point of the periodic mirror
    extension (a multiple of n - 1), so repeated reflections reproduce it exactly."""
    steps, length = [], n
    while pad > 0:
        p = min(pad, length - 1)
        steps.append(p)
        length += 2 * p
        pad -= p
    return steps


def _mirror_pad(x, pad: int, axis: int, xp):
    for p in _pad_steps(x.shape[axis], pad):
        m = x.shape[axis]
        left = xp.flip(_slice(x, axis, 1, p + 1), axis=axis)
        right = xp.flip(_slice(x, axis, m - 1 - p, m - 1), axis=axis)
        x = xp.concat([left, x, right], axis=axis)
    return x


def _mirror_pad_adjoint(y, n: int, pad: int, axis: int, xp):
    """Adjoint of ``_mirror_pad``: fold the margins back onto the samples they copy."""
    for p in reversed(_pad_steps(n, pad)):
        m = y.shape[axis] - 2 * p
        left = xp.flip(_slice(y, axis, 0, p), axis=axis)
        core = _slice(y, axis, p, p + m)
        right = xp.flip(_slice(y, axis, p + m, p + m + p), axis=axis)
        core = core + xp.concat([_zeros_along(y, axis, 1, xp), left, _zeros_along(y, axis, m - 1 - p, xp)], axis=axis)
        core = core + xp.concat([_zeros_along(y, axis, m - 1 - p, xp), right, _zeros_along(y, axis, 1, xp)], axis=axis)
        y = core
    return y


def _smooth(x, dilation: int, axis: int, xp):
    """B3-spline smoothing along ``axis`` with holes of ``dilation`` samples, mirror boundary."""
    n = x.shape[axis]
    if n == 1:  # the kernel sums to 1 and the mirror extension of one sample is constant
        return x
    if dilation < n and is_numpy_namespace(xp):
        return _smooth_numpy(np.asarray(x), dilation, axis)
    pad = 2 * dilation
    xe = _mirror_pad(x, pad, axis, xp)
    out = None
    for k, h in enumerate(B3_SPLINE):
        term = h * _slice(xe, axis, k * dilation, k * dilation + n)
        out = term if out is None else out + term
    return out


# numpy fast path. The B3 kernel factors, [1, 4, 6, 4, 1] = [1, 2, 1] ∗ [1, 2, 1], and the
# (periodic) whole-sample mirror extension of a signal stays one after a symmetric filter, so
# one smoothing is two passes of the 3-tap [1, 2, 1] on mirror-extended inputs, then a scale by
# 1/16. A 3-tap pass is two in-place additions of shifted slices, the mirror handled on
# ``d``-wide edge slices: no padded copy, no temporaries, every output in a caller's buffer.
def _tap3_numpy(x, d: int, axis: int, out, a) -> None:
    """``out[i] = x[i−d] + 2·x[i] + x[i+d]`` along ``axis`` with the whole-sample mirror
    (``x[−i] = x[i]``, ``x[n−1+i] = x[n−1−i]``); ``1 ≤ d ≤ n − 1``. ``a`` is scratch of
    x's shape; ``out`` and ``a`` must not overlap ``x``."""
    n = x.shape[axis]
    if x.flags.c_contiguous and a.flags.c_contiguous and out.flags.c_contiguous:
        # The interior sums as single shifts of the flat arrays (long contiguous loops instead
        # of short rows along the last axes): the entries this gets wrong, where the shift
        # crosses into the next row, are exactly the edge slices overwritten below.
        off = d * math.prod(x.shape[axis + 1:])
        xf, af, of = x.reshape(-1), a.reshape(-1), out.reshape(-1)
        np.add(xf[: xf.size - off], xf[off:], out=af[: xf.size - off])
    else:
        np.add(_slice(x, axis, 0, n - d), _slice(x, axis, d, n), out=_slice(a, axis, 0, n - d))
    # a[i] = x[i] + x[i+d], the right edge mirrored: x[n-1+k] = x[n-1-k]. Along the last axis
    # the edge slab has rows of d samples, slow to iterate: take it one column at a time.
    last = axis == x.ndim - 1
    if last:
        for i in range(n - d, n):
            np.add(x[..., i], x[..., 2 * n - 2 - i - d], out=a[..., i])
    else:
        np.add(_slice(x, axis, n - d, n), np.flip(_slice(x, axis, n - 1 - d, n - 1), axis=axis),
               out=_slice(a, axis, n - d, n))
    # out[i] = a[i] + a[i-d] = x[i-d] + 2x[i] + x[i+d] for i >= d
    if x.flags.c_contiguous and a.flags.c_contiguous and out.flags.c_contiguous:
        np.add(af[off:], af[: af.size - off], out=of[off:])
    else:
        np.add(_slice(a, axis, d, n), _slice(a, axis, 0, n - d), out=_slice(out, axis, d, n))
    # left edge i < d: x[i-d] = x[d-i]
    if last:
        for i in range(d):
            np.add(a[..., i], x[..., i], out=out[..., i])
            np.add(out[..., i], x[..., d - i], out=out[..., i])
    else:
        left = _slice(out, axis, 0, d)
        np.add(_slice(a, axis, 0, d), _slice(x, axis, 0, d), out=left)
        np.add(left, np.flip(_slice(x, axis, 1, d + 1), axis=axis), out=left)


def _smooth_numpy(x, dilation: int, axis: int, out=None, scratch=None):
    """``_smooth`` on numpy for ``1 ≤ dilation < n``: two 3-tap passes (above) into ``out``,
    with ``scratch`` a pair of buffers of x's shape (allocated when not given)."""
    t, a = scratch if scratch is not None else (np.empty_like(x), np.empty_like(x))
    out = np.empty_like(x) if out is None else out
    _tap3_numpy(x, dilation, axis, t, a)
    _tap3_numpy(t, dilation, axis, out, a)
    np.multiply(out, 1.0 / 16.0, out=out)
    return out


def _smooth_adjoint(y, dilation: int, axis: int, xp):
    n = y.shape[axis]
    if n == 1:
        return y
    pad = 2 * dilation
    # z[k·d + i] += h_k · y[i] for the padded signal z of length n + 2·pad.
    yz = xp.concat([_zeros_along(y, axis, 2 * pad, xp), y, _zeros_along(y, axis, 2 * pad, xp)], axis=axis)
    z = None
    for k, h in enumerate(B3_SPLINE):
        start = 2 * pad - k * dilation
        term = h * _slice(yz, axis, start, start + n + 2 * pad)
        z = term if z is None else z + term
    return _mirror_pad_adjoint(z, n, pad, axis, xp)


def _check_scales(n_scales) -> int:
    if isinstance(n_scales, bool) or not isinstance(n_scales, int) or n_scales < 1:
        raise XhsiError(f"the number of starlet scales must be an integer >= 1, got {n_scales!r}.")
    return n_scales


def _starlet(x, n_scales: int, axes: tuple[int, ...]):
    xp = array_namespace(x)
    _check_scales(n_scales)
    c, out = x, []
    for j in range(n_scales):
        s = c
        for ax in axes:
            s = _smooth(s, 2 ** j, ax, xp)
        out.append(c - s)
        c = s
    out.append(c)
    return xp.stack(out, axis=0)


def _starlet_adjoint(coeffs, axes: tuple[int, ...]):
    """Adjoint of ``_starlet``. With P_j = S_{j-1}…S_0 (P_0 = I), the analysis is
    w_j = P_{j-1}x − P_j x, c_J = P_J x, so T*(g) = Σ_j P_j* a_j with a_0 = g_0 and
    a_j = g_j − g_{j-1}; evaluated Horner-style, one smoothing adjoint per scale and axis."""
    xp = array_namespace(coeffs)
    n_scales = coeffs.shape[0] - 1
    g = [coeffs[j, ...] for j in range(n_scales + 1)]
    if n_scales == 0:
        return g[0]
    r = g[n_scales] - g[n_scales - 1]
    for j in range(n_scales - 1, -1, -1):
        for ax in reversed(axes):
            r = _smooth_adjoint(r, 2 ** j, ax, xp)
        r = r + (g[j] - g[j - 1] if j > 0 else g[0])
    return r


def starlet2d(x, n_scales: int):
    """2-D starlet of every ``(ny, nx)`` slice of ``x`` (shape ``(..., ny, nx)``).

    Returns ``(n_scales + 1, ..., ny, nx)``: detail scales ``w_1 … w_J`` (finest first, in
    the units of ``x``) then the coarse scale ``c_J``. Mirror boundary (module docstring).
    """
    if x.ndim < 2:
        raise ShapeError(f"starlet2d needs an array (..., ny, nx), got shape {tuple(x.shape)}.")
    return _starlet(x, n_scales, (x.ndim - 2, x.ndim - 1))


def starlet2d_adjoint(coeffs):
    """Adjoint of ``starlet2d``: ``(J + 1, ..., ny, nx)`` → ``(..., ny, nx)``."""
    if coeffs.ndim < 3:
        raise ShapeError(f"starlet2d_adjoint needs coefficients (J+1, ..., ny, nx), got {tuple(coeffs.shape)}.")
    nd = coeffs.ndim - 1
    return _starlet_adjoint(coeffs, (nd - 2, nd - 1))


def starlet1d(x, n_scales: int, axis: int = 0):
    """1-D starlet of ``x`` along ``axis`` (e.g. the energy axis of a cube), batched over
    the other axes. Returns ``(n_scales + 1, *x.shape)``, coarse scale last."""
    return _starlet(x, n_scales, (_axis(axis, x.ndim),))


def starlet1d_adjoint(coeffs, axis: int = 0):
    """Adjoint of ``starlet1d(·, J, axis)``; ``axis`` refers to the axes of the signal."""
    return _starlet_adjoint(coeffs, (_axis(axis, coeffs.ndim - 1),))


def starlet_synthesis(coeffs):
    """The starlet reconstruction: the sum of all scales (exact inverse of the analysis)."""
    xp = array_namespace(coeffs)
    return xp.sum(coeffs, axis=0)


# ---------------------------------------------------------------------------------------
# orthonormal DWT
_S2 = math.sqrt(2.0)
_S3 = math.sqrt(3.0)
#: Low-pass analysis filters (orthonormal: Σh = √2, Σh² = 1). db2 is Daubechies' 4-tap
#: filter (Daubechies 1988, Comm. Pure Appl. Math. 41, 909; table 6.1 of Ten Lectures).
WAVELETS = {
    "haar": (1.0 / _S2, 1.0 / _S2),
    "db2": ((1 + _S3) / (4 * _S2), (3 + _S3) / (4 * _S2), (3 - _S3) / (4 * _S2), (1 - _S3) / (4 * _S2)),
}


def _filters(wavelet: str):
    try:
        h = WAVELETS[wavelet]
    except KeyError:
        raise XhsiError(f"unknown wavelet `{wavelet}`; choose one of {', '.join(WAVELETS)}.") from None
    L = len(h)
    g = tuple((-1) ** k * h[L - 1 - k] for k in range(L))  # quadrature mirror high-pass
    return h, g


def _analysis_1d(x, axis: int, h, g, xp):
    """a[n] = Σ_k h_k x[(2n + k) mod N], d likewise with g (periodic)."""
    xe, xo = _slice(x, axis, 0, None, 2), _slice(x, axis, 1, None, 2)
    a = d = None
    for i in range(len(h) // 2):
        e = xp.roll(xe, -i, axis=axis) if i else xe
        o = xp.roll(xo, -i, axis=axis) if i else xo
        ta = h[2 * i] * e + h[2 * i + 1] * o
        td = g[2 * i] * e + g[2 * i + 1] * o
        a = ta if a is None else a + ta
        d = td if d is None else d + td
    return a, d


def _synthesis_1d(a, d, axis: int, h, g, xp):
    """Adjoint (= inverse) of ``_analysis_1d``: even and odd samples, then interleave."""
    xe = xo = None
    for i in range(len(h) // 2):
        ra = xp.roll(a, i, axis=axis) if i else a
        rd = xp.roll(d, i, axis=axis) if i else d
        te = h[2 * i] * ra + g[2 * i] * rd
        to = h[2 * i + 1] * ra + g[2 * i + 1] * rd
        xe = te if xe is None else xe + te
        xo = to if xo is None else xo + to
    both = xp.stack([xe, xo], axis=axis + 1)
    shape = list(a.shape)
    shape[axis] = 2 * a.shape[axis]
    return xp.reshape(both, tuple(shape))


def dwt2_approximation_shape(shape, levels: int) -> tuple[int, int]:
    """``(ny, nx) / 2**levels``, or a ShapeError when the sizes do not divide."""
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise XhsiError(f"the number of DWT levels must be an integer >= 1, got {levels!r}.")
    if len(shape) < 2:
        raise ShapeError(f"dwt2 needs an array (..., ny, nx), got shape {tuple(shape)}.")
    ny, nx = shape[-2], shape[-1]
    f = 2 ** levels
    if ny % f or nx % f:
        raise ShapeError(
            f"a {levels}-level DWT needs ny and nx divisible by 2**{levels} = {f}, got ({ny}, {nx}). "
            "Lower `levels` or crop/pad the images."
        )
    return ny // f, nx // f


def _replace_block(full, block):
    """``full`` with its top-left block replaced by ``block`` (no in-place writes)."""
    xp = array_namespace(full)
    by, bx = block.shape[-2], block.shape[-1]
    if by == full.shape[-2] and bx == full.shape[-1]:
        return block
    top = xp.concat([block, full[..., :by, bx:]], axis=-1)
    return xp.concat([top, full[..., by:, :]], axis=-2)


def dwt2(x, wavelet: str = "haar", levels: int = 1):
    """Orthonormal periodic 2-D DWT of every ``(ny, nx)`` slice of ``x``, packed in an
    array of the same shape (Mallat layout). ``‖dwt2(x)‖ = ‖x‖``; ``idwt2`` inverts it."""
    xp = array_namespace(x)
    h, g = _filters(wavelet)
    dwt2_approximation_shape(x.shape, levels)
    ny, nx = x.shape[-2], x.shape[-1]
    ay, ax = x.ndim - 2, x.ndim - 1
    out = x
    for lev in range(levels):
        by, bx = ny >> lev, nx >> lev
        block = out[..., :by, :bx]
        a, d = _analysis_1d(block, ax, h, g, xp)
        block = xp.concat([a, d], axis=ax)
        a, d = _analysis_1d(block, ay, h, g, xp)
        out = _replace_block(out, xp.concat([a, d], axis=ay))
    return out


def idwt2(coeffs, wavelet: str = "haar", levels: int = 1):
    """Inverse (and adjoint) of ``dwt2``."""
    xp = array_namespace(coeffs)
    h, g = _filters(wavelet)
    dwt2_approximation_shape(coeffs.shape, levels)
    ny, nx = coeffs.shape[-2], coeffs.shape[-1]
    ay, ax = coeffs.ndim - 2, coeffs.ndim - 1
    out = coeffs
    for lev in range(levels - 1, -1, -1):
        by, bx = ny >> lev, nx >> lev
        block = out[..., :by, :bx]
        block = _synthesis_1d(block[..., : by // 2, :], block[..., by // 2:, :], ay, h, g, xp)
        block = _synthesis_1d(block[..., : bx // 2], block[..., bx // 2:], ax, h, g, xp)
        out = _replace_block(out, block)
    return out


def dwt2_keep_approximation(new, old, levels: int):
    """``new`` with the approximation block of ``old`` put back (used to leave the coarse
    coefficients of a thresholded DWT untouched)."""
    by, bx = dwt2_approximation_shape(old.shape, levels)
    return _replace_block(new, old[..., :by, :bx])


# ---------------------------------------------------------------------------------------
# statistics and thresholding
def median(x, axes, keepdims: bool = False):
    """Median over ``axes``. The array API has no median: the reduced axes are moved last,
    flattened, sorted with ``xp.sort``, and the middle element (or the mean of the two middle
    ones for an even count) is taken. O(m log m) per reduced group; numpy takes the same
    elements by selection (``np.median``), O(m)."""
    xp = array_namespace(x)
    axes = tuple(sorted({_axis(a, x.ndim) for a in (axes if isinstance(axes, (tuple, list)) else (axes,))}))
    if is_numpy_namespace(xp):
        # the same order statistics by selection (np.partition, O(m)) instead of a sort: the
        # MAD of a 2400 × 45 × 45 band takes ~0.1 s instead of ~1 s
        return np.asarray(np.median(x, axis=axes, keepdims=keepdims))
    keep = tuple(a for a in range(x.ndim) if a not in axes)
    y = xp.permute_dims(x, keep + axes)
    y = xp.reshape(y, tuple(x.shape[a] for a in keep) + (-1,))
    y = xp.sort(y, axis=-1)
    m = y.shape[-1]
    med = y[..., m // 2] if m % 2 else 0.5 * (y[..., m // 2 - 1] + y[..., m // 2])
    if keepdims:
        med = xp.reshape(med, tuple(1 if a in axes else x.shape[a] for a in range(x.ndim)))
    return med


def mad_sigma(coeffs, axes, keepdims: bool = False, overwrite: bool = False):
    """Robust standard deviation σ = median(|c − median(c)|) / 0.6745 over ``axes`` (one value
    per remaining index, e.g. per scale), in the units of ``coeffs``. Exact for Gaussian noise,
    insensitive to the few large coefficients that carry the signal (Donoho & Johnstone 1994).
    ``overwrite``: a numpy ``coeffs`` may be used as scratch (no copy of a band-sized array)."""
    med = median(coeffs, axes, keepdims=True)
    xp = array_namespace(coeffs)
    if overwrite and isinstance(coeffs, np.ndarray):
        dev = np.abs(np.subtract(coeffs, med, out=coeffs), out=coeffs)
        return np.asarray(np.median(dev, axis=axes, keepdims=keepdims, overwrite_input=True)) / MAD_TO_SIGMA
    return median(xp.abs(coeffs - med), axes, keepdims=keepdims) / MAD_TO_SIGMA


def soft_threshold(c, t):
    """sign(c)·max(|c| − t, 0), the prox of ``t·|·|``; ``t ≥ 0`` a scalar or a broadcastable
    array (written as c − clip(c, −t, t) to stay in one expression)."""
    xp = array_namespace(c)
    if isinstance(t, (int, float)):
        return c - xp.clip(c, min=-float(t), max=float(t))
    return c - xp.clip(c, min=-t, max=t)
