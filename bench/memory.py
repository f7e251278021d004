"""Peak resident memory of a fusion run at the published toy size, measured in a fresh
subprocess (so nothing else of the benchmark session counts).

    .venv/bin/python bench/memory.py --setup none --iterations 3 [--collapse]

prints one JSON object. The child reads /proc/self/status (VmRSS: resident now; VmHWM:
the peak, reset with ``echo 5 > /proc/self/clear_refs``, Linux ≥ 4.0) at each phase:

* ``rss_imports``: after importing the libraries a run uses (numpy, scipy.fft,
  scipy.sparse, xhsi and its plug-ins), before any data exists;
* ``prepare`` (``runner.prepare``: compiled operators with their precomputed transforms,
  the simulated truth and counts): ``peak_prepare``, then ``rss_prepared``; peak reset;
* ``build`` (``problem.build()`` — initial cube, low-rank fit, noise calibration of the
  regularisers — and ``solver.setup``): ``peak_build``, then ``rss_built``; peak reset;
* ``solve``: ``solver.run()`` for ``--iterations`` iterations (the real loop: it keeps the
  last reported state for its rollback, reports every 2 iterations so that this state is
  an older one, as in a long run) and the output cube: ``peak_solve``.

Without /proc (not Linux) it falls back to ``resource.getrusage`` (one peak for the whole
process). Reported, in MiB and as ratios to ``io`` = bytes of the inputs (counts and
backgrounds of every observation) + the output cube:

* (a) ``peak_mib`` = the highest VmHWM of all phases (absolute, libraries included) and
  ``ratio_abs`` = peak / io;
* (b) ``ratio_to_io`` = (peak − rss_imports) / io: everything the run holds above the
  libraries (operators, simulation, solver);
* (c) ``ratio_solve_to_io`` = (max(peak_build, peak_solve) − rss_prepared) / io: what the
  fusion run itself (build + iterations + output) adds over the prepared inputs and
  operators;

plus ``full_cubes_build`` = (peak_build − rss_prepared) / one sky cube,
``full_cubes_held`` = (rss_built − rss_prepared) / cube and
``full_cubes_solve`` = (peak_solve − rss_built) / cube (the iterations' own peak).
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
    import scipy.fft  # noqa: F401  (the libraries a run uses are part of the baseline)
    import scipy.sparse  # noqa: F401

    import xhsi  # noqa: F401
    from benchlib import SETUPS, build_fista, fusion_config
    from xhsi import plugins, runner
    from xhsi.backend import to_numpy

    plugins.available("regularizer")  # load the plug-ins before the baseline
    gc.collect()
    rss_imports = _status_kib("VmRSS") or 0.0
    cfg = fusion_config(SETUPS[setup])
    prep = runner.prepare(cfg)
    gc.collect()
    peak_prepare = _peak_kib()
    rss_prepared = _status_kib("VmRSS") or 0.0
    reset = _reset_peak()

    solver, problem, _ = build_fista(prep, cfg, setup, collapse=collapse)
    peak_build = _peak_kib()
    gc.collect()
    rss_built = _status_kib("VmRSS") or 0.0
    _reset_peak()
    solver.max_iter, solver.tol, solver.report_every = iterations, 0.0, 2
    solver.run()
    cube = to_numpy(problem_cube(problem, solver))
    peak_solve = _peak_kib()

    inputs = sum(int(np.asarray(to_numpy(o.counts)).nbytes) for o in prep.observations)
    inputs += sum(int(np.asarray(to_numpy(o.background)).nbytes) for o in prep.observations if o.background is not None)
    output = int(cube.nbytes)
    io = inputs + output
    peak = max(peak_prepare, peak_build, peak_solve)
    peak_run = max(peak_build, peak_solve)
    return {
        "setup": setup, "collapse": collapse, "iterations": iterations, "peak_reset": reset,
        "rss_imports_mib": rss_imports / 1024, "peak_prepare_mib": peak_prepare / 1024,
        "rss_prepared_mib": rss_prepared / 1024, "peak_build_mib": peak_build / 1024,
        "rss_built_mib": rss_built / 1024, "peak_solve_mib": peak_solve / 1024,
        "peak_mib": peak / 1024, "peak_run_mib": peak_run / 1024,
        "inputs_mib": inputs / MIB, "output_mib": output / MIB, "io_mib": io / MIB,
        "ratio_abs": peak * 1024 / io,
        "ratio_to_io": (peak - rss_imports) * 1024 / io,
        "ratio_solve_to_io": (peak_run - rss_prepared) * 1024 / io,
        "full_cubes_build": (peak_build - rss_prepared) * 1024 / output,
        "full_cubes_held": (rss_built - rss_prepared) * 1024 / output,
        "full_cubes_solve": (peak_solve - rss_built) * 1024 / output,
        # the names bench/report.py reads (earlier versions of this file)
        "full_cubes_added": (peak_run - rss_prepared) * 1024 / output,
        "full_cubes_during_iterations": (peak_solve - rss_built) * 1024 / output,
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


def run_in_subprocess(setup: str, iterations: int = 3, collapse: bool = False, timeout: float = 600) -> dict:
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
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--collapse", action="store_true", help="low-rank set-ups: operators on the rank maps")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.setup, args.iterations, args.collapse)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
