"""``xhsi run`` and ``xhsi simulate``: from a validated config to files on disk.

Order of work: every check that can fail on user input (output folder, then the problem's
``check_config``: instruments, counts files and their grids, scene, solver, memory, plugin
options) runs before the first heavy computation and before anything is written, so a run
refused by a check leaves its output folder as it found it (and creates none); results are
written atomically, so an interrupted run never leaves a truncated file; Ctrl-C writes a
checkpoint that ``--resume`` continues from. The runner knows problems only through their
contract (``xhsi.problems.Problem``).
"""
from __future__ import annotations

import copy
import functools
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import plugins
from .backend import Backend, to_numpy
from .config import Config, options_schema
from .errors import DataError, Interrupted, XhsiError
from .problems.base import ObservationData, make_regularizers  # noqa: F401  (re-exported: bench, tests)
from .problems.checks import check_cube_grid, model_grid
from .schema import NoOptions
from .results import Result, atomic_write_text, check_output_folder, write_history, write_json

SKY_UNIT = "photon / (s cm2)"  # per true-energy bin and sky pixel


@dataclass
class Prepared:
    """What a run needs before solving: backend, grid, observations and the true sky if known."""

    backend: Backend
    grid: Any
    observations: list[ObservationData]
    truth: np.ndarray | None
    scene_truth: Any = None


def prepare(cfg: Config) -> Prepared:
    """Compile every observation's forward operator, read or simulate its counts, and read
    or simulate the truth, for a config that passed :func:`check_config` (which holds the
    input checks; reading still refuses a file whose grid does not match)."""
    from .instruments import compile_observation, load_instrument
    from .io.cubes import read_cube

    backend = Backend(cfg.run.backend, cfg.run.dtype, seed=cfg.run.seed)
    grid = model_grid(cfg)
    compiled = []
    for i, obs in enumerate(cfg.observations):
        instrument = load_instrument(obs.instrument)
        try:
            forward = compile_observation(obs, instrument, grid, backend)
        except XhsiError as exc:
            raise type(exc)(f"{cfg.source}: observations[{i}] (`{obs.name}`): {exc}") from None
        compiled.append((obs, instrument, forward))

    truth, scene_truth = None, None
    # Simulation (truth and expected counts) runs in float32 numpy on the host whatever the
    # run's backend and dtype, so that float32 and float64 runs (and numpy and cupy) of one
    # config fit the same counts against the same truth; the problems compute their
    # data-only start with the same host operators (ObservationData.host_forward). float32,
    # not float64: its 1e-7 relative rounding of the expected counts is far below their
    # Poisson noise, and a float32 run reuses its own operator (a float64 copy of the pn
    # operator at the published size held ~0.5 GB more during prepare).
    sim_backend = Backend("numpy", "float32", seed=cfg.run.seed)
    same = backend.name == "numpy" and backend.dtype_name == "float32"  # the run's operators are the host ones
    if cfg.simulate is not None:
        scene = plugins.get("scene", cfg.simulate.scene)(cfg.simulate.options)
        try:
            scene_truth = scene.generate_components(grid, sim_backend)
            truth = scene_truth.cube
        except NotImplementedError:  # a scene that only overrides ``generate``
            truth = scene.generate(grid, sim_backend)
    if cfg.metrics is not None and cfg.metrics.truth is not None:
        cube = read_cube(cfg.metrics.truth)
        if tuple(cube.data.shape) != tuple(grid.shape):
            raise DataError(f"{cfg.source}: metrics.truth {cfg.metrics.truth} has shape {cube.data.shape}, the "
                            f"[model] grid is {grid.shape} (energy bins, ny, nx).")
        truth = cube.data

    from .simulate import simulate_counts

    observations = []
    for obs, instrument, forward in compiled:
        background = None
        bkg = forward.background_counts() if hasattr(forward, "background_counts") else None
        if obs.background is not None:
            background = backend.asarray(_read_matching(read_cube, obs.background, forward, obs.name, "background"))
        elif bkg is not None and np.any(bkg > 0):
            background = backend.asarray(np.broadcast_to(bkg, forward.shape_out).copy())
        compile_host = None if same else functools.partial(compile_observation, obs, instrument, grid, sim_backend,
                                                           cache=False)
        data = ObservationData(obs.name, forward, None, background, instrument, compile_host)
        if obs.counts is not None:
            data.counts = backend.asarray(_read_matching(read_cube, obs.counts, forward, obs.name, "counts"))
        else:
            sim_background = None if background is None else to_numpy(background).astype(np.float32)
            data.counts = backend.asarray(to_numpy(simulate_counts(truth, data.host_forward(), sim_backend,
                                                                   sim_background)))
        observations.append(data)
    if truth is not None:  # kept on the host in the run's precision (metrics work in float64)
        truth = np.asarray(to_numpy(truth), dtype=np.float32 if backend.dtype_name == "float32" else np.float64)
    return Prepared(backend, grid, observations, truth, scene_truth)


def _read_matching(read_cube, path, forward, name: str, what: str) -> np.ndarray:
    cube = read_cube(path)
    check_cube_grid(path, cube.data.shape, cube.energy_edges_kev, forward.shape_out,
                    getattr(forward, "channel_edges_kev", None), name, what)
    return cube.data


def simulate(cfg: Config, out: Path) -> list[Path]:
    """Write ``truth.fits`` and ``<observation>_counts.fits`` for every observation."""
    from .io.cubes import write_cube

    if cfg.simulate is None:
        raise XhsiError(f"{cfg.source}: `xhsi simulate` needs a [simulate] table naming a scene.")
    cfg_no_counts = copy.deepcopy(cfg)  # simulate every observation, whatever counts files it names
    for obs in cfg_no_counts.observations:
        obs.counts = None
    prep = prepare(cfg_no_counts)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [write_cube(out / "truth.fits", prep.truth, prep.grid.energy_edges_kev,
                          pixel_arcsec=prep.grid.pixel_arcsec, bunit=SKY_UNIT)]
    for obs, section in zip(prep.observations, cfg.observations):
        written.append(write_cube(out / f"{obs.name}_counts.fits", obs.counts, obs.channel_edges_kev,
                                  pixel_arcsec=obs.pixel_arcsec, exposure_s=section.exposure_s,
                                  instrument=obs.instrument.name, bunit="count"))
    return written


class Progress:
    """Progress of a run: a tqdm bar on a terminal, a log line per report otherwise,
    nothing when quiet."""

    def __init__(self, total: int, quiet: bool, initial: int = 0):
        self.quiet, self.bar, self.last = quiet, None, initial
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc="xhsi", unit="it", dynamic_ncols=True)

    def update(self, iteration: int, cost: float, step: float) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.update(iteration - self.last)
            self.bar.set_postfix(cost=f"{cost:.6g}", step=f"{step:.3g}")
        else:
            print(f"iteration {iteration:6d}  cost {cost:.8g}  step {step:.3g}", file=sys.stderr, flush=True)
        self.last = iteration

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def check_config(cfg: Config) -> list:
    """Every check of ``cfg`` that a user's input can fail (``Problem.check_config`` of the
    [run] problem), what ``xhsi validate`` runs and ``xhsi run`` runs before anything is
    read, computed or written. Returns the [[regularizers]] instances it checked, which the
    run then uses (``make_regularizers``)."""
    return plugins.get("problem", cfg.run.problem).check_config(cfg)


def run(cfg: Config, out: Path | None = None, resume: bool = False, overwrite: bool = False,
        quiet: bool = False) -> Result:
    """Run the problem of ``cfg`` and write its outputs into ``out`` (default: [run] output)."""
    from .solvers.checkpoint import save_checkpoint

    t_start = time.perf_counter()
    out = Path(out) if out is not None else Path(cfg.run.output)
    check_output_folder(out, resume=resume, overwrite=overwrite)
    regularizers = check_config(cfg)
    prep = prepare(cfg)
    problem_cls = plugins.get("problem", cfg.run.problem)
    pm = plugins.plugin_manager()
    # A problem that declares options gets the validated [problem] table.
    extra = {} if options_schema(problem_cls) is NoOptions else {"options": cfg.problem}
    problem = problem_cls(cfg, prep.backend, prep.grid, prep.observations, regularizers,
                          plugins.get("likelihood", cfg.run.likelihood), **extra)
    solver = plugins.get("solver", cfg.solver.name).from_config(cfg.solver)

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.resolved.toml", cfg.to_toml())
    checkpoint_path = out / "checkpoint.npz"
    pm.hook.xhsi_run_start(config=cfg, problem=problem)
    progress = Progress(cfg.solver.max_iter, quiet)

    def callback(iteration, cost, step, state) -> bool:
        progress.update(iteration, cost, step)
        answers = pm.hook.xhsi_iteration(iteration=iteration, cost=cost, step=step, state=state)
        return any(bool(a) for a in answers)

    try:
        result = problem.solve(solver, callback, checkpoint_path=checkpoint_path,
                               checkpoint_every=cfg.run.checkpoint_every,
                               resume_from=checkpoint_path if resume else None, config_digest=cfg.digest())
    except KeyboardInterrupt:
        progress.close()
        if solver.state is not None:
            meta = {"solver": solver.name, "config_digest": cfg.digest(), "iteration": solver.iteration,
                    "history": [list(r) for r in solver.history]}
            save_checkpoint(checkpoint_path, solver.state_dict(), meta)
            write_history(out / "history.csv", [dict(zip(("iteration", "cost", "step", "time_s"), r))
                                                for r in solver.history])
        raise Interrupted(f"interrupted at iteration {solver.iteration if solver.state is not None else 0}; "
                         f"checkpoint written to {checkpoint_path}. Continue with: xhsi run {cfg.source} "
                         f"--resume") from None
    finally:
        progress.close()

    result.metadata.update({"wall_s": time.perf_counter() - t_start, "config_digest": cfg.digest(),
                            "backend": cfg.run.backend, "dtype": cfg.run.dtype})
    if prep.truth is not None:
        from .simulate import SceneTruth

        result.metrics = compute_metrics(result, prep.truth, problem)
        truth = prep.scene_truth if prep.scene_truth is not None else SceneTruth(prep.truth)
        result.metrics.update(problem.extra_metrics(result, truth))
    write_outputs(out, cfg, prep, result)
    pm.hook.xhsi_run_end(config=cfg, result=result)
    if not quiet:
        print(summary(result, out), file=sys.stderr)
    return result


def compute_metrics(result: Result, truth: np.ndarray, problem) -> dict:
    """``result`` and ``baselines``: ``all_metrics`` of the result and of each data-only
    baseline (``Problem.baselines``); ``asam_by_flux``: the same cubes' ASAM per class of
    true flux."""
    from .metrics import all_metrics, asam_by_flux

    truth = np.asarray(truth, dtype=np.float64)
    cube = np.asarray(result.arrays["cube"], dtype=np.float64)
    metrics = {"result": all_metrics(cube, truth)}
    by_flux = {"result": asam_by_flux(cube, truth)}
    cubes = {name: np.asarray(b, dtype=np.float64) for name, b in problem.baselines().items()}
    metrics["baselines"] = {name: all_metrics(b, truth) for name, b in cubes.items()}
    by_flux["baselines"] = {name: asam_by_flux(b, truth) for name, b in cubes.items()}
    metrics["asam_by_flux"] = by_flux
    return metrics


def write_outputs(out: Path, cfg: Config, prep: Prepared, result: Result) -> None:
    from .io.cubes import write_cube

    grid = prep.grid
    header = {"PROBLEM": cfg.run.problem, "SOLVER": cfg.solver.name, "NITER": result.metadata.get("n_iter"),
              "CFGHASH": cfg.digest()}
    write_cube(out / "result.fits", result.arrays["cube"], grid.energy_edges_kev, pixel_arcsec=grid.pixel_arcsec,
               bunit=SKY_UNIT, header=header)
    if result.maps:
        from .io.maps import write_components, write_maps

        write_maps(out / "maps.fits", result.maps, result.map_units, grid.pixel_arcsec, result.map_errors or None)
        write_components(out / "components.fits", result.components, grid.energy_edges_kev, grid.pixel_arcsec)
    from .io.maps import write_maps

    residuals = residual_significance(prep, result.arrays["cube"])
    pixels = {o.name: o.pixel_arcsec or grid.pixel_arcsec for o in prep.observations}
    for name, image in residuals.items():
        write_maps(out / f"residuals_{name}.fits", {f"residual.{name}": image}, {f"residual.{name}": "sigma"},
                   pixels[name])
    write_history(out / "history.csv", result.history)
    write_json(out / "run.json", result.metadata)
    if result.metrics:
        write_json(out / "metrics.json", result.metrics)
    if cfg.run.quicklook:
        write_quicklooks(out, prep, result)


def residual_significance(prep: Prepared, cube) -> dict[str, np.ndarray]:
    """Per observation and detector pixel, Σ_c (counts − model) / √(Σ_c model): the
    signed significance (in σ) of what the result leaves unexplained in that pixel."""
    out = {}
    z = prep.backend.asarray(cube)
    for obs in prep.observations:
        model = obs.forward.apply(z)
        if obs.background is not None:
            model = model + obs.background
        m = to_numpy(model).astype(np.float64).sum(axis=0)
        y = to_numpy(obs.counts).astype(np.float64).sum(axis=0)
        out[obs.name] = (y - m) / np.sqrt(np.clip(m, 1.0, None))
    return out


def write_quicklooks(out: Path, prep: Prepared, result: Result) -> None:
    from . import quicklook

    cube = np.asarray(result.arrays["cube"], dtype=np.float64)
    images = [(f"data: {o.name} [counts]", to_numpy(o.counts).sum(axis=0)) for o in prep.observations]
    images.append(("result [ph/s/cm2/pix]", cube.sum(axis=0)))
    if prep.truth is not None:
        images.append(("truth [ph/s/cm2/pix]", np.asarray(prep.truth, dtype=np.float64).sum(axis=0)))
    quicklook.plot_images(out / "images.png", images)
    if result.maps:
        panels = [(f"{name} [{result.map_units.get(name, '')}]", image) for name, image in result.maps.items()]
        quicklook.plot_images(out / "maps.png", panels, columns=min(4, len(panels)))
    curves = {"result": cube}
    if prep.truth is not None:
        curves["truth"] = np.asarray(prep.truth, dtype=np.float64)
    curves.update({f"component {name}": np.asarray(c, dtype=np.float64) for name, c in result.components.items()})
    ref = curves.get("truth", cube).sum(axis=0)
    quicklook.plot_spectra(out / "spectra.png", prep.grid.energy_mid_kev, curves, quicklook.pick_pixels(ref),
                           unit=SKY_UNIT + " per bin")
    quicklook.plot_history(out / "cost.png", result.history)


def summary(result: Result, out: Path) -> str:
    meta = result.metadata
    metric = f" in the {meta['metric']} metric" if meta.get("metric", "euclidean") != "euclidean" else ""
    lines = [f"xhsi: {meta.get('problem')} with {meta.get('solver')}{metric}: {meta.get('n_iter')} iterations in "
             f"{meta.get('wall_s', 0.0):.1f} s ({meta.get('stop_reason')}); outputs in {out}"]
    res = result.metrics.get("result") if result.metrics else None
    if res:
        lines.append(f"  result: PSNR {res['psnr_db']:.2f} dB, ASAM {res['asam_deg']:.2f} deg, "
                     f"relative error per voxel {res['rel_error_voxel']:.3f}")
        for name, m in result.metrics.get("baselines", {}).items():
            lines.append(f"  data-only `{name}`: PSNR {m['psnr_db']:.2f} dB, ASAM {m['asam_deg']:.2f} deg, "
                         f"relative error per voxel {m['rel_error_voxel']:.3f}")
    return "\n".join(lines)
