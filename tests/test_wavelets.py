"""xhsi.sparsity.wavelets: starlet (analysis, synthesis, adjoint), orthonormal DWT, MAD, thresholding,
on every backend and dtype. References are independent: scipy.ndimage for the starlet,
explicit block formulas for Haar, numpy.median for the MAD."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
from array_api_compat import array_namespace

from xhsi.backend import to_numpy
from xhsi.errors import ShapeError, XhsiError
from xhsi.testing import assert_close, rtol_for
from xhsi.sparsity.wavelets import (B3_SPLINE, dwt2, idwt2, mad_sigma, median, soft_threshold, starlet1d,
                           starlet1d_adjoint, starlet2d, starlet2d_adjoint, starlet_synthesis)

RNG = np.random.default_rng(12345)


def _arr(xp, dtype_name, a):
    return xp.asarray(np.asarray(a, dtype=np.float64), dtype=getattr(xp, dtype_name))


def _vdot(a, b) -> float:
    return float(np.vdot(to_numpy(a).astype(np.float64), to_numpy(b).astype(np.float64)))


def _reference_starlet(x: np.ndarray, n_scales: int, axes) -> np.ndarray:
    """À trous B3-spline transform with scipy.ndimage's whole-sample mirror boundary."""
    c, out = x, []
    for j in range(n_scales):
        d = 2 ** j
        kernel = np.zeros(4 * d + 1)
        kernel[::d] = B3_SPLINE
        s = c
        for ax in axes:
            s = ndi.convolve1d(s, kernel, axis=ax, mode="mirror")
        out.append(c - s)
        c = s
    return np.stack(out + [c])


def _dot_rtol(dtype_name):
    return 1e-4 if dtype_name == "float32" else 1e-12


# ----------------------------------------------------------------------------------- starlet
@pytest.mark.parametrize("shape,n_scales", [((3, 16, 12), 3), ((2, 5, 7), 3), ((9, 9), 2)])
def test_starlet2d_matches_scipy_mirror_reference(xp, dtype_name, shape, n_scales):
    x = RNG.standard_normal(shape)
    got = starlet2d(_arr(xp, dtype_name, x), n_scales)
    expected = _reference_starlet(x, n_scales, (len(shape) - 2, len(shape) - 1))
    assert array_namespace(got) == xp
    assert got.dtype == getattr(xp, dtype_name)
    assert tuple(got.shape) == (n_scales + 1,) + shape
    np.testing.assert_allclose(to_numpy(got), expected, rtol=0, atol=20 * rtol_for(dtype_name))


def test_starlet2d_reconstruction_is_the_sum_of_scales(xp, dtype_name):
    x = _arr(xp, dtype_name, RNG.standard_normal((4, 16, 16)))
    assert_close(starlet_synthesis(starlet2d(x, 4)), x, atol=10 * rtol_for(dtype_name), xp=xp)


def test_starlet_of_a_constant_has_no_details(xp):
    x = xp.full((2, 8, 8), 3.0, dtype=xp.float64)
    c = to_numpy(starlet2d(x, 3))
    np.testing.assert_allclose(c[:-1], 0.0, atol=1e-14)
    np.testing.assert_allclose(c[-1], 3.0, rtol=1e-14)


@pytest.mark.parametrize("shape,n_scales", [((4, 16, 16), 3), ((2, 3, 5), 4), ((1, 2), 2)])
def test_starlet2d_adjoint_dot_test(xp, dtype_name, shape, n_scales):
    x = _arr(xp, dtype_name, RNG.standard_normal(shape))
    g = _arr(xp, dtype_name, RNG.standard_normal((n_scales + 1,) + shape))
    adj = starlet2d_adjoint(g)
    assert tuple(adj.shape) == shape and adj.dtype == x.dtype and array_namespace(adj) == xp
    lhs, rhs = _vdot(starlet2d(x, n_scales), g), _vdot(x, adj)
    assert abs(lhs - rhs) <= _dot_rtol(dtype_name) * (abs(lhs) + abs(rhs) + 1.0)


def test_starlet2d_adjoint_is_not_the_synthesis():
    """The starlet is not a tight frame: the adjoint differs from the sum of the scales
    (a test that would pass for a wrong 'adjoint = synthesis' implementation fails here)."""
    g = RNG.standard_normal((4, 16, 16))
    assert np.abs(starlet2d_adjoint(g[:, None]) - np.sum(g, axis=0)[None]).max() > 0.1


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_starlet1d_reference_reconstruction_and_adjoint(xp, dtype_name, axis):
    shape = (6, 5, 4)
    x_np = RNG.standard_normal(shape)
    x = _arr(xp, dtype_name, x_np)
    c = starlet1d(x, 3, axis=axis)
    assert tuple(c.shape) == (4,) + shape
    np.testing.assert_allclose(to_numpy(c), _reference_starlet(x_np, 3, (axis % 3,)), atol=20 * rtol_for(dtype_name))
    assert_close(starlet_synthesis(c), x, atol=10 * rtol_for(dtype_name), xp=xp)
    g = _arr(xp, dtype_name, RNG.standard_normal((4,) + shape))
    lhs, rhs = _vdot(c, g), _vdot(x, starlet1d_adjoint(g, axis=axis))
    assert abs(lhs - rhs) <= _dot_rtol(dtype_name) * (abs(lhs) + abs(rhs) + 1.0)


def test_starlet_rejects_bad_inputs(xp):
    with pytest.raises(XhsiError, match="scales"):
        starlet2d(xp.zeros((4, 4)), 0)
    with pytest.raises(ShapeError):
        starlet2d(xp.zeros((4,)), 2)
    with pytest.raises(ShapeError):
        starlet1d(xp.zeros((4,)), 2, axis=1)


# -------------------------------------------------------------------------------------- DWT
@pytest.mark.parametrize("wavelet", ["haar", "db2"])
@pytest.mark.parametrize("levels", [1, 3])
def test_dwt2_orthonormal_and_perfect_reconstruction(xp, dtype_name, wavelet, levels):
    x = _arr(xp, dtype_name, RNG.standard_normal((3, 16, 8)))
    c = dwt2(x, wavelet, levels)
    assert tuple(c.shape) == (3, 16, 8) and c.dtype == x.dtype and array_namespace(c) == xp
    tol = rtol_for(dtype_name)
    assert abs(float(xp.linalg.vector_norm(c)) - float(xp.linalg.vector_norm(x))) <= tol * float(xp.linalg.vector_norm(x))
    assert_close(idwt2(c, wavelet, levels), x, atol=10 * tol, xp=xp)  # W*W = I
    g = _arr(xp, dtype_name, RNG.standard_normal((3, 16, 8)))
    assert_close(dwt2(idwt2(g, wavelet, levels), wavelet, levels), g, atol=10 * tol, xp=xp)  # WW* = I
    lhs, rhs = _vdot(c, g), _vdot(x, idwt2(g, wavelet, levels))  # inverse = adjoint
    assert abs(lhs - rhs) <= _dot_rtol(dtype_name) * (abs(lhs) + abs(rhs) + 1.0)


def test_haar_one_level_matches_block_formulas():
    x = RNG.standard_normal((2, 8, 6))
    c = dwt2(x, "haar", 1)
    a, b = x[:, 0::2, 0::2], x[:, 0::2, 1::2]
    d, e = x[:, 1::2, 0::2], x[:, 1::2, 1::2]
    np.testing.assert_allclose(c[:, :4, :3], (a + b + d + e) / 2, rtol=1e-12)  # approximation
    np.testing.assert_allclose(c[:, :4, 3:], (a - b + d - e) / 2, rtol=1e-12)  # detail along x
    np.testing.assert_allclose(c[:, 4:, :3], (a + b - d - e) / 2, rtol=1e-12)  # detail along y
    np.testing.assert_allclose(c[:, 4:, 3:], (a - b - d + e) / 2, rtol=1e-12)  # diagonal


def test_db2_has_two_vanishing_moments():
    """db2 details vanish on a linear ramp (Haar's would not), except where the periodic
    filter wraps around the image edge."""
    ramp = np.tile(np.arange(16.0), (16, 1))
    c = dwt2(ramp, "db2", 1)
    np.testing.assert_allclose(c[:8, 8:15], 0.0, atol=1e-12)  # x-details of a linear ramp
    np.testing.assert_allclose(c[8:, :], 0.0, atol=1e-12)  # constant along y


def test_dwt2_size_and_name_errors(xp):
    with pytest.raises(ShapeError, match="divisible by 2\\*\\*3"):
        dwt2(xp.zeros((12, 16)), "haar", 3)
    with pytest.raises(XhsiError, match="unknown wavelet"):
        dwt2(xp.zeros((8, 8)), "db4", 1)


# ------------------------------------------------------------------------- MAD, thresholding
@pytest.mark.parametrize("n", [7, 8])
def test_median_and_mad_match_numpy(xp, dtype_name, n):
    a = RNG.standard_normal((3, n, 5))
    x = _arr(xp, dtype_name, a)
    tol = 10 * rtol_for(dtype_name)
    np.testing.assert_allclose(to_numpy(median(x, (1, 2))), np.median(a, axis=(1, 2)), rtol=tol, atol=tol)
    np.testing.assert_allclose(to_numpy(median(x, 1, keepdims=True)), np.median(a, axis=1, keepdims=True), rtol=tol, atol=tol)
    mad = np.median(np.abs(a - np.median(a, axis=(1, 2), keepdims=True)), axis=(1, 2)) / 0.6744897501960817
    got = mad_sigma(x, (1, 2))
    assert got.dtype == x.dtype and array_namespace(got) == xp
    np.testing.assert_allclose(to_numpy(got), mad, rtol=tol)


def test_mad_sigma_estimates_gaussian_noise_and_ignores_outliers():
    noise = 2.5 * RNG.standard_normal((2, 20000))
    noise[:, :200] += 1e3  # 1 % of strong "sources"
    np.testing.assert_allclose(mad_sigma(noise, 1), 2.5, rtol=0.05)


def test_soft_threshold(xp, dtype_name):
    c = _arr(xp, dtype_name, [-3.0, -1.0, 0.0, 0.5, 2.0])
    assert_close(soft_threshold(c, 1.0), _arr(xp, dtype_name, [-2.0, 0.0, 0.0, 0.0, 1.0]), xp=xp)
    t = _arr(xp, dtype_name, [0.0, 2.0, 1.0, 0.1, 0.5])
    assert_close(soft_threshold(c, t), _arr(xp, dtype_name, [-3.0, 0.0, 0.0, 0.4, 1.5]), xp=xp)


# ------------------------------------------------------------------ numpy smoothing fast path
@pytest.mark.parametrize("n", [2, 3, 5, 9])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_numpy_smoothing_matches_the_generic_mirror_path(n, axis):
    """The numpy fast path (two 3-tap passes, flat shifts, edge slices) against the generic
    padded path run under array_api_strict, for every dilation below the axis length (the
    periodic-mirror cases 2·d ≥ n included) and on a non-contiguous input."""
    import array_api_strict as xps

    from xhsi.sparsity.wavelets import _smooth

    shape = [4, 6, 7]
    shape[axis] = n
    for contiguous in (True, False):
        a = RNG.standard_normal((shape[0], shape[1], 2 * shape[2]))
        a = np.ascontiguousarray(a[..., ::2]) if contiguous else a[..., ::2]
        for d in range(1, n):
            got = _smooth(a, d, axis, np)
            expected = to_numpy(_smooth(xps.asarray(np.ascontiguousarray(a)), d, axis, xps))
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-13)


def test_numpy_median_is_the_sort_median():
    """The numpy median (selection) and the array-API one (sort) give the same elements."""
    import array_api_strict as xps

    for n in (7, 8):
        a = RNG.standard_normal((3, n, 5)).astype(np.float32)
        for axes in ((1,), (1, 2), (0, 1, 2)):
            got = median(a, axes)
            ref = to_numpy(median(xps.asarray(a), axes))
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, ref)


def test_mad_sigma_overwrite_gives_the_same_sigma_and_uses_the_input_as_scratch():
    rng = np.random.default_rng(7)
    c = rng.normal(0.0, 2.0, (3, 40, 50))
    keep = c.copy()
    expected = mad_sigma(c, (0, 1, 2))
    np.testing.assert_array_equal(c, keep)  # not written without overwrite
    assert float(mad_sigma(c, (0, 1, 2), overwrite=True)) == pytest.approx(float(expected), rel=1e-12)
    assert float(expected) == pytest.approx(2.0, rel=0.05)
    assert not np.array_equal(c, keep)  # the band served as scratch
