"""MSH 15-52 (Chandra ACIS-I, ObsID 754) from the event list to published maps, checked
against an independent fit: the walkthrough of docs/real_data.md.

    python bench/real_msh1552.py [--shared ../shared] [--out runs/msh1552] [--unmixing]

1. ``xhsi bin``: the event list on a 236 x 236 grid of 4" pixels centred on PSR B1509-58,
   1-8 keV in planes of 8 PI channels, the pulsar (3" circle) excluded; and the same field in
   59 x 59 pixels of 16" for the unmixing.
2. ``xhsi run configs/msh1552_chandra.toml``: an absorbed power law per 16" block (pixelfit);
   with ``--unmixing`` also configs/msh1552_chandra_unmixing.toml (power law + thermal).
3. Annuli around the pulsar: the spectrum of each (PI channels from the events) written as an
   OGIP PHA with the shipped ACIS-I RMF/ARF and fitted twice: by xhsi (``pixelfit`` of the
   PHA) and by an independent C-stat fit written here (own RMF decoding with astropy, own
   forward folding, scipy Nelder-Mead, errors from the numerical Hessian). Hardness ratio
   (H - S)/(H + S) with S = 2-4 keV and H = 4-8 keV counts.
4. The map figure (docs/msh1552_maps.png) on sky axes, and bench/results/real_msh1552.json.

The independent fit shares with xhsi only the inputs: the events, the RMF/ARF files and the
Morrison & McCammon (1983, ApJ 270, 119, Table 2) cross-section coefficients.
"""
from __future__ import annotations

import argparse
import json
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EVENTS = "research/data/msh1552_acis_evt2_filtered.fits.gz"
RESPONSES = ROOT / "instruments" / "responses"
RMF, ARF = "acisi_aimpt_cy0.rmf.gz", "acisi_aimpt_cy0.arf.gz"
PULSAR = ("15h13m55.6s", "-59d08m09s")  # PSR B1509-58 (ICRS), as in issue 24
CENTER_DEG = (228.481667, -59.135833)  # the same position in degrees
PSR_REGION = '# Region file format: DS9 version 4.1\nfk5\ncircle(15:13:55.6,-59:08:09,3")\n'
ANNULI_ARCSEC = [(3, 10), (10, 20), (20, 35), (35, 60), (60, 100), (100, 150)]
NOTICE_KEV = (1.0, 8.0)  # fitted channels, as the cube's band
#: The unmixing config of the walkthrough and the 16" cube it reads (``bin_cube`` writes it).
UNMIXING_CONFIG = ROOT / "configs" / "msh1552_chandra_unmixing.toml"
UNMIXING_CUBE = ROOT / "runs" / "msh1552" / "msh1552_cube_16arcsec.fits"


def unmixing_cube() -> Path:
    """The binned 16" cube, or SystemExit saying how to make it (the scripts that reuse it)."""
    if not UNMIXING_CUBE.is_file():
        raise SystemExit(f"{UNMIXING_CUBE} not found: run `python bench/real_msh1552.py` first (it bins the event "
                         "list).")
    return UNMIXING_CUBE
SOFT_KEV, HARD_KEV = (2.0, 4.0), (4.0, 8.0)  # hardness ratio bands

# Morrison & McCammon 1983, Table 2: sigma E^3 = c0 + c1 E + c2 E^2, 1e-24 cm^2 keV^3 per H atom.
MM83 = ((0.030, 17.3, 608.1, -2150.0), (0.100, 34.6, 267.9, -476.1), (0.284, 78.1, 18.8, 4.3),
        (0.400, 71.4, 66.8, -51.4), (0.532, 95.5, 145.8, -61.1), (0.707, 308.9, -380.6, 294.0),
        (0.867, 120.6, 169.3, -47.7), (1.303, 141.3, 146.8, -31.5), (1.840, 202.7, 104.7, -17.0),
        (2.471, 342.7, 18.7, 0.0), (3.210, 352.2, 18.7, 0.0), (4.038, 433.9, -2.4, 0.75),
        (7.111, 629.0, 30.9, 0.0), (8.331, 701.2, 25.2, 0.0))


# ------------------------------------------------------------------ the independent fit
def read_response(rmf_path, arf_path):
    """Dense (n_energy, n_channel) RMF, E_MIN/E_MAX of the channels, ENERG_LO/HI and the ARF (cm^2)."""
    from astropy.io import fits

    with fits.open(rmf_path) as h:
        matrix = h["MATRIX"]
        first = int(matrix.header.get(f"TLMIN{matrix.columns.names.index('F_CHAN') + 1}", 1))
        rows, bounds = matrix.data, h["EBOUNDS"].data
        dense = np.zeros((len(rows), len(bounds)))
        for i, row in enumerate(rows):
            f_chan, n_chan = np.atleast_1d(row["F_CHAN"]), np.atleast_1d(row["N_CHAN"])
            values, k = np.asarray(row["MATRIX"], dtype=float), 0
            for g in range(int(row["N_GRP"])):
                a, n = int(f_chan[g]) - first, int(n_chan[g])
                dense[i, a:a + n] = values[k:k + n]
                k += n
        e_lo, e_hi = rows["ENERG_LO"].astype(float), rows["ENERG_HI"].astype(float)
        e_min, e_max = bounds["E_MIN"].astype(float), bounds["E_MAX"].astype(float)
    with fits.open(arf_path) as h:
        area = h["SPECRESP"].data["SPECRESP"].astype(float)
    return dense, e_min, e_max, e_lo, e_hi, area


def mm83_sigma_cm2(e_kev):
    i = np.clip(np.searchsorted([r[0] for r in MM83], e_kev, side="right") - 1, 0, None)
    c = np.array(MM83)[i]
    return (c[:, 1] + c[:, 2] * e_kev + c[:, 3] * e_kev ** 2) / e_kev ** 3 * 1e-24


def independent_fit(counts, exposure_s, response, band_kev=NOTICE_KEV):
    """C-stat fit of an absorbed power law, K E^-G exp(-N_H sigma(E)), to PI ``counts``
    (one per RMF channel): returns (G, N_H / 1e22 cm^-2) and their 1-sigma errors."""
    from scipy.optimize import minimize

    dense, e_min, e_max, e_lo, e_hi, area = response
    use = (e_min >= band_kev[0] - 1e-3) & (e_max <= band_kev[1] + 1e-3)
    sigma = mm83_sigma_cm2(0.5 * (e_lo + e_hi))
    n = counts[use]

    def expected(p):
        log_k, index, nh = p
        photons = np.exp(log_k) * (e_lo ** (1 - index) - e_hi ** (1 - index)) / (index - 1)  # per cm^2 s
        return ((photons * np.exp(-nh * 1e22 * sigma) * area * exposure_s) @ dense)[use]

    def cstat(p):
        mu = expected(p)
        if not np.all(np.isfinite(mu)) or np.any(mu <= 0):
            return np.inf
        return 2.0 * np.sum(mu - n + n * np.log(np.where(n > 0, n / mu, 1.0)))

    best = None
    for start_index in (1.5, 2.0, 2.5):
        p0 = [np.log(n.sum() / exposure_s / 100.0), start_index, 1.0]
        res = minimize(cstat, p0, method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-8, "maxiter": 20000})
        if best is None or res.fun < best.fun:
            best = res
    # Errors: C = -2 log L + const, so the covariance is 2 H^-1 (H the Hessian of C).
    p, h = best.x, np.array([1e-4, 1e-4, 1e-3])
    hess = np.empty((3, 3))
    for i in range(3):
        for j in range(3):
            ei, ej = np.eye(3)[i] * h[i], np.eye(3)[j] * h[j]
            hess[i, j] = (cstat(p + ei + ej) - cstat(p + ei - ej) - cstat(p - ei + ej) + cstat(p - ei - ej)) / (4 * h[i] * h[j])
    err = np.sqrt(np.diag(2.0 * np.linalg.inv(hess)))
    return {"index": float(p[1]), "index_err": float(err[1]), "nh": float(p[2]), "nh_err": float(err[2]),
            "cstat": float(best.fun)}


# ------------------------------------------------------------------ events and annuli
def annulus_spectra(events_path):
    """PI spectra (1024 channels) of the annuli around the pulsar, with the standard
    level-2 screening (grade in {0,2,3,4,6}, status = 0), and the exposure (s)."""
    from astropy.coordinates import SkyCoord
    from astropy.io import fits
    from astropy.wcs import WCS

    with fits.open(events_path) as h:
        ev, hd = h["EVENTS"].data, h["EVENTS"].header
        names = [c.lower() for c in ev.columns.names]
        wcs = WCS(naxis=2)
        ix, iy = names.index("x") + 1, names.index("y") + 1
        wcs.wcs.ctype = [hd[f"TCTYP{ix}"], hd[f"TCTYP{iy}"]]
        wcs.wcs.crval = [hd[f"TCRVL{ix}"], hd[f"TCRVL{iy}"]]
        wcs.wcs.crpix = [hd[f"TCRPX{ix}"], hd[f"TCRPX{iy}"]]
        wcs.wcs.cdelt = [hd[f"TCDLT{ix}"], hd[f"TCDLT{iy}"]]
        px, py = wcs.world_to_pixel(SkyCoord(*PULSAR, frame="icrs"))  # 0-based pixel of the pulsar
        status = np.asarray(ev["status"]).reshape(len(ev), -1).any(axis=1)
        good = np.isin(ev["grade"], [0, 2, 3, 4, 6]) & ~status
        r = np.hypot(ev["x"] - 1 - px, ev["y"] - 1 - py) * abs(hd[f"TCDLT{ix}"]) * 3600.0
        pi = np.asarray(ev["pi"], dtype=int)
        spectra = [np.bincount(pi[good & (r >= lo) & (r < hi)] - 1, minlength=1024)[:1024] for lo, hi in ANNULI_ARCSEC]
        return spectra, float(hd["EXPOSURE"])


def xhsi_fit_pha(folder: Path, name: str, counts, exposure_s):
    """Write ``counts`` as a PHA next to copies of the RMF/ARF and fit it with xhsi pixelfit."""
    import shutil

    from astropy.io import fits

    from xhsi.config import load_config
    from xhsi.io.pha import write_pha
    from xhsi.runner import run

    folder.mkdir(parents=True, exist_ok=True)
    for f in (RMF, ARF):
        if not (folder / f).exists():
            shutil.copy(RESPONSES / f, folder / f)
    write_pha(folder / f"{name}.pha", counts, exposure_s, respfile=RMF, ancrfile=ARF)
    (folder / f"{name}.toml").write_text(textwrap.dedent(f"""\
        [run]
        problem = "pixelfit"
        output = "{name}"
        dtype = "float64"
        [model]
        energy = {{ min_kev = 0.3, max_kev = 10.9, bins = 424 }}   # 25 eV bins inside the RMF's 0.1-10.99 keV
        pixels = [1, 1]
        pixel_arcsec = 1.0
        [[observations]]
        name = "annulus"
        spectrum = "{name}.pha"
        notice_kev = [[{NOTICE_KEV[0]}, {NOTICE_KEV[1]}]]
        background_model = "none"
        [[components]]
        name = "pwn"
        model = "absorption * powerlaw"
        init = {{ nh = 1.0, index = 2.0 }}
        bounds = {{ nh = [0.0, 5.0], index = [0.5, 4.0] }}
        [solver]
        max_iter = 300
        """))
    cfg = load_config(folder / f"{name}.toml")
    run(cfg, overwrite=True, quiet=True)
    with fits.open(folder / name / "maps.fits") as h:
        get = {x.name: float(np.ravel(x.data)[0]) for x in h[1:]}
    return {"index": get["PWN_INDEX"], "index_err": get["PWN_INDEX_ERR"], "nh": get["PWN_NH"], "nh_err": get["PWN_NH_ERR"]}


def hardness(counts, response):
    _, e_min, e_max, *_ = response
    centre = 0.5 * (e_min + e_max)
    s = counts[(centre >= SOFT_KEV[0]) & (centre < SOFT_KEV[1])].sum()
    h = counts[(centre >= HARD_KEV[0]) & (centre < HARD_KEV[1])].sum()
    return float((h - s) / (h + s)), float(2.0 * np.sqrt(h * s / (h + s) ** 3))


# ------------------------------------------------------------------ the walkthrough
def bin_cube(events_path, out: Path) -> Path:
    from xhsi.instruments import load_instrument
    from xhsi.io.events import bin_events

    out.mkdir(parents=True, exist_ok=True)
    (out / "psr.reg").write_text(PSR_REGION)
    for name, pixel in (("msh1552_cube.fits", 4.0), ("msh1552_cube_16arcsec.fits", 16.0)):  # pixelfit, unmixing
        bin_events(events_path, load_instrument("chandra_acis_i"), out / name, center_deg=CENTER_DEG,
                   size_arcsec=944.0, pixel_arcsec=pixel, energy_range_kev=(1.0, 8.0), energy_bin=8,
                   exclude=out / "psr.reg")
    return out / "msh1552_cube.fits"


def run_config(name: str, out: Path | None = None):
    from xhsi.config import load_config
    from xhsi.runner import run

    cfg = load_config(ROOT / "configs" / name)
    t0 = time.perf_counter()
    run(cfg, out=out, overwrite=True, quiet=True)
    return Path(cfg.run.output), time.perf_counter() - t0


def radial_profile(maps_path: Path, cube_path: Path, edges_arcsec, min_counts=200):
    """Inverse-variance mean of the pixelfit index in radial bins of the 16" blocks (counts >= min_counts)."""
    from astropy.coordinates import SkyCoord
    from astropy.io import fits
    from astropy.wcs import WCS

    with fits.open(maps_path) as h, fits.open(cube_path) as c:
        index, err, header = h["PWN_INDEX"].data, h["PWN_INDEX_ERR"].data, h["PWN_INDEX"].header
        counts = c[0].data.sum(axis=0)
    wcs = WCS(header).celestial
    px, py = wcs.world_to_pixel(SkyCoord(*PULSAR, frame="icrs"))
    yy, xx = np.indices(index.shape)
    # One value per 4 x 4 block: take the block's lower-left pixel, the block's counts summed.
    b = 4
    block_counts = counts.reshape(counts.shape[0] // b, b, -1, b).sum(axis=(1, 3))
    cy, cx = (yy[::b, ::b] + b / 2 - 0.5), (xx[::b, ::b] + b / 2 - 0.5)
    r = np.hypot(cy - py, cx - px) * abs(header["CDELT1"]) * 3600.0
    g, e = index[::b, ::b], err[::b, ::b]
    rows = []
    for lo, hi in zip(edges_arcsec[:-1], edges_arcsec[1:]):
        m = (r >= lo) & (r < hi) & (block_counts >= min_counts) & np.isfinite(e) & (e > 0)
        w = 1.0 / e[m] ** 2
        rows.append({"r_arcsec": [lo, hi], "blocks": int(m.sum()), "index": float((w * g[m]).sum() / w.sum()),
                     "index_err": float(1.0 / np.sqrt(w.sum()))})
    return rows, (float(px), float(py))


def figure(maps_path: Path, cube_path: Path, png: Path, annuli: list[dict], min_counts=200):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from astropy.io import fits
    from astropy.wcs import WCS

    with fits.open(maps_path) as h, fits.open(cube_path) as c:
        maps = {x.name: x.data for x in h[1:]}
        wcs = WCS(h["PWN_INDEX"].header).celestial
        counts = c[0].data.sum(axis=0)
    b = 4
    block = np.kron(counts.reshape(counts.shape[0] // b, b, -1, b).sum(axis=(1, 3)), np.ones((b, b)))
    faint = block < min_counts
    panels = [("counts 1-8 keV (4\" pixels)", np.log10(np.maximum(counts, 0.5)), "magma", None, "log10 counts"),
              ("photon index", np.where(faint, np.nan, maps["PWN_INDEX"]), "viridis", (1.0, 2.4), "Γ"),
              ("photon index 1σ error", np.where(faint, np.nan, maps["PWN_INDEX_ERR"]), "cividis", (0, 0.4), "σ(Γ)"),
              ("N_H", np.where(faint, np.nan, maps["PWN_NH"]), "viridis", (0.0, 2.0), "1e22 cm⁻²"),
              ("N_H 1σ error", np.where(faint, np.nan, maps["PWN_NH_ERR"]), "cividis", (0, 0.8), "1e22 cm⁻²")]
    fig = plt.figure(figsize=(13, 8))
    for k, (title, image, cmap, lim, unit) in enumerate(panels):
        ax = fig.add_subplot(2, 3, k + 1, projection=wcs)
        im = ax.imshow(image, origin="lower", cmap=cmap, vmin=None if lim is None else lim[0],
                       vmax=None if lim is None else lim[1], interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.coords[0].set_axislabel("RA (ICRS)")
        ax.coords[1].set_axislabel("Dec (ICRS)" if k % 3 == 0 else " ")
        ax.coords[0].set_ticklabel(exclude_overlapping=True, size=7)
        ax.coords[1].set_ticklabel(size=7)
        ax.plot([228.481667], [-59.135833], "+", color="red", ms=8, transform=ax.get_transform("icrs"))
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).set_label(unit, fontsize=8)
    ax = fig.add_subplot(2, 3, 6)
    r = np.array([np.mean(a["r_arcsec"]) for a in annuli])
    for key, style, dx in (("xhsi", "o", -1.0), ("independent", "s", 1.0)):
        ax.errorbar(r + dx, [a[key]["index"] for a in annuli], [a[key]["index_err"] for a in annuli], fmt=style,
                    ms=4, capsize=2, label=f"{key} fit of the annulus spectrum")
    ax.set_xscale("log")
    ax.set_xlabel("distance from the pulsar (arcsec)")
    ax.set_ylabel("photon index Γ")
    ax.set_title("annuli around PSR B1509-58", fontsize=10)
    ax.legend(fontsize=8)
    fig.suptitle('MSH 15-52, Chandra ACIS-I ObsID 754, 1-8 keV: absorbed power law per 16" block (xhsi pixelfit); '
                 "blocks under 200 counts blank; + PSR B1509-58", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=72)
    plt.close(fig)
    return png


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "msh1552")
    parser.add_argument("--unmixing", action="store_true", help="also run configs/msh1552_chandra_unmixing.toml")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "msh1552_maps.png")
    args = parser.parse_args(argv)
    events = args.shared / EVENTS
    if not events.is_file():
        raise SystemExit(f"{events} not found: give --shared (the folder holding research/data)")
    report = {"events": str(events)}
    t0 = time.perf_counter()
    cube = bin_cube(events, args.out)
    report["bin_s"] = time.perf_counter() - t0
    pixelfit_dir, report["pixelfit_s"] = run_config("msh1552_chandra.toml")
    report["pixelfit_run"] = {k: v for k, v in json.loads((pixelfit_dir / "run.json").read_text()).items()
                              if k in ("converged", "pixels", "pixels_converged", "pixels_stalled", "stop_reason")}
    report["radial_map"], report["pulsar_pixel_in_maps"] = radial_profile(
        pixelfit_dir / "maps.fits", cube, [0, 24, 48, 80, 120, 180, 260])
    if args.unmixing:
        unmix_dir, report["unmixing_s"] = run_config("msh1552_chandra_unmixing.toml")
        report["unmixing_run"] = json.loads((unmix_dir / "run.json").read_text()).get("stop_reason")

    response = read_response(RESPONSES / RMF, RESPONSES / ARF)
    spectra, exposure = annulus_spectra(events)
    rows = []
    for (lo, hi), counts in zip(ANNULI_ARCSEC, spectra):
        ours = xhsi_fit_pha(args.out / "annuli", f"annulus_{lo}_{hi}", counts, exposure)
        theirs = independent_fit(counts.astype(float), exposure, response)
        hr, hr_err = hardness(counts, response)
        rows.append({"r_arcsec": [lo, hi], "counts_1_8kev": int(counts[(response[1] >= NOTICE_KEV[0] - 1e-3) & (response[2] <= NOTICE_KEV[1] + 1e-3)].sum()), "xhsi": ours,
                     "independent": theirs, "hardness": hr, "hardness_err": hr_err,
                     "index_diff_sigma": (ours["index"] - theirs["index"]) / theirs["index_err"],
                     "nh_diff_sigma": (ours["nh"] - theirs["nh"]) / theirs["nh_err"]})
        print(f'{lo:4d}-{hi:<4d}"  xhsi G = {ours["index"]:.3f} ± {ours["index_err"]:.3f}  N_H = {ours["nh"]:.2f} ± '
              f'{ours["nh_err"]:.2f} | independent G = {theirs["index"]:.3f} ± {theirs["index_err"]:.3f}  '
              f'N_H = {theirs["nh"]:.2f} ± {theirs["nh_err"]:.2f} | HR = {hr:+.3f} ± {hr_err:.3f}')
    report["annuli"] = rows
    figure(pixelfit_dir / "maps.fits", cube, args.figure, rows)
    for row in report["radial_map"]:
        print(f'map {row["r_arcsec"]}"  {row["blocks"]:3d} blocks  G = {row["index"]:.3f} ± {row["index_err"]:.3f}')
    print("pixelfit", report["pixelfit_run"], f'{report["pixelfit_s"]:.1f} s; pulsar at map pixel',
          report["pulsar_pixel_in_maps"])
    (ROOT / "bench" / "results" / "real_msh1552.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
