"""MSH 15-52 (Chandra ACIS-I, ObsID 754) deconvolved with `xhsi run` and nothing tuned, the
annulus spectra of the result checked against independent fits of the events.

    python bench/real_msh1552_deconvolution.py [--shared ../shared] [--grid]

1. The event list binned on 64 x 64 pixels of 4" (a 256" field centred on PSR B1509-58, the
   pulsar's 3" circle left out), 1-8 keV in planes of 8 PI channels: 53 255 counts.
2. `xhsi run` of two untuned deconvolution configs: no [[regularizers]] at all (the run
   chooses lowrank_pca + sobolev, their options and the stop from held-out counts) and
   `regularizers = []` (only the stop chosen); with ``--grid`` also every default candidate
   (rank 4 / 8 / 16 x Sobolev weight 0.03 / 0.3) run to convergence (FISTA, tol 1e-6).
3. For every result and every annulus around the pulsar of real_msh1552.ANNULI_ARCSEC inside
   the field: the result's sky spectrum summed over the annulus, fitted by an absorbed power
   law (scipy least squares on the unfolded spectrum, each plane weighted by the annulus'
   counts in it: relative error 1/sqrt(counts)), against the independent C-stat fit of the
   annulus' PI spectrum (real_msh1552.independent_fit: own RMF decoding, forward folding,
   Nelder-Mead); and the result's expected counts (through xhsi's forward operator) over the
   data's counts per annulus and per energy band, i.e. how much flux the result keeps.

The independent fits share with xhsi only the events, the RMF/ARF files and the Morrison &
McCammon (1983) cross-sections. Writes bench/results/real_msh1552_deconvolution.{json,md};
runs in runs/msh1552/deconvolution (git ignored).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import real_msh1552 as msh

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "msh1552" / "deconvolution"
RESULTS = ROOT / "bench" / "results" / "real_msh1552_deconvolution"
PIXELS, PIXEL_ARCSEC = 64, 4.0
BANDS_KEV = ((1.0, 2.0), (2.0, 3.5), (3.5, 5.0), (5.0, 8.0))
CONFIG = """\
{top}[run]
problem = "deconvolution"
output = "{output}"
dtype = "float32"
seed = 0
quicklook = false

[model]
energy = {{ min_kev = 1.0074, max_kev = 7.8986, bins = 59 }}   # the cube's planes (EBOUNDS)
pixels = [{pixels}, {pixels}]
pixel_arcsec = {pixel_arcsec}
object = "MSH 15-52"

[[observations]]
name = "acis"
instrument = "chandra_acis_i"
counts = "{cube}"
{extra}"""
GRID = [(rank, weight) for rank in (4, 8, 16) for weight in (0.03, 0.3)]


def bin_cube(events: Path) -> Path:
    from xhsi.instruments import load_instrument
    from xhsi.io.events import bin_events

    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "psr.reg").write_text(msh.PSR_REGION)
    cube = OUT / "msh1552_cube_256arcsec.fits"
    bin_events(events, load_instrument("chandra_acis_i"), cube, center_deg=msh.CENTER_DEG,
               size_arcsec=PIXELS * PIXEL_ARCSEC, pixel_arcsec=PIXEL_ARCSEC, energy_range_kev=(1.0, 8.0),
               energy_bin=8, exclude=OUT / "psr.reg")
    return cube


def configs(cube: Path, grid: bool) -> dict[str, Path]:
    """The untuned configs (and with ``grid`` the fixed candidates), written into OUT."""
    runs = {"no [[regularizers]] (default)": ("", ""), "regularizers = []": ("regularizers = []\n", "")}
    if grid:
        for rank, weight in GRID:
            runs[f"rank {rank}, Sobolev {weight}, converged"] = ("", (
                f'\n[[regularizers]]\nname = "lowrank_pca"\noptions = {{ rank = {rank}, basis = "nmf" }}\n\n'
                f'[[regularizers]]\nname = "sobolev"\nweight = {weight}\n\n[solver]\nmax_iter = 3000\ntol = 1e-6\n'))
    out = {}
    for i, (name, (top, extra)) in enumerate(runs.items()):
        path = OUT / f"run{i}.toml"
        path.write_text(CONFIG.format(top=top, output=f"run{i}", pixels=PIXELS, pixel_arcsec=PIXEL_ARCSEC,
                                      cube=cube.name, extra=extra))
        out[name] = path
    return out


def unfolded_fit(sky, counts, e_lo, e_hi):
    """(Γ, N_H / 1e22) of an absorbed power law fitted to the summed sky spectrum ``sky``
    (photons / s / cm² per bin), relative errors 1/sqrt(counts) per plane."""
    from scipy.optimize import least_squares

    centre, width = 0.5 * (e_lo + e_hi), e_hi - e_lo
    flux = sky / width
    rel = 1.0 / np.sqrt(np.maximum(counts, 1.0))
    sigma = msh.mm83_sigma_cm2(centre)

    def residual(p):
        model = np.exp(p[0]) * centre ** (-p[1]) * np.exp(-p[2] * 1e22 * sigma)
        return (flux - model) / (np.maximum(flux, 1e-30) * rel)

    p = least_squares(residual, [np.log(max(flux.mean(), 1e-12)), 2.0, 1.0], bounds=([-60, 0, 0], [10, 5, 10])).x
    return float(p[1]), float(p[2])


def check(folder: Path, cfg_path: Path, reference: dict) -> dict:
    from astropy.io import fits
    from xhsi.config import load_config
    from xhsi.runner import prepare

    prep = prepare(load_config(cfg_path))
    obs = prep.observations[0]
    data = np.asarray(obs.counts, dtype=np.float64)
    with fits.open(folder / "result.fits") as h:
        sky = np.asarray(h[0].data, dtype=np.float32)
        e_lo, e_hi = (np.asarray(h["EBOUNDS"].data.field(i), dtype=float) for i in (1, 2))
    model = np.asarray(obs.host_forward().apply(sky), dtype=np.float64)
    yy, xx = np.mgrid[:PIXELS, :PIXELS]
    radius = PIXEL_ARCSEC * np.hypot(yy - (PIXELS - 1) / 2, xx - (PIXELS - 1) / 2)
    centre = 0.5 * (e_lo + e_hi)
    annuli = []
    for lo, hi in msh.ANNULI_ARCSEC:
        if hi > PIXEL_ARCSEC * PIXELS / 2:
            continue
        inside = (radius >= lo) & (radius < hi)
        index, nh = unfolded_fit(sky[:, inside].sum(axis=1).astype(float), data[:, inside].sum(axis=1), e_lo, e_hi)
        ind = reference[(lo, hi)]
        annuli.append({"r_arcsec": [lo, hi], "counts": float(data[:, inside].sum()), "index": index, "nh": nh,
                       "independent": ind, "index_diff_sigma": (index - ind["index"]) / ind["index_err"],
                       "flux_kept": float(model[:, inside].sum() / data[:, inside].sum())})
    bands = {f"{a:g}-{b:g} keV": float(model[(centre >= a) & (centre < b)].sum() / data[(centre >= a) & (centre < b)].sum())
             for a, b in BANDS_KEV}
    run = json.loads((folder / "run.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").is_file() else {}
    chosen = (metrics.get("selection") or {}).get("chosen") or {}  # no metrics.json: no selection, no truth
    return {"n_iter": run.get("n_iter"), "stop_reason": run.get("stop_reason"), "chosen": chosen.get("name"),
            "annuli": annuli, "flux_kept": float(model.sum() / data.sum()), "flux_kept_by_band": bands}


def table(rows: dict) -> str:
    first = next(iter(rows.values()))
    rings = [f'{a["r_arcsec"][0]}–{a["r_arcsec"][1]}″' for a in first["annuli"]]
    lines = ["| run | iterations (choice) | " + " | ".join(f"Γ {r}" for r in rings) + " | flux kept (all / 5–8 keV) |",
             "|---|---|" + "---|" * len(rings) + "---|",
             "| independent fits of the events | | " + " | ".join(
                 f'{a["independent"]["index"]:.2f} ± {a["independent"]["index_err"]:.2f}' for a in first["annuli"])
             + " | |"]
    for name, row in rows.items():
        cells = " | ".join(f'{a["index"]:.2f} ({a["index_diff_sigma"]:+.1f}σ)' for a in row["annuli"])
        lines.append(f'| {name} | {row["n_iter"]} ({row["chosen"] or row["stop_reason"]}) | {cells} | '
                     f'{row["flux_kept"]:.3f} / {row["flux_kept_by_band"]["5-8 keV"]:.3f} |')
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--grid", action="store_true", help="also every default candidate, run to convergence")
    args = parser.parse_args(argv)
    events = args.shared / msh.EVENTS
    if not events.is_file():
        raise SystemExit(f"{events} not found: give --shared (the folder holding research/data)")
    from xhsi.config import load_config
    from xhsi.runner import run

    cube = bin_cube(events)
    response = msh.read_response(msh.RESPONSES / msh.RMF, msh.RESPONSES / msh.ARF)
    spectra, exposure = msh.annulus_spectra(events)
    reference = {ring: msh.independent_fit(counts.astype(float), exposure, response)
                 for ring, counts in zip(msh.ANNULI_ARCSEC, spectra)}
    rows = {}
    for name, path in configs(cube, args.grid).items():
        t0 = time.perf_counter()
        run(load_config(path), overwrite=True, quiet=True)
        folder = path.parent / load_config(path).run.output.name
        rows[name] = {**check(folder, path, reference), "wall_s": time.perf_counter() - t0}
        print(f'{name}: {rows[name]["n_iter"]} iterations ({rows[name]["chosen"]}), {rows[name]["wall_s"]:.0f} s, '
              f'flux kept {rows[name]["flux_kept"]:.3f}; Γ ' + ", ".join(
                  f'{a["index"]:.2f} ({a["index_diff_sigma"]:+.1f}σ)' for a in rows[name]["annuli"]), flush=True)
    RESULTS.with_suffix(".json").write_text(json.dumps({"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                                        "cube": str(cube), "runs": rows}, indent=1))
    RESULTS.with_suffix(".md").write_text(f"## MSH 15-52 deconvolved, nothing tuned ({time.strftime('%Y-%m-%d')})\n\n"
                                          + table(rows) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
