"""Peak resident memory of a fusion run at the published toy size (bench/memory.py, one
fresh subprocess per set-up); the timing is the whole subprocess (start-up, prepare, build,
three iterations through ``solver.run``) and is not the point — the memory figures go to
the results file. The low-rank set-ups act on the rank maps as shipped (the problem folds
the operators onto the spectral basis), so ``--collapse`` is no longer a separate case."""
from __future__ import annotations

import pytest

from benchlib import record
from memory import run_in_subprocess

CASES = [("none", False), ("lowrank_sobolev", False), ("lowrank_starlet2d", False), ("starlet2d1d", False)]


@pytest.mark.parametrize("setup, collapse", CASES, ids=[f"{s}{'+collapse' if c else ''}" for s, c in CASES])
def test_peak_memory(benchmark, setup, collapse):
    result = benchmark.pedantic(run_in_subprocess, args=(setup, 3, collapse), rounds=1, iterations=1)
    benchmark.group = "memory (subprocess wall time)"
    benchmark.extra_info.update(result)
    record(f"memory/{setup}{'+collapse' if collapse else ''}", result)
    assert result["peak_mib"] >= result["peak_run_mib"] > result["rss_imports_mib"]
    if setup.startswith("lowrank"):  # "never hold more than a few full cubes" (issue 8, target 3)
        assert result["full_cubes_solve"] < 1.0 and result["full_cubes_build"] < 10.0
