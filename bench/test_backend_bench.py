"""CPU (numpy) against GPU (cupy): one FISTA iteration (``solver.step()`` of the default
solver) of each regulariser set-up at the published toy size, float32, both backends timed
in the same session so that their ratio is measured in one run.

The problem is the same on both backends: ``runner.prepare`` simulates the counts on the host
(float32 numpy) and compiles each backend's operators from the same instrument files, and
the starts are computed on the host (``problems/starts.py``). The cupy cases need a CUDA GPU
and skip without one. Rows: ``backend/<set-up>/<backend>`` in results/latest.json;
``bench/report.py`` prints the table."""
from __future__ import annotations

import os

import pytest

from benchlib import SETUPS, backends, build_fista, fusion_config, median_s, record

BACKENDS = backends()
ROUNDS = {"numpy": 5, "cupy": 20}


@pytest.fixture(scope="session")
def published_cupy():
    """(config, Prepared) of the published toy size on cupy (the counts as on numpy)."""
    from xhsi import runner

    cfg = fusion_config([], backend="cupy")
    return cfg, runner.prepare(cfg)


def _sync(backend: str):
    if backend == "numpy":
        return lambda: None
    import cupy

    return cupy.cuda.get_current_stream().synchronize


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("setup", list(SETUPS))
def test_iteration_on_backend(benchmark, request, setup, backend):
    _, prep = request.getfixturevalue("published" if backend == "numpy" else "published_cupy")
    cfg = fusion_config(SETUPS[setup], backend=backend)
    solver, _, _ = build_fista(prep, cfg, setup)
    sync = _sync(backend)
    solver.step()  # first iteration: thresholds, caches, norm estimates, kernel compilation
    sync()

    def step():
        solver.step()
        sync()

    benchmark.group = f"fista iteration {setup}: numpy vs cupy"
    benchmark.pedantic(step, rounds=ROUNDS[backend], warmup_rounds=1)
    record(f"backend/{setup}/{backend}", {
        "setup": setup, "backend": backend, "ms_per_iteration": 1e3 * median_s(benchmark),
        "cpus": len(os.sched_getaffinity(0)), "dtype": str(solver.state.x.dtype),
        "variable_shape": list(solver.state.x.shape),
    })
    assert str(solver.state.x.dtype) == "float32"
