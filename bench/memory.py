"""Peak resident memory of a fusion run at the published toy size, measured in a fresh
subprocess (so nothing else of the benchmark session counts).

    .venv/bin/python bench/memory.py --setup none --iterations 3 [--collapse]

prints one JSON object. The child reads /proc/self/status: VmRSS after the imports (the
interpreter, numpy, scipy, xhsi), after ``runner.prepare`` (compiled operators, simulated
counts, the true cube), then resets the peak (``echo 5 > /proc/self/clear_refs``, Linux ≥ 4.0)
so that VmHWM covers exactly the fusion run: ``problem.build()``, ``--iterations`` solver
steps and the output cube. Without /proc (not Linux) it falls back to
``resource.getrusage`` (peak of the whole process, prepare included).

Reported, in MiB: ``rss_imports``, ``rss_prepared``, ``peak_run`` (VmHWM of the run; the
peak is reset again after ``build()`` so that the build and the iterations are also
reported apart: ``peak_build``, ``rss_built``, ``peak_iterations``,
``full_cubes_during_iterations`` = (peak_iterations − rss_built) / one sky cube),
``run_above_prepared = peak_run − rss_prepared`` (what the solve adds), the bytes of the
inputs (counts of both observations) and of the output cube, and ``full_cubes_added`` =
run_above_prepared / bytes of one sky cube. ``ratio_to_io`` = (peak_run − rss_imports) /
(inputs + output) is the issue's criterion (target < 3); it counts everything the run holds
above the libraries, compiled operators included.
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MIB = 1024.0 ** 2


def _status_kib(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_kib() -> float:
    hwm = _status_kib("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


def measure(setup: str, iterations: int, collapse: bool) -> dict:
    sys.path.insert(0, str(HERE))
    import numpy as np

    import xhsi  # noqa: F401  (imports counted in the baseline)
    from benchlib import SETUPS, build_fista, fusion_config
    from xhsi import runner
    from xhsi.backend import to_numpy

    gc.collect()
    rss_imports = _status_kib("VmRSS") or 0.0
    cfg = fusion_config(SETUPS[setup])
    prep = runner.prepare(cfg)
    gc.collect()
    rss_prepared = _status_kib("VmRSS") or 0.0
    reset = _reset_peak()

    solver, problem, _ = build_fista(prep, cfg, setup, collapse=collapse)
    peak_build = _peak_kib()
    gc.collect()
    rss_built = _status_kib("VmRSS") or 0.0
    _reset_peak()
    for _ in range(iterations):
        solver.step()
    cube = to_numpy(problem_cube(problem, solver))
    peak = max(_peak_kib(), peak_build)
    peak_iterations = _peak_kib()

    inputs = sum(int(np.asarray(to_numpy(o.counts)).nbytes) for o in prep.observations)
    inputs += sum(int(np.asarray(to_numpy(o.background)).nbytes) for o in prep.observations if o.background is not None)
    output = int(cube.nbytes)
    return {
        "setup": setup, "collapse": collapse, "iterations": iterations, "peak_reset": reset,
        "rss_imports_mib": rss_imports / 1024, "rss_prepared_mib": rss_prepared / 1024, "peak_run_mib": peak / 1024,
        "run_above_prepared_mib": (peak - rss_prepared) / 1024,
        "peak_build_mib": peak_build / 1024, "rss_built_mib": rss_built / 1024,
        "peak_iterations_mib": peak_iterations / 1024,
        "iterations_above_built_mib": (peak_iterations - rss_built) / 1024,
        "full_cubes_during_iterations": (peak_iterations - rss_built) * 1024 / output,
        "inputs_mib": inputs / MIB, "output_mib": output / MIB,
        "full_cubes_added": (peak - rss_prepared) * 1024 / output,
        "ratio_to_io": (peak - rss_imports) * 1024 / (inputs + output),
    }


def problem_cube(problem, solver):
    """The output cube (physical units) of the current iterate, as the runner writes it."""
    from xhsi.operators import Identity, Scaled
    from xhsi.problems.imaging import ParametrisedCube

    shape = problem.cube_shape
    if problem.parametrisation is not None:
        op = Scaled(Identity(shape), problem.scale) @ ParametrisedCube(problem.parametrisation, shape)
    else:
        op = Scaled(Identity(shape), problem.scale)
    return op.apply(solver.x)


def run_in_subprocess(setup: str, iterations: int = 2, collapse: bool = False, timeout: float = 600) -> dict:
    """``measure`` in a fresh interpreter; returns its JSON result."""
    import subprocess

    cmd = [sys.executable, str(Path(__file__).resolve()), "--setup", setup, "--iterations", str(iterations)]
    if collapse:
        cmd.append("--collapse")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", default="none")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--collapse", action="store_true", help="low-rank set-ups: operators on the rank maps")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.setup, args.iterations, args.collapse)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
