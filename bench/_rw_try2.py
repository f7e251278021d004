"""Adaptive weights from the start (per-pixel fits): w = 1/(1 + |c0|/(m σ_j)), σ_j = T/k."""
import sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).parent))
from unmixing_suite import config_text, errors, LEVELS, MAPS
from xhsi import plugins
from xhsi.config import load_config
from xhsi.problems.base import run_solver
from xhsi.problems.unmixing_prior import FisherStarlet
from xhsi.runner import check_config, prepare
from xhsi.sparsity.wavelets import starlet2d

scene, level = sys.argv[1], sys.argv[2]
ms = [float(m) for m in sys.argv[3].split(",")]
tmp = Path("/work/tmp/s10/rw"); tmp.mkdir(parents=True, exist_ok=True)
path = tmp / f"{scene}_{level}.toml"
path.write_text(config_text(scene, LEVELS[level], "unmixing_amp_k0.5_lbfgs", 32, 3000, {}, 1e-5))
cfg = load_config(path)
regs = check_config(cfg); prep = prepare(cfg)
problem = plugins.get("problem", "unmixing")(cfg, prep.backend, prep.grid, prep.observations, regs,
                                             plugins.get("likelihood", cfg.run.likelihood), options=cfg.problem)
truth = prep.scene_truth
rows = {}
for m in [0.0] + ms:
    x0, value, blocks, mixture = problem.build()
    if m > 0:
        for i, b in enumerate(blocks):
            for prox in getattr(b.prox, "terms", []):
                if isinstance(prox, FisherStarlet):
                    kk = cfg.components[0].amplitude_k if i < mixture.n_amp else 1.0
                    c = starlet2d(x0[i], prox.scales)
                    T = prox.thresholds
                    sig = np.where(T > 0, T / kk, 1.0)
                    prox.weights = prox.weights / (1.0 + np.abs(c) / (m * sig))
    solver = plugins.get("solver", cfg.solver.name).from_config(cfg.solver)
    out, _, meta = run_solver("unmixing", solver, (x0, value, blocks))
    rows[f"m{m:g}"] = errors(problem._maps(mixture, out.x), truth)
pf = errors(problem.baseline_maps(), truth)
print(scene, level)
for name, r in rows.items():
    print(f"  {name:6s}", " ".join(f"{r[k]['median']/pf[k]['median']:.2f}" for k, _ in MAPS if k in r))
