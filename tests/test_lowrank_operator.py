"""spectral_basis_forward: a compiled forward operator restricted to a spectral basis
(A ∘ W, computed on the rank maps) equals the plain composition, for both kinds of PSF."""
from __future__ import annotations

import numpy as np
import pytest

from xhsi.backend import to_numpy
from xhsi.operators import BlurRebin, Diagonal, LinearOperator, SpectralResponse
from xhsi.operators.lowrank import MixingBlurRebin, spectral_basis_forward
from xhsi.testing import assert_close, rtol_for


def _basis_op(be, w, shape):
    """H ↦ W·H as a plain operator (the reference), and W on the backend."""
    xp = be.xp
    wb = be.asarray(w)

    class _B(LinearOperator):
        def _apply(self, h):
            return xp.reshape(xp.matmul(wb, xp.reshape(h, (h.shape[0], -1))), shape)

        def _adjoint(self, z):
            return xp.reshape(xp.matmul(xp.matrix_transpose(wb), xp.reshape(z, (z.shape[0], -1))), self.shape_in)

    return _B((w.shape[1],) + tuple(shape[1:]), shape), wb


def _assert_same_operator(backend, fast, plain, rng):
    """``fast`` and ``plain`` agree forward and adjoint on random inputs (to float rounding)."""
    h = backend.asarray(rng.random(plain.shape_in))
    y = backend.asarray(rng.standard_normal(plain.shape_out))
    for got, want in ((fast.apply(h), plain.apply(h)), (fast.adjoint(y), plain.adjoint(y))):
        scale = float(np.max(np.abs(to_numpy(want))))
        assert_close(got, want, atol=20 * rtol_for(backend.dtype_name) * scale, xp=backend.xp)


@pytest.mark.parametrize("instrument, spatial_rebin, spectral_rebin, mixing", [
    ("xmm_epic_pn", 1, 20, True),        # energy-dependent PSF: per-(channel, rank) kernels
    ("xrism_resolve", 3, None, False),   # one PSF: blur the rank maps, then a matrix
])
def test_spectral_basis_forward_equals_composition(backend, instrument, spatial_rebin, spectral_rebin, mixing):
    from xhsi.instruments import compile_forward

    edges = np.linspace(5.8, 6.6, 81)
    channels = None if spectral_rebin else np.linspace(5.8, 6.6, 41)
    forward = compile_forward(instrument, edges, (12, 12), 4.1, 1e4, spatial_rebin=spatial_rebin,
                              spectral_rebin=spectral_rebin, backend=backend, channel_edges_kev=channels)
    rng = np.random.default_rng(8)
    w = np.linalg.qr(rng.random((80, 3)))[0]
    basis_op, wb = _basis_op(backend, w, forward.shape_in)
    fast = spectral_basis_forward(forward, wb)
    assert fast is not None and fast.shape_in == (3, 12, 12) and fast.shape_out == forward.shape_out
    parts = getattr(fast, "ops", [fast])
    assert any(isinstance(p, MixingBlurRebin) for p in parts) == mixing
    assert all(p.shape_in[0] in (3,) for p in parts if isinstance(p, BlurRebin))  # never the 80 slices
    _assert_same_operator(backend, fast, forward @ basis_op, rng)


def test_spectral_basis_forward_declines_unknown_parts():
    shape = (4, 6, 6)
    w = np.linalg.qr(np.random.default_rng(9).random((4, 2)))[0]
    full_weight = Diagonal(np.ones(shape), shape)  # varies in space: does not fold into W
    blur = BlurRebin(np.ones((3, 3)), shape, 2)
    assert spectral_basis_forward(blur @ full_weight, w) is None
    ok = spectral_basis_forward(SpectralResponse(np.ones((4, 3)), blur.shape_out) @ blur, w)
    assert ok is not None and ok.shape_in == (2, 6, 6) and ok.shape_out == (3, 3, 3)


def test_spectral_basis_forward_folds_the_response_of_a_blur_with_one_psf(backend):
    """A BlurRebin with one PSF for every energy and a response of its own (energies summed
    into channels): the response folds into the spectral matrix and the PSF blurs the rank
    maps (it used to be taken for per-energy kernels, and failed on their shape)."""
    shape, rng = (6, 8, 8), np.random.default_rng(10)
    response = np.kron(np.eye(3), np.ones((2, 1)))  # (6 energies, 3 channels)
    yy, xx = np.mgrid[-1:2, -1:2]
    psf = np.exp(-(yy ** 2 + xx ** 2) / 0.5)
    forward = BlurRebin(backend.asarray(psf / psf.sum()), shape, 2, response=backend.asarray(response))
    w = rng.random((6, 2))
    basis_op, wb = _basis_op(backend, w, shape)
    fast = spectral_basis_forward(forward, wb)
    assert fast is not None and fast.shape_in == (2, 8, 8) and fast.shape_out == forward.shape_out
    _assert_same_operator(backend, fast, forward @ basis_op, rng)
