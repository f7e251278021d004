"""Quality study of unmixing (issue 7): unmixing against the per-pixel fits (pixelfit) on the
CasA-like toy at two count levels, as a markdown table.

Not a unit test: a script that runs real unmixings. configs/unmixing_casa_chandra_small.toml
(3-8 keV in 100 bins of 50 eV, ACIS-S, lines broadened by 1000 km/s in scene and model) at
32 × 32 pixels of 1.968″, exposures 3e4 s and 3e5 s (1e7 and 1e8 counts), 30 PALM
iterations from the unbinned pixel fits; the pixelfit column is the yardstick the runner
computes for every unmixing (``metrics.json`` → ``maps_pixelfit``: 30 Levenberg–Marquardt
iterations per pixel). About 1.5 min per exposure on one core.

    .venv/bin/python bench/quality_unmixing.py
    .venv/bin/python bench/quality_unmixing.py --pixels 16 --exposures 1e5 --max-iter 10

Columns: median relative error of kT, Γ (synchrotron index) and both amplitudes over the
pixels where the component is brighter than 1 % of its peak, and median |Δz| as a speed
(km/s; z crosses 0, so a relative error means nothing). Runs are written under ``--out``
(default ``runs/quality_unmixing``, git ignored); the table goes to ``<out>/quality.md``
and stdout.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "unmixing_casa_chandra_small.toml"
COLUMNS = [("thermal.kT", "kT"), ("synchrotron.index", "Γ"), ("thermal.amplitude", "a_th"),
           ("synchrotron.amplitude", "a_sync")]


def run_one(pixels: int, exposure_s: float, max_iter: int, out: Path) -> dict:
    from xhsi.config import load_config
    from xhsi.runner import run

    cfg = load_config(CONFIG, [f"model.pixels=[{pixels}, {pixels}]", f"observations.acis.exposure_s={exposure_s}",
                               f"solver.max_iter={max_iter}", "run.quicklook=false"])
    t0 = time.perf_counter()
    result = run(cfg, out=out / f"{pixels}px_{exposure_s:g}s", overwrite=True, quiet=True)
    wall = time.perf_counter() - t0
    row = {"pixels": pixels, "exposure_s": exposure_s, "n_iter": result.metadata["n_iter"], "wall_s": wall}
    for which in ("maps", "maps_pixelfit"):
        m = result.metrics[which]
        row[which] = {key: m[key]["median_relative_error"] for key, _ in COLUMNS}
        row[which]["z_kms"] = m["thermal.z"]["median_absolute_error_kms"]
    return row


def table(rows: list[dict]) -> str:
    head = "| exposure (s) | method | " + " | ".join(label for _, label in COLUMNS) + " | \\|Δz\\| (km/s) | iterations | wall (s) |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 5)]
    for r in rows:
        for which, name in (("maps_pixelfit", "pixelfit"), ("maps", "unmixing")):
            m = r[which]
            cells = " | ".join(f"{m[key]:.4f}" for key, _ in COLUMNS)
            extra = f"{r['n_iter']} | {r['wall_s']:.0f}" if which == "maps" else "30 (LM) | (inside)"
            lines.append(f"| {r['exposure_s']:.0e} | {name} | {cells} | {m['z_kms']:.0f} | {extra} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pixels", type=int, default=32)
    ap.add_argument("--exposures", type=float, nargs="+", default=[3e4, 3e5])
    ap.add_argument("--max-iter", type=int, default=30)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "quality_unmixing")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = [run_one(args.pixels, e, args.max_iter, args.out) for e in args.exposures]
    text = table(rows)
    (args.out / "quality.md").write_text(text + "\n")
    (args.out / "quality.json").write_text(json.dumps(rows, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
