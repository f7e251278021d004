"""``xhsi tiles``, the run: every tile as a Dask task (a config that selects chooses once,
on the tile with the most counts), then the blended mosaic, published at once. The plan,
the blending weights and the tiles' inputs are in ``xhsi.distributed.tiles`` (its
docstring describes the whole command; docs/scaling.md)."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .tiles import MOSAIC, Tile, TilePlan, blend, full_field_inputs, prepare_tiles


@dataclass
class TileReport:
    plan: TilePlan
    outcomes: dict[str, dict]
    metrics: dict | None = None
    wall_s: float = 0.0

    @property
    def failed(self) -> list[Tile]:
        return [t for t in self.plan.tiles if self.outcomes[t.name]["status"] == "failed"]

    def summary(self) -> str:
        done = sum(o["status"] == "done" for o in self.outcomes.values())
        skipped = sum(o["status"] == "complete" for o in self.outcomes.values())
        lines = [f"xhsi tiles: {len(self.plan.tiles)} tiles in {self.wall_s:.1f} s ({done} run, {skipped} already "
                 f"complete, {len(self.failed)} failed)"]
        for t in self.failed:
            lines.append(f"  failed: tile {t.name} (rows {t.y[0]}-{t.y[1]}, columns {t.x[0]}-{t.x[1]}): "
                         f"{self.outcomes[t.name]['error']}")
        if self.failed:
            lines.append(f"  {self.plan.out / MOSAIC} was not written; run the same command again to retry the failed "
                         "tiles (completed ones are skipped).")
        else:
            lines.append(f"  mosaic in {self.plan.out / MOSAIC}")
            if self.plan.selection is not None:
                lines.append(f"  every tile ran the choice of tile {self.plan.selection['tile']}'s selection: "
                             f"{self.plan.selection['chosen']}, stopping at iteration "
                             f"{self.plan.selection['iteration']}")
            res = (self.metrics or {}).get("result")
            if res:
                lines.append(f"  result: PSNR {res['psnr_db']:.2f} dB, ASAM {res['asam_deg']:.2f} deg, relative "
                             f"error per voxel {res['rel_error_voxel']:.3f}")
        return "\n".join(lines)


def lead_tile(plan: TilePlan) -> Tile:
    """The tile that runs the selection for all (:func:`run_tiles`): the one whose inputs
    hold the most counts, all observations together (the first of equals)."""
    from ..io.cubes import read_cube

    def counts(tile: Tile) -> float:
        return sum(float(np.sum(read_cube(path).data)) for path in sorted((plan.folder(tile) / "inputs").glob("*_counts.fits")))

    totals = [counts(t) for t in plan.tiles]
    return plan.tiles[int(np.argmax(totals))]


def run_tiles(plan: TilePlan, client, quiet: bool = False, retries: int = 1) -> TileReport:
    """Run every tile as a Dask task on ``client`` (the task of ``xhsi sweep``), then blend
    and publish the mosaic when all succeeded. A config that selects (``plan.selects``)
    chooses once: the tile with the most counts (``lead_tile``) runs the selection and its
    final fit first, and every other tile runs its choice (run.json ``selection``
    ``run_overrides``: the candidate, the stopping iteration and the final fit's settings),
    so that the mosaic is one estimator, not tiles fitted with different options."""
    import json

    from ..selection.candidates import assignments
    from ..selection.driver import run_overrides
    from .selection_tasks import DaskFits
    from .sweep import _as_completed, _task_error, run_point

    start = time.perf_counter()
    configs = dict(zip((t.name for t in plan.tiles), prepare_tiles(plan)))
    outcomes: dict[str, dict] = {}

    def say(line: str) -> None:
        if not quiet:
            print(line, flush=True)

    def task(tile: Tile) -> tuple:
        """run_point's arguments for ``tile``, before its overrides: config, folder, record."""
        return (str(configs[tile.name].resolve()), str((plan.folder(tile) / "run").resolve()),
                {"index": tile.index, "name": tile.name, "overrides": {"rows": list(tile.y), "columns": list(tile.x)}})

    def done(tile: Tile, outcome: dict) -> None:
        outcomes[tile.name] = outcome
        what = ("FAILED: " + str(outcome["error"]) if outcome["status"] == "failed"
                else f"{outcome['status']} ({outcome.get('wall_s', 0):.1f} s)")
        say(f"xhsi tiles: {len(outcomes)}/{len(plan.tiles)} tile {tile.name}: {what}")

    def run_all(tiles: list[Tile], overrides: list[str]) -> None:
        futures = {}
        for tile in tiles:
            config, folder, record = task(tile)
            futures[client.submit(run_point, config, overrides, folder, record, True,
                                  key=f"xhsi-tile-{tile.name}-{time.time_ns()}", retries=retries, pure=False)] = tile
        for future in _as_completed(futures):
            try:
                outcome = future.result()
            except Exception as exc:  # raised after its retries, or KilledWorker
                outcome = {"status": "failed", "error": _task_error(exc)}
            done(futures[future], outcome)

    rest, overrides = list(plan.tiles), []
    if plan.selects is not None:
        lead = lead_tile(plan)
        say(f"xhsi tiles: the config selects ({plan.selects}); tile {lead.name}, the one with the most counts, "
            "runs the selection, and every other tile its choice")
        config, folder, record = task(lead)
        try:  # here, with the selection's candidate fits as tasks on the cluster
            done(lead, run_point(config, [], folder, record, True, selection_fits=DaskFits(client, config, [])))
        except Exception as exc:  # not a user error (those are failed outcomes): say it as a task's would be
            done(lead, {"status": "failed", "error": _task_error(exc)})
        rest.remove(lead)
        if outcomes[lead.name]["status"] == "failed":
            for tile in rest:
                outcomes[tile.name] = {"status": "failed", "error": f"not run: tile {lead.name}, whose selection "
                                       "every tile uses, failed"}
            rest = []
        else:
            chosen = json.loads((plan.folder(lead) / "run" / "run.json").read_text())["selection"]
            plan.selection = {"tile": lead.name, "chosen": chosen["name"], "iteration": chosen["iteration"],
                              "run_overrides": run_overrides(chosen)}
            overrides = assignments(plan.selection["run_overrides"])
            say(f"xhsi tiles: tile {lead.name} chose {chosen['name']}, stopping at iteration {chosen['iteration']}")
    run_all(rest, overrides)
    report = TileReport(plan, {t.name: outcomes[t.name] for t in plan.tiles})
    if not report.failed:
        report.metrics = write_mosaic(plan)
    report.wall_s = time.perf_counter() - start
    return report


def _read_maps(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from astropy.io import fits

    images, units = {}, {}
    with fits.open(path) as hdul:
        for hdu in hdul:
            if hdu.data is not None and hdu.data.ndim == 2 and hdu.name:
                images[hdu.name] = np.asarray(hdu.data, dtype=np.float64)
                units[hdu.name] = str(hdu.header.get("BUNIT", ""))
    return images, units


def write_mosaic(plan: TilePlan) -> dict | None:
    """Blend the tiles' ``result.fits`` (and ``maps.fits``) into ``OUT/mosaic``, all at
    once (``xhsi.runfolder``); returns the mosaic's metrics against the truth, if known."""
    from ..config import load_config
    from ..io.cubes import read_cube, write_cube
    from ..metrics import all_metrics
    from ..problems.checks import model_grid
    from ..products import sky_frame
    from ..results import write_json
    from ..runfolder import RunFolder
    from ..outputs import SKY_UNIT

    runs = {t.index: plan.folder(t) / "run" for t in plan.tiles}
    cube = blend(plan, {i: read_cube(run / "result.fits").data for i, run in runs.items()})
    cfg = load_config(plan.config, plan.overrides)
    grid = model_grid(cfg)
    counts, _, truth_path = plan.inputs or full_field_inputs(plan, cfg)
    for obs in cfg.observations:  # the sky position of the field: its counts files, simulated or given
        obs.counts = Path(counts[obs.name])
    frame = sky_frame(cfg, grid)
    header = {"PROBLEM": cfg.run.problem, "SOLVER": cfg.solver.name, "NTILES": len(plan.tiles),
              "TILEPX": plan.tile, "OVERLAP": plan.overlap}
    metrics = None
    folder = RunFolder(plan.out / MOSAIC, overwrite=True)
    try:
        folder.start()
        write_cube(folder.staging / "result.fits", cube, grid.energy_edges_kev, wcs=frame.at(1),
                   pixel_arcsec=grid.pixel_arcsec, bunit=SKY_UNIT, header=header)
        if (runs[0] / "maps.fits").is_file():
            from ..io.maps import write_maps

            read = {i: _read_maps(run / "maps.fits") for i, run in runs.items()}
            names, units = read[0][0].keys(), read[0][1]
            values = {n: blend(plan, {i: read[i][0][n] for i in read}) for n in names if not n.endswith("_ERR")}
            errors = {n: blend(plan, {i: read[i][0][n + "_ERR"] for i in read}) for n in values if n + "_ERR" in names}
            write_maps(folder.staging / "maps.fits", values, {n: units[n] for n in values}, grid.pixel_arcsec,
                       errors or None, wcs=frame.at(1), header=header)
        if truth_path is not None and truth_path.is_file():
            metrics = {"result": all_metrics(cube, read_cube(truth_path).data.astype(np.float64))}
        if (runs[0] / "maps.fits").is_file():
            maps_truth = _field_map_truth(cfg, truth_path)
            if maps_truth is not None:  # the mosaic's maps against the field's true maps
                from ..io.truth_maps import map_key
                from ..problems.components import map_metrics

                by_key = {map_key(name): name for name in maps_truth.names}  # HDU names → map names
                named = {by_key[k]: image for k, image in values.items() if k in by_key}
                metrics = {**(metrics or {}), "maps": map_metrics(named, maps_truth.truth)}
        if metrics is not None:
            write_json(folder.staging / "metrics.json", metrics)
        tiles = [{"name": t.name, "rows": list(t.y), "columns": list(t.x), "core_rows": list(t.core_y),
                  "core_columns": list(t.core_x)} for t in plan.tiles]
        write_json(folder.staging / "tiles.json", {"tile": plan.tile, "overlap": plan.overlap, "reach": plan.reach,
                                                   "field": list(plan.field), "tiles": tiles,
                                                   "selection": plan.selection})
        (folder.staging / "config.resolved.toml").write_text(cfg.to_toml(), encoding="utf-8")
        folder.publish()
    finally:
        folder.discard()
    return metrics


def _field_map_truth(cfg, truth_path: Path | None):
    """The whole field's true maps: ``[metrics] truth_maps``, or the simulated field's
    ``truth_maps.fits`` beside its ``truth.fits``; None when there are none."""
    from ..config import MetricsSection
    from ..problems.truth_maps import read_map_truth

    if cfg.metrics is None or cfg.metrics.truth_maps is None:
        simulated = None if truth_path is None else truth_path.parent / "truth_maps.fits"
        if simulated is None or not simulated.is_file():
            return None
        cfg = copy.deepcopy(cfg)
        cfg.metrics = MetricsSection(truth=None, truth_maps=simulated)
    return read_map_truth(cfg)
