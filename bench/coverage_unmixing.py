"""Coverage of the unmixing error maps (issue 26 item 2): how often the 68 % interval
estimate ± err contains the truth, per parameter, for the Fisher errors and for the
parametric bootstrap (``xhsi.problems.bootstrap``), on several scenes and count levels.

Not a unit test: a script that runs real unmixings. configs/unmixing_casa_chandra_small.toml
(3-8 keV in 100 bins of 50 eV, ACIS-S, 16 × 16 pixels of 1.968″, lines broadened by
1000 km/s in scene and model), its solver settings (L-BFGS from the unbinned pixel fits,
``parameter_k = 1``, 2 scales, its ``tol``) with at most ``--max-iter`` iterations (3000:
to convergence, as the config runs), on three scenes never tuned on:

- ``casa_s0``: casa_like (seed 0), the config's own scene;
- ``casa_s3_sync40``: casa_like seed 3, 40 % synchrotron, shell 0.45, clumpier (0.9 e-folds);
- ``cluster``: cluster_beta (kT 6 → 3 keV, z = 0.05, abundance 0.3, thermal line widths),
  one thermal component with z and the abundance fixed at the scene's;

each at two exposures (``--exposures``, default 1e4 s and 1e5 s: 3.4e6 and 3.4e7 counts) and
three run seeds (``--seeds``: the noise and the replicates). For every run: the Fisher error
maps (``Unmixing.error_maps``) and ``--samples`` bootstrap replicates for each of
``--starts`` (``rerun``: the whole estimator, what ``errors = "bootstrap"`` writes;
``solution``: PALM from the solution), turned into intervals by each of
``bootstrap.INTERVALS``, and the interval θ̂ − bias* ± sd*. Coverage = fraction of the
pixels where the component is brighter than 1 % of its peak (the mask of ``map_metrics``)
with |estimate − truth| ≤ err; the table gives the mean over the seeds (min–max). Target:
60–76 %.

    nice -n 10 .venv/bin/python bench/coverage_unmixing.py          # ~6 min on one core
    nice -n 10 .venv/bin/python bench/coverage_unmixing.py --scenes casa_s0 --exposures 1e5
    # what docs/unmixing.md "At convergence" reports (6-10 min per seed on 2 cores)
    .venv/bin/python bench/coverage_unmixing.py --max-iter 3000 --starts rerun --seeds 0 1 2
    .venv/bin/python bench/coverage_unmixing.py --max-iter 3000 --starts --pilot-k 0 --seeds 0
    # seeds in parallel, then merged (--merge runs nothing)
    .venv/bin/python bench/coverage_unmixing.py --max-iter 3000 --starts rerun --seeds 0 --out /tmp/s0 &
    .venv/bin/python bench/coverage_unmixing.py --max-iter 3000 --starts rerun --seeds 1 --out /tmp/s1
    .venv/bin/python bench/coverage_unmixing.py --merge /tmp/s0.json /tmp/s1.json --out bench/results/coverage_unmixing

Writes bench/results/coverage_unmixing.{json,md} (``--out`` + .json, .md) and prints the
table. Also measured, with the same script:

    # the bootstrap again at θ̂ − bias* (2B fits), where the bias dominates
    ... --scenes casa_s0 casa_s3_sync40 --exposures 1e5 --starts rerun --second-stage \
        --out bench/results/coverage_unmixing.second_stage
    # the exact models instead of the tables
    ... --scenes casa_s3_sync40 --exposures 1e5 --seeds 0 --starts rerun \
        --set 'problem.reduce="none"' --out bench/results/coverage_unmixing.exact
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "unmixing_casa_chandra_small.toml"
LABELS = {"thermal.kT": "kT", "thermal.z": "z", "synchrotron.index": "Γ",
          "thermal.amplitude": "a_th", "synchrotron.amplitude": "a_sync"}

CLUSTER_COMPONENTS = """
[[components]]
name = "thermal"
model = "thermal"
options = { fit_abundance = false, abundance = 0.3, sigma_v_kms = 0.0 }
init = { kT = 4.0, z = 0.05 }
bounds = { kT = [0.5, 12.0] }
fixed = ["z"]
parameter_k = 1.0
"""


#: Held-out scenes (``--scenes`` names them; not in the default run), written after the
#: intervals were chosen on the three above, to check them on scenes that chose nothing:
#: bench/unmixing_suite.py's sharp kT and z boundary, its hotter variant, and its cooler,
#: clumpier, fainter-synchrotron remnant (its SCENES: simulated scene and options).
HELD_OUT = ("boundary", "boundary_hot", "casa_s9_cool")


def scene_config(scene: str, tmp: Path) -> tuple[Path, list[str]]:
    """(config path, --set overrides) of a scene."""
    if scene == "casa_s0":
        return CONFIG, []
    if scene == "casa_s3_sync40":
        return CONFIG, [("simulate.options={sigma_v_kms = 1000.0, seed = 3, synchrotron_fraction = 0.4, "
                         "radius = 0.45, clumpiness = 0.9}")]
    if scene == "cluster":
        text = CONFIG.read_text()
        head = text[:text.index("[[components]]")]
        tail = text[text.index("[solver]"):text.index("[simulate]")]
        path = tmp / "cluster.toml"
        path.write_text(head + CLUSTER_COMPONENTS + "\n" + tail
                        + '[simulate]\nscene = "cluster_beta"\noptions = { abundance = 0.3 }\n')
        return path, []
    if scene in HELD_OUT:
        from unmixing_suite import SCENES

        kind, options = SCENES[scene]
        return CONFIG, [f"simulate.scene={json.dumps(kind)}",
                        "simulate.options={" + ", ".join(f"{k} = {json.dumps(v)}" for k, v in options.items()) + "}"]
    raise SystemExit(f"unknown scene {scene}")


def run_one(scene: str, exposure_s: float, seed: int, args, tmp: Path) -> dict:
    """One fit, its Fisher errors and the bootstrap of each of ``args.starts``; the coverage
    of every interval of every map."""
    from benchlib import solved_problem
    from xhsi import plugins
    from xhsi.config import load_config
    from xhsi.problems.bootstrap import (
        INTERVALS,
        PILOT,
        bootstrap_replicates,
        coverage,
        half_width,
        problem_copy,
        solved_copy,
    )

    path, sets = scene_config(scene, tmp)
    cfg = load_config(path, sets + [f"observations.acis.exposure_s={exposure_s}", f"solver.max_iter={args.max_iter}",
                                    "run.quicklook=false", f"run.seed={seed}"] + list(args.set))
    t0 = time.perf_counter()
    prep, problem, solver, out, mixture, blocks = solved_problem(cfg)
    maps = problem._maps(mixture, out.x)
    fisher = problem.error_maps(maps)
    conditional = conditional_errors(problem, maps)
    row = {"scene": scene, "exposure_s": exposure_s, "seed": seed,
           "counts": float(sum(float(np.sum(o.counts)) for o in prep.observations)),
           "fit_s": time.perf_counter() - t0, "bootstrap_s": {}, "coverage": {}, "median_ratio": {}}
    reps = {}
    for start in args.starts:
        t1 = time.perf_counter()
        iters = args.boot_iter or args.max_iter
        reps[start] = bootstrap_replicates(problem, solver, mixture, blocks, out.x, args.samples, iters, seed,
                                           start=start, pilots=True)
        row["bootstrap_s"][start] = time.perf_counter() - t1
    pilots = {}
    for factor in args.pilot_k:
        # drawn at a pilot fit with every starlet threshold × F (0: the library's
        # unregularised pilot, [problem] bootstrap_from = "pilot"), fitted by the estimator,
        # the rms deviation from the pilot (xhsi.problems.bootstrap)
        t1 = time.perf_counter()
        iters = args.boot_iter or args.max_iter
        pmixture, pblocks, pxs, pmaps = solved_copy(problem_copy(problem, prior_factor=factor),
                                                    plugins.get("solver", cfg.solver.name).from_config(cfg.solver))
        name = _pilot_name(factor)
        pilots[name] = (pmaps, bootstrap_replicates(problem, solver, pmixture, pblocks, pxs, args.samples, iters, seed))
        row["bootstrap_s"][name] = time.perf_counter() - t1
    # the unregularised pilot of the sure interval (the pilot's own, when --pilot-k 0 drew at it)
    free = pilots["pilot"][0] if "pilot" in pilots else solved_copy(
        problem_copy(problem, prior_factor=0.0), plugins.get("solver", cfg.solver.name).from_config(cfg.solver))[3]
    pixelfit = problem.baseline_maps()  # the per-pixel fits of the covariance interval
    row["roughness"] = {}
    second = None
    if args.second_stage and "rerun" in reps:
        # the bootstrap again at the bias-corrected point θ̃ = θ̂ − bias* (its own replicate
        # streams: seed + 1000): the rms deviation there from θ̃, the MSE at a point nearer
        # the truth than the smooth θ̂
        t1 = time.perf_counter()
        xt = bias_corrected_point(problem, mixture, out.x, maps, reps["rerun"], prep.backend)
        second = (problem._maps(mixture, xt),
                  bootstrap_replicates(problem, solver, mixture, blocks, xt, args.samples,
                                       args.boot_iter or args.max_iter, seed + 1000))
        row["bootstrap_s"]["second_stage"] = time.perf_counter() - t1
    for comp in prep.scene_truth.components:
        amp = np.asarray(comp.amplitude, dtype=np.float64)
        mask = amp > 0.01 * amp.max()
        for pname, true_map in list(comp.parameters.items()) + [("amplitude", amp)]:
            key = f"{comp.name}.{pname}"
            if key not in maps:
                continue
            errs, centres = {"fisher": fisher[key]}, {}
            for start, r in reps.items():
                errs.update({f"{start}_{how}": half_width(maps[key], r[key], how, fisher[key], free[key])
                             for how in INTERVALS if how != "covariance"})
                # Efron's covariance penalty: the data's and the replicates' per-pixel fits
                errs[f"{start}_covariance"] = half_width(maps[key], r[key], "covariance",
                                                         pilot=pixelfit[key], pilot_replicates=r[PILOT + key])
                # the local shrinkage against the conditional error (the other maps known)
                errs[f"{start}_shrinkage_conditional"] = half_width(maps[key], r[key], "shrinkage", conditional[key])
                # the interval centred on the bias-corrected estimate θ̂ − bias*, half-width sd*
                centres[f"{start}_bias_corrected"] = (maps[key] - (np.mean(r[key], axis=0) - maps[key]),
                                                      errs[f"{start}_sd"])
            if second is not None:
                errs["second_stage_rms"] = half_width(second[0][key], second[1][key], "rms")
            for name, (pmaps, preps) in pilots.items():
                errs[f"{name}_rms"] = half_width(pmaps[key], preps[key], "rms")
            # mean roughness of the replicates over the run's (data-only: no truth)
            reference = roughness(maps[key], fisher[key])
            if reference > 0:
                drawn = {**reps, **{name: replicas for name, (_, replicas) in pilots.items()}}
                rough = {name: float(np.mean([roughness(m, fisher[key]) for m in r[key]])) / reference
                         for name, r in drawn.items()}
                rough["truth"] = roughness(true_map, fisher[key]) / reference  # a diagnostic only
                row["roughness"][key] = rough
            if args.dump is not None:  # every per-pixel array of the cell, to study intervals offline
                args.dump.mkdir(parents=True, exist_ok=True)
                extra = {f"pilot_{n}": pm[key] for n, (pm, _) in pilots.items()}
                extra.update({f"pilot_{n}_replicates": np.asarray(pr[key]) for n, (_, pr) in pilots.items()})
                extra.update({f"replicates_{st}": np.asarray(r[key]) for st, r in reps.items()})
                extra.update({f"pixelfit_replicates_{st}": np.asarray(r[PILOT + key]) for st, r in reps.items()})
                extra["unregularised"] = free[key]
                extra["pixelfit"] = pixelfit[key]
                np.savez_compressed(args.dump / f"{scene}_{exposure_s:g}_{seed}_{key}.npz", estimate=maps[key],
                                    truth=true_map, mask=mask, fisher=fisher[key],
                                    conditional=conditional[key], **extra)
            cov = {m: coverage(maps[key], e, true_map, mask) for m, e in errs.items()}
            cov.update({m: coverage(c, e, true_map, mask) for m, (c, e) in centres.items()})
            row["coverage"][key] = cov
            row["pixels"] = {**row.get("pixels", {}), key: int(mask.sum())}
            # how wide: the median over the mask of each error map over the Fisher error
            row["median_ratio"][key] = {m: float(np.nanmedian(e[mask] / fisher[key][mask])) for m, e in errs.items()}
    return row


def conditional_errors(problem, maps: dict) -> dict:
    """1-σ errors 1/√F_ii of each map at ``maps`` (the other parameters of the pixel known),
    from the per-pixel Fisher information of the problem's (single) fit."""
    fitter = problem._fisher_fitters()[0]
    u, fisher = fitter.fisher_at_maps(maps)
    diag = np.stack([np.asarray(fisher)[:, i, i] for i in range(np.asarray(fisher).shape[-1])], axis=-1)
    with np.errstate(divide="ignore"):
        sigma = np.where(diag > 0, 1.0 / np.sqrt(np.maximum(diag, 1e-300)), np.inf)
    return fitter.maps_from(u, sigma)[1]


def _pilot_name(factor: float) -> str:
    """The method name of the bootstrap drawn at a pilot with thresholds × ``factor``."""
    return "pilot" if factor == 0 else f"pilot{factor:g}"


def roughness(m, sigma, scales: int = 2) -> float:
    """Σ over the detail scales and pixels of |starlet coefficient| / σ (σ: the map's
    Fisher error; pixels without information left out): how rough a map is in units of its
    noise, the quantity the prior penalises."""
    from xhsi.sparsity.wavelets import starlet2d

    sigma = np.asarray(sigma, dtype=np.float64)
    ok = np.isfinite(sigma) & (sigma > 0)
    coeffs = np.asarray(starlet2d(np.nan_to_num(np.asarray(m, dtype=np.float64)), scales))[:scales]
    return float(np.sum(np.abs(coeffs[:, ok]) / sigma[ok]))


def bias_corrected_point(problem, mixture, xs, maps: dict, reps: dict, backend) -> list:
    """The solver's variables at θ̂ − bias* (bias* = mean of the replicates − θ̂), on the
    bounds (amplitudes ≥ 0)."""
    xp = backend.xp
    xt = list(xs)
    for comp in problem.components:
        if comp.amplitude_slot is not None:
            name = f"{comp.name}.amplitude"
            bias = backend.asarray(np.mean(reps[name], axis=0) - maps[name])
            xt[comp.amplitude_slot] = xp.clip(xs[comp.amplitude_slot] - bias / mixture.scale, min=0.0)
    for i, block in enumerate(problem.map_blocks):
        bias = backend.asarray(np.mean(reps[block.name], axis=0) - maps[block.name])
        k = mixture.n_amp + i
        xt[k] = xp.clip(xs[k] - bias, min=block.bounds[0], max=block.bounds[1])
    return xt


METHODS = [("fisher", "Fisher"), ("rerun_sure", "**bootstrap, Stein's risk** (written)"),
           ("rerun_covariance", "Stein's risk, Efron's covariance penalty"), ("rerun_rms", "bootstrap rms"),
           ("rerun_sd", "bootstrap sd"),
           ("rerun_fisher_bias", "√(σ_F² + bias*²)"), ("rerun_shrinkage", "√(sd*² + (bias*/s)²), s = sd*/σ_F"),
           ("rerun_shrinkage_conditional", "the same, s = sd*/σ_cond (σ_cond = 1/√F_ii)"), ("rerun_bias_corrected", "θ̂ − bias* ± sd"),
           ("second_stage_rms", "rms at θ̂ − bias*"), ("pilot_rms", "rms about an undersmoothed pilot"),
           ("solution_rms", "from θ̂: rms"), ("solution_sd", "from θ̂: sd")]


def table(rows: list[dict]) -> str:
    """Coverage (%) per scene and exposure, the mean over the seeds (min–max in brackets),
    then the range over every scene, exposure and seed."""
    keys = [k for k in LABELS if any(k in r["coverage"] for r in rows)]
    known = dict(METHODS)
    extra = sorted({m for r in rows for c in r["coverage"].values() for m in c if m.startswith("pilot") and m not in known})
    listed = METHODS + [(m, f"rms about a pilot with thresholds × {m[5:-4]}") for m in extra]
    # the intervals every run has: runs of different versions merged (--merge) are compared on those
    methods = [(m, label) for m, label in listed if all(m in c for r in rows for c in r["coverage"].values())]
    seeds = sorted({r["seed"] for r in rows})
    head = "| scene | exposure (s) | errors | " + " | ".join(LABELS[k] for k in keys) + " |"
    lines = [head, "|" + "---|" * (len(keys) + 3)]
    cases = list(dict.fromkeys((r["scene"], r["exposure_s"]) for r in rows))
    for scene, exposure in cases:
        group = [r for r in rows if (r["scene"], r["exposure_s"]) == (scene, exposure)]
        for m, label in methods:
            cells = []
            for k in keys:
                vals = [100 * r["coverage"][k][m] for r in group if k in r["coverage"]]
                cells.append(f"{np.mean(vals):.0f} ({min(vals):.0f}–{max(vals):.0f})" if vals else "–")
            lines.append(f"| {scene} | {exposure:.0e} | {label} | " + " | ".join(cells) + " |")
    lines += ["", f"Over all scenes, exposures and seeds ({len(rows)} runs; seeds {seeds}):", "",
              "| errors | " + " | ".join(LABELS[k] for k in keys) + " |", "|" + "---|" * (len(keys) + 1)]
    for m, label in methods:
        cells = []
        for k in keys:
            vals = [100 * r["coverage"][k][m] for r in rows if k in r["coverage"]]
            means = [np.mean([100 * r["coverage"][k][m] for r in rows
                              if k in r["coverage"] and (r["scene"], r["exposure_s"]) == c]) for c in cases
                     if any(k in r["coverage"] and (r["scene"], r["exposure_s"]) == c for r in rows)]
            cells.append(f"runs {min(vals):.0f}–{max(vals):.0f}, means {min(means):.0f}–{max(means):.0f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write(out: Path, settings: dict, rows: list[dict]) -> None:
    """``out``.json (settings and rows) and ``out``.md (the table), and the table printed."""
    text = table(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps({"settings": settings, "rows": rows}, indent=1))
    Path(f"{out}.md").write_text(f"Settings: {json.dumps(settings)}\n\n{text}\n")
    print(text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", nargs="+", default=["casa_s0", "casa_s3_sync40", "cluster"])
    ap.add_argument("--exposures", type=float, nargs="+", default=[1e4, 1e5])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="run seeds (noise and replicates)")
    ap.add_argument("--max-iter", type=int, default=30, help="PALM iterations of the fit")
    ap.add_argument("--samples", type=int, default=16, help="bootstrap replicates B")
    ap.add_argument("--boot-iter", type=int, default=0, help="PALM iterations per replicate (0: --max-iter)")
    ap.add_argument("--starts", nargs="*", default=["rerun", "solution"], choices=("rerun", "solution"),
                    help="replicates re-run the whole estimator, and/or PALM from the solution (none: only --pilot-k's)")
    ap.add_argument("--second-stage", action="store_true",
                    help="also the bootstrap at θ̂ − bias* (twice the cost): its rms as the error")
    ap.add_argument("--set", action="append", default=[], help="a config override, as `xhsi run --set`")
    ap.add_argument("--pilot-k", type=float, nargs="*", default=[], metavar="F",
                    help="also the bootstrap drawn at a pilot fit with every starlet threshold × F (0: without the "
                         "prior, what bootstrap_from = \"pilot\" writes)")
    ap.add_argument("--dump", type=Path, default=None,
                    help="a folder: write each cell's maps, truth, mask, errors and replicates there (npz)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "coverage_unmixing")
    ap.add_argument("--merge", type=Path, nargs="+", default=None, metavar="JSON",
                    help="run nothing: merge the rows of earlier results (e.g. seeds run in parallel) into --out")
    args = ap.parse_args(argv)
    rows = []
    t0 = time.perf_counter()
    if args.merge:
        runs = [json.loads(Path(f).read_text()) for f in args.merge]
        rows = [r for run in runs for r in run["rows"]]
        settings = {**{k: v for k, v in runs[0]["settings"].items() if k not in ("out", "dump", "wall_s")},
                    "seeds": sorted({r["seed"] for r in rows}), "merged": [Path(f).name for f in args.merge],
                    "wall_s": [run["settings"].get("wall_s") for run in runs]}
        write(args.out, settings, rows)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        for scene in args.scenes:
            for e in args.exposures:
                for seed in args.seeds:
                    rows.append(run_one(scene, e, seed, args, Path(tmp)))
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    settings["wall_s"] = time.perf_counter() - t0
    write(args.out, settings, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
