"""Backend selection: namespaces, dtypes, transfers, FFTs, seeded random numbers."""
from __future__ import annotations

import numpy as np
import pytest

from xhsi.backend import Backend, fft_namespace, to_numpy
from xhsi.errors import XhsiError
from xhsi.testing import assert_close


def test_dtype_and_namespace(backend):
    x = backend.asarray([1.0, 2.0, 3.0])
    assert x.dtype == backend.dtype
    assert backend.xp.sum(x).dtype == backend.dtype
    assert to_numpy(x).dtype == np.dtype(backend.dtype_name)
    assert_close(x, np.array([1.0, 2.0, 3.0]), xp=backend.xp, dtype=backend.dtype)


def test_asarray_from_numpy_and_from_backend(backend):
    a = backend.asarray(np.arange(6.0).reshape(2, 3))
    b = backend.asarray(a)
    assert tuple(b.shape) == (2, 3) and b.dtype == backend.dtype


def test_fft_round_trip_matches_numpy(backend):
    rng = np.random.default_rng(1)
    data = rng.standard_normal((3, 8, 10))
    x = backend.asarray(data)
    fft = backend.fft
    spec = fft.rfftn(x, s=(8, 10), axes=(1, 2))
    assert_close(fft.irfftn(spec, s=(8, 10), axes=(1, 2)), x, atol=1e-5)
    np.testing.assert_allclose(to_numpy(spec), np.fft.rfftn(data, axes=(1, 2)), rtol=1e-4, atol=1e-4)


def test_numpy_fft_uses_scipy_with_workers():
    import array_api_compat.numpy as xp

    fft = fft_namespace(xp)
    assert fft.module.__name__ == "scipy.fft" and fft.workers >= 1
    assert fft.next_fast_len(29 + 45 - 1) >= 73


def test_seeded_poisson_is_reproducible_across_backends(backend_name):
    lam = np.full((4, 5), 3.0)
    a = to_numpy(Backend(backend_name, "float64", seed=3).poisson(lam))
    b = to_numpy(Backend("numpy", "float64", seed=3).poisson(lam))
    np.testing.assert_array_equal(a, b)
    assert (a >= 0).all() and a.sum() > 0


def test_cupy_without_gpu_is_a_clear_error():
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            pytest.skip("a GPU is present")
    except Exception:
        pass
    with pytest.raises(XhsiError, match=r"needs cupy and a CUDA GPU.*xhsi\[gpu\].*numpy"):
        Backend("cupy")


def test_unknown_backend_and_dtype():
    with pytest.raises(XhsiError, match="unknown backend"):
        Backend("torch")
    with pytest.raises(XhsiError, match="float32 or float64"):
        Backend("numpy", "float16")
