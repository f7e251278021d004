"""The fused Fourier-space forward pieces (xhsi.operators.fused) against the plain
composition they replace: BlurRebin == SpatialRebin ∘ SpectralResponse ∘ SpatialConvolution,
the ordering chosen by blur_respond_rebin, the response representation, and a compiled
instrument forward operator against the composition built from the same calibration."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse

from xhsi.backend import Backend, to_numpy
from xhsi.errors import ConfigError, ShapeError
from xhsi.operators import BlurRebin, Diagonal, SpatialConvolution, SpatialRebin, SpectralResponse
from xhsi.operators.fused import blur_respond_rebin, response_matrix
from xhsi.testing import assert_close, rtol_for

CASES = [  # psf shape, cube shape, rebin factor, response (n_e, n_chan) or None, boundary
    ((5, 5), (3, 12, 12), 1, None, "zero"),
    ((3, 5), (4, 6, 9), (2, 3), None, "zero"),
    ((4, 3, 5), (4, 6, 9), (2, 3), (4, 3), "zero"),
    ((7, 7), (5, 9, 9), 3, (5, 2), "zero"),
    ((4, 5, 3), (4, 8, 6), 2, (4, 6), "periodic"),
    ((2, 7, 9), (2, 15, 15), 3, None, "zero"),
]


def _composition(be, psf, shape, factor, matrix, boundary):
    op = SpatialConvolution(be.asarray(psf), shape, boundary=boundary)
    if matrix is not None:
        op = SpectralResponse(be.asarray(matrix), op.shape_out) @ op
    return SpatialRebin(op.shape_out, factor) @ op


def _close(got, want, be):
    # FFT round-off is relative to the largest values, not to each (possibly ~0) sample.
    scale = float(np.max(np.abs(to_numpy(want))))
    assert_close(got, want, atol=10 * rtol_for(be.dtype_name) * scale, xp=be.xp)


@pytest.mark.parametrize("psf_shape, shape, factor, response, boundary", CASES)
def test_blur_rebin_equals_composition(backend, psf_shape, shape, factor, response, boundary):
    rng = np.random.default_rng(3)
    psf = rng.uniform(0.0, 1.0, psf_shape)
    matrix = None if response is None else rng.uniform(0.0, 1.0, response)
    fused = BlurRebin(backend.asarray(psf), shape, factor, boundary=boundary,
                      response=None if matrix is None else backend.asarray(matrix))
    plain = _composition(backend, psf, shape, factor, matrix, boundary)
    assert fused.shape_out == plain.shape_out
    x = backend.asarray(rng.standard_normal(shape))
    y = backend.asarray(rng.standard_normal(plain.shape_out))
    _close(fused.apply(x), plain.apply(x), backend)
    _close(fused.adjoint(y), plain.adjoint(y), backend)


@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_blur_rebin_sparse_response_equals_dense(dtype_name):
    be = Backend("numpy", dtype_name)
    rng = np.random.default_rng(4)
    psf, matrix = rng.uniform(0.0, 1.0, (6, 3, 3)), rng.uniform(0.0, 1.0, (6, 4)) * (rng.random((6, 4)) < 0.4)
    dense = BlurRebin(be.asarray(psf), (6, 8, 8), 2, response=be.asarray(matrix))
    sparse = BlurRebin(be.asarray(psf), (6, 8, 8), 2, response=scipy.sparse.csr_matrix(matrix.astype(dtype_name)))
    assert sparse.sparse and not dense.sparse
    x, y = be.asarray(rng.standard_normal((6, 8, 8))), be.asarray(rng.standard_normal(dense.shape_out))
    _close(sparse.apply(x), dense.apply(x), be)
    _close(sparse.adjoint(y), dense.adjoint(y), be)
    assert sparse.apply(x).dtype == be.dtype


def test_blur_rebin_float64_kernel_keeps_float32_input():
    rng = np.random.default_rng(5)
    op = BlurRebin(rng.uniform(0.0, 1.0, (3, 3)), (2, 6, 6), 3)  # float64 PSF
    x = rng.standard_normal((2, 6, 6)).astype(np.float32)
    assert op.apply(x).dtype == np.float32 and op.adjoint(op.apply(x)).dtype == np.float32


@pytest.mark.parametrize("kwargs, message", [
    (dict(psf=np.ones((4, 3)), shape=(2, 6, 6)), "odd sizes"),
    (dict(psf=np.ones((3, 3)), shape=(2, 7, 6), factor=2), "not divisible"),
    (dict(psf=np.ones((3, 3, 3)), shape=(2, 6, 6)), "one PSF per energy"),
    (dict(psf=np.ones((3, 3)), shape=(6, 6)), "cannot blur"),
    (dict(psf=np.ones((3, 3)), shape=(2, 6, 6), response=np.ones((3, 2))), "needs 2 rows"),
])
def test_blur_rebin_shape_errors_name_the_fix(kwargs, message):
    with pytest.raises(ShapeError, match=message):
        BlurRebin(**kwargs)


def test_blur_rebin_unknown_boundary():
    with pytest.raises(ConfigError, match="boundary"):
        BlurRebin(np.ones((3, 3)), (2, 6, 6), boundary="reflect")


@pytest.mark.parametrize("psf_shape, n_chan, kinds", [
    ((3, 3), 2, ["SpectralResponse", "BlurRebin"]),     # commute: fewer slices to blur
    ((3, 3), 6, ["BlurRebin", "SpectralResponse"]),     # response on the coarse pixels
    ((4, 3, 3), 2, ["BlurRebin"]),                      # response inside, in Fourier space
    ((4, 3, 3), 6, ["BlurRebin", "SpectralResponse"]),
])
def test_blur_respond_rebin_order_and_values(backend, psf_shape, n_chan, kinds):
    rng = np.random.default_rng(6)
    shape = (4, 6, 6)
    psf, matrix = rng.uniform(0.0, 1.0, psf_shape), rng.uniform(0.1, 1.0, (4, n_chan))
    ops = blur_respond_rebin(backend.asarray(psf), matrix, shape, 3)
    assert [type(op).__name__ for op in ops] == kinds
    x = backend.asarray(rng.standard_normal(shape))
    got = x
    for op in ops:
        got = op.apply(got)
    _close(got, _composition(backend, psf, shape, 3, matrix, "zero").apply(x), backend)


def test_response_matrix_drops_rounding_tails_and_picks_sparse_on_numpy():
    lines = np.exp(-0.5 * (np.arange(200)[:, None] - np.arange(200)[None, :]) ** 2)  # tails to 1e-8600
    held = response_matrix(lines, np, np.float32)
    assert scipy.sparse.issparse(held) and held.dtype == np.float32
    kept = held.toarray()
    assert kept.min() == 0.0 and np.all(kept[lines >= 1e-6] > 0) and np.all(kept[lines < 1.19e-7] == 0)
    assert response_matrix(lines, np, np.float64).nnz > held.nnz  # float64 keeps more of the tails
    full = response_matrix(np.ones((5, 3)), np, np.float32)
    assert isinstance(full, np.ndarray) and full.dtype == np.float32
    strict = Backend("array_api_strict", "float32")
    assert not scipy.sparse.issparse(response_matrix(lines, strict.xp, strict.dtype))


@pytest.mark.parametrize("instrument, spatial_rebin, spectral_rebin", [
    ("xmm_epic_pn", 1, 20),      # energy-dependent King PSF stack, RMF channels
    ("xrism_resolve", 3, None),  # one Gaussian PSF, Gaussian response, 3 × 3 rebin
])
def test_compiled_forward_equals_plain_composition(instrument, spatial_rebin, spectral_rebin):
    from xhsi.instruments import compile_forward, load_instrument

    be = Backend("numpy", "float64")
    edges = np.linspace(5.8, 6.6, 81)  # 10 eV bins around the Fe K lines
    inst = load_instrument(instrument)
    channels = None if spectral_rebin else np.linspace(5.8, 6.6, 41)
    forward = compile_forward(inst, edges, (12, 12), 4.1, 1e4, spatial_rebin=spatial_rebin,
                              spectral_rebin=spectral_rebin, backend=be, channel_edges_kev=channels)
    shape = (80, 12, 12)
    weight = 1e4 * inst.mean_effective_area(edges)
    psf = inst.psf_image(4.1, 0.5 * (edges[:-1] + edges[1:]), max_half=(11, 11))
    matrix = inst.redistribution(edges, spectral_rebin, channels)
    matrix = matrix.toarray() if scipy.sparse.issparse(matrix) else matrix
    plain = SpatialConvolution(psf, shape) @ Diagonal(weight.reshape(80, 1, 1), shape)
    plain = SpectralResponse(matrix, shape) @ plain
    plain = SpatialRebin(plain.shape_out, spatial_rebin) @ plain
    rng = np.random.default_rng(7)
    x, y = rng.random(shape), rng.standard_normal(plain.shape_out)
    _close(forward.apply(x), plain.apply(x), be)
    _close(forward.adjoint(y), plain.adjoint(y), be)


def _gaussian(shape, sigma):
    """Separable (rank-1) PSF(s): outer products of 1-D Gaussians, one per plane."""
    *lead, ky, kx = shape
    sig = np.atleast_1d(sigma).reshape(-1, 1)
    gy = np.exp(-0.5 * ((np.arange(ky) - ky // 2) / sig) ** 2)
    gx = np.exp(-0.5 * ((np.arange(kx) - kx // 2) / (1.3 * sig)) ** 2)
    planes = gy[:, :, None] * gx[:, None, :]
    return planes[0] if not lead else planes


@pytest.mark.parametrize("psf_shape, shape, factor, response, boundary", [
    ((9, 7), (3, 12, 12), 3, None, "zero"),
    ((0, 7, 7), (3, 12, 12), 3, None, "zero"),      # 0: a non-separable (rank 7) random PSF
    ((0, 3, 5, 5), (3, 6, 9), (2, 3), (3, 2), "periodic"),
    ((4, 5, 5), (4, 6, 9), (2, 3), (4, 3), "zero"),
    ((7, 9), (5, 9, 9), 3, (5, 2), "periodic"),
    ((2, 21, 21), (2, 8, 8), 2, None, "periodic"),   # kernel wider than the torus: wraps twice
])
def test_separable_matrix_path_matches(backend, psf_shape, shape, factor, response, boundary):
    rng = np.random.default_rng(10)
    if psf_shape[0] == 0:
        psf, psf_shape = rng.uniform(0.0, 1.0, psf_shape[1:]), psf_shape[1:]
    else:
        psf = _gaussian(psf_shape, np.linspace(1.0, 2.0, psf_shape[0]) if len(psf_shape) == 3 else 1.5)
    matrix = None if response is None else rng.uniform(0.0, 1.0, response)
    fused = BlurRebin(backend.asarray(psf), shape, factor, boundary=boundary,
                      response=None if matrix is None else backend.asarray(matrix), method="separable")
    assert fused.method == "separable"
    plain = _composition(backend, psf, shape, factor, matrix, boundary)
    x = backend.asarray(rng.standard_normal(shape))
    y = backend.asarray(rng.standard_normal(plain.shape_out))
    _close(fused.apply(x), plain.apply(x), backend)
    _close(fused.adjoint(y), plain.adjoint(y), backend)


def test_method_choice():
    gauss = _gaussian((31, 31), 6.0)
    assert BlurRebin(gauss, (4, 45, 45), 3).method == "separable"          # cheaper than the FFTs
    assert BlurRebin(gauss, (4, 45, 45), 3, method="fourier").method == "fourier"
    king = (1 + (np.arange(-15, 16)[:, None] ** 2 + np.arange(-15, 16)[None, :] ** 2) / 4.0) ** -1.5
    assert BlurRebin(king, (4, 45, 45)).method == "fourier"       # high rank: the FFTs are cheaper
    assert BlurRebin(king, (4, 45, 45), method="separable").rank > 5
    with pytest.raises(ConfigError, match="method"):
        BlurRebin(gauss, (4, 45, 45), method="direct")
