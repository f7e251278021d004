"""pytest fixtures and the end-of-session results file of the benchmark suite; the helpers
live in ``benchlib.py`` (see its docstring for the problem set-up)."""
from __future__ import annotations

import json
import os
import platform
import time

import numpy as np
import pytest

from benchlib import RESULTS, _SESSION, fusion_config, gpu_name, record


# -- one process ------------------------------------------------------------------------------
@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """Benchmarks run in one process: the project's ``addopts`` ask pytest-xdist for a worker
    per core (the unit suite), which would time each benchmark beside others and makes
    pytest-benchmark switch itself off. (Called for this conftest when ``bench/`` is on the
    command line, before xdist reads ``-n``.)"""
    if getattr(config.option, "numprocesses", None):
        config.option.numprocesses = 0


# -- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def published():
    """(config without regularisers, Prepared) at the published toy size: compiled forward
    operators and simulated counts, built once per session (~10 s)."""
    from xhsi import runner

    cfg = fusion_config([])
    t0 = time.perf_counter()
    prep = runner.prepare(cfg)
    record("prepare", {"wall_s": time.perf_counter() - t0,
                       "observations": {o.name: {"counts_shape": list(o.counts.shape),
                                                 "forward": repr(o.forward)} for o in prep.observations}})
    return cfg, prep


def pytest_sessionfinish(session, exitstatus):
    if not _SESSION:
        return
    previous = {}
    if RESULTS.is_file():
        try:
            previous = json.loads(RESULTS.read_text())
        except (OSError, ValueError):
            previous = {}
    results = previous.get("results", {})
    results.update(_SESSION)
    meta = {"machine": platform.machine(), "cpus": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "numpy": np.__version__, "load_average_at_end": list(os.getloadavg()),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "gpu": gpu_name()}
    try:
        import scipy

        meta["scipy"] = scipy.__version__
    except ImportError:  # pragma: no cover
        pass
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps({"meta": meta, "results": results}, indent=1, sort_keys=True))
    tmp.replace(RESULTS)
