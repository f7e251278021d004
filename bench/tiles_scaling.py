"""Tiled runs (issue 28 item 4): a tiled fusion against the untiled run of the same config,
and the per-tile cost of an Athena X-IFU deconvolution that the mosaic estimate of
docs/scaling.md is built from.

    python bench/tiles_scaling.py match            # pn + Resolve, 144 x 144 x 60, 4 tiles (~3 min)
    python bench/tiles_scaling.py xifu             # X-IFU tiles at 3 sizes (~3 min)

``match``: the field is 4 tiles' cores (2 x 2 cores of 72 px); untiled ``xhsi run`` and
``xhsi tiles --workers 2`` on the same simulated counts; the relative difference
|tiled − untiled| / max(|untiled|, 1e-3 max|untiled|) per voxel, its median and 90th
percentile over the whole field and within 4 px of the core edges (the seams), the PSNR of
both against the truth, and the wall times. ``xifu``: one tile of the shipped X-IFU
deconvolution config (configs/deconvolution_athena_xifu.toml: 2.14" pixels, spatial
rebin 2, starlet 2D-1D) run in a child process at three sizes: its time per iteration
(from its history) and the child's peak resident memory (ru_maxrss). Results go to
bench/results/tiles_scaling.json (merged by part).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "tiles_scaling.json"

FIELD = """\
[run]
problem = "fusion"
output = "untiled"
dtype = "float64"
quicklook = false

[model]
energy = {{ min_kev = 2.0, max_kev = 8.0, bins = 60 }}
pixels = [{n}, {n}]
pixel_arcsec = 4.1

[[observations]]
name = "xmm"
instrument = "xmm_epic_pn"
exposure_s = 1.0e5
spectral_rebin = 4

[[observations]]
name = "xrism"
instrument = "xrism_resolve"
exposure_s = 2.0e5
spatial_rebin = 3

[problem]
regularize = "absolute"     # as measured in docs/scaling.md (relative penalties: see there)

[[regularizers]]
name = "starlet2d1d_l1"
options = {{ scales_2d = 2, scales_1d = 3, k = 3.0 }}

[solver]
name = "fista"
max_iter = 40
tol = 0.0

[simulate]
scene = "casa_like"
"""


def _xhsi(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "xhsi", *args, "--quiet"], check=True)
    return time.perf_counter() - start


def match(core: int = 72) -> dict:
    from xhsi.io.cubes import read_cube

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config = tmp / "field.toml"
        config.write_text(FIELD.format(n=2 * core))
        t_untiled = _xhsi("run", str(config))
        t_tiled = _xhsi("tiles", str(config), "--tile", str(core), "--workers", "2", "--out", str(tmp / "tiled"))
        a = read_cube(tmp / "untiled" / "result.fits").data.astype(np.float64)
        b = read_cube(tmp / "tiled" / "mosaic" / "result.fits").data.astype(np.float64)
        rel = np.abs(a - b) / np.maximum(np.abs(a), 1e-3 * np.abs(a).max())
        seams = np.zeros(a.shape[1:], bool)
        seams[core - 4: core + 4, :] = seams[:, core - 4: core + 4] = True
        tiles = json.loads((tmp / "tiled" / "mosaic" / "tiles.json").read_text())
        psnr = [json.loads((tmp / p / "metrics.json").read_text())["result"]["psnr_db"]
                for p in ("untiled", "tiled/mosaic")]
    return {"field_px": 2 * core, "bins": 60, "core_px": core, "overlap_px": tiles["overlap"], "reach_px": tiles["reach"],
            "tile_px": [t["rows"][1] - t["rows"][0] for t in tiles["tiles"]], "wall_untiled_s": t_untiled,
            "wall_tiled_2_workers_s": t_tiled, "median_rel": float(np.median(rel)),
            "p90_rel": float(np.percentile(rel, 90)), "seam_median_rel": float(np.median(rel[:, seams])),
            "seam_p90_rel": float(np.percentile(rel[:, seams], 90)), "psnr_untiled_db": psnr[0],
            "psnr_tiled_db": psnr[1]}


CHILD = """
import resource, sys
from xhsi.config import load_config
from xhsi.runner import run
result = run(load_config(sys.argv[1], sys.argv[2:]), quiet=True)
h = result.history
per_iter = (h[-1]["time_s"] - h[0]["time_s"]) / max(1, h[-1]["iteration"] - h[0]["iteration"])
print(result.metadata["wall_s"], result.metadata["n_iter"], per_iter, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def xifu(sizes=((40, 480), (80, 480), (80, 960)), iterations: int = 20) -> dict:
    """Per-iteration time from the run's own history (its first to its last report), so
    the set-up (simulation, calibration) is not in it; the peak RSS is the whole run's."""
    rows = []
    for pixels, bins in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            sets = [f"model.pixels=[{pixels}, {pixels}]", f"model.energy.bins={bins}", f"solver.max_iter={iterations}",
                    "solver.tol=0.0", "solver.report_every=1", "run.quicklook=false", f'run.output="{tmp}/run"']
            out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT / "configs" / "deconvolution_athena_xifu.toml"),
                                  *sets], check=True, capture_output=True, text=True).stdout.split()
        wall, n_iter, per_iter, rss_kib = float(out[0]), int(out[1]), float(out[2]), int(out[3])
        rows.append({"pixels": pixels, "bins": bins, "voxels": pixels * pixels * bins, "wall_s": wall,
                     "n_iter": n_iter, "s_per_iteration": per_iter, "setup_s": wall - per_iter * n_iter,
                     "peak_rss_mib": rss_kib / 1024})
    return {"config": "configs/deconvolution_athena_xifu.toml (float32)", "rows": rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=("match", "xifu"))
    args = parser.parse_args(argv)
    result = match() if args.part == "match" else xifu()
    data = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    data[args.part] = result
    RESULTS.write_text(json.dumps(data, indent=1) + "\n")
    print(textwrap.indent(json.dumps(result, indent=1), "  "))
    return 0


if __name__ == "__main__":
    sys.exit(main())
