"""What a run writes into its (staging) folder: ``result.fits`` with its sky WCS and
provenance cards, ``maps.fits`` and ``components.fits`` of problems with maps (and
``truth_maps.fits``, the simulated scene's maps, when simulating), each
observation's residual significance map, ``history.csv``, ``run.json``, ``metrics.json``,
the quicklook PNGs; and the summary ``xhsi run`` prints (docs/runs.md)."""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from .backend import to_numpy
from .results import Result, write_history, write_json

SKY_UNIT = "photon / (s cm2)"  # per true-energy bin and sky pixel


def write_outputs(out: Path, cfg, prep, result: Result) -> None:
    from .io.cubes import write_cube
    from .io.maps import write_components, write_maps
    from .products import instrument_cards, provenance_cards, sky_frame

    grid = prep.grid
    frame = sky_frame(cfg, grid)
    cards = provenance_cards(cfg, prep.observations, frame)
    header = {"PROBLEM": cfg.run.problem, "SOLVER": cfg.solver.name, "NITER": result.metadata.get("n_iter"),
              "CFGHASH": cfg.digest(), **cards}
    write_cube(out / "result.fits", result.arrays["cube"], grid.energy_edges_kev, wcs=frame.at(1),
               pixel_arcsec=grid.pixel_arcsec, bunit=SKY_UNIT, header=header)
    if result.maps:
        write_maps(out / "maps.fits", result.maps, result.map_units, grid.pixel_arcsec, result.map_errors or None,
                   wcs=frame.at(1), header=header)
        write_components(out / "components.fits", result.components, grid.energy_edges_kev, grid.pixel_arcsec,
                         wcs=frame.at(1), header=header)
        scene = getattr(prep, "scene_truth", None)
        if scene is not None and scene.components:  # the simulated maps, in the format of [metrics] truth_maps
            from .problems.truth_maps import write_simulated_truth_maps

            simulated = {"OBJECT": cards.get("OBJECT"), "HISTORY": [f"simulated by scene {cfg.simulate.scene}"]}
            write_simulated_truth_maps(out / "truth_maps.fits", scene, grid.pixel_arcsec, frame.at(1), simulated)
    residuals, result.metadata["data_fit"] = data_fit(prep, result.arrays["cube"])
    for obs, section in zip(prep.observations, cfg.observations):
        name = obs.name
        write_maps(out / f"residuals_{name}.fits", {f"residual.{name}": residuals[name]},
                   {f"residual.{name}": "sigma"}, obs.pixel_arcsec or grid.pixel_arcsec,
                   wcs=frame.at(section.spatial_rebin), header={**header, **instrument_cards(obs.instrument)})
    write_history(out / "history.csv", result.history)
    write_json(out / "run.json", result.metadata)
    if result.metrics:
        write_json(out / "metrics.json", result.metrics)
    if cfg.run.quicklook:
        write_quicklooks(out, prep, result, tol=cfg.solver.tol)


#: Energy bands of run.json's ``data_fit`` (``counts_kept`` per band): the observation's
#: channel range cut into this many bands of equal width in log energy.
FIT_BANDS = 4


def data_fit(prep, cube) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """What the result explains of each observation's counts, from the data alone (real data
    has no truth): per detector pixel, the signed significance Σ_c (counts − model) / √(Σ_c
    model) (the residual maps), and for run.json's ``data_fit``: the counts, the result's
    expected counts (background included) and their ratio ``counts_kept``, overall and in
    ``FIT_BANDS`` bands of channel energy (a regularised Poisson fit keeps less than the
    counts where its penalty shrinks the flux, and a ratio that changes with energy is a bias
    of the spectra), and the Poisson deviance of the field's summed spectrum against the
    deviance a true model would leave on average (``spectrum_deviance``,
    ``spectrum_expected_deviance``: channels the model misses by more than the noise raise
    the first far above the second)."""
    from .selection.thinning import expected_deviance, poisson_deviance

    maps, stats = {}, {}
    z = prep.backend.asarray(cube)
    for obs in prep.observations:
        model = obs.forward.apply(z)
        if obs.background is not None:
            model = model + obs.background
        m = to_numpy(model).astype(np.float64)
        y = to_numpy(obs.counts).astype(np.float64)
        maps[obs.name] = (y.sum(axis=0) - m.sum(axis=0)) / np.sqrt(np.clip(m.sum(axis=0), 1.0, None))
        spectrum_y, spectrum_m = y.reshape(len(y), -1).sum(axis=1), m.reshape(len(m), -1).sum(axis=1)
        row = {"counts": float(y.sum()), "expected_counts": float(m.sum()),
               "counts_kept": float(m.sum() / y.sum()) if y.sum() > 0 else None,
               "spectrum_deviance": poisson_deviance(spectrum_y, spectrum_m, np),
               "spectrum_expected_deviance": expected_deviance(spectrum_m)}
        edges = getattr(obs, "channel_edges_kev", None)
        if edges is not None and len(edges) == len(y) + 1 and float(edges[0]) > 0:
            mid = np.sqrt(np.asarray(edges[:-1], np.float64) * np.asarray(edges[1:], np.float64))
            cuts = np.geomspace(float(edges[0]), float(edges[-1]), FIT_BANDS + 1)
            row["counts_kept_by_band"] = {}
            for a, b in itertools.pairwise(cuts):
                band = (mid >= a) & (mid < b)
                if spectrum_y[band].sum() > 0:
                    row["counts_kept_by_band"][f"{a:.3g}-{b:.3g} keV"] = float(spectrum_m[band].sum()
                                                                              / spectrum_y[band].sum())
        stats[obs.name] = row
    return maps, stats


def write_quicklooks(out: Path, prep, result: Result, tol: float | None = None) -> None:
    """images.png (each observation's counts, the result and the truth if known, summed over
    their bands), maps.png (unmixing maps), spectra.png (three pixels), cost.png (cost and
    its relative change against the solver's ``tol``)."""
    from . import quicklook
    from .quicklook import Panel

    grid = prep.grid
    model_band = (float(grid.energy_edges_kev[0]), float(grid.energy_edges_kev[-1]))
    cube = np.asarray(result.arrays["cube"], dtype=np.float64)
    panels = []
    for o in prep.observations:
        edges = np.asarray(o.channel_edges_kev, dtype=np.float64)
        panels.append(Panel(f"data: {o.name} ({o.instrument.mission} {o.instrument.detector})".replace(" )", ")"),
                            to_numpy(o.counts).sum(axis=0), "count / pix", o.pixel_arcsec or grid.pixel_arcsec,
                            (float(edges[0]), float(edges[-1]))))
    flux_unit = SKY_UNIT[:-1] + " pix)"  # photon / (s cm2 pix): summed over the band's bins
    panels.append(Panel("result", cube.sum(axis=0), flux_unit, grid.pixel_arcsec, model_band))
    if prep.truth is not None:
        panels.append(Panel("truth", np.asarray(prep.truth, dtype=np.float64).sum(axis=0), flux_unit,
                            grid.pixel_arcsec, model_band))
    quicklook.plot_images(out / "images.png", panels)
    if result.maps:
        maps = [Panel(name, image, result.map_units.get(name, ""), grid.pixel_arcsec, model_band,
                      cmap="magma" if name.endswith(".amplitude") else "viridis")
                for name, image in result.maps.items()]
        quicklook.plot_images(out / "maps.png", maps, columns=min(4, len(maps)))
    curves = {"result": cube}
    if prep.truth is not None:
        curves["truth"] = np.asarray(prep.truth, dtype=np.float64)
    curves.update({f"component {name}": np.asarray(c, dtype=np.float64) for name, c in result.components.items()})
    ref = curves.get("truth", cube).sum(axis=0)
    width_ev = float(np.mean(grid.energy_width_kev)) * 1e3
    quicklook.plot_spectra(out / "spectra.png", grid.energy_mid_kev, curves, quicklook.pick_pixels(ref),
                           unit=flux_unit, pixel_arcsec=grid.pixel_arcsec, bin_ev=width_ev, band_kev=model_band)
    quicklook.plot_history(out / "cost.png", result.history, tol=tol, stop_reason=result.metadata.get("stop_reason"))


def summary(result: Result, out: Path) -> str:
    meta = result.metadata
    metric = f" in the {meta['metric']} metric" if meta.get("metric", "euclidean") != "euclidean" else ""
    lines = [f"xhsi: {meta.get('problem')} with {meta.get('solver')}{metric}: {meta.get('n_iter')} iterations in "
             f"{meta.get('wall_s', 0.0):.1f} s ({meta.get('stop_reason')}); outputs in {out}"]
    if res := (result.metrics or {}).get("result"):
        lines.append(f"  result: PSNR {res['psnr_db']:.2f} dB, ASAM {res['asam_deg']:.2f} deg, "
                     f"relative error per voxel {res['rel_error_voxel']:.3f}")
        for name, m in result.metrics.get("baselines", {}).items():
            lines.append(f"  data-only `{name}`: PSNR {m['psnr_db']:.2f} dB, ASAM {m['asam_deg']:.2f} deg, "
                         f"relative error per voxel {m['rel_error_voxel']:.3f}")
    lines += ((result.metrics or {}).get("selection") or {}).get("summary", [])
    if (held := meta.get("floor_pixels") or {}).get("pixels"):
        lines.append(f"  {held['pixels']} of {held['of']} sky pixels hold no counts the fit could use: their spectra "
                     "are the start's, at [problem] start_floor of its flux")
    for name, fit in (meta.get("data_fit") or {}).items():
        if fit.get("counts_kept") is None:
            continue
        bands = ", ".join(f"{band} {100 * kept:.1f} %" for band, kept in (fit.get("counts_kept_by_band") or {}).items())
        lines.append(f"  data `{name}`: the result explains {100 * fit['counts_kept']:.1f} % of its "
                     f"{fit['counts']:.0f} counts" + (f" ({bands})" if bands else "")
                     + f"; summed spectrum's deviance {fit['spectrum_deviance']:.0f} against "
                     f"{fit['spectrum_expected_deviance']:.0f} expected of a true model")
    for name, table in (meta.get("spectral_tables") or {}).items():
        if table.get("relative_error", 0.0) > table.get("tolerance", float("inf")):
            lines.append(f"  note: the spectral table of `{name}` is within {table['relative_error']:.1e} of the "
                         f"exact model, above [problem] table_tol = {table['tolerance']:g} (it reached its size "
                         "limit): the maps carry that model error; reduce = \"none\" fits the exact models")
    return "\n".join(lines)
