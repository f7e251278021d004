"""Scaling of ``xhsi sweep`` on this machine (docs/scaling.md): 8 small fusion runs
(configs/fusion_xmm_xrism_small.toml, regularisation weight x threshold) on a LocalCluster of
1 and of 2 single-threaded workers, against the same 8 runs one after the other in one
process (``xhsi.runner.run``, numpy's default threads).

Each case runs in a fresh Python process, so that each pays the same imports. Recorded per
case: the phases (planning and checks, cluster start, the sweep itself from the first
submission to the table and plot written, cluster close), and per point the time of its run
(serial: the ``xhsi.runner.run`` call; sweep: the task in the worker, config loading and
output writing included). Derived: the overhead per task of the sweep,
``(workers x sweep time - serial time) / points``: the worker-seconds a point costs on Dask
beyond what it costs in the serial loop (scheduling, each fresh worker's imports, one BLAS
thread per worker, idle workers at the tail), and the part of it spent outside the tasks,
``(workers x sweep time - sum of task times) / points``.

    python bench/sweep_scaling.py bench/results/sweep_scaling.json [--repeat 2]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "fusion_xmm_xrism_small.toml"
GRID = ["regularizers[0].weight=[0.5, 1.0, 2.0, 4.0]", "regularizers[0].options.k=[2.5, 3.0]"]


def one_case(workers: int, out: Path) -> dict:
    """Run the sweep (workers >= 1) or the serial loop (workers == 0) in this process."""
    from xhsi.distributed import connect, plan_sweep, run_sweep

    t0 = time.perf_counter()
    sweep = plan_sweep(CONFIG, GRID, out=out)
    t_plan = time.perf_counter() - t0
    if workers == 0:
        from xhsi.config import load_config
        from xhsi.distributed.sweep import assignments
        from xhsi.runner import run

        t1 = time.perf_counter()
        walls = []
        (out / "points").mkdir(parents=True)
        for p in sweep.points:
            t = time.perf_counter()
            run(load_config(CONFIG, assignments(p.overrides)), out=p.folder, quiet=True)
            walls.append(time.perf_counter() - t)
        return {"workers": 0, "points": len(walls), "plan_s": t_plan, "sweep_s": time.perf_counter() - t1,
                "task_s": walls}
    t1 = time.perf_counter()
    with connect(workers=workers, tasks=len(sweep.points)) as client:
        t2 = time.perf_counter()
        report = run_sweep(sweep, client, quiet=True)
        t3 = time.perf_counter()
    t4 = time.perf_counter()
    assert report.exit_code == 0, report.summary()
    tasks = [report.outcomes[p.name]["wall_s"] for p in sweep.points]
    sweep_s = t3 - t2
    return {"workers": workers, "points": len(tasks), "plan_s": t_plan, "start_s": t2 - t1, "sweep_s": sweep_s,
            "close_s": t4 - t3, "task_s": tasks, "outside_tasks_per_task_s": (workers * sweep_s - sum(tasks)) / len(tasks)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="JSON file to write")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--case", type=int, help=argparse.SUPPRESS)  # internal: run one case here
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case is not None:
        print(json.dumps(one_case(args.case, args.out)))
        return 0
    results = []
    for repeat in range(args.repeat):
        for workers in (0, 1, 2):
            with tempfile.TemporaryDirectory() as tmp:
                load = os.getloadavg()
                t0 = time.perf_counter()
                proc = subprocess.run([sys.executable, __file__, str(args.output), "--case", str(workers),
                                       "--out", str(Path(tmp) / "sweep")], capture_output=True, text=True, check=True)
                case = json.loads(proc.stdout.strip().splitlines()[-1])
                case.update(repeat=repeat, process_s=time.perf_counter() - t0, load_before=load,
                            load_after=os.getloadavg())
                serial = [c["sweep_s"] for c in results if c["workers"] == 0 and c["repeat"] == repeat]
                if workers and serial:
                    case["overhead_per_task_s"] = (workers * case["sweep_s"] - serial[0]) / case["points"]
                results.append(case)
                print(json.dumps({k: v for k, v in case.items() if k != "task_s"}), flush=True)
    args.output.write_text(json.dumps({"config": str(CONFIG.relative_to(ROOT)), "grid": GRID, "cpus": os.cpu_count(),
                                       "cases": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
