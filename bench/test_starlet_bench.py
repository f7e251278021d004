"""The 2D-1D starlet frame at the published toy size (2400 × 45 × 45, J = 2, L = 3: the shipped
``configs/fusion_xmm_xrism.toml``), numpy, float32 and float64: Φ and Φᵀ streamed
(``xhsi.operators.Starlet2d1d``) against the composition of the two materialised starlet
operators they replaced (``StarletAnalysis(.., L, axis=-3) @ StarletAnalysis(.., J)``), the
streamed approximate prox (``xhsi.sparsity.frame2d1d.shrink``) for scale, and one dual iteration of
the exact prox (``xhsi.sparsity.analysis_prox``: one Φ, one Φᵀ and the in-place updates), all in the
same run so that the ratios compare like with like."""
from __future__ import annotations

import numpy as np
import pytest

from benchlib import median_s, record

SHAPE, J, L = (2400, 45, 45), 2, 3
DTYPES = ["float32", "float64"]


def _frames():
    from xhsi.operators import Starlet2d1d, StarletAnalysis

    spatial = StarletAnalysis(SHAPE, J)
    composed = StarletAnalysis(spatial.shape_out, L, axis=len(SHAPE) - 2) @ spatial
    return {"streamed": Starlet2d1d(SHAPE, J, L), "composed": composed}


def _cube(dtype):
    return np.random.default_rng(0).random(SHAPE).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("direction", ["apply", "adjoint"])
@pytest.mark.parametrize("impl", ["streamed", "composed"])
def test_frame(benchmark, impl, direction, dtype):
    frame = _frames()[impl]
    x = _cube(dtype)
    arg = x if direction == "apply" else frame.apply(x)
    fn = getattr(frame, direction)
    benchmark.group = f"2D-1D frame {direction}, 2400x45x45 {dtype} numpy"
    benchmark.pedantic(fn, args=(arg,), rounds=3, warmup_rounds=1)
    record(f"starlet2d1d/{direction}/{impl}/{dtype}", {"s": median_s(benchmark)})


@pytest.mark.parametrize("dtype", DTYPES)
def test_approximate_prox(benchmark, dtype):
    from xhsi.sparsity.frame2d1d import shrink

    x = _cube(dtype)
    tau = np.full((L + 1, J + 1), 0.05)
    tau[-1, -1] = 0.0
    benchmark.group = f"2D-1D prox, 2400x45x45 {dtype} numpy"
    benchmark.pedantic(shrink, args=(x, J, L, tau), rounds=3, warmup_rounds=1)
    record(f"starlet2d1d/approximate_prox/{dtype}", {"s": median_s(benchmark)})


@pytest.mark.parametrize("dtype", DTYPES)
def test_exact_prox_dual_iteration(benchmark, dtype):
    """One more dual iteration: the difference of max_iter = 3 and max_iter = 2 (tol = 0,
    a warm start), so that the set-up (Φz for the stopping target, the first pair) cancels."""
    import time

    from xhsi.sparsity.analysis_prox import analysis_l1_prox_nonnegative

    frame = _frames()["streamed"]
    z = _cube(dtype)
    tau = np.full((L + 1, J + 1, 1, 1, 1), 0.05, dtype=dtype)
    tau[-1, -1] = 0.0
    _, dual, _ = analysis_l1_prox_nonnegative(z, frame.apply, frame.adjoint, tau, 10.0, max_iter=2, tol=0.0)

    def run(n):
        t0 = time.perf_counter()
        analysis_l1_prox_nonnegative(z, frame.apply, frame.adjoint, tau, 10.0, dual=dual, max_iter=n, tol=0.0)
        return time.perf_counter() - t0

    two = sorted(run(2) for _ in range(3))[1]
    benchmark.group = f"2D-1D prox, 2400x45x45 {dtype} numpy"
    benchmark.pedantic(run, args=(3,), rounds=3, warmup_rounds=0)
    record(f"starlet2d1d/exact_prox_dual_iteration/{dtype}", {"s": median_s(benchmark) - two})
