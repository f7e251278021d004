"""Shared fixtures: one ``xp`` fixture runs backend-generic tests on numpy and
array_api_strict (the stand-in for GPU portability), and on cupy when a GPU is present."""
from __future__ import annotations

from pathlib import Path

import pytest

from xhsi.backend import Backend

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def unwrapped(text: str) -> str:
    """``text`` with every run of whitespace made one space: user messages wrap at 100
    columns, so a phrase may be split across lines (e.g. by a long tmp path)."""
    return " ".join(text.split())
RESPONSES = SHARED / "research" / "responses"


def _gpu_available() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


BACKENDS = [
    "numpy",
    "array_api_strict",
    pytest.param("cupy", marks=pytest.mark.skipif(not _gpu_available(), reason="no CUDA GPU / cupy")),
]


@pytest.fixture(params=BACKENDS)
def backend_name(request) -> str:
    return request.param


@pytest.fixture(params=["float32", "float64"])
def dtype_name(request) -> str:
    return request.param


@pytest.fixture
def backend(backend_name, dtype_name) -> Backend:
    """A Backend for every (library, dtype) pair."""
    return Backend(backend_name, dtype_name)


@pytest.fixture
def xp(backend_name):
    """The array namespace of each backend under test."""
    return Backend(backend_name).xp


@pytest.fixture
def responses_dir() -> Path:
    """../shared/research/responses, or skip when the shared folder is absent."""
    if not RESPONSES.is_dir():
        pytest.skip("../shared/research/responses is not present")
    return RESPONSES
