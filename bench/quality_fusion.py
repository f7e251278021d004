"""Quality study of fusion (issue 6): run the published regulariser set-ups on the CasA-like
scene and write a markdown table of their metrics next to the two data-only baselines.

Not a unit test and not a pytest-benchmark suite: a script that runs real (heavy) fusions.
At the published toy size (2400 × 45 × 45) one FISTA iteration takes a few seconds on two
CPU cores, so a full table costs minutes to an hour; use ``--max-iter`` to scout.

    .venv/bin/python bench/quality_fusion.py                       # every set-up, float32
    .venv/bin/python bench/quality_fusion.py --max-iter 100 --float64 starlet2d1d
    .venv/bin/python bench/quality_fusion.py --small               # the CI-sized grid, ~1 min

Each run writes its usual outputs under ``--out`` (default ``runs/quality_fusion``, git
ignored); the table goes to ``<out>/quality.md`` and to stdout. Columns: iterations, wall
time of the whole run (s), PSNR (dB), ASAM over all pixels and over the pixels holding at
least 1 % of the peak flux (degrees), relative error per voxel Σ|ẑ − z| / Σ|z|; the
baselines are the one-step Richardson–Lucy estimates from each observation alone
(``metrics.json`` → ``baselines``). ``--float64 NAME`` reruns set-up NAME in float64 and
reports the PSNR difference (the quality bar asks for < 1e-3 dB).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: set-up name → config (published toy size), Lascar et al. 2025 (A&A 694, A34) §3.
SETUPS = {
    "starlet2d1d": ROOT / "configs" / "fusion_xmm_xrism.toml",
    "lowrank_sobolev": ROOT / "configs" / "fusion_xmm_xrism_lowrank_sobolev.toml",
    "lowrank_starlet2d": ROOT / "configs" / "fusion_xmm_xrism_lowrank_starlet2d.toml",
    "lowrank_sobolev_absolute": ROOT / "configs" / "fusion_xmm_xrism_lowrank_sobolev.toml",
    "lowrank_sobolev_pca": ROOT / "configs" / "fusion_xmm_xrism_lowrank_sobolev.toml",
    "lowrank_starlet2d_pca": ROOT / "configs" / "fusion_xmm_xrism_lowrank_starlet2d.toml",
    "starlet2d1d_plain": ROOT / "configs" / "fusion_xmm_xrism.toml",
    "starlet2d1d_per_pixel": ROOT / "configs" / "fusion_xmm_xrism.toml",
    "starlet2d1d_relative_per_pixel": ROOT / "configs" / "fusion_xmm_xrism.toml",
    "starlet2d1d_details": ROOT / "configs" / "fusion_xmm_xrism.toml",
    "starlet2d1d_relative_per_pixel_details": ROOT / "configs" / "fusion_xmm_xrism.toml",
    "starlet2d1d_faint": ROOT / "configs" / "fusion_xmm_xrism.toml",
    "starlet2d1d_relative_per_pixel_faint": ROOT / "configs" / "fusion_xmm_xrism.toml",
}

#: the published principal-spectra basis (rank 4, W·H unconstrained) instead of the shipped
#: non-negative one; Sobolev at its published weight and in its published (absolute) form.
PCA = ['regularizers[0].options.basis="pca"', "regularizers[0].options.rank=4"]
#: The shipped 2D-1D set-up is 2D-1D starlet ℓ1 (k = 1.5, per-pixel thresholds, exact prox in
#: the EM metric) plus a weak Sobolev term, both relative to the start's brightness
#: (docs/fusion.md). PLAIN undoes that: the 2D-1D ℓ1 alone on the cube, k = 3, per-band
#: thresholds, the approximate prox, monotone FISTA, 1200 iterations (the published objective; the
#: Sobolev term is kept at weight 0, relative_floor back to its default for the variants).
#: The variants studied for its all-pixel ASAM (docs/fusion.md, "Known limits") start from
#: PLAIN: thresholds per sky pixel, and with them the relative variable (a preconditioner
#: then) and k = 1.5; only the detail × detail bands penalised (the published code), alone
#: and with the relative variable, per-pixel thresholds and a coarse spatial band ±32 pixels
#: wide; brightness-adaptive thresholds (k_faint), alone and with the relative variable.
PLAIN = ['problem.regularize="absolute"', "problem.relative_floor=0.1", "regularizers[0].options.k=3.0",
         "regularizers[0].options.per_pixel=false", "regularizers[1].weight=0.0",
         'regularizers[0].options.prox="approximate"', "solver.options.monotone=true", "solver.max_iter=1200"]
FAINT = ["regularizers[0].options.k=1.5", "regularizers[0].options.k_faint=10.0"]
PER_PIXEL = ["regularizers[0].options.per_pixel=true"]
DETAILS = ['regularizers[0].options.bands="details"']
RELATIVE_PER_PIXEL = PER_PIXEL + ['problem.regularize="relative"', "regularizers[0].options.k=1.5"]
EXTRA = {"lowrank_sobolev_pca": PCA + ["regularizers[1].weight=1.0", 'problem.regularize="absolute"'],
         "lowrank_starlet2d_pca": PCA,
         "lowrank_sobolev_absolute": ['problem.regularize="absolute"'],
         "starlet2d1d_plain": PLAIN,
         "starlet2d1d_per_pixel": PLAIN + PER_PIXEL,
         "starlet2d1d_relative_per_pixel": PLAIN + RELATIVE_PER_PIXEL,
         "starlet2d1d_details": PLAIN + DETAILS,
         "starlet2d1d_relative_per_pixel_details": PLAIN + DETAILS + PER_PIXEL + [
             'problem.regularize="relative"', "regularizers[0].options.scales_2d=4"],
         "starlet2d1d_faint": PLAIN + FAINT,
         "starlet2d1d_relative_per_pixel_faint": PLAIN + RELATIVE_PER_PIXEL + [
             "regularizers[0].options.k_faint=100.0", "regularizers[0].options.faint_level=0.03"]}

#: --small: the grid of configs/fusion_xmm_xrism_small.toml (240 × 24 × 24, pn rebin 8).
SMALL = ["model.energy.bins=240", "model.pixels=[24, 24]", "observations.xmm.spectral_rebin=8"]


def run_one(config: Path, out: Path, overrides: list[str]) -> dict:
    from xhsi.config import load_config
    from xhsi.runner import run

    cfg = load_config(config, overrides)
    result = run(cfg, out=out, overwrite=True, quiet=True)
    return {"metrics": result.metrics, "n_iter": result.metadata["n_iter"], "wall_s": result.metadata["wall_s"],
            "stop_reason": result.metadata["stop_reason"], "dtype": cfg.run.dtype}


def row(label: str, iters, wall, m: dict) -> str:
    return (f"| {label} | {iters} | {wall} | {m['psnr_db']:.2f} | {m['asam_deg']:.1f} | "
            f"{m['asam_bright_deg']:.1f} | {m['rel_error_voxel']:.3f} |")


def table(runs: dict[str, dict], float64: dict[str, dict]) -> str:
    lines = ["| set-up | iterations | wall (s) | PSNR (dB) | ASAM (°) | ASAM ≥1 % peak (°) | rel. error / voxel |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    first = next(iter(runs.values()))
    for name, m in first["metrics"]["baselines"].items():
        lines.append(row(f"data-only `{name}` (baseline)", "–", "–", m))
    for name, r in runs.items():
        lines.append(row(f"{name} ({r['dtype']})", r["n_iter"], f"{r['wall_s']:.0f}", r["metrics"]["result"]))
    for name, r in float64.items():
        lines.append(row(f"{name} ({r['dtype']})", r["n_iter"], f"{r['wall_s']:.0f}", r["metrics"]["result"]))
    lines.append("")
    bases = first["metrics"]["baselines"]
    for name, r in runs.items():
        m = r["metrics"]["result"]
        beats = {key: all(m[key] > b[key] if key == "psnr_db" else m[key] < b[key] for b in bases.values())
                 for key in ("psnr_db", "asam_deg", "asam_bright_deg", "rel_error_voxel")}
        lines.append(f"- {name}: beats both baselines in " + ", ".join(f"{k} {'yes' if v else 'NO'}"
                                                                      for k, v in beats.items()))
    for name, r in float64.items():
        d = r["metrics"]["result"]["psnr_db"] - runs[name]["metrics"]["result"]["psnr_db"]
        lines.append(f"- {name}: PSNR(float64) − PSNR(float32) = {d:+.2e} dB")
    return "\n".join(lines + [""] + by_flux_table(runs)) + "\n"


def by_flux_table(runs: dict[str, dict]) -> list[str]:
    """ASAM (°) per class of true flux (``metrics.asam_by_flux``), baselines first."""
    first = next(iter(runs.values()))["metrics"]["asam_by_flux"]

    def label(c):
        hi = c["max_fraction"]
        return f"{100 * c['min_fraction']:g}–{100 * hi:g} %" if hi is not None else f"≥ {100 * c['min_fraction']:g} %"

    head = [c for c in first["result"]]
    lines = ["| ASAM (°) by true flux / peak | " + " | ".join(label(c) for c in head) + " |",
             "| --- |" + " --- |" * len(head),
             "| pixels | " + " | ".join(str(c["pixels"]) for c in head) + " |"]
    rows = [(f"data-only `{n}`", cl) for n, cl in first["baselines"].items()]
    rows += [(name, r["metrics"]["asam_by_flux"]["result"]) for name, r in runs.items()]
    for name, classes in rows:
        lines.append(f"| {name} | " + " | ".join(f"{c['asam_deg']:.1f}" for c in classes) + " |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("setups", nargs="*", help=f"set-ups to run: {', '.join(SETUPS)} (default: all)")
    parser.add_argument("--max-iter", type=int, default=None, help="override solver.max_iter")
    parser.add_argument("--float64", action="append", default=[], metavar="NAME",
                        help="also run set-up NAME in float64 and report the PSNR difference")
    parser.add_argument("--small", action="store_true", help="the CI-sized grid instead of the published one")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any other override")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "quality_fusion")
    args = parser.parse_args(argv)
    names = args.setups or list(SETUPS)
    unknown = [n for n in names + args.float64 if n not in SETUPS]
    if unknown:
        parser.error(f"unknown set-up(s) {', '.join(unknown)}; choose from {', '.join(SETUPS)}")
    common = ["run.quicklook=false", "run.checkpoint_every=0"] + (SMALL if args.small else []) + args.set
    if args.max_iter is not None:
        common.append(f"solver.max_iter={args.max_iter}")
    runs, float64 = {}, {}
    for name in names:
        runs[name] = run_one(SETUPS[name], args.out / name, EXTRA.get(name, []) + common + ["run.dtype=float32"])
        print(f"{name}: {json.dumps(runs[name]['metrics']['result'])}", file=sys.stderr, flush=True)
    for name in args.float64:
        if name not in runs:
            parser.error(f"--float64 {name}: run that set-up too")
        float64[name] = run_one(SETUPS[name], args.out / f"{name}_float64",
                                EXTRA.get(name, []) + common + ["run.dtype=float64"])
    text = table(runs, float64)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
