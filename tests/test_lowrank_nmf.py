"""The non-negative low-rank basis (``lowrank_pca`` with ``basis = "nmf"``): the
factorisation, the parametrisation's maps, and the fusion it gives (cube ≥ 0)."""
from __future__ import annotations

import numpy as np
import pytest

from xhsi.backend import to_numpy
from xhsi.operators.base import vdot
from xhsi.testing import assert_close, rtol_for
from xhsi_builtin.regularizers.lowrank import LowRankPCA
from xhsi_builtin.regularizers.nmf import nmf, nndsvd


def _nonnegative_low_rank(rng, n=30, p=64, k=3):
    return rng.random((n, k)) @ rng.random((k, p))


def test_nmf_factors_are_nonnegative_and_fit_an_exactly_low_rank_matrix(xp):
    m = xp.asarray(_nonnegative_low_rank(np.random.default_rng(0)))
    w0, h0 = nndsvd(m, 3)
    w, h = nmf(m, 3, n_iter=300)
    for a in (w0, h0, w, h):
        assert float(xp.min(a)) >= 0.0
    def err(a, b):
        return float(xp.linalg.vector_norm(m - a @ b)) / float(xp.linalg.vector_norm(m))

    assert err(w, h) < 0.012 and err(w0, h0) > 0.1  # the sweeps fit it, the start does not
    assert_close(xp.linalg.vector_norm(w, axis=0), xp.ones(3, dtype=w.dtype), rtol=1e-12)


def test_nmf_basis_parametrisation_maps_and_constraint(xp, dtype_name):
    dtype = getattr(xp, dtype_name)
    rng = np.random.default_rng(1)
    cube = xp.asarray(_nonnegative_low_rank(rng, 12, 36, 2).reshape(12, 6, 6), dtype=dtype)
    reg = LowRankPCA(LowRankPCA.Options(rank=2, basis="nmf"))
    reg.setup((12, 6, 6), xp, dtype)
    reg.fit(cube)
    assert reg.nonnegative and not LowRankPCA(LowRankPCA.Options(rank=2)).nonnegative
    assert float(xp.min(reg.basis)) >= 0.0 and reg.basis.dtype == dtype
    h = xp.asarray(rng.random((2, 6, 6)), dtype=dtype)
    z = xp.asarray(rng.standard_normal((12, 6, 6)), dtype=dtype)
    # adjoint (dot) test of W and Wᵀ with a non-orthonormal basis
    lhs, rhs = vdot(reg.to_cube(h), z), vdot(h, reg.to_cube_adjoint(z))
    assert abs(lhs - rhs) <= rtol_for(dtype_name) * 10 * max(abs(lhs), 1.0)
    # from_cube is the least-squares inverse on the cone: it gives H back from W·H
    assert_close(reg.from_cube(reg.to_cube(h)), h, rtol=rtol_for(dtype_name) * 100)
    assert float(xp.min(reg.from_cube(-reg.to_cube(h)))) >= 0.0


def test_nmf_basis_refuses_a_negative_initial_cube():
    from xhsi.errors import DataError

    reg = LowRankPCA(LowRankPCA.Options(rank=2, basis="nmf"))
    cube = -np.ones((4, 3, 3))
    reg.setup(cube.shape, np, np.float64)
    with pytest.raises(DataError, match="non-negative initial cube"):
        reg.fit(cube)


def test_nmf_lowrank_fusion_is_nonnegative_and_beats_both_baselines(tmp_path):
    # With principal spectra W·H < 0 in faint voxels stalls the step (docs/fusion.md); with
    # the non-negative basis the rank maps are projected on H ≥ 0 and the fusion beats both
    # data-only baselines in PSNR, voxel error and spectral angle over the bright pixels.
    from test_runner import tiny
    from xhsi.config import load_config
    from xhsi.runner import run

    extra = ('\n[[regularizers]]\nname = "lowrank_pca"\noptions = { rank = 3, basis = "nmf" }\n'
             '\n[[regularizers]]\nname = "sobolev"\nweight = 0.1\n')
    result = run(load_config(tiny(tmp_path, max_iter=150, extra=extra)), quiet=True)
    assert np.min(result.arrays["rank_maps"]) >= 0.0 and np.min(result.arrays["cube"]) >= 0.0
    m = result.metrics
    for name, base in m["baselines"].items():
        assert m["result"]["psnr_db"] > base["psnr_db"], name
        assert m["result"]["rel_error_voxel"] < base["rel_error_voxel"], name
        assert m["result"]["asam_bright_deg"] < base["asam_bright_deg"], name
    assert to_numpy(result.arrays["basis"]).min() >= 0.0
