"""The bootstrap's error maps on real data (issue 26), checked against an independent split:
MSH 15-52 (Chandra ACIS-I, ObsID 754) cut into two halves that are independent Poisson
cubes, each unmixed on its own with its error maps (docs/real_data.md, "Error maps").

A Poisson cube n thinned by a fair coin per count, A ~ Binomial(n, ½) and B = n − A, gives
two independent Poisson cubes of half the rate: two observations of the same sky. Both halves
are solved by the same estimator, so the prior's bias is (nearly) the same in both and
cancels in θ_A − θ_B, whose spread is the estimator's noise alone: var(θ_A − θ_B) =
var θ_A + var θ_B. The statistic per pixel is t = |θ_A − θ_B| / √(e_A² + e_B²); with error
maps e that are the estimator's standard deviation, t ≤ 1 in ~68 % of the pixels (a
Gaussian difference). An error map that also counts the bias (the rms, Stein's risk) must
give at least that; one below it claims too small a spread. No simulation, no truth.

For each half: configs/msh1552_chandra_unmixing.toml with L-BFGS (100 iterations, as
bench/real_msh1552_iae.py), then the error maps as ``errors = "bootstrap"`` makes them
(``--samples`` replicates drawn at the solution and re-solved, one unregularised pilot):
the Fisher errors, the replicates' sd, their rms, and Stein's risk (``half_width``).
Pixels: where the component's amplitude is above its median in both halves (``pwn`` for
N_H and Γ, ``rcw89`` for kT). Needs the binned cube (``python
bench/real_msh1552.py``). Writes bench/results/real_msh1552_errors.json.

    python bench/real_msh1552_errors.py [--samples 8]     # ~10 min on 2 cores
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_msh1552  # the walkthrough: the cube's path and config

CONFIG = real_msh1552.UNMIXING_CONFIG
MAPS = {"pwn.index": "pwn", "pwn.nh": "pwn", "rcw89.kT": "rcw89"}
ERRORS = ("fisher", "sd", "rms", "sure")


def split(cube: Path, work: Path, seed: int) -> list[Path]:
    """Two files with the counts of ``cube`` thinned by a fair coin per count (A, n − A)."""
    from astropy.io import fits

    out = []
    with fits.open(cube) as hdul:
        n = np.asarray(hdul[0].data, dtype=np.int64)
        a = np.random.default_rng(seed).binomial(n, 0.5)
        for name, half in (("a", a), ("b", n - a)):
            copy = fits.HDUList([h.copy() for h in hdul])
            copy[0].data = half.astype(hdul[0].data.dtype)
            path = work / f"half_{name}.fits"
            copy.writeto(path, overwrite=True)
            out.append(path)
    return out


def errors_of(counts: Path, samples: int, seed: int) -> tuple[dict, dict]:
    """(maps, {error kind: maps}) of one half: the fit, its Fisher errors, and the bootstrap's."""
    from benchlib import solved_problem
    from xhsi.config import load_config
    from xhsi.problems.bootstrap import (
        bootstrap_replicates,
        half_width,
        unregularised_pilot,
    )

    cfg = load_config(CONFIG, [f"observations[0].counts={json.dumps(str(counts))}", 'solver.name="lbfgs"',
                               "solver.options={}", "solver.max_iter=100", "run.quicklook=false", f"run.seed={seed}"])
    _, problem, solver, out, mixture, blocks = solved_problem(cfg)
    maps = problem._maps(mixture, out.x)
    fisher = problem.error_maps(maps)
    pilot = unregularised_pilot(problem, solver, cfg.solver.max_iter)[3]
    reps = bootstrap_replicates(problem, solver, mixture, blocks, out.x, samples, cfg.solver.max_iter, seed)
    errs = {kind: {} for kind in ERRORS}
    for key in MAPS:
        errs["fisher"][key] = np.asarray(fisher[key], dtype=np.float64)
        for kind in ("sd", "rms", "sure"):
            errs[kind][key] = half_width(maps[key], reps[key], kind, fisher[key], pilot[key])
    amps = {c: np.asarray(maps[f"{c}.amplitude"], dtype=np.float64) for c in set(MAPS.values())}
    return {**{k: np.asarray(maps[k], dtype=np.float64) for k in MAPS}, **amps}, errs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=8, help="bootstrap replicates per half")
    ap.add_argument("--seed", type=int, default=0, help="the split's coin and the replicates' streams")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "msh1552" / "errors")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "real_msh1552_errors.json")
    args = ap.parse_args(argv)
    cube = real_msh1552.unmixing_cube()
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    halves = [errors_of(path, args.samples, args.seed) for path in split(cube, args.work, args.seed)]
    (ma, ea), (mb, eb) = halves
    report = {"samples": args.samples, "seed": args.seed, "wall_s": None, "maps": {}}
    for key, comp in MAPS.items():
        bright = (ma[comp] > np.median(ma[comp])) & (mb[comp] > np.median(mb[comp]))
        diff = np.abs(ma[key] - mb[key])[bright]
        row = {"pixels": int(bright.sum()), "median_abs_difference": float(np.median(diff))}
        for kind in ERRORS:
            e = np.hypot(ea[kind][key], eb[kind][key])[bright]
            row[kind] = {"within": float(np.mean(diff <= e)), "median_error": float(np.median(e / np.sqrt(2)))}
        report["maps"][key] = row
        print(f"{key:10s} {row['pixels']:4d} px  |A−B| median {row['median_abs_difference']:.3g}  "
              + "  ".join(f"{k} {100 * row[k]['within']:.0f} % (e {row[k]['median_error']:.3g})" for k in ERRORS))
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
