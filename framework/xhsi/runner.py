"""``xhsi run`` and ``xhsi simulate``: from a validated config to files on disk.

Order of work: every check that can fail on user input (output folder, then the problem's
``check_config``: instruments, counts files and their grids, scene, solver, memory, plugin
options) runs before the first heavy computation and before anything is written, so a run
refused by a check leaves its output folder as it found it (and creates none). Outputs are
staged and moved into place at once (``xhsi.runfolder``: the folder holds the previous
complete run, the new one, or a checkpoint that ``--resume`` continues from); Ctrl-C,
SIGTERM and SIGHUP write a checkpoint (``xhsi.interrupts``), which records the digests of
the input files and the xhsi version, compared on resume. The runner knows problems only
through their contract (``xhsi.problems.Problem``).
"""
from __future__ import annotations

import copy
import functools
import signal
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
from .interrupts import signal_number, stop_signals
from .problems.base import ObservationData, make_regularizers  # noqa: F401  (re-exported: bench, tests)
from .problems.checks import check_cube_grid, check_memory, model_grid, resolve_exposures
from .outputs import SKY_UNIT, summary, write_outputs
from .results import Result, atomic_write_text
from .runfolder import RunFolder
from .schema import NoOptions
from .selection import check_selection, select_for_run, selection_reason
from .solvers.checkpoint import load_checkpoint



@dataclass
class Prepared:
    """What a run needs before solving: backend, grid, observations and the true sky if known
    (``map_truth``: what the maps are scored against, ``xhsi.problems.truth_maps.MapTruth``)."""

    backend: Backend
    grid: Any
    observations: list[ObservationData]
    truth: np.ndarray | None
    scene_truth: Any = None
    map_truth: Any = None


def prepare(cfg: Config) -> Prepared:
    """Compile every observation's forward operator, read or simulate its counts, and read
    or simulate the truth, for a config that passed :func:`check_config` (which holds the
    input checks; reading still refuses a file whose grid does not match)."""
    from .instruments import compile_observation, load_instrument
    from .instruments.spectrum import spectrum_forward, spectrum_observation
    from .io.cubes import read_cube
    from .problems.truth_maps import read_map_truth, simulated_map_truth
    from .simulate import simulate_counts

    backend = Backend(cfg.run.backend, cfg.run.dtype, seed=cfg.run.seed)
    grid = model_grid(cfg)
    resolve_exposures(cfg)  # done by check_config already; here for a config that skipped it
    compiled, spectra = [], {}
    for i, obs in enumerate(cfg.observations):
        if obs.spectrum is not None:  # an OGIP spectrum: its own responses, counts and background
            spectra[obs.name] = spectrum_observation(obs, grid.pixel_arcsec, f"{cfg.source}: observations[{i}]")
            forward = spectrum_forward(spectra[obs.name], grid, backend)
            compiled.append((obs, spectra[obs.name].instrument, forward))
            continue
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
    # [metrics] truth_maps wins over the simulated components (checked by check_config)
    map_truth = read_map_truth(cfg)
    if map_truth is None and scene_truth is not None and scene_truth.components:
        map_truth = simulated_map_truth(scene_truth)

    observations = []
    for obs, instrument, forward in compiled:
        if obs.name in spectra:
            spec = spectra[obs.name]
            host = None if same else functools.partial(spectrum_forward, spec, grid, sim_backend, cache=False)
            background = None if spec.background is None else backend.asarray(spec.background[:, None, None])
            observations.append(ObservationData(obs.name, forward, backend.asarray(spec.counts[:, None, None]),
                                                background, instrument, host))
            if spec.wstat is not None:
                observations[-1].wstat = tuple(backend.asarray(a[:, None, None]) for a in spec.wstat)
            continue
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
            counts = to_numpy(simulate_counts(truth, data.host_forward(), sim_backend, sim_background))
            if not np.any(counts):
                raise DataError(f"{cfg.source}: the simulated counts of observation `{obs.name}` are all zero, so "
                                "there is nothing to fit: raise its exposure_s or the [simulate] scene's flux.")
            data.counts = backend.asarray(counts)
        observations.append(data)
    if truth is not None:  # kept on the host in the run's precision (metrics work in float64)
        truth = np.asarray(to_numpy(truth), dtype=np.float32 if backend.dtype_name == "float32" else np.float64)
    return Prepared(backend, grid, observations, truth, scene_truth, map_truth)


def _read_matching(read_cube, path, forward, name: str, what: str) -> np.ndarray:
    cube = read_cube(path)
    check_cube_grid(path, cube.data.shape, cube.energy_edges_kev, forward.shape_out,
                    getattr(forward, "channel_edges_kev", None), name, what)
    if what == "counts" and not np.any(cube.data):
        raise DataError(f"{path}: the counts cube of observation `{name}` is all zeros, so there is nothing to fit. "
                        "Check the file: an energy range or crop with no events (xhsi bin --energy-range, --crop), "
                        "or the wrong file.")
    return cube.data


def simulate(cfg: Config, out: Path, overwrite: bool = False) -> list[Path]:
    """Write ``truth.fits`` (the [simulate] scene), ``truth_maps.fits`` (its components' maps,
    for ``[metrics] truth_maps``: a scene with components and a problem with maps) and
    ``<observation>_counts.fits`` for every observation into the folder ``out``. Before
    anything is simulated or written: the folder must be writable, and none of these files
    may exist unless ``overwrite``, nor ever be a file the simulation reads
    (:func:`simulation_inputs`; compared by inode, not by name).
    The config's ``counts`` files and [metrics] truth are not read: every observation is
    simulated, and its ``exposure_s`` is taken from its counts file when left out."""
    from .atomic import check_writable
    from .io.cubes import write_cube
    from .problems.truth_maps import scores_maps, write_simulated_truth_maps
    from .products import instrument_cards, provenance_cards, sky_frame
    from .simulate import Scene

    if cfg.simulate is None:
        raise XhsiError(f"{cfg.source}: `xhsi simulate` needs a [simulate] table naming a scene.")
    out = Path(out)
    with_maps = (scores_maps(cfg)  # truth_maps.fits: the scene's components, for a problem with maps
                 and plugins.get("scene", cfg.simulate.scene).generate_components is not Scene.generate_components)
    targets = ([out / "truth.fits"] + [out / "truth_maps.fits"] * with_maps
               + [out / f"{obs.name}_counts.fits" for obs in cfg.observations])
    check_writable(out, "the simulate output folder (--out)")
    resolve_exposures(cfg)
    cfg_no_counts = copy.deepcopy(cfg)  # simulate every observation, whatever counts files it names
    for obs in cfg_no_counts.observations:
        obs.counts = None
    cfg_no_counts.metrics = None  # the truth written is the scene's
    check_new_files(targets, simulation_inputs(cfg_no_counts), overwrite)
    # The run's estimate bounds the simulation's (same grid, operators and counts, no solver).
    check_memory(plugins.get("problem", cfg.run.problem), cfg_no_counts)
    prep = prepare(cfg_no_counts)
    out.mkdir(parents=True, exist_ok=True)
    frame = sky_frame(cfg_no_counts, prep.grid)  # [model] center_deg, or an arbitrary position
    cards = provenance_cards(cfg_no_counts, prep.observations, frame)
    simulated = {"OBJECT": cards.get("OBJECT"), "HISTORY": [f"simulated by scene {cfg.simulate.scene}"]}
    written = [write_cube(out / "truth.fits", prep.truth, prep.grid.energy_edges_kev, wcs=frame.at(1),
                          pixel_arcsec=prep.grid.pixel_arcsec, bunit=SKY_UNIT, header=simulated)]
    if with_maps and prep.scene_truth is not None and prep.scene_truth.components:
        written.append(write_simulated_truth_maps(out / "truth_maps.fits", prep.scene_truth,
                                                  prep.grid.pixel_arcsec, frame.at(1), simulated))
    for obs, section in zip(prep.observations, cfg.observations):
        written.append(write_cube(out / f"{obs.name}_counts.fits", obs.counts, obs.channel_edges_kev,
                                  wcs=frame.at(section.spatial_rebin), pixel_arcsec=obs.pixel_arcsec,
                                  exposure_s=section.exposure_s, instrument=obs.instrument.name, bunit="count",
                                  header={**instrument_cards(obs.instrument), **simulated}))
    return written


def simulation_inputs(cfg: Config) -> dict[str, Path]:
    """{what: path} of every file a run or simulation of ``cfg`` reads that exists: the
    config itself, the paths of its tables and plugin options (counts, background, truth,
    scene and start files, surrogates), and each instrument's TOML and response files."""
    from .instruments import load_instrument

    found = {"the config": Path(cfg.source)} if cfg.source is not None else {}
    found.update(_paths_in(cfg, ""))
    for i, obs in enumerate(cfg.observations):
        try:
            instrument = load_instrument(obs.instrument)
        except XhsiError:
            continue  # the checks that follow say what is wrong with it
        if instrument.path is not None:
            found[f"observations[{i}].instrument"] = Path(instrument.path)
        found.update({f"instrument `{instrument.name}` {key}": path
                      for key, path in _paths_in(instrument.spec, "").items()})
    return {key: path for key, path in found.items() if path.is_file()}


def _paths_in(obj, prefix: str) -> dict[str, Path]:
    """Every Path value inside a schema dataclass, list or dict, by dotted key."""
    import dataclasses

    if isinstance(obj, Path):
        return {prefix: obj}
    items = ()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        items = ((f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj) if not f.name.startswith("_"))
    elif isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = ((f"[{k}]", v) for k, v in enumerate(obj))
    out = {}
    for key, value in items:
        sub = f"{prefix}{key}" if key.startswith("[") or not prefix else f"{prefix}.{key}"
        out.update(_paths_in(value, sub))
    return out


def check_new_files(targets: list[Path], inputs: dict[str, Path], overwrite: bool, option: str = "--overwrite") -> None:
    """Refuse to write ``targets`` over an input (``inputs``: {what: path}; the same file by
    inode, whatever its name or links), even with ``overwrite``, or over existing files
    without it."""
    import os

    existing = [t for t in targets if t.exists()]
    for target in existing:
        for what, path in inputs.items():
            try:
                same = os.path.samefile(target, path)
            except OSError:
                continue
            if same:
                raise XhsiError(f"{target} is {path}, which is read as {what}: writing there would destroy an input. "
                                "Choose another output folder.")
    if existing and not overwrite:
        names = ", ".join(str(t) for t in existing)
        raise XhsiError(f"{names} exist{'s' * (len(existing) == 1)}: pass {option} to replace "
                        f"{'it' if len(existing) == 1 else 'them'}, or choose another output folder.")


class Progress:
    """Progress of a run: a tqdm bar on a terminal, a log line per report otherwise, nothing when quiet."""

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

    def say(self, line: str) -> None:
        """A log line (none when quiet), above the bar on a terminal."""
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def check_config(cfg: Config) -> list:
    """Every check of ``cfg`` that a user's input can fail (``Problem.check_config`` of the [run]
    problem, then the [selection] table's), what ``xhsi validate`` and ``xhsi run`` run before anything is read,
    computed or written. Returns the [[regularizers]] instances it checked, which the run then uses."""
    from .problems.truth_maps import read_map_truth

    regularizers = plugins.get("problem", cfg.run.problem).check_config(cfg)
    read_map_truth(cfg)  # [metrics] truth_maps against the run's maps
    check_selection(cfg)  # [selection]: its candidates' configs, before anything is read
    return regularizers


def run(cfg: Config, out: Path | None = None, resume: bool = False, overwrite: bool = False,
        quiet: bool = False, exclusive: bool = False, selection_fits=None, bootstrap_tasks=None) -> Result:
    """Run the problem of ``cfg`` and write its outputs into ``out`` (default: [run] output)
    by the rules of ``xhsi.runfolder``: outputs staged and moved into place at once,
    periodic checkpoints where ``resume`` finds them, ``overwrite`` to replace another run.
    For the call, Ctrl-C, SIGTERM and SIGHUP (``xhsi.interrupts``) write a checkpoint and
    raise Interrupted. ``exclusive``: the caller is ``out``'s only writer (a Dask task),
    so a staging folder left by another host's run is a dead run's (``RunFolder``).
    ``selection_fits``: where the selection's candidate fits run (``run_selection``'s
    ``fits``; None: here, one after the other); ``bootstrap_tasks``: where the replicates of
    a bootstrap's error maps run (``xhsi.problems.bootstrap.fit_replicates``' ``tasks``;
    None: here), each reported as a log line unless ``quiet``."""
    from .problems.bootstrap import running

    t_start = time.perf_counter()
    out = Path(out) if out is not None else Path(cfg.run.output)
    with stop_signals() as signals:
        try:
            folder = RunFolder(out, resume=resume, overwrite=overwrite, exclusive=exclusive)
            regularizers = check_config(cfg)
            identity = run_identity(cfg)
            solver = plugins.get("solver", cfg.solver.name).from_config(cfg.solver)
            resume_from = None
            if resume:
                resume_from = load_checkpoint(folder.resume_path)
                resume_from.check_compatible(solver=solver.name, config_digest=None if selection_reason(cfg) else
                                             cfg.digest(), version=identity["xhsi_version"], inputs=identity["inputs"])
            prep = prepare(cfg)
            given, (cfg, regularizers, solver, chosen) = cfg, select_for_run(cfg, prep, regularizers, solver,
                                                                             resume_from, quiet, selection_fits)
            problem_cls = plugins.get("problem", cfg.run.problem)
            pm = plugins.plugin_manager()
            # A problem that declares options gets the validated [problem] table.
            extra = {} if options_schema(problem_cls) is NoOptions else {"options": cfg.problem}
            problem = problem_cls(cfg, prep.backend, prep.grid, prep.observations, regularizers,
                                  plugins.get("likelihood", cfg.run.likelihood), **extra)
        except KeyboardInterrupt as exc:
            raise Interrupted(f"interrupted ({_signal_name(exc)}) before the run started: {out} was not changed.",
                              signal_number(exc)) from None
        solver.checkpoint_meta = identity
        progress = Progress(cfg.solver.max_iter, quiet)

        def callback(iteration, cost, step, state) -> bool:
            progress.update(iteration, cost, step)
            answers = pm.hook.xhsi_iteration(iteration=iteration, cost=cost, step=step, state=state)
            return any(bool(a) for a in answers)

        try:
            folder.start()
            pm.hook.xhsi_run_start(config=cfg, problem=problem)
            with running(bootstrap_tasks, None if quiet else progress.say):  # [problem] errors = "bootstrap"
                result = problem.solve(solver, callback, checkpoint_path=folder.checkpoint_path,
                                       checkpoint_every=cfg.run.checkpoint_every, resume_from=resume_from,
                                       config_digest=cfg.digest())
            result.metadata.update({"wall_s": time.perf_counter() - t_start, "config_digest": cfg.digest(),
                                    "backend": cfg.run.backend, "dtype": cfg.run.dtype})
            if prep.truth is not None or prep.map_truth is not None:
                from .simulate import SceneTruth

                result.metrics = compute_metrics(result, prep.truth, problem) if prep.truth is not None else {}
                components = prep.map_truth.truth.components if prep.map_truth is not None else []
                result.metrics.update(problem.extra_metrics(result, SceneTruth(prep.truth, components)))
                if result.maps and prep.map_truth is not None:  # which truth scored the maps
                    result.metadata["map_truth"] = prep.map_truth.source
                    report = prep.map_truth.report(list(result.maps))
                    if report["source"] != "simulate" or report["missing"]:
                        result.metrics["map_truth"] = report
            if chosen is not None:  # metrics.json, run.json and config.selected.toml say what was chosen
                chosen.publish(result, folder.staging)
            write_outputs(folder.staging, cfg, prep, result)
            atomic_write_text(folder.staging / "config.resolved.toml", given.to_toml())
            with signals.held():
                folder.publish()
        except KeyboardInterrupt as exc:
            raise _interrupted(exc, folder, solver, resume_from, cfg.digest(), signals) from None
        finally:
            progress.close()
            folder.discard()
    pm.hook.xhsi_run_end(config=cfg, result=result)
    if not quiet:
        print(summary(result, out), file=sys.stderr)
    return result


def run_identity(cfg: Config) -> dict:
    """What a run's checkpoints record besides the config digest, for a resume to compare:
    ``xhsi_version`` and the SHA-256 of each file the run reads (``inputs``: those of
    :func:`simulation_inputs` but the config file, whose content the digest covers)."""
    from . import __version__
    from .solvers.checkpoint import file_digests

    source = Path(cfg.source).resolve() if cfg.source is not None else None
    files = {what: path for what, path in simulation_inputs(cfg).items() if path.resolve() != source}
    return {"xhsi_version": __version__, "inputs": file_digests(files)}


def _signal_name(exc: BaseException) -> str:
    return signal.Signals(signal_number(exc)).name


def _interrupted(exc: BaseException, folder: RunFolder, solver, resume_from, config_digest: str,
                 signals) -> Interrupted:
    """Leave ``folder`` holding the interrupted run's checkpoint (when the solver got past
    where it started) and say so."""
    how, signum = f"interrupted ({_signal_name(exc)})", signal_number(exc)
    if folder.published:
        return Interrupted(f"{how} after the run completed: {folder.out} holds its outputs.", signum)
    start = resume_from.iteration if resume_from is not None else 0
    if solver.state is None or solver.iteration <= start:
        kept = folder.resume_path if resume_from is not None else None
        return Interrupted(f"{how} before the first iteration: {folder.out} was not changed.", signum, kept)
    with signals.held(deliver=False):  # a second signal must not cut the checkpoint short
        path = folder.interrupted(lambda p: solver.save_checkpoint(p, config_digest))
    return Interrupted(f"{how} at iteration {solver.iteration}; checkpoint written to {path}.", signum, path)


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
