"""A figure of an unmixing or fusion_unmixing run's parameter maps for the docs: per map
(default kT, z in km/s, Γ), the truth, the run's map, its error map (``_ERR``), and
|map − truth| / error, from the run folder's ``maps.fits`` and ``truth_maps.fits``; the map,
error and ratio panels grey where the component is fainter than 1 % of its peak (the pixels
the run's map metrics leave out).

Not a unit test: a script over a finished run.

    .venv/bin/python bench/maps_figure.py RUN_DIR --out docs/fusion_unmixing_maps.png \
        --title "configs/fusion_unmixing_casa_xmm_xrism.toml (pn 1e5 s + Resolve 2e5 s)"
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

#: (HDU name, label, scale to the plotted unit, unit)
MAPS = {"THERMAL_KT": ("kT", 1.0, "keV"),
        "THERMAL_Z": ("line-of-sight velocity cz", 299792.458, "km/s"),  # c in km/s (CODATA, exact)
        "SYNCHROTRON_INDEX": ("Γ", 1.0, "")}


def read(path: Path) -> dict[str, np.ndarray]:
    from astropy.io import fits

    with fits.open(path) as hdul:
        return {h.name: np.asarray(h.data, dtype=np.float64) for h in hdul if h.data is not None}


def figure(run: Path, names: list[str], title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    maps, truth = read(run / "maps.fits"), read(run / "truth_maps.fits")
    fig, axes = plt.subplots(len(names), 4, figsize=(13, 3.1 * len(names)), squeeze=False)
    for row, name in zip(axes, names):
        label, scale, unit = MAPS[name]
        t, m, e = truth[name] * scale, maps[name] * scale, maps[f"{name}_ERR"] * scale
        # the pixels the metrics score: the component brighter than 1 % of its peak (grey elsewhere)
        amp = truth[name.split("_")[0] + "_AMPLITUDE"]
        outside = amp <= 0.01 * np.max(amp)
        m, e = np.where(outside, np.nan, m), np.where(outside, np.nan, e)
        lo, hi = np.nanpercentile(np.concatenate([t.ravel(), m.ravel()]), [1, 99])
        panels = [(t, f"truth: {label}", unit, (lo, hi), "viridis"), (m, f"joint map: {label}", unit, (lo, hi), "viridis"),
                  (e, f"1-σ error map: {label}", unit, (0, np.nanpercentile(e[np.isfinite(e)], 98)), "magma"),
                  (np.abs(m - t) / e, "|map − truth| / error", "", (0, 3), "magma")]
        for ax, (img, head, u, (vmin, vmax), cmap) in zip(row, panels):
            ax.set_facecolor("0.75")
            im = ax.imshow(img, origin="lower", vmin=vmin, vmax=vmax, cmap=cmap)
            ax.set_title(head, fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label=u)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="run folder (maps.fits, truth_maps.fits)")
    ap.add_argument("--out", type=Path, required=True, help="PNG to write")
    ap.add_argument("--maps", nargs="+", default=list(MAPS), choices=list(MAPS))
    ap.add_argument("--title", default="")
    args = ap.parse_args(argv)
    for f in ("maps.fits", "truth_maps.fits"):
        if not (args.run / f).is_file():
            print(f"{args.run / f} is missing: give the folder of a finished run of a simulated scene", file=sys.stderr)
            return 2
    fig = figure(args.run, args.maps, args.title or str(args.run))
    fig.savefig(args.out, dpi=90)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
