import sys, json, time
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).parent))
from unmixing_suite import config_text, errors, LEVELS, MAPS
from benchlib import solved_problem
from xhsi.config import load_config
from xhsi.problems.unmixing_prior import FisherStarlet
from xhsi.sparsity.wavelets import starlet2d

scene, level = sys.argv[1], sys.argv[2]
passes = int(sys.argv[3]) if len(sys.argv) > 3 else 2
tmp = Path("/work/tmp/s10/rw"); tmp.mkdir(parents=True, exist_ok=True)
path = tmp / f"{scene}_{level}.toml"
path.write_text(config_text(scene, LEVELS[level], "unmixing_amp_k0.5_lbfgs", 32, 3000, {}, 1e-5))
cfg = load_config(path)
t0 = time.time()
prep, problem, solver, out, mixture, blocks = solved_problem(cfg)
truth = prep.map_truth.truth if prep.map_truth is not None else prep.scene_truth
truth = prep.scene_truth
pf = errors(problem.baseline_maps(), truth)
rows = {"pixelfit": pf, "base": errors(problem._maps(mixture, out.x), truth)}
t1 = time.time()
xs = out.x
for p in range(passes):
    for i, b in enumerate(blocks):
        for prox in getattr(b.prox, "terms", []):
            if isinstance(prox, FisherStarlet):
                if not hasattr(prox, "_base"):
                    prox._base = prox.weights
                c = starlet2d(xs[i], prox.scales)
                T = prox.thresholds
                w = np.where(T > 0, 1.0 / (1.0 + np.abs(c) / np.where(T > 0, T, 1.0)), 1.0)
                prox.weights = prox._base * w
    from xhsi import plugins
    s2 = plugins.get("solver", cfg.solver.name).from_config(cfg.solver)
    s2.setup(list(xs), solver.value, blocks)
    xs = s2.run().x
    rows[f"rw{p+1}"] = errors(problem._maps(mixture, xs), truth)
print(scene, level, f"base {t1-t0:.0f}s rw {time.time()-t1:.0f}s")
for name, r in rows.items():
    print(f"  {name:9s}", " ".join(f"{lab} {r[k]['median']:.4g}" for k, lab in MAPS if k in r),
          "| ratio" if name != "pixelfit" else "", " ".join(f"{r[k]['median']/pf[k]['median']:.2f}" for k, _ in MAPS if k in r) if name != "pixelfit" else "")
