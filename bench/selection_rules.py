"""Selection rules against the oracle (docs/selection.md, "Comparison"; issue 25).

    python bench/selection_rules.py compare CONFIG [--set KEY=VALUE ...]
    python bench/selection_rules.py kl CONFIG [--set KEY=VALUE ...]

``compare``: the full-data path of every candidate of CONFIG's selection, scored on the truth
every ``[selection] every`` iterations (the oracle: the best (candidate, iteration) by PSNR),
then the choice of each rule (``holdout``, ``discrepancy``) and its regret in dB.
``kl``: where the likelihood oracle (the Poisson divergence between the true expected
counts and the fit's) lies along the full-data path and along thinned fits (p = 0.5, 0.25),
no regulariser: how the stopping iteration transfers from p·counts to the full counts.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np

from xhsi.backend import to_numpy
from xhsi.config import load_config
from xhsi.metrics import all_metrics
from xhsi.runner import check_config, prepare
from xhsi.selection import candidate_config, run_selection
from xhsi.selection.candidates import budget
from xhsi.selection.candidates import candidates as candidates_of
from xhsi.selection.driver import Fold, fit_task, make_folds
from xhsi.selection.rules import DiscrepancyScore
from xhsi.selection.thinning import poisson_deviance


def _full_data_fold(prep) -> Fold:
    obs = prep.observations
    return Fold(0, list(obs), DiscrepancyScore([o.name for o in obs], [o.counts for o in obs],
                                               [o.background for o in obs], prep.backend.xp))


def compare(path: str, sets: list[str]) -> dict:
    cfg = load_config(path, sets)
    check_config(cfg)
    prep = prepare(cfg)
    truth = np.asarray(prep.truth, dtype=np.float64)
    cands = candidates_of(cfg)
    n_it, every = budget(cfg), (cfg.selection.every if cfg.selection else 10)
    oracle = []
    for c in cands:
        rows = []
        fold = _full_data_fold(prep)

        def watch(k, cube, rows=rows):
            m = all_metrics(np.asarray(to_numpy(cube()), dtype=np.float64), truth)
            rows.append((k, m["psnr_db"], m["asam_deg"], m["rel_error_voxel"]))
        fold.watch = watch
        fit_task(candidate_config(cfg, c.overrides), prep, fold, n_it, every)
        oracle.append(rows)
    best = max(((i, r) for i, rows in enumerate(oracle) for r in rows), key=lambda t: t[1][1])
    print("oracle (PSNR):", cands[best[0]].name, best[1])
    out = {"oracle": {"candidate": cands[best[0]].name, "row": best[1]}}
    for rule in ("holdout", "discrepancy"):
        t = time.perf_counter()
        chosen = run_selection(load_config(path, sets + [f'selection.rule="{rule}"']), prep, "compare",
                               quiet=True).report["chosen"]
        i = [c.name for c in cands].index(chosen["name"])
        row = min(oracle[i], key=lambda r: abs(r[0] - chosen["iteration"]))
        print(f"{rule}: {chosen['name']} it {chosen['iteration']} -> PSNR {row[1]:.2f} ASAM {row[2]:.2f} "
              f"err {row[3]:.3f}; regret {best[1][1] - row[1]:.2f} dB; {time.perf_counter() - t:.1f} s")
        out[rule] = {"chosen": chosen["name"], "iteration": chosen["iteration"], "row": row}
    for i, c in enumerate(cands):
        r = max(oracle[i], key=lambda r: r[1])
        print(f"  {c.name}: best PSNR {r[1]:.2f} at {r[0]} (ASAM {r[2]:.2f}); end {oracle[i][-1]}")
    return out


def kl(path: str, sets: list[str]) -> dict:
    cfg = load_config(path, sets)
    check_config(cfg)
    prep = prepare(cfg)
    truth = prep.backend.asarray(prep.truth)
    obs = prep.observations
    mu_true = [o.forward.apply(truth) for o in obs]
    out = {}
    for p in (1.0, 0.5, 0.25):
        rows = []
        if p == 1.0:
            fold = _full_data_fold(prep)
        else:
            thinned = load_config(path, sets + [f"selection.fraction={p}", "selection.folds=1"])
            fold = make_folds(thinned, prep, "holdout")[0]

        def watch(k, cube, p=p, rows=rows):
            c = cube() / p
            rows.append((k, sum(poisson_deviance(m, o.forward.apply(c)) for m, o in zip(mu_true, obs))))
        fold.watch = watch
        fit_task(cfg, prep, fold, 300, 10)
        ks, kls = zip(*rows)
        out[str(p)] = int(ks[int(np.argmin(kls))])
        print(f"p={p}: KL-oracle iteration {ks[int(np.argmin(kls))]} (KL {min(kls):.1f})")
    return out


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 2 or argv[0] not in ("compare", "kl"):
        print(__doc__, file=sys.stderr)
        return 2
    part, path, rest = argv[0], argv[1], argv[2:]
    sets = [rest[i + 1] for i in range(len(rest) - 1) if rest[i] == "--set"]
    result = (compare if part == "compare" else kl)(path, sets)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
