"""Joint fusion and unmixing (issue 27): quality against three set-ups, and speed.

Not a unit test: a script that runs real solves on the CasA-like toy (thermal kT and
velocity varying across the shell, synchrotron of varying Γ; lines broadened by 1000 km/s
in scene and model) seen by XMM-Newton EPIC-pn and XRISM Resolve.

Quality (default; configs/fusion_unmixing_casa_xmm_xrism_small.toml, 24 × 24 pixels of
4.1″, 240 bins of 25 eV; exposures scaled by ``--exposure-scales``): median errors over the
pixels where the component is brighter than 1 % of its peak of

- ``joint``: problem ``fusion_unmixing`` on both cubes;
- ``pn only``: the same problem on the pn cube alone (comparison a);
- ``resolve only``: the same problem on the Resolve cube alone at its own pixels (a model
  grid of 3 × 3 model pixels per Resolve pixel), the maps repeated onto the fine grid
  (comparison b);
- ``fusion+pixelfit``: the shipped small fusion set-up (configs/fusion_xmm_xrism_small.toml:
  2D-1D starlet, 100 FISTA iterations) on the same counts, then per-pixel fits of the
  fused cube (pseudo-counts: the cube × Resolve's exposure × area, identity response;
  comparison c);
- ``pixelfit pn`` / ``pixelfit resolve``: the per-pixel fits that start the joint run.

Speed (``--published``): configs/fusion_unmixing_casa_xmm_xrism.toml (2400 × 45 × 45,
float32): the time of each stage (tables, start fits, set-up) and per PALM iteration over
``--max-iter`` iterations, in one process.

    .venv/bin/python bench/fusion_unmixing.py --max-iter 200        # quality table, small grid
    .venv/bin/python bench/fusion_unmixing.py --published-quality --exposure-scales 1 --max-iter 150
    .venv/bin/python bench/fusion_unmixing.py --published --max-iter 600   # timings, cost history
    .venv/bin/python bench/fusion_unmixing.py --skip-fusion --seeds 0 1 2 3 4   # means over noise draws

``--published-quality``: the quality table at the published size (comparison c then runs
configs/fusion_xmm_xrism.toml with the approximate prox, 300 iterations: ~9 min;
``--skip-fusion`` leaves it out). The tables of docs/fusion_unmixing.md come from these
three commands (and ``--exposure-scales 0.1 --skip-fusion`` at the published size).

Writes ``<out>/fusion_unmixing.md`` and ``.json`` (default ``runs/bench_fusion_unmixing``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SMALL = ROOT / "configs" / "fusion_unmixing_casa_xmm_xrism_small.toml"
PUBLISHED = ROOT / "configs" / "fusion_unmixing_casa_xmm_xrism.toml"
FUSION = ROOT / "configs" / "fusion_xmm_xrism_small.toml"
# The published fusion set-up with the approximate 2D-1D prox (~1 s per iteration instead of
# ~8; docs/fusion.md: 49.31 dB against 49.53 for the shipped exact prox).
FUSION_PUBLISHED = (ROOT / "configs" / "fusion_xmm_xrism.toml",
                    ['regularizers[0].options.prox="approximate"', "solver.options.monotone=true", "solver.max_iter=300"])
COLUMNS = [("thermal.kT", "kT"), ("synchrotron.index", "Γ"), ("thermal.amplitude", "a_th"),
           ("synchrotron.amplitude", "a_sync")]


def _load(path, overrides):
    from xhsi.config import load_config

    return load_config(path, list(overrides) + ["run.quicklook=false"])


def _problem(cfg, prep, observations, grid=None):
    from xhsi import plugins
    from xhsi.problems.fusion_unmixing import FusionUnmixing

    return FusionUnmixing(cfg, prep.backend, grid or prep.grid, observations, [],
                          plugins.get("likelihood", "poisson"), cfg.problem)


def _solve(problem, cfg):
    from xhsi import plugins

    solver = plugins.get("solver", cfg.solver.name).from_config(cfg.solver)
    t0 = time.perf_counter()
    result = problem.solve(solver)
    return result, time.perf_counter() - t0


def _row(name, maps, truth, **extra) -> dict:
    from xhsi.problems.components import map_metrics

    m = map_metrics(maps, truth)
    row = {"method": name, **{key: m[key]["median_relative_error"] for key, _ in COLUMNS},
           "z_kms": m["thermal.z"]["median_absolute_error_kms"]}
    row.update(extra)
    return row


def resolve_alone(problem):
    """Comparison (b): the problem on the Resolve counts at Resolve's own pixels, maps
    repeated onto the fine grid (``fusion_unmixing_comparisons.spectrometer_alone``), and
    its wall time."""
    from xhsi.problems.fusion_unmixing_comparisons import spectrometer_alone

    t0 = time.perf_counter()
    maps = spectrometer_alone(problem)
    return maps, time.perf_counter() - t0


def fusion_then_pixelfit(prep, problem, fusion_config=(FUSION, [])):
    """Comparison (c): a fusion set-up (config and overrides) on the same counts, then
    per-pixel fits of the fused cube (``fusion_unmixing_comparisons.pixelfit_of_cube``)."""
    from xhsi import plugins
    from xhsi.problems.base import make_regularizers
    from xhsi.problems.fusion_unmixing_comparisons import pixelfit_of_cube
    from xhsi.problems.imaging import Fusion

    fcfg = _load(*fusion_config)
    fusion = Fusion(fcfg, prep.backend, prep.grid, prep.observations, make_regularizers(fcfg),
                    plugins.get("likelihood", "poisson"), fcfg.problem)
    result, wall = _solve(fusion, fcfg)
    t0 = time.perf_counter()
    maps = pixelfit_of_cube(problem, result.arrays["cube"])
    return maps, wall + time.perf_counter() - t0


def expected_counts(prep, names) -> None:
    """Replace the counts of the observations named in ``names`` by their expectation
    A_k Z + B_k at the scene's truth (noise-free counts), in place."""
    for o in prep.observations:
        if o.name in names:
            mu = o.forward.apply(prep.backend.asarray(prep.truth))
            o.counts = mu if o.background is None else mu + o.background


def quality(scale: float, max_iter: int, config=SMALL, fusion_config=(FUSION, []), with_fusion=True,
            seed: int | None = None, extra=(), expected=()) -> list[dict]:
    """The rows of one exposure scale (``seed``: the noise draw, ``[run] seed``; ``extra``:
    more ``--set`` overrides for joint, (a) and (b); ``expected``: observations whose counts
    are their expectation, without noise)."""
    from xhsi.runner import prepare

    probe = _load(config, [])
    overrides = [f"observations.{o.name}.exposure_s={o.exposure_s * scale}" for o in probe.observations]
    overrides.append(f"solver.max_iter={max_iter}")
    overrides += ([f"run.seed={seed}"] if seed is not None else []) + list(extra)
    cfg = _load(config, overrides)
    prep = prepare(cfg)
    expected_counts(prep, expected)
    truth = prep.scene_truth
    joint = _problem(cfg, prep, prep.observations)
    result, wall = _solve(joint, cfg)
    n = result.metadata["n_iter"]
    label = ", ".join(f"{o.name} {o.exposure_s:.0e} s" for o in cfg.observations)
    rows = [_row("joint", result.maps, truth, iterations=n, wall_s=wall,
                 per_iteration_s=result.metadata["solve_wall_s"] / max(n, 1), exposures=label)]
    rows.append(_row("pixelfit pn", joint.baseline_maps(), truth))
    rows.append(_row("pixelfit resolve", joint.spectrometer_maps(), truth))
    imager = prep.observations[joint.imager]
    alone = _problem(cfg, prep, [imager])
    res_a, wall_a = _solve(alone, cfg)
    rows.append(_row("(a) pn only", res_a.maps, truth, iterations=res_a.metadata["n_iter"], wall_s=wall_a))
    maps_b, wall_b = resolve_alone(joint)
    rows.append(_row("(b) resolve only", maps_b, truth, wall_s=wall_b))
    if with_fusion:
        maps_c, wall_c = fusion_then_pixelfit(prep, joint, fusion_config)
        rows.append(_row("(c) fusion+pixelfit", maps_c, truth, wall_s=wall_c))
    for r in rows:
        r["exposures"] = label
        if seed is not None:
            r["seed"] = seed
    return rows


def seed_means(rows: list[dict]) -> list[dict]:
    """Per (exposures, method), the mean of each column over the seeds' rows."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["exposures"], r["method"]), []).append(r)
    out = []
    for (label, method), group in groups.items():
        mean = {key: float(np.mean([g[key] for g in group])) for key, _ in COLUMNS}
        mean["z_kms"] = float(np.mean([g["z_kms"] for g in group]))
        out.append({"exposures": label, "method": f"{method}, mean of {len(group)} seeds", **mean})
    return out


def published(max_iter: int) -> dict:
    """Stage timings at the published size, one process (2 shared cores)."""
    from xhsi import plugins
    from xhsi.runner import prepare

    cfg = _load(PUBLISHED, [f"solver.max_iter={max_iter}"])
    times = {}
    t0 = time.perf_counter()
    prep = prepare(cfg)
    times["prepare_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    problem = _problem(cfg, prep, prep.observations)
    times["tables_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    x0, value, blocks, mixture = problem.build()
    times["start_and_setup_s"] = time.perf_counter() - t0
    solver = plugins.get("solver", "palm").from_config(cfg.solver)
    solver.setup(x0, value, blocks)
    t0 = time.perf_counter()
    out = solver.run(None)
    times["solve_s"] = time.perf_counter() - t0
    times["iterations"] = out.n_iter
    times["per_iteration_s"] = times["solve_s"] / max(out.n_iter, 1)
    times["stop_reason"] = out.stop_reason
    times["history"] = [[int(row[0]), float(row[1]), float(row[3])] for row in out.history]  # iteration, cost, s
    times["tables"] = {c.name: {"rank": t.rank, "intervals": t.grid.intervals, "relative_error": t.table_error}
                       for c, t in zip(problem.exact_components, problem.tables)}
    maps = problem._maps(mixture, out.x)
    from xhsi.problems.components import map_metrics

    m = map_metrics(maps, prep.scene_truth)
    times["maps"] = {k: v["median_relative_error"] for k, v in m.items()}
    times["z_kms"] = m["thermal.z"]["median_absolute_error_kms"]
    return times


def table(rows: list[dict]) -> str:
    head = ("| exposures | method | " + " | ".join(label for _, label in COLUMNS)
            + " | \\|Δz\\| (km/s) | iterations | wall (s) |")
    lines = [head, "|" + "---|" * (len(COLUMNS) + 5)]
    for r in rows:
        cells = " | ".join(f"{r[key]:.4f}" for key, _ in COLUMNS)
        it = r.get("iterations", "")
        wall = f"{r['wall_s']:.1f}" if "wall_s" in r else ""
        method = r["method"] + (f" (seed {r['seed']})" if "seed" in r else "")
        lines.append(f"| {r['exposures']} | {method} | {cells} | {r['z_kms']:.0f} | {it} | {wall} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--exposure-scales", type=float, nargs="+", default=[1.0, 0.1])
    ap.add_argument("--max-iter", type=int, default=200)
    ap.add_argument("--published", action="store_true", help="time the published size instead")
    ap.add_argument("--published-quality", action="store_true",
                    help="the quality table at the published size (fusion: approximate prox, 300 iterations)")
    ap.add_argument("--skip-fusion", action="store_true", help="leave comparison (c) out (the slowest)")
    ap.add_argument("--seeds", type=int, nargs="+", help="noise draws ([run] seed) to average over")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="an override for the unmixing runs (joint, (a), (b)), e.g. problem.joint_metric=true")
    ap.add_argument("--expected", nargs="+", default=[], metavar="NAME",
                    help="observations whose counts are their expected counts (noise-free), e.g. xrism")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_fusion_unmixing")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.published:
        times = published(args.max_iter)
        (args.out / "published.json").write_text(json.dumps(times, indent=1))
        print(json.dumps(times, indent=1))
        return 0
    where = (PUBLISHED, FUSION_PUBLISHED) if args.published_quality else (SMALL, (FUSION, []))
    seeds = args.seeds or [None]
    rows = [r for s in args.exposure_scales for seed in seeds
            for r in quality(s, args.max_iter, *where, not args.skip_fusion, seed, args.overrides, args.expected)]
    if args.seeds:
        rows += seed_means(rows)
    text = table(rows)
    (args.out / "fusion_unmixing.md").write_text(text + "\n")
    (args.out / "fusion_unmixing.json").write_text(json.dumps(rows, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
