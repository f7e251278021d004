"""Values of the physical operators against numpy / scipy references, boundaries, dtype
handling and the shape errors a user can cause. The generic contract (dot test, norm,
namespace) is in tests/contracts/test_operator_contract.py."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import scipy.sparse

from xhsi.backend import Backend, to_numpy
from xhsi.errors import ConfigError, ShapeError
from xhsi.operators import (
    Crop, Diagonal, Pad, SpatialConvolution, SpatialRebin, SpectralConvolution, SpectralRebin, SpectralResponse, vdot,
)
from xhsi.testing import assert_close, rtol_for

SHAPE = (6, 16, 16)


def rng(seed=0):
    return np.random.default_rng(seed)


def cube(shape=SHAPE, seed=0):
    return rng(seed).standard_normal(shape)


def atol_for(dtype_name, scale=1.0) -> float:
    # FFT round-off is relative to the largest values, not to each (possibly ~0) output sample.
    return rtol_for(dtype_name) * scale


def periodic_reference(x2d: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """Circular 'same' convolution by brute force: wrap-pad by the PSF half-widths, 'valid'."""
    ky, kx = psf.shape
    padded = np.pad(x2d, ((ky // 2, ky // 2), (kx // 2, kx // 2)), mode="wrap")
    return scipy.signal.convolve2d(padded, psf, mode="valid")


def dot_test_ok(op, be: Backend) -> bool:
    x, y = be.asarray(cube(op.shape_in, 1)), be.asarray(cube(op.shape_out, 2))
    ax = op.apply(x)
    lhs, rhs = vdot(ax, y), vdot(x, op.adjoint(y))
    return abs(lhs - rhs) <= rtol_for(be.dtype_name) * np.linalg.norm(to_numpy(ax)) * np.linalg.norm(to_numpy(y))


# -- SpatialConvolution ----------------------------------------------------------------------

@pytest.mark.parametrize("psf_shape", [(5, 5), (3, 7)])
def test_spatial_zero_boundary_matches_fftconvolve_same(backend, psf_shape):
    x, psf = cube(), rng(1).uniform(0, 1, psf_shape)
    op = SpatialConvolution(backend.asarray(psf), SHAPE)
    expected = np.stack([scipy.signal.fftconvolve(s, psf, mode="same") for s in x])
    got = op.apply(backend.asarray(x))
    assert_close(got, backend.asarray(expected), atol=atol_for(backend.dtype_name, np.abs(expected).max()), xp=backend.xp)


def test_spatial_adjoint_is_correlation(backend):
    x, psf = cube(), rng(1).uniform(0, 1, (5, 3))
    op = SpatialConvolution(backend.asarray(psf), SHAPE)
    expected = np.stack([scipy.signal.correlate(s, psf, mode="same") for s in x])
    got = op.adjoint(backend.asarray(x))
    assert_close(got, backend.asarray(expected), atol=atol_for(backend.dtype_name, np.abs(expected).max()), xp=backend.xp)


def test_spatial_energy_dependent_psf_stack(backend):
    x = cube()
    psfs = rng(2).uniform(0, 1, (SHAPE[0], 7, 5))
    for boundary, reference in (("zero", lambda s, p: scipy.signal.fftconvolve(s, p, mode="same")),
                                ("periodic", periodic_reference)):
        op = SpatialConvolution(backend.asarray(psfs), SHAPE, boundary=boundary)
        expected = np.stack([reference(x[e], psfs[e]) for e in range(SHAPE[0])])
        got = op.apply(backend.asarray(x))
        assert_close(got, backend.asarray(expected), atol=atol_for(backend.dtype_name, np.abs(expected).max()),
                     xp=backend.xp)


def test_spatial_periodic_matches_circular_reference(backend):
    x, psf = cube(), rng(3).uniform(0, 1, (5, 7))
    op = SpatialConvolution(backend.asarray(psf), SHAPE, boundary="periodic")
    expected = np.stack([periodic_reference(s, psf) for s in x])
    got = op.apply(backend.asarray(x))
    assert_close(got, backend.asarray(expected), atol=atol_for(backend.dtype_name, np.abs(expected).max()), xp=backend.xp)


def test_spatial_boundary_at_the_edge_loses_or_wraps_flux():
    """A point source on the edge: zero boundary loses the flux blurred off the image,
    periodic keeps it all and puts it on the opposite edge."""
    be = Backend("numpy", "float64")
    psf = np.full((5, 5), 1 / 25)  # flux-conserving: sums to 1
    x = np.zeros(SHAPE)
    x[:, 0, 7] = 1.0
    zero = to_numpy(SpatialConvolution(be.asarray(psf), SHAPE, boundary="zero").apply(x))
    periodic = to_numpy(SpatialConvolution(be.asarray(psf), SHAPE, boundary="periodic").apply(x))
    np.testing.assert_allclose(zero.sum(axis=(1, 2)), 15 / 25, rtol=1e-12)  # 3 of 5 rows stay in
    np.testing.assert_allclose(periodic.sum(axis=(1, 2)), 1.0, rtol=1e-12)
    np.testing.assert_allclose(zero[:, -2:, :], 0.0, atol=1e-15)
    np.testing.assert_allclose(periodic[:, -2:, 5:10], 1 / 25, rtol=1e-12)


@pytest.mark.parametrize("boundary", ["zero", "periodic"])
def test_spatial_psf_larger_than_the_image(boundary):
    """The kernel is folded onto a grid smaller than itself; results stay exact."""
    be = Backend("numpy", "float64")
    shape, psf = (2, 5, 4), rng(4).uniform(0, 1, (9, 11))
    x = cube(shape, 5)
    op = SpatialConvolution(be.asarray(psf), shape, boundary=boundary)
    if boundary == "zero":
        expected = np.stack([scipy.signal.convolve2d(s, psf, mode="full")[4:9, 5:9] for s in x])
    else:  # circular convolution = sum over shifts of the wrapped kernel
        expected = np.zeros(shape)
        for a in range(9):
            for b in range(11):
                expected += psf[a, b] * np.roll(x, (a - 4, b - 5), axis=(1, 2))
    assert_close(op.apply(x), expected, atol=1e-12)
    assert dot_test_ok(op, be)


def test_spatial_uses_a_fast_fft_grid_without_wraparound():
    op = SpatialConvolution(np.ones((29, 29)), (4, 45, 45))
    assert op._grid == (60, 60)  # 45 + 14 = 59 -> next fast length 60, not 45 + 28 = 73


def test_spatial_float64_psf_keeps_float32_input():
    be32 = Backend("numpy", "float32")
    psf = rng(1).uniform(0, 1, (3, 3))
    op = SpatialConvolution(psf, SHAPE)  # float64 PSF
    x = be32.asarray(cube())
    assert op.apply(x).dtype == np.float32 and op.adjoint(x).dtype == np.float32
    expected = np.stack([scipy.signal.fftconvolve(s, psf, mode="same") for s in to_numpy(x).astype(float)])
    assert_close(op.apply(x), expected.astype(np.float32), atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("psf_shape, shape", [((4, 5), SHAPE), ((5, 4), SHAPE), ((5, 5, 5), SHAPE),
                                              ((5,), SHAPE), ((SHAPE[0], 3, 3), (16, 16))])
def test_spatial_bad_shapes(psf_shape, shape):
    with pytest.raises(ShapeError) as err:
        SpatialConvolution(np.ones(psf_shape), shape)
    assert str(psf_shape) in str(err.value) and str(tuple(shape)) in str(err.value)


def test_spatial_unknown_boundary():
    with pytest.raises(ConfigError, match="periodic"):
        SpatialConvolution(np.ones((3, 3)), SHAPE, boundary="reflect")


# -- SpectralConvolution ---------------------------------------------------------------------

@pytest.mark.parametrize("kernel, center", [([0.1, 0.6, 0.2, 0.07, 0.03], None), ([0.1, 0.6, 0.2, 0.07, 0.03], 1),
                                            ([0.5, 0.3, 0.2], 0), ([0.2, 0.8], 1), ([1.0], 0),
                                            (list(np.linspace(0.1, 1.0, 9)), 6)])
def test_spectral_convolution_matches_np_convolve(backend, kernel, center):
    kernel = np.asarray(kernel)
    c = len(kernel) // 2 if center is None else center
    x = cube()
    op = SpectralConvolution(backend.asarray(kernel), SHAPE, center=center)
    full = np.apply_along_axis(lambda s: np.convolve(s, kernel, mode="full"), 0, x)
    expected = full[c:c + SHAPE[0]]
    got = op.apply(backend.asarray(x))
    assert_close(got, backend.asarray(expected), atol=atol_for(backend.dtype_name, np.abs(expected).max()), xp=backend.xp)
    # Adjoint: correlation with the same alignment.
    flipped = kernel[::-1]
    full_adj = np.apply_along_axis(lambda s: np.convolve(s, flipped, mode="full"), 0, x)
    k = len(kernel) - 1 - c
    assert_close(op.adjoint(backend.asarray(x)), backend.asarray(full_adj[k:k + SHAPE[0]]),
                 atol=atol_for(backend.dtype_name, np.abs(full_adj).max()), xp=backend.xp)


def test_spectral_convolution_bad_arguments():
    with pytest.raises(ShapeError, match=r"\(3, 3\)"):
        SpectralConvolution(np.ones((3, 3)), SHAPE)
    with pytest.raises(ShapeError, match="center=3"):
        SpectralConvolution(np.ones(3), SHAPE, center=3)


# -- SpectralResponse ------------------------------------------------------------------------

def test_spectral_response_values(backend):
    matrix, x = rng(6).uniform(0, 1, (SHAPE[0], 9)), cube()
    op = SpectralResponse(backend.asarray(matrix), SHAPE)
    assert op.shape_out == (9,) + SHAPE[1:]
    y = cube(op.shape_out, 7)
    for got, ref in ((op.apply(backend.asarray(x)), np.einsum("ec,eij->cij", matrix, x)),
                     (op.adjoint(backend.asarray(y)), np.einsum("ec,cij->eij", matrix, y))):
        assert_close(got, backend.asarray(ref), atol=atol_for(backend.dtype_name, np.abs(ref).max()), xp=backend.xp)


@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_spectral_response_sparse_agrees_with_dense(dtype_name):
    be = Backend("numpy", dtype_name)
    dense = np.triu(np.tril(rng(8).uniform(0, 1, (SHAPE[0], 8)), 2), -1)  # banded, like an RMF
    sparse_op = SpectralResponse(scipy.sparse.csr_matrix(dense), SHAPE)
    dense_op = SpectralResponse(be.asarray(dense), SHAPE)
    assert sparse_op.sparse and not dense_op.sparse
    x, y = be.asarray(cube()), be.asarray(cube(dense_op.shape_out, 9))
    # Same dtype (float32 stays float32) and values; sums of signed terms: absolute tolerance.
    for got, ref in ((sparse_op.apply(x), dense_op.apply(x)), (sparse_op.adjoint(y), dense_op.adjoint(y))):
        assert_close(got, ref, atol=atol_for(dtype_name, np.abs(ref).max()))
    assert isinstance(sparse_op.apply(x), np.ndarray)


def test_spectral_response_sparse_on_another_namespace_becomes_dense():
    be = Backend("array_api_strict", "float64")
    dense = rng(8).uniform(0, 1, (SHAPE[0], 5))
    op = SpectralResponse(scipy.sparse.csr_matrix(dense), SHAPE, xp=be.xp)
    assert not op.sparse and op.xp is be.xp
    ref = np.einsum("ec,eij->cij", dense, cube())
    assert_close(op.apply(be.asarray(cube())), be.asarray(ref), atol=1e-12 * np.abs(ref).max(), xp=be.xp)


def test_spectral_response_shape_mismatch():
    with pytest.raises(ShapeError) as err:
        SpectralResponse(np.ones((5, 4)), SHAPE)
    assert "(5, 4)" in str(err.value) and str(SHAPE) in str(err.value)


# -- Rebinning -------------------------------------------------------------------------------

@pytest.mark.parametrize("factor, blocks", [(2, (2, 2)), ((4, 2), (4, 2)), (1, (1, 1))])
def test_spatial_rebin_sums_blocks(backend, factor, blocks):
    x = cube()
    op = SpatialRebin(SHAPE, factor)
    fy, fx = blocks
    expected = x.reshape(SHAPE[0], 16 // fy, fy, 16 // fx, fx).sum(axis=(2, 4))
    got = op.apply(backend.asarray(x))
    assert_close(got, backend.asarray(expected), atol=atol_for(backend.dtype_name, np.abs(expected).max()), xp=backend.xp)
    assert float(backend.xp.sum(got)) == pytest.approx(float(np.sum(x)), abs=1e-3)  # counts are kept
    y = cube(op.shape_out, 3)
    assert_close(op.adjoint(backend.asarray(y)), backend.asarray(np.repeat(np.repeat(y, fy, axis=1), fx, axis=2)),
                 xp=backend.xp)


def test_spectral_rebin_sums_blocks(backend):
    x = cube()
    op = SpectralRebin(SHAPE, 3)
    assert op.shape_out == (2, 16, 16)
    expected = np.stack([x[0:3].sum(axis=0), x[3:6].sum(axis=0)])
    assert_close(op.apply(backend.asarray(x)), backend.asarray(expected),
                 atol=atol_for(backend.dtype_name, np.abs(expected).max()), xp=backend.xp)
    y = cube(op.shape_out, 4)
    assert_close(op.adjoint(backend.asarray(y)), backend.asarray(np.repeat(y, 3, axis=0)), xp=backend.xp)


def test_rebin_not_divisible_names_both():
    with pytest.raises(ShapeError) as err:
        SpatialRebin((6, 15, 16), 2)
    assert "(6, 15, 16)" in str(err.value) and "(2, 2)" in str(err.value)
    with pytest.raises(ShapeError) as err:
        SpectralRebin(SHAPE, 4)
    assert str(SHAPE) in str(err.value) and "4" in str(err.value)
    with pytest.raises(ShapeError):
        SpatialRebin(SHAPE, (2, 0))


# -- Crop / Pad ------------------------------------------------------------------------------

def test_crop_and_pad_values_and_adjointness(backend):
    x = cube()
    box = ((1, 4), (2, 14), (0, 9))
    crop = Crop(SHAPE, box)
    assert_close(crop.apply(backend.asarray(x)), backend.asarray(x[1:4, 2:14, 0:9]), xp=backend.xp)
    pad_width = ((1, 2), (2, 2), (0, 7))
    pad = Pad(crop.shape_out, pad_width)
    assert pad.shape_out == SHAPE
    y = cube(crop.shape_out, 5)
    expected = np.pad(y, pad_width)
    assert_close(pad.apply(backend.asarray(y)), backend.asarray(expected), xp=backend.xp)
    assert_close(crop.adjoint(backend.asarray(y)), backend.asarray(expected), xp=backend.xp)  # Pad = Crop*
    assert_close(pad.adjoint(backend.asarray(x)), crop.apply(backend.asarray(x)), xp=backend.xp)


def test_crop_and_pad_bad_arguments():
    with pytest.raises(ShapeError) as err:
        Crop(SHAPE, ((0, 7), (0, 16), (0, 16)))
    assert str(SHAPE) in str(err.value)
    with pytest.raises(ShapeError):
        Crop(SHAPE, ((0, 6), (0, 16)))
    with pytest.raises(ShapeError):
        Pad(SHAPE, ((0, 1), (-1, 0), (0, 0)))


# -- Diagonal --------------------------------------------------------------------------------

def test_diagonal_exposure_times_arf(backend):
    arf = rng(9).uniform(10.0, 400.0, (SHAPE[0], 1, 1))  # cm² × s per energy bin
    x = cube()
    op = Diagonal(backend.asarray(arf), SHAPE)
    assert_close(op.apply(backend.asarray(x)), backend.asarray(arf * x), xp=backend.xp)
    assert_close(op.adjoint(backend.asarray(x)), backend.asarray(arf * x), xp=backend.xp)
    assert op.norm() == pytest.approx(arf.max(), rel=rtol_for(backend.dtype_name))


def test_diagonal_keeps_input_dtype():
    op = Diagonal(rng(9).uniform(1, 2, (SHAPE[0], 1, 1)), SHAPE)  # float64 weight
    x32 = cube().astype(np.float32)
    assert op.apply(x32).dtype == np.float32 and op.adjoint(x32).dtype == np.float32


@pytest.mark.parametrize("weight_shape", [(SHAPE[0] + 1, 1, 1), (2, 6, 16, 16), (16, 15)])
def test_diagonal_weight_must_broadcast(weight_shape):
    with pytest.raises(ShapeError) as err:
        Diagonal(np.ones(weight_shape), SHAPE)
    assert str(weight_shape) in str(err.value) and str(SHAPE) in str(err.value)
