"""The array backend of a run: namespace, dtype, device transfer, FFTs and random numbers.

``Backend("numpy" | "cupy" | "array_api_strict", "float32" | "float64")``. cupy is imported
only when asked for. Core code takes its namespace from its inputs
(``array_namespace(x)``) and its FFTs from ``fft_namespace(xp)``; only code that creates
arrays from scratch (problems, simulations) needs the Backend itself.

Public functions that take a namespace argument (``SpectralModel.setup(edges, xp, dtype)``,
``Regularizer.setup``, ``LinearOperator.norm(xp=...)``, ...) accept plain ``numpy`` or
``cupy`` as well as the array-API namespaces: they pass it through
:func:`compat_namespace`, which gives the namespace ``array_namespace`` returns for that
library's arrays, so results compare equal to ``array_namespace(result)``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from array_api_compat import array_namespace, is_cupy_namespace, is_numpy_namespace

from .errors import XhsiError

__all__ = ["Backend", "array_namespace", "compat_namespace", "float_dtype", "dtype_name", "fft_namespace", "to_numpy",
           "is_numpy_namespace", "native_numpy"]


def _workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass(frozen=True)
class FFT:
    """Real and complex FFTs of one array library. On CPU they are scipy.fft's, using every
    core the process may run on; on GPU cupyx.scipy.fft's; elsewhere the namespace's own."""

    module: Any
    workers: int | None = None

    def _kw(self):
        return {"workers": self.workers} if self.workers else {}

    def rfftn(self, x, s=None, axes=None):
        return self.module.rfftn(x, s=s, axes=axes, **self._kw())

    def irfftn(self, x, s=None, axes=None):
        return self.module.irfftn(x, s=s, axes=axes, **self._kw())

    def rfft(self, x, n=None, axis=-1):
        return self.module.rfft(x, n=n, axis=axis, **self._kw())

    def irfft(self, x, n=None, axis=-1):
        return self.module.irfft(x, n=n, axis=axis, **self._kw())

    def fftn(self, x, s=None, axes=None):
        return self.module.fftn(x, s=s, axes=axes, **self._kw())

    def ifftn(self, x, s=None, axes=None):
        return self.module.ifftn(x, s=s, axes=axes, **self._kw())

    @staticmethod
    def next_fast_len(n: int, real: bool = True) -> int:
        import scipy.fft

        return int(scipy.fft.next_fast_len(int(n), real=real))


def fft_namespace(xp) -> FFT:
    """The FFT functions that go with array namespace ``xp``."""
    if is_numpy_namespace(xp):
        import scipy.fft

        return FFT(scipy.fft, workers=_workers())
    if is_cupy_namespace(xp):
        import cupyx.scipy.fft

        return FFT(cupyx.scipy.fft)
    return FFT(xp.fft)


def native_numpy(xp):
    """The numpy module when ``xp`` is numpy, for in-place work with ``out=`` (the hot loops'
    scratch arrays), else None: array_api_strict has no ``out=`` and cupy takes the generic
    array-API expressions."""
    return np if is_numpy_namespace(xp) else None


def to_numpy(x) -> np.ndarray:
    """Copy any backend array (numpy, cupy, array_api_strict, ...) to a numpy array."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "get") and type(x).__module__.startswith("cupy"):
        return x.get()
    try:
        return np.from_dlpack(x)
    except (TypeError, AttributeError, RuntimeError, BufferError):
        return np.asarray(x)


def compat_namespace(xp):
    """The array-API namespace for ``xp``, as ``array_namespace`` returns it for that library's
    arrays: plain ``numpy`` → ``array_api_compat.numpy``, plain ``cupy`` →
    ``array_api_compat.cupy``; a name ("numpy", "cupy", "array_api_strict") → that backend's
    namespace; array-API namespaces (``array_api_strict``, the ``array_api_compat`` wrappers)
    and None unchanged. Entry points that take a namespace call this once, so a library user
    may pass ``numpy`` itself.

    >>> import numpy
    >>> compat_namespace(numpy).__name__
    'array_api_compat.numpy'
    """
    if xp is None:
        return None
    if isinstance(xp, str):
        return _load_namespace(xp)
    if is_numpy_namespace(xp):
        import array_api_compat.numpy as compat

        return compat
    if is_cupy_namespace(xp):
        import array_api_compat.cupy as compat

        return compat
    return xp


def float_dtype(xp, dtype=None):
    """The float dtype object of namespace ``xp`` (as :func:`compat_namespace` gives it) for
    ``dtype``: None → float64; a name ("float32", "float64"), a numpy dtype or scalar type →
    the namespace's own dtype of that name, so that ``array.dtype == float_dtype(xp, ...)``
    holds for arrays of ``xp``. Raises XhsiError for anything but float32 / float64."""
    if dtype is None:
        return xp.float64
    name = dtype_name(dtype)
    if name not in ("float32", "float64"):
        raise XhsiError(f"dtype must be float32 or float64, got `{dtype}`.")
    return getattr(xp, name)


def dtype_name(dtype) -> str:
    """The plain name ("float32", "int64", ...) of a dtype of any library, a numpy scalar type
    or a name: for messages and for :func:`float_dtype`."""
    if isinstance(dtype, str):
        return dtype
    name = getattr(dtype, "name", None) or getattr(dtype, "__name__", None)
    return str(name) if name is not None else str(dtype).rsplit(".", 1)[-1]


@lru_cache(maxsize=None)
def _load_namespace(name: str):
    if name == "numpy":
        import array_api_compat.numpy as xp

        return xp
    if name == "array_api_strict":
        try:
            import array_api_strict as xp
        except ImportError:
            raise XhsiError("backend = \"array_api_strict\" needs the array-api-strict package: "
                            "pip install 'xhsi[test]'.") from None
        return xp
    if name == "cupy":
        try:
            import cupy
            n_gpu = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # ImportError, CUDARuntimeError, missing driver...
            raise XhsiError(
                f"backend = \"cupy\" needs cupy and a CUDA GPU, which this machine does not offer "
                f"({type(exc).__name__}: {exc}). Install it with pip install 'xhsi[gpu]' on a GPU "
                "machine, or set [run] backend = \"numpy\"."
            ) from None
        if n_gpu < 1:
            raise XhsiError("backend = \"cupy\" found no CUDA GPU; set [run] backend = \"numpy\".")
        import array_api_compat.cupy as xp

        return xp
    raise XhsiError(f"unknown backend `{name}`; choose numpy or cupy.")


class Backend:
    """One run's array library and float dtype.

    >>> be = Backend("numpy", "float32")
    >>> be.asarray([1, 2]).dtype
    dtype('float32')
    """

    def __init__(self, name: str = "numpy", dtype: str = "float64", seed: int | None = 0):
        if dtype not in ("float32", "float64"):
            raise XhsiError(f"dtype must be float32 or float64, got `{dtype}`.")
        self.name = name
        self.xp = _load_namespace(name)
        self.dtype = getattr(self.xp, dtype)
        self.dtype_name = dtype
        self.fft = fft_namespace(self.xp)
        self.rng = np.random.default_rng(seed)

    def __repr__(self) -> str:
        return f"Backend({self.name!r}, {self.dtype_name!r})"

    @property
    def eps(self) -> float:
        return float(np.finfo(self.dtype_name).eps)

    def asarray(self, x, dtype=None):
        """Move ``x`` (numpy, list, scalar or a backend array) to the backend, as the run's
        float dtype unless ``dtype`` says otherwise."""
        dtype = self.dtype if dtype is None else dtype
        if self.name in ("numpy", "cupy"):
            return self.xp.asarray(x, dtype=dtype)
        # array_api_strict takes only its own arrays and Python values: go through numpy.
        host = to_numpy(x) if hasattr(x, "shape") else np.asarray(x)
        return self.xp.asarray(host, dtype=dtype)

    def to_numpy(self, x) -> np.ndarray:
        return to_numpy(x)

    def zeros(self, shape, dtype=None):
        return self.xp.zeros(tuple(shape), dtype=self.dtype if dtype is None else dtype)

    def poisson(self, lam):
        """Poisson draws with mean ``lam`` (drawn on the host with the run's seeded
        generator, so every backend gives the same counts), returned on the backend."""
        return self.asarray(self.rng.poisson(np.clip(to_numpy(lam), 0, None)).astype(np.float64))

    def normal(self, shape):
        return self.asarray(self.rng.standard_normal(tuple(shape)))

    def sync(self) -> None:
        """Wait for queued device work (for timing); a no-op on CPU."""
        if self.name == "cupy":
            import cupy

            cupy.cuda.get_current_stream().synchronize()
