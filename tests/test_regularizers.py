"""The built-in regularisers, beyond the contract: closed forms, options, thresholds,
boundary handling and the low-rank basis. The generic checks (prox definition,
non-expansiveness, finite differences, adjoints) are in tests/contracts/."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
from array_api_compat import array_namespace

import xhsi
from xhsi.backend import to_numpy
from xhsi.errors import ConfigError, ShapeError
from xhsi.schema import Context, from_dict
from xhsi.testing import assert_close, rtol_for
from xhsi.sparsity.wavelets import dwt2, idwt2, mad_sigma, starlet1d, starlet2d

RNG = np.random.default_rng(2024)
BUILTIN = ["l2", "lowrank_pca", "nonnegative", "sobolev", "starlet2d1d_l1", "starlet2d_l1", "wavelet2d_l1"]


def _make(name, xp, dtype_name, shape, weight=1.0, **options):
    cls = xhsi.get("regularizer", name)
    opts = from_dict(cls.Options, options, Context(file="<test>"))
    reg = cls(opts, weight=weight)
    reg.setup(shape, xp, getattr(xp, dtype_name))
    return reg


def _arr(xp, dtype_name, a):
    return xp.asarray(np.asarray(a, dtype=np.float64), dtype=getattr(xp, dtype_name))


def test_every_builtin_is_registered():
    assert set(BUILTIN) <= set(xhsi.available("regularizer"))
    for name in BUILTIN:
        assert hasattr(xhsi.get("regularizer", name), "example"), name


# -------------------------------------------------------------------------------- basic
def test_l2_closed_forms(xp, dtype_name):
    reg = _make("l2", xp, dtype_name, (2, 3, 4), weight=0.5)
    a = RNG.standard_normal((2, 3, 4))
    x = _arr(xp, dtype_name, a)
    assert_close(reg.prox(x, 2.0), _arr(xp, dtype_name, a / 2.0), xp=xp)
    assert_close(reg.gradient(x), _arr(xp, dtype_name, 0.5 * a), xp=xp)
    assert reg.lipschitz() == 0.5
    assert reg.value(x) == pytest.approx(0.25 * np.sum(a * a), rel=rtol_for(dtype_name))


def test_nonnegative_projection_and_value(xp, dtype_name):
    reg = _make("nonnegative", xp, dtype_name, (2, 3, 4), weight=3.0)
    a = RNG.standard_normal((2, 3, 4))
    x = _arr(xp, dtype_name, a)
    p = reg.prox(x, 5.0)
    assert_close(p, _arr(xp, dtype_name, np.maximum(a, 0)), xp=xp)
    assert reg.value(p) == 0.0
    assert reg.value(x) == float("inf")


def _dense_gradient_matrix(ny, nx):
    """Forward differences with a zero last difference (Neumann), as an explicit matrix."""
    def d1(n):
        d = np.zeros((n, n))
        for i in range(n - 1):
            d[i, i], d[i, i + 1] = -1.0, 1.0
        return d
    return np.vstack([np.kron(d1(ny), np.eye(nx)), np.kron(np.eye(ny), d1(nx))])


def test_sobolev_matches_dense_operator(xp, dtype_name):
    ny, nx = 4, 5
    reg = _make("sobolev", xp, dtype_name, (3, ny, nx), weight=0.7)
    a = RNG.standard_normal((3, ny, nx))
    x = _arr(xp, dtype_name, a)
    D = _dense_gradient_matrix(ny, nx)
    flat = a.reshape(3, -1)
    expected_grad = 0.7 * (D.T @ D @ flat.T).T.reshape(3, ny, nx)
    assert_close(reg.gradient(x), _arr(xp, dtype_name, expected_grad), atol=10 * rtol_for(dtype_name), xp=xp)
    expected_value = 0.5 * 0.7 * np.sum((D @ flat.T) ** 2)
    assert reg.value(x) == pytest.approx(expected_value, rel=10 * rtol_for(dtype_name))


def test_sobolev_constant_and_ramp(xp):
    reg = _make("sobolev", xp, "float64", (2, 6, 7))
    const = xp.full((2, 6, 7), 4.0, dtype=xp.float64)
    assert float(xp.max(xp.abs(reg.gradient(const)))) == 0.0
    ramp = xp.asarray(np.broadcast_to(np.arange(6.0)[:, None], (2, 6, 7)).copy())
    assert reg.value(ramp) == pytest.approx(0.5 * 2 * 5 * 7)  # (ny-1)·nx unit steps per map


def test_sobolev_lipschitz_is_tight():
    """8·weight bounds ‖DᵀD‖ and is nearly attained (checkerboard): power iteration."""
    import array_api_compat.numpy as cnp

    reg = _make("sobolev", cnp, "float64", (1, 16, 16), weight=2.0)
    v = RNG.standard_normal((1, 16, 16))
    for _ in range(300):
        v = reg.gradient(v)
        v /= np.linalg.norm(v)
    top = np.linalg.norm(reg.gradient(v))
    assert 0.95 * reg.lipschitz() < top <= reg.lipschitz()


# ------------------------------------------------------------------------------ wavelet
def test_wavelet_prox_matches_its_dual_solved_by_bounded_least_squares():
    """min_u ½‖u−x‖² + t‖D u‖₁ (D = detail rows of the wavelet matrix) has the dual
    min_{‖v‖∞ ≤ t} ‖x − Dᵀv‖², and u* = x − Dᵀv* (Fenchel duality). The dual is a
    box-constrained least-squares problem that scipy's BVLS solves exactly, independently
    of soft-thresholding (an SLSQP version of this test stopped on a line-search status
    under scipy 1.18)."""
    import array_api_compat.numpy as cnp

    shape = (1, 4, 4)
    reg = _make("wavelet2d_l1", cnp, "float64", shape, weight=0.5, wavelet="db2", levels=1, threshold=0.8)
    step = 1.5
    t = step * 0.5 * 0.8
    x = RNG.standard_normal(shape)
    n = x.size
    W = np.stack([dwt2(e.reshape(shape), "db2", 1).ravel() for e in np.eye(n)], axis=1)  # columns = W e_i
    detail = np.ones(shape, bool)
    detail[:, :2, :2] = False
    Dw = W[detail.ravel()]
    res = scipy.optimize.lsq_linear(Dw.T, x.ravel(), bounds=(-t, t), method="bvls", tol=1e-14)
    assert res.success, res.message
    expected = x.ravel() - Dw.T @ res.x
    assert np.any(np.abs(res.x) >= t - 1e-9), "no dual bound is active: the L1 term would not be tested"
    np.testing.assert_allclose(reg.prox(x, step).ravel(), expected, atol=1e-9)


def test_wavelet_prox_limits(xp, dtype_name):
    shape = (2, 8, 8)
    a = RNG.standard_normal(shape)
    x = _arr(xp, dtype_name, a)
    zero = _make("wavelet2d_l1", xp, dtype_name, shape, threshold=0.0, levels=2)
    assert_close(zero.prox(x, 1.0), x, atol=10 * rtol_for(dtype_name), xp=xp)
    huge = _make("wavelet2d_l1", xp, dtype_name, shape, threshold=1e6, levels=2, wavelet="haar")
    c = dwt2(a, "haar", 2)
    c_approx = np.zeros_like(c)
    c_approx[:, :2, :2] = c[:, :2, :2]
    assert_close(huge.prox(x, 1.0), _arr(xp, dtype_name, idwt2(c_approx, "haar", 2)), atol=10 * rtol_for(dtype_name), xp=xp)


def test_wavelet_rejects_indivisible_sizes(xp):
    with pytest.raises(ShapeError, match="divisible"):
        _make("wavelet2d_l1", xp, "float64", (2, 12, 12), levels=3)
    with pytest.raises(ConfigError, match="db2"):
        _make("wavelet2d_l1", xp, "float64", (2, 8, 8), wavelet="db3")


# ------------------------------------------------------------------------------ starlet
def _soft(c, t):
    return np.sign(c) * np.maximum(np.abs(c) - t, 0.0)


def test_starlet2d_explicit_thresholds_formula(xp, dtype_name):
    shape = (3, 16, 16)
    reg = _make("starlet2d_l1", xp, dtype_name, shape, weight=2.0, scales=3, thresholds=[0.3, 0.2, 0.1])
    a = RNG.standard_normal(shape)
    x = _arr(xp, dtype_name, a)
    c = starlet2d(a, 3)
    lam = np.array([0.3, 0.2, 0.1, 0.0])[:, None, None, None]
    expected = np.sum(_soft(c, 0.5 * 2.0 * lam), axis=0)
    assert_close(reg.prox(x, 0.5), _arr(xp, dtype_name, expected), atol=10 * rtol_for(dtype_name), xp=xp)
    assert reg.value(x) == pytest.approx(2.0 * np.sum(lam * np.abs(c)), rel=10 * rtol_for(dtype_name))


def test_starlet2d_limits(xp, dtype_name):
    shape = (2, 16, 16)
    a = RNG.standard_normal(shape)
    x = _arr(xp, dtype_name, a)
    zero = _make("starlet2d_l1", xp, dtype_name, shape, thresholds=[0.0, 0.0, 0.0])
    assert_close(zero.prox(x, 1.0), x, atol=10 * rtol_for(dtype_name), xp=xp)  # exact reconstruction
    huge = _make("starlet2d_l1", xp, dtype_name, shape, thresholds=[1e6, 1e6, 1e6])
    coarse = starlet2d(a, 3)[-1]  # the coarse scale is never thresholded
    assert_close(huge.prox(x, 1.0), _arr(xp, dtype_name, coarse), atol=10 * rtol_for(dtype_name), xp=xp)


@pytest.mark.parametrize("per_slice", [True, False])
def test_starlet2d_mad_thresholds_are_estimated_once_and_frozen(xp, per_slice):
    shape = (3, 16, 16)
    reg = _make("starlet2d_l1", xp, "float64", shape, k=2.5, per_slice=per_slice)
    assert reg.thresholds is None
    a = RNG.standard_normal(shape) * np.array([1.0, 3.0, 10.0])[:, None, None]
    reg.prox(xp.asarray(a), 1.0)
    c = starlet2d(a, 3)
    axes = (2, 3) if per_slice else (1, 2, 3)
    expected = 2.5 * mad_sigma(c, axes, keepdims=True)
    expected[-1] = 0.0
    np.testing.assert_allclose(reg.thresholds, expected, rtol=1e-12)
    reg.prox(xp.asarray(5.0 * a), 1.0)  # a second call does not re-estimate
    np.testing.assert_allclose(reg.thresholds, expected, rtol=1e-12)


def test_starlet2d_does_not_freeze_on_value_or_on_a_zero_iterate(xp):
    """value() before any prox, or a first prox of an all-zero start, must not freeze λ = 0."""
    shape = (2, 16, 16)
    reg = _make("starlet2d_l1", xp, "float64", shape)
    a = RNG.standard_normal(shape)
    assert reg.value(xp.asarray(a)) > 0 and reg.thresholds is None
    zeros = xp.zeros(shape, dtype=xp.float64)
    assert float(xp.max(xp.abs(reg.prox(zeros, 1.0)))) == 0.0 and reg.thresholds is None
    reg.prox(xp.asarray(a), 1.0)
    assert reg.thresholds is not None and np.all(reg.thresholds[:-1] > 0)


def test_starlet2d_noise_sigma_thresholds():
    """σ_j = noise_sigma·‖ψ_j‖ with the filter norms of Starck & Murtagh (2006, ch. 2),
    and agreeing with the MAD estimate on pure white noise."""
    import array_api_compat.numpy as cnp

    from xhsi_builtin.regularizers.starlet import starlet_noise_norms

    np.testing.assert_allclose(starlet_noise_norms(3, 2)[:3], [0.889, 0.200, 0.086], rtol=0.01)
    reg = _make("starlet2d_l1", cnp, "float64", (1, 128, 128), k=1.0, noise_sigma=2.0)
    lam = reg.thresholds.ravel()
    np.testing.assert_allclose(lam[:3], 2.0 * starlet_noise_norms(3, 2)[:3], rtol=1e-12)
    assert lam[3] == 0.0
    noise = 2.0 * RNG.standard_normal((1, 128, 128))
    mad = mad_sigma(starlet2d(noise, 3)[:3], (1, 2, 3))
    np.testing.assert_allclose(mad, lam[:3], rtol=0.1)


def test_starlet2d_reweighting_reduces_the_bias_on_bright_sources(xp):
    shape = (1, 32, 32)
    a = 0.1 * RNG.standard_normal(shape)
    a[0, 16, 16] += 20.0
    plain = _make("starlet2d_l1", xp, "float64", shape, thresholds=[0.5, 0.5, 0.5])
    rew = _make("starlet2d_l1", xp, "float64", shape, thresholds=[0.5, 0.5, 0.5], reweight=3)
    p0, p3 = to_numpy(plain.prox(xp.asarray(a), 1.0)), to_numpy(rew.prox(xp.asarray(a), 1.0))
    assert abs(p3[0, 16, 16] - a[0, 16, 16]) < 0.5 * abs(p0[0, 16, 16] - a[0, 16, 16])
    far = np.s_[0, :8, :8]  # noise-only region: still removed
    assert np.std(p3[far]) < 0.5 * np.std(a[far])


def test_starlet_options_are_validated():
    cls = xhsi.get("regularizer", "starlet2d_l1")
    with pytest.raises(ConfigError, match="one value per detail scale"):
        from_dict(cls.Options, {"scales": 3, "thresholds": [1.0, 2.0]}, Context(file="run.toml"))
    with pytest.raises(ConfigError, match="scales"):
        from_dict(cls.Options, {"scales": 0}, Context(file="run.toml"))
    cls2 = xhsi.get("regularizer", "starlet2d1d_l1")
    with pytest.raises(ConfigError, match="coarse"):
        from_dict(cls2.Options, {"scales_2d": 1, "scales_1d": 1, "thresholds": [[1, 1], [1, 1]]}, Context(file="run.toml"))


def test_starlet2d_shape_change_after_calibration_is_an_error(xp):
    reg = _make("starlet2d_l1", xp, "float64", (2, 8, 8))
    reg.calibrate(xp.asarray(RNG.standard_normal((2, 8, 8))))
    with pytest.raises(ShapeError):
        reg.calibrate(xp.asarray(RNG.standard_normal((3, 8, 8))))


def test_starlet2d1d_explicit_thresholds_and_limits(xp, dtype_name):
    shape = (6, 8, 8)
    J, L = 2, 2
    lam = RNG.uniform(0.05, 0.3, (L + 1, J + 1))
    lam[-1, -1] = 0.0
    reg = _make("starlet2d1d_l1", xp, dtype_name, shape, scales_2d=J, scales_1d=L, thresholds=lam.tolist())
    a = RNG.standard_normal(shape)
    x = _arr(xp, dtype_name, a)
    c = starlet1d(starlet2d(a, J), L, axis=1)
    assert c.shape == (L + 1, J + 1) + shape
    t = 0.7 * lam[:, :, None, None, None]
    expected = np.sum(_soft(c, t), axis=(0, 1))
    assert_close(reg.prox(x, 0.7), _arr(xp, dtype_name, expected), atol=10 * rtol_for(dtype_name), xp=xp)
    huge = _make("starlet2d1d_l1", xp, dtype_name, shape, scales_2d=J, scales_1d=L,
                 thresholds=[[1e6] * (J + 1)] * L + [[1e6] * J + [0.0]])
    assert_close(huge.prox(x, 1.0), _arr(xp, dtype_name, c[-1, -1]), atol=10 * rtol_for(dtype_name), xp=xp)


def test_starlet2d1d_mad_thresholds_per_band_pair(xp):
    shape = (8, 16, 16)
    reg = _make("starlet2d1d_l1", xp, "float64", shape, k=3.0)
    a = RNG.standard_normal(shape)
    reg.prox(xp.asarray(a), 1.0)
    c = starlet1d(starlet2d(a, 3), 4, axis=1)
    expected = 3.0 * mad_sigma(c, (2, 3, 4), keepdims=True)
    expected[-1, -1] = 0.0
    np.testing.assert_allclose(reg.thresholds, expected, rtol=1e-12)


# ------------------------------------------------------------------------------ low rank
@pytest.mark.parametrize("shape,rank", [((6, 5, 4), 3), ((12, 2, 2), 3)])  # Gram n_e×n_e, then npix×npix
def test_lowrank_basis_is_the_leading_svd_subspace(xp, dtype_name, shape, rank):
    n_e = shape[0]
    a = RNG.random((n_e, shape[1] * shape[2])) + 0.1
    reg = _make("lowrank_pca", xp, dtype_name, shape, rank=rank)
    reg.fit(_arr(xp, dtype_name, a.reshape(shape)))
    W = to_numpy(reg.basis).astype(np.float64)
    assert W.shape == (n_e, rank) and reg.basis.dtype == getattr(xp, dtype_name)
    tol = 1e-4 if dtype_name == "float32" else 1e-10
    np.testing.assert_allclose(W.T @ W, np.eye(rank), atol=tol)
    U, s, _ = np.linalg.svd(a, full_matrices=False)
    np.testing.assert_allclose(W @ W.T, U[:, :rank] @ U[:, :rank].T, atol=10 * tol)
    np.testing.assert_allclose(to_numpy(reg.singular_values), s[:rank], rtol=10 * tol)
    assert np.all(W.sum(axis=0) >= 0)  # sign convention
    assert reg.variable_shape == (rank,) + shape[1:]


def test_lowrank_reproduces_an_exactly_low_rank_cube(xp, dtype_name):
    spectra, maps = RNG.random((10, 2)), RNG.random((2, 6, 6))
    cube = _arr(xp, dtype_name, np.einsum("ek,kyx->eyx", spectra, maps))
    reg = _make("lowrank_pca", xp, dtype_name, (10, 6, 6), rank=2)
    reg.fit(cube)
    h = reg.from_cube(cube)
    assert tuple(h.shape) == (2, 6, 6) and array_namespace(h) == xp
    assert_close(reg.to_cube(h), cube, atol=1e-4 if dtype_name == "float32" else 1e-12, xp=xp)
    assert reg.prox(h, 3.0) is h and reg.value(h) == 0.0


def test_lowrank_errors(xp):
    reg = _make("lowrank_pca", xp, "float64", (3, 4, 4), rank=4)
    with pytest.raises(ShapeError, match="rank 4"):
        reg.fit(xp.asarray(RNG.random((3, 4, 4))))
    reg = _make("lowrank_pca", xp, "float64", (3, 4, 4), rank=2)
    with pytest.raises(ShapeError, match="fit"):
        reg.to_cube(xp.zeros((2, 4, 4), dtype=xp.float64))
    reg.fit(xp.asarray(RNG.random((3, 4, 4))))
    with pytest.raises(ShapeError, match="rank maps"):
        reg.to_cube(xp.zeros((3, 4, 4), dtype=xp.float64))


@pytest.mark.parametrize("options, metric", [({}, "slices"), ({"reweight": 2}, "slices"),
                                             ({"per_slice": False}, None), ({"noise_sigma": 0.1}, None)])
def test_starlet2d_penalty_is_the_same_in_per_slice_units(xp, options, metric):
    # Calibrated per slice on the gradient noise, the penalty of d·u (d one scalar per slice)
    # is the penalty of u calibrated on d·noise (the gradient noise in u's units): the problem
    # may iterate on u ([problem] precondition, Regularizer.diagonal_metric). Not so with one
    # MAD over all slices or a fixed noise σ.
    cls = xhsi.get("regularizer", "starlet2d_l1")
    rng = np.random.default_rng(0)
    shape = (3, 16, 16)
    d = xp.asarray(np.array([0.2, 1.0, 7.0]).reshape(3, 1, 1))
    noise, u = (xp.asarray(rng.standard_normal(shape)) for _ in range(2))
    on_x, on_u = (cls(from_dict(cls.Options, options, Context("t")), weight=1.5) for _ in range(2))
    assert on_x.diagonal_metric == metric
    for reg, n in ((on_x, noise), (on_u, d * noise)):
        reg.setup(shape, xp, u.dtype)
        reg.calibrate_noise(n)
    same = on_u.value(u) == pytest.approx(on_x.value(d * u), rel=rtol_for(u.dtype))
    assert same == (metric == "slices")
