"""The streamed 2D-1D starlet (xhsi.starlet2d1d) and the starlet2d1d_l1 regulariser built on
it, against the materialised transform starlet1d(starlet2d(x, J), L, axis=-3) (all bands at
once) on every backend and dtype: shrink (the prox), band norms (the value), bands and MAD
thresholds (the calibration), and the memory the numpy path holds."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import xhsi
from xhsi import starlet2d1d as stream
from xhsi.backend import to_numpy
from xhsi.errors import ShapeError
from xhsi.schema import Context, from_dict
from xhsi.testing import assert_close, rtol_for
from xhsi.wavelets import mad_sigma, starlet1d, starlet2d

RNG = np.random.default_rng(77)

# (shape, J, L): several pixel blocks and energy chunks with the small blocks below; a batch
# of cubes; a cube whose axes are shorter than the largest dilations (generic path on numpy).
CASES = [((20, 12, 10), 2, 3), ((9, 5, 7), 3, 4), ((2, 12, 8, 8), 2, 2), ((3, 6, 9), 3, 3)]


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """Blocks of 16 pixels, chunks of 4 slices and two threads, so that the numpy path's
    block and chunk borders and its thread split are exercised on small cubes."""
    monkeypatch.setattr(stream, "BLOCK_PX", 16)
    monkeypatch.setattr(stream, "CHUNK_E", 4)
    monkeypatch.setattr(stream, "WORKERS", 2)


def _arr(xp, dtype_name, a):
    return xp.asarray(np.asarray(a, dtype=np.float64), dtype=getattr(xp, dtype_name))


def _materialised(a, J, L):
    """(L+1, J+1, *a.shape) in float64: the reference transform."""
    a = np.asarray(a, dtype=np.float64)
    return starlet1d(starlet2d(a, J), L, axis=a.ndim - 2)


def _reference_shrink(c, tau, reweight):
    """Σ soft(c, τ) with the re-weighting of the materialised prox (Candès et al. 2008)."""
    t = tau.reshape(tau.shape + (1,) * (c.ndim - 2))
    out = c - np.clip(c, -t, t)
    for _ in range(reweight):
        den = t + np.abs(out)
        w = t * t / np.where(den > 0, den, 1.0)
        out = c - np.clip(c, -w, w)
    return out.sum(axis=(0, 1))


def _thresholds(J, L):
    tau = RNG.uniform(0.05, 0.6, (L + 1, J + 1))
    tau[-1, -1] = 0.0
    tau[0, -1] = 0.0  # a skipped band besides the coarse one
    return tau


@pytest.mark.parametrize("shape,J,L", CASES)
@pytest.mark.parametrize("reweight", [0, 2])
def test_shrink_matches_the_materialised_thresholding(xp, dtype_name, shape, J, L, reweight):
    a = RNG.standard_normal(shape)
    tau = _thresholds(J, L)
    got = stream.shrink(_arr(xp, dtype_name, a), J, L, tau, reweight=reweight)
    expected = _reference_shrink(_materialised(a, J, L), tau, reweight)
    assert_close(got, _arr(xp, dtype_name, expected), atol=20 * rtol_for(dtype_name), xp=xp,
                 dtype=getattr(xp, dtype_name))


def test_shrink_limits_and_errors(xp):
    shape, J, L = (10, 8, 8), 2, 3
    a = RNG.standard_normal(shape)
    x = xp.asarray(a)
    # τ = 0: perfect reconstruction; τ = ∞ on every band but the coarse one: the coarse band
    assert_close(stream.shrink(x, J, L, np.zeros((L + 1, J + 1))), x, atol=1e-12, xp=xp)
    huge = np.full((L + 1, J + 1), 1e9)
    huge[-1, -1] = 0.0
    assert_close(stream.shrink(x, J, L, huge), xp.asarray(_materialised(a, J, L)[-1, -1]), atol=1e-9, xp=xp)
    with pytest.raises(ShapeError, match="thresholds"):
        stream.shrink(x, J, L, np.zeros((J + 1, L + 1)))
    with pytest.raises(ShapeError, match="cube"):
        stream.shrink(xp.asarray(a[0]), J, L, huge)


@pytest.mark.parametrize("shape,J,L", CASES)
def test_bands_and_norms_match_the_materialised_transform(xp, dtype_name, shape, J, L):
    a = RNG.standard_normal(shape)
    x = _arr(xp, dtype_name, a)
    c = _materialised(a, J, L)
    seen = []
    for ell, j, band in stream.bands(x, J, L):
        assert tuple(band.shape) == shape and band.dtype == x.dtype
        np.testing.assert_allclose(to_numpy(band), c[ell, j], rtol=0, atol=20 * rtol_for(dtype_name))
        seen.append((ell, j))
    assert seen == [(ell, j) for j in range(J + 1) for ell in range(L + 1)]  # j-major, each once
    wanted = np.ones((L + 1, J + 1), dtype=bool)
    wanted[0, 0] = False
    norms = stream.l1_norms(x, J, L, wanted=wanted)
    expected = np.abs(c).sum(axis=tuple(range(2, c.ndim))) * wanted
    np.testing.assert_allclose(norms, expected, rtol=10 * rtol_for(dtype_name),
                               atol=rtol_for(dtype_name) * expected.max())


# ----------------------------------------------------------------------- the regulariser
def _reg(xp, dtype_name, shape, **options):
    cls = xhsi.get("regularizer", "starlet2d1d_l1")
    reg = cls(from_dict(cls.Options, options, Context(file="<test>")), weight=0.8)
    reg.setup(shape, xp, getattr(xp, dtype_name))
    return reg


@pytest.mark.parametrize("reweight", [0, 1])
def test_prox_and_value_with_explicit_thresholds(xp, dtype_name, reweight):
    shape, J, L = (12, 10, 9), 2, 3
    lam = _thresholds(J, L)
    reg = _reg(xp, dtype_name, shape, scales_2d=J, scales_1d=L, thresholds=lam.tolist(), reweight=reweight)
    a = RNG.standard_normal(shape)
    x = _arr(xp, dtype_name, a)
    c = _materialised(a, J, L)
    expected = _reference_shrink(c, 0.5 * 0.8 * lam, reweight)
    assert_close(reg.prox(x, 0.5), _arr(xp, dtype_name, expected), atol=20 * rtol_for(dtype_name), xp=xp)
    value = 0.8 * np.sum(lam[:, :, None, None, None] * np.abs(c))
    assert reg.value(x) == pytest.approx(value, rel=10 * rtol_for(dtype_name))


@pytest.mark.parametrize("reweight", [0, 2])
def test_prox_with_mad_thresholds_matches_the_materialised_estimate(xp, dtype_name, reweight):
    """First prox input: σ_lj by MAD of each streamed band = the MAD of the materialised
    coefficients per band pair; then the same thresholding."""
    shape, J, L = (16, 12, 12), 2, 3
    reg = _reg(xp, dtype_name, shape, scales_2d=J, scales_1d=L, k=2.5, reweight=reweight)
    a = RNG.standard_normal(shape)
    x = _arr(xp, dtype_name, a)
    got = reg.prox(x, 1.0)
    c = _materialised(to_numpy(x), J, L)  # the float32 input, in float64
    lam = 2.5 * mad_sigma(c, (2, 3, 4), keepdims=True)
    lam[-1, -1] = 0.0
    assert reg.thresholds.shape == lam.shape
    np.testing.assert_allclose(reg.thresholds, lam, rtol=10 * rtol_for(dtype_name))
    expected = _reference_shrink(c, 0.8 * lam[:, :, 0, 0, 0], reweight)
    assert_close(got, _arr(xp, dtype_name, expected), atol=20 * rtol_for(dtype_name), xp=xp)


def test_calibrate_gives_the_same_sigma_as_the_materialised_mad(xp):
    shape = (24, 16, 16)
    reg = _reg(xp, "float64", shape, k=3.0)  # default scales: J = 3, L = 4
    noise = RNG.standard_normal(shape) * np.linspace(0.5, 2.0, shape[0])[:, None, None]
    reg.calibrate(xp.asarray(noise))
    expected = 3.0 * mad_sigma(_materialised(noise, 3, 4), (2, 3, 4), keepdims=True)
    expected[-1, -1] = 0.0
    np.testing.assert_allclose(reg.thresholds, expected, rtol=1e-12)
    # value before any threshold is frozen estimates them for that call only
    fresh = _reg(xp, "float64", shape, k=3.0)
    assert fresh.value(xp.asarray(noise)) == pytest.approx(reg.value(xp.asarray(noise)), rel=1e-12)
    assert fresh.thresholds is None


# --------------------------------------------------------------------------------- memory
def _peak_cubes(fn, x) -> float:
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn(x)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / x.nbytes


def test_numpy_prox_and_calibration_stay_within_a_few_cubes(monkeypatch):
    """Allocations (tracemalloc, which sees numpy's buffers) of one prox: the output and two
    cubes (c_j, s_j) plus block buffers, where the materialised prox held (L+1)(J+1) = 20
    bands plus padding copies; the calibration holds the L + 1 bands of one 2-D scale."""
    monkeypatch.setattr(stream, "WORKERS", 1)
    monkeypatch.setattr(stream, "BLOCK_PX", 64)
    shape = (96, 32, 32)
    reg = _reg(np, "float64", shape)  # J = 3, L = 4
    x = RNG.standard_normal(shape)
    calib = _peak_cubes(reg.calibrate, x)
    prox = _peak_cubes(lambda v: reg.prox(v, 1.0), x)
    assert prox < 4.5, prox
    assert calib < 10.0, calib
    materialised = _peak_cubes(reg._analysis, x)
    assert materialised > 20.0  # the reference does hold every band: the measure can fail
