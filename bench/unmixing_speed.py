"""Speed of ``problem = "unmixing"`` at the SUSHI toy size (issue 26 item 5):
configs/unmixing_casa_chandra.toml (94 × 94 pixels × 375 bins, ACIS-S, float32), numpy.

In one process, after ``runner.prepare`` (simulated counts):

- **floor**: one evaluation of every component's exact spectral model over all pixels, plus
  one forward and one adjoint pass of the observation's compiled operator on the full cube
  (the lower bound the issue names for an iteration with the exact models); also the same
  for the tables (coefficients of every component, folded operator forward + adjoint);
- **table**: seconds per PALM iteration with ``reduce = "table"`` (the default) — median of
  ``solver.step()`` after one warm-up — and the set-up (tables, start fits, metric); the
  same with PALM's joint steps (``joint_metric = true``: **table_joint**) and per iteration
  of the L-BFGS solver the config ships (``[solver] name = "lbfgs"``: **table_lbfgs**);
- **none**: the same with the exact models, 2 iterations after the warm-up (each ~20 s);

then, in a subprocess, the wall time of the whole shipped config (``xhsi run``, its
iterations, tables, start fits and outputs included). Results: bench/results/unmixing_speed.json
and a table on stdout. Usage: ``nice -n 10 python bench/unmixing_speed.py`` (~6 min on 2
shared cores; ``--skip-run`` leaves the whole run out, ``--iterations`` sets the table's).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "unmixing_casa_chandra.toml"
RESULTS = ROOT / "bench" / "results" / "unmixing_speed.json"


def _median_time(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _problem(cfg, prep, reduce: str, joint_metric: bool = False):
    from dataclasses import replace

    from xhsi import plugins
    from xhsi.problems.unmixing import Unmixing

    return Unmixing(cfg, prep.backend, prep.grid, prep.observations, [], plugins.get("likelihood", "poisson"),
                    replace(cfg.problem, reduce=reduce, joint_metric=joint_metric))


def floors(cfg, prep) -> dict:
    """The exact floor (every component's model over all pixels + one forward + one adjoint
    of the compiled operator) and the tabulated one, each the median of 3."""
    xp, dtype = prep.backend.xp, prep.backend.dtype
    obs = prep.observations[0]
    ny, nx = prep.grid.ny, prep.grid.nx
    exact = _problem(cfg, prep, "none")
    thetas = []
    for comp in exact.components:
        rows = [exact.map_blocks[comp.slots[p.name]].init if p.name in comp.slots
                else xp.full((ny, nx), comp.constants[p.name], dtype=dtype) for p in comp.model.parameters]
        thetas.append(xp.stack(rows))
    cube = sum(c.model.evaluate(t) for c, t in zip(exact.components, thetas))
    counts = obs.forward.apply(cube)
    out = {"model_s": _median_time(lambda: [c.model.evaluate(t) for c, t in zip(exact.components, thetas)]),
           "forward_s": _median_time(lambda: obs.forward.apply(cube)),
           "adjoint_s": _median_time(lambda: obs.forward.adjoint(counts))}
    out["exact_floor_s"] = out["model_s"] + out["forward_s"] + out["adjoint_s"]
    t0 = time.perf_counter()
    tabled = _problem(cfg, prep, "table")
    out["tables_s"] = time.perf_counter() - t0
    mixture, (op,) = tabled._mixture(0, 1.0)
    views = mixture.components
    h = sum(v.model.evaluate(t) for v, t in zip(views, thetas))
    out["table_model_s"] = _median_time(lambda: [v.model.evaluate(t) for v, t in zip(views, thetas)])
    out["table_forward_s"] = _median_time(lambda: op.apply(h))
    out["table_adjoint_s"] = _median_time(lambda: op.adjoint(counts))
    out["table_floor_s"] = out["table_model_s"] + out["table_forward_s"] + out["table_adjoint_s"]
    out["tables"] = tabled.spectral_tables()
    return out


def iterations(cfg, prep, reduce: str, n: int, joint_metric: bool = False, solver_name: str = "palm") -> dict:
    """Set-up time (problem, start fits, metric) and per-iteration times of ``n`` iterations
    of ``solver_name`` after one warm-up (``joint_metric``: with PALM's joint steps)."""
    from xhsi import plugins

    t0 = time.perf_counter()
    problem = _problem(cfg, prep, reduce, joint_metric)
    x0, value, blocks, _ = problem.build()
    setup_s = time.perf_counter() - t0
    cls = plugins.get("solver", solver_name)
    solver = cls.from_config(cfg.solver) if solver_name == cfg.solver.name else \
        cls(None, max_iter=cfg.solver.max_iter, tol=cfg.solver.tol)  # its default options
    solver.setup(x0, value, blocks)
    steps = []
    for _ in range(n + 1):
        t0 = time.perf_counter()
        solver.step()
        steps.append(time.perf_counter() - t0)
    return {"setup_s": setup_s, "warmup_s": steps[0], "iterations_s": steps[1:],
            "per_iteration_s": float(np.median(steps[1:])), "cost": float(value(solver.state.x))}


def whole_run(overrides=()) -> dict:
    """Wall time of ``xhsi run`` on the shipped config, in a subprocess, and its run.json."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "xhsi", "run", str(CONFIG), "--out", str(out), "--quiet"]
        cmd += [a for o in overrides for a in ("--set", o)]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - t0
        meta = json.loads((out / "run.json").read_text())
        metrics = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").exists() else {}
    keep = {k: meta.get(k) for k in ("n_iter", "stop_reason", "solve_wall_s", "final_cost", "spectral_tables",
                                     "rejected_block_updates")}
    maps = {name: m.get("median_relative_error") for name, m in metrics.get("maps", {}).items()}
    base = {name: m.get("median_relative_error") for name, m in metrics.get("maps_pixelfit", {}).items()}
    return {"wall_s": wall, **keep, "maps": maps, "maps_pixelfit": base,
            "z_kms": metrics.get("maps", {}).get("thermal.z", {}).get("median_absolute_error_kms")}


def table(r: dict) -> str:
    f = r["floor"]
    lines = ["| what | s | ratio to the exact floor |", "|---|---|---|"]

    def row(name, s):
        lines.append(f"| {name} | {s:.3f} | {s / f['exact_floor_s']:.2f} |")
    row("exact floor: models + forward + adjoint", f["exact_floor_s"])
    row("  of which models", f["model_s"])
    row("  of which forward + adjoint", f["forward_s"] + f["adjoint_s"])
    row("table floor: coefficients + folded forward + adjoint", f["table_floor_s"])
    row("PALM iteration, reduce = \"table\"", r["table"]["per_iteration_s"])
    if "table_joint" in r:
        row("PALM iteration, reduce = \"table\", joint_metric = true", r["table_joint"]["per_iteration_s"])
    if "table_lbfgs" in r:
        row("L-BFGS iteration, reduce = \"table\"", r["table_lbfgs"]["per_iteration_s"])
    row("PALM iteration, reduce = \"none\"", r["none"]["per_iteration_s"])
    if "run" in r:
        row(f"whole `xhsi run` ({r['run']['n_iter']} iterations)", r["run"]["wall_s"])
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", type=int, default=5, help="timed PALM iterations with tables")
    ap.add_argument("--exact-iterations", type=int, default=2, help="timed PALM iterations with exact models")
    ap.add_argument("--skip-run", action="store_true", help="leave the whole `xhsi run` out")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    from xhsi.config import load_config
    from xhsi.runner import prepare

    cfg = load_config(CONFIG, ["run.quicklook=false"])
    t0 = time.perf_counter()
    prep = prepare(cfg)
    result = {"config": str(CONFIG.relative_to(ROOT)), "dtype": cfg.run.dtype, "backend": "numpy",
              "shape": list(prep.grid.shape), "prepare_s": time.perf_counter() - t0,
              "date": time.strftime("%Y-%m-%d", time.gmtime())}
    result["floor"] = floors(cfg, prep)
    result["table"] = iterations(cfg, prep, "table", args.iterations)
    result["table_joint"] = iterations(cfg, prep, "table", args.iterations, joint_metric=True)
    result["table_lbfgs"] = iterations(cfg, prep, "table", args.iterations, solver_name="lbfgs")
    result["none"] = iterations(cfg, prep, "none", args.exact_iterations)
    result["ratios"] = {"table_iteration_to_exact_floor": result["table"]["per_iteration_s"]
                        / result["floor"]["exact_floor_s"],
                        "table_iteration_to_table_floor": result["table"]["per_iteration_s"]
                        / result["floor"]["table_floor_s"],
                        "none_iteration_to_exact_floor": result["none"]["per_iteration_s"]
                        / result["floor"]["exact_floor_s"],
                        "none_to_table_iteration": result["none"]["per_iteration_s"]
                        / result["table"]["per_iteration_s"]}
    if not args.skip_run:
        result["run"] = whole_run()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))
    print(json.dumps(result["ratios"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
