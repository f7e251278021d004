"""The IAE on real data (issue 26): MSH 15-52 unmixed with RCW 89's thermal plasma as an
Interpolatory Auto-Encoder of a spectral library, against the exact ``thermal`` model, both
solved by the same solver (docs/real_data.md, "With an IAE for the thermal component").

1. a spectral library of ``thermal`` (``fit_abundance = false``, z = 0) at 2500 temperatures,
   log-uniform in 0.2-5 keV, on the 59 planes of the 16" cube of configs/msh1552_chandra_unmixing.toml
   (``xhsi.spectral.library.write_spectral_library``);
2. ``xhsi train-model`` of an IAE of that library (the ``[iae]`` defaults, ``log_parameters = ["kT"]``);
3. the unmixing config as shipped but with ``--solver`` (default L-BFGS, 100 iterations), once
   with ``absorption * thermal`` and once with ``absorption * iae``;
4. the medians compared: RCW 89's kT over its brightest 10 % of pixels in the exact run, the nebula's photon
   index and N_H by ring from the pulsar (pixels above the median nebula amplitude), the
   final cost.

Needs the binned cube (``python bench/real_msh1552.py`` writes it, or the `xhsi bin` command
in the config's header). Writes bench/results/real_msh1552_iae.json.

    python bench/real_msh1552_iae.py [--solver palm]
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
RINGS_ARCSEC = ((0, 40), (40, 80), (80, 140), (140, 250))
PIXEL_ARCSEC, PULSAR_PIXEL = 16.0, (29, 29)
TRAINING = """[model.energy]
min_kev = {lo!r}
max_kev = {hi!r}
bins = {bins}

[iae]
library = "{library}"
log_parameters = ["kT"]
seed = 0
"""


def library(path: Path, edges: np.ndarray, n: int = 2500, seed: int = 0) -> Path:
    """Spectra of ``thermal`` at z = 0 and n log-uniform temperatures in 0.2-5 keV."""
    from xhsi.spectral.library import write_spectral_library
    from xhsi.spectral.models import build_spectral_model

    model = build_spectral_model("thermal", {"fit_abundance": False}).setup(edges)
    kT = np.exp(np.random.default_rng(seed).uniform(np.log(0.2), np.log(5.0), n))
    spectra = np.asarray(model.evaluate(np.vstack([kT, np.zeros_like(kT)]))).T
    return write_spectral_library(path, spectra, kT[:, None], ["kT"], edges)


def summary(folder: Path, thermal=None) -> dict:
    """The compared medians of one run's maps.fits and its final cost; RCW 89's kT over
    ``thermal`` (a pixel mask; None: its brightest 10 % in this run)."""
    from astropy.io import fits

    with fits.open(folder / "maps.fits") as hdul:
        maps = {h.name: np.asarray(h.data, dtype=np.float64) for h in hdul if h.data is not None}
    ny, nx = maps["PWN_AMPLITUDE"].shape
    yy, xx = np.mgrid[:ny, :nx]
    radius = np.hypot(yy - PULSAR_PIXEL[0], xx - PULSAR_PIXEL[1]) * PIXEL_ARCSEC
    nebula = maps["PWN_AMPLITUDE"] > np.median(maps["PWN_AMPLITUDE"])
    rings = [{"r_arcsec": [lo, hi], "index": float(np.median(maps["PWN_INDEX"][nebula & (radius >= lo) & (radius < hi)])),
              "nh": float(np.median(maps["PWN_NH"][nebula & (radius >= lo) & (radius < hi)]))} for lo, hi in RINGS_ARCSEC]
    if thermal is None:
        thermal = maps["RCW89_AMPLITUDE"] > np.quantile(maps["RCW89_AMPLITUDE"], 0.9)
    cost = float((folder / "history.csv").read_text().strip().splitlines()[-1].split(",")[1])
    return {"rings": rings, "rcw89_kT_median": float(np.median(maps["RCW89_KT"][thermal])), "final_cost": cost,
            "_kT": maps["RCW89_KT"][thermal], "_mask": thermal}


def main(argv=None) -> int:
    from xhsi import cli

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--solver", default="lbfgs", choices=("lbfgs", "palm"))
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "msh1552" / "iae")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "real_msh1552_iae.json")
    args = ap.parse_args(argv)
    real_msh1552.unmixing_cube()  # exits saying how to bin it when it is missing
    args.work.mkdir(parents=True, exist_ok=True)
    from xhsi.config import load_config

    grid = load_config(CONFIG).model.energy
    edges = np.linspace(grid.min_kev, grid.max_kev, grid.bins + 1)
    library(args.work / "thermal_z0.npz", edges)
    (args.work / "train.toml").write_text(TRAINING.format(lo=grid.min_kev, hi=grid.max_kev, bins=grid.bins,
                                                          library=args.work / "thermal_z0.npz"))
    t0 = time.perf_counter()
    if cli.main(["train-model", str(args.work / "train.toml"), "--out", str(args.work / "iae.npz"), "--quiet"]) != 0:
        return 2
    report = {"train_s": round(time.perf_counter() - t0, 1), "solver": args.solver}
    solver = (["--set", 'solver.name="lbfgs"', "--set", "solver.options={}", "--set", "solver.max_iter=100"]
              if args.solver == "lbfgs" else [])
    iae = ["--set", 'components[1].model="absorption * iae"',
           "--set", f'components[1].options={{iae={{file="{args.work / "iae.npz"}"}}}}',
           "--set", "components[1].init={nh=1.0}", "--set", "components[1].bounds={}", "--set", "components[1].fixed=[]"]
    for name, extra in (("exact", []), ("iae", iae)):
        t0 = time.perf_counter()
        if cli.main(["run", str(CONFIG), "--out", str(args.work / name), "--overwrite", "--quiet", *solver, *extra]) != 0:
            return 2
        report[name] = summary(args.work / name, report["exact"]["_mask"] if name == "iae" else None)
        report[name]["run_s"] = round(time.perf_counter() - t0, 1)
    ratio = report["iae"].pop("_kT") / report["exact"].pop("_kT")  # the same pixels: the exact run's brightest
    for name in ("exact", "iae"):
        report[name].pop("_mask")
    report["rcw89_kT_median_abs_ratio_minus_1"] = float(np.median(np.abs(ratio - 1.0)))
    for name in ("exact", "iae"):
        r = report[name]
        print(f"{name:5s} RCW 89 kT {r['rcw89_kT_median']:.2f} keV  PWN Γ / N_H by ring "
              + "  ".join(f"{x['index']:.2f} / {x['nh']:.2f}" for x in r["rings"]) + f"  cost {r['final_cost']:.0f}")
    args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
