"""``xhsi sweep``: one config run at every point of a grid of overrides, on a Dask cluster.

**Points.** The grid is ``{dotted key: [values]}`` (``--grid 'KEY=[v1, v2]'``, or the
config's ``[sweep] grid``; a ``--grid`` key replaces the table's); its points are the
cartesian product of the values, the last key varying fastest, crossed with the override
sets of ``[sweep] points`` when those are given. A point's overrides are applied after the
``--set`` ones, with the same dotted keys and TOML values.

**Checks first.** :func:`plan_sweep` loads every point's config and runs the checks of
``xhsi validate`` on it (unknown keys with a did-you-mean, values, files, solver, memory)
before anything is submitted or written: a bad key or value, a grid with zero points, a
point folder that holds a run of another config, is an XhsiError (exit 2).

**Folders.** Point ``i`` runs, as a normal ``xhsi run`` would (``xhsi.runner.run``: staged,
all-or-nothing outputs, checkpoints), into ``OUT/points/NAME``, NAME = ``{i:03d}-{digest}``
where digest is the first 8 hex digits of the SHA-256 of the point's overrides; the
overrides are recorded in the folder's ``sweep_point.json``. A folder the runner calls
complete (``xhsi.runfolder.folder_state``) whose ``config.resolved.toml`` is the point's
resolved config is skipped; an interrupted one is resumed from its checkpoint. When the
grid changes so that a point's index does, its folder is found by its digest and renamed.

**Tasks.** Each point is one Dask task, :func:`run_point`, given the config's path and the
override strings (never a pickled config): it imports and runs xhsi in the worker. A point
that fails with a user error (XhsiError) is reported with its message and does not stop
the others; another exception is retried ``retries`` times; a point whose worker died is
rescheduled by the Dask scheduler (up to its ``distributed.scheduler.allowed-failures``
times) and resumes from the point's last checkpoint. The results table and plot are
:mod:`xhsi.distributed.report`'s.

``OUT`` must be a folder every worker and this process see at the same path (a shared
filesystem on a cluster).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..errors import ConfigError, XhsiError

POINTS = "points"
RECORD = "sweep_point.json"


# -- the grid ------------------------------------------------------------------------------
def parse_grid_option(text: str) -> tuple[str, list]:
    """``KEY=[v1, v2, ...]`` (``--grid``) as (key, values); the values are TOML."""
    from ..tomlio import parse_value

    key, sep, values = text.partition("=")
    key = key.strip()
    value = parse_value(values.strip()) if sep else None
    if not key or not isinstance(value, list):
        raise ConfigError(f"--grid `{text}`: expected KEY=[v1, v2, ...] with a TOML array of values, e.g. "
                          "--grid 'solver.max_iter=[50, 100]'.")
    return key, value


def expand_points(grid: dict[str, list], point_sets: Sequence[dict] | None = None) -> list[dict[str, Any]]:
    """The override set of every point: the cartesian product of ``grid`` ({key: values},
    last key fastest) for each of ``point_sets`` (default: one empty set). Empty when a key
    has no values or ``point_sets`` is empty."""
    keys = list(grid)
    sets = [{}] if point_sets is None else list(point_sets)
    for point in sets:
        both = sorted(set(point) & set(keys))
        if both:
            raise ConfigError(f"`{both[0]}` is both a [sweep] points key and a grid key: give it in one of them.")
    return [{**point, **dict(zip(keys, combo))}
            for point in sets for combo in itertools.product(*(grid[k] for k in keys))]


def point_digest(overrides: dict[str, Any]) -> str:
    """8 hex digits that name an override set (the same set, the same digits)."""
    text = json.dumps(overrides, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def point_name(index: int, overrides: dict[str, Any]) -> str:
    """``{index:03d}-{digest}``: sorts in grid order, safe on every filesystem."""
    return f"{index:03d}-{point_digest(overrides)}"


def assignments(overrides: dict[str, Any]) -> list[str]:
    """The overrides as ``--set`` strings (``key=TOML value``)."""
    from ..tomlio import format_value

    return [f"{key}={format_value(value)}" for key, value in overrides.items()]


@dataclass
class SweepPoint:
    """One point: its place in the grid, its folder, and the state of that folder when the
    sweep was planned ("new", "complete", "interrupted", or "other": a complete run of
    another config, which only ``overwrite`` replaces)."""

    index: int
    name: str
    overrides: dict[str, Any]
    folder: Path
    state: str = "new"
    #: an existing folder of the same overrides under another index (the grid changed)
    previous: Path | None = None

    @property
    def label(self) -> str:
        return ", ".join(assignments(self.overrides)) or "(no overrides)"


@dataclass
class Sweep:
    """A planned sweep: the config, its ``--set`` overrides, the grid, and its points."""

    config: Path
    overrides: list[str]
    grid: dict[str, list]
    point_sets: list[dict] | None
    points: list[SweepPoint]
    out: Path
    metrics: list[str] = field(default_factory=list)
    overwrite: bool = False
    disabled_plugins: list[str] = field(default_factory=list)

    @property
    def pending(self) -> list[SweepPoint]:
        return [p for p in self.points if p.state != "complete"]

    def keys(self) -> list[str]:
        """Every key the points set, in the order first met."""
        return list(dict.fromkeys(k for p in self.points for k in p.overrides))

    def describe(self) -> str:
        lines = [f"{len(self.points)} point{'s' * (len(self.points) != 1)} in {self.out / POINTS}"]
        for p in self.points:
            state = {"new": "to run", "interrupted": "to resume", "complete": "complete, skipped",
                     "other": "holds another config's run: replaced (--overwrite)"}[p.state]
            lines.append(f"  {p.name}  {p.label}  [{state}]")
        return "\n".join(lines)


# -- planning: every check before any task ----------------------------------------------------
def point_config(config: str | Path, overrides: Iterable[str]):
    """The config of one point: ``config`` with ``overrides`` applied, without its [sweep]
    table (a point is a normal run)."""
    from ..config import load_config

    cfg = load_config(config, list(overrides))
    cfg.sweep = None
    return cfg


def same_run(folder: Path, cfg) -> bool:
    """Whether ``folder``'s ``config.resolved.toml`` (what its run ran) is ``cfg`` resolved,
    ``cfg`` having passed ``check_config`` (which fills in what the run fills in)."""
    from ..tomlio import load_toml, loads_toml

    try:
        return load_toml(folder / "config.resolved.toml") == loads_toml(cfg.to_toml())
    except XhsiError:
        return False


def plan_sweep(config: str | Path, grid: Iterable[str] = (), overrides: Iterable[str] = (),
               out: str | Path | None = None, metrics: Iterable[str] = (), overwrite: bool = False) -> Sweep:
    """Expand and check a sweep: ``grid`` holds ``--grid`` strings (``KEY=[v1, v2]``),
    ``overrides`` ``--set`` strings, ``metrics`` the metrics to plot (default: the config's
    ``[sweep] metrics``). ``out`` defaults to the config's ``[run] output`` + ``_sweep``.
    Raises XhsiError (nothing submitted, nothing written) for a bad key or value, zero
    points, or a point folder holding another config's run (unless ``overwrite``)."""
    from ..atomic import check_writable
    from ..config import load_config
    from ..plugins import disabled_plugins
    from ..runfolder import folder_state
    from ..runner import check_config

    config, overrides = Path(config), list(overrides)
    base = load_config(config, overrides)
    table = base.sweep
    sweep_grid = dict(table.grid or {}) if table is not None else {}
    sources = dict.fromkeys(sweep_grid, "[sweep] grid")
    for text in grid:
        key, values = parse_grid_option(text)
        sweep_grid[key], sources[key] = values, "--grid"
    point_sets = table.points if table is not None else None
    if not sweep_grid and point_sets is None:
        raise ConfigError(f"{config}: nothing to sweep: give --grid 'KEY=[v1, v2, ...]' (repeatable), or a [sweep] "
                          "table with `grid` or `points` in the config.")
    combos = expand_points(sweep_grid, point_sets)
    if not combos:
        empty = [k for k, v in sweep_grid.items() if not v]
        why = f"`{empty[0]}` ({sources[empty[0]]}) has no values" if empty else "[sweep] points is empty"
        raise ConfigError(f"{config}: the sweep has zero points: {why}.")
    for point in point_sets or []:
        sources.update(dict.fromkeys((k for k in point if k not in sources), "[sweep] points"))
    first = {}
    for combo in combos:
        for key, value in combo.items():
            first.setdefault(key, value)
    for key, value in first.items():  # one key at a time, so that the message names it
        try:
            load_config(config, [*overrides, *assignments({key: value})])
        except XhsiError as exc:
            raise type(exc)(f"sweep key `{key}` ({sources.get(key, '[sweep]')}): {exc}") from None

    out = Path(out) if out is not None else Path(f"{base.run.output}_sweep")
    folders = out / POINTS
    names = [point_name(index, combo) for index, combo in enumerate(combos)]
    taken = set(names)
    points = []
    for index, (name, combo) in enumerate(zip(names, combos)):
        point = SweepPoint(index, name, combo, folders / name)
        try:
            cfg = point_config(config, [*overrides, *assignments(combo)])
            check_config(cfg)
        except XhsiError as exc:
            raise type(exc)(f"sweep point {point.name} ({point.label}): {exc}") from None
        if not point.folder.exists():
            point.previous = _previous_folder(folders, point, taken)
            taken.add(point.previous.name if point.previous is not None else name)
        state = folder_state(point.previous or point.folder)
        if state == "complete":
            state = "complete" if same_run(point.previous or point.folder, cfg) else "other"
        point.state = "new" if state == "none" else state
        points.append(point)
    other = [p for p in points if p.state == "other"]
    if other and not overwrite:
        shown = ", ".join(str(p.previous or p.folder) for p in other[:3]) + (", ..." if len(other) > 3 else "")
        raise XhsiError(f"{len(other)} point folder{'s' * (len(other) != 1)} of {out} hold{'s' * (len(other) == 1)} "
                        f"the run of another config ({shown}; the config or --set changed since): pass --overwrite "
                        "to replace them, or choose another --out.")
    check_writable(out, "the sweep output folder (--out)")
    return Sweep(config=config, overrides=overrides, grid=sweep_grid, point_sets=point_sets, points=points,
                 out=out, metrics=list(metrics) or list(table.metrics if table is not None else []),
                 overwrite=overwrite, disabled_plugins=sorted(disabled_plugins()))


def _previous_folder(folders: Path, point: SweepPoint, taken: set[str]) -> Path | None:
    """The one folder of ``folders`` with ``point``'s digest under another index, if any,
    that no point of the sweep has (``taken``: their names, and the folders claimed)."""
    if not folders.is_dir():
        return None
    digest = point.name.split("-", 1)[1]
    found = [p for p in folders.glob(f"*-{digest}") if p.is_dir() and p.name not in taken]
    return found[0] if len(found) == 1 else None


# -- the task ------------------------------------------------------------------------------
def run_point(config: str, overrides: list[str], folder: str, point: dict, overwrite: bool = False,
              disabled_plugins: Sequence[str] = (), selection_fits=None) -> dict:
    """Run one point in a Dask worker: ``config`` (an absolute path) with ``overrides``
    (``--set`` strings) into ``folder``, as ``xhsi run`` would: resumed when the folder
    holds this point's interrupted run (a worker lost mid-run), skipped when it holds its
    complete run. ``point`` ({"index", "name", "overrides"}) is recorded in the folder.
    ``selection_fits``: where a selecting config's candidate fits run (``runner.run``'s; a
    caller that runs the point itself, not as a task, may hand them to the cluster).
    Returns {"status": "done" | "complete" | "failed", "error", "wall_s", "worker"}; a user
    error (XhsiError) is a "failed" point, any other exception is raised (Dask retries it)."""
    from ..plugins import disabling
    from ..runfolder import folder_state
    from ..runner import check_config, run

    start, out = time.perf_counter(), Path(folder)
    outcome = {"status": "done", "error": None, "worker": f"{socket.gethostname()}:{os.getpid()}"}
    how = {"out": out, "quiet": True, "exclusive": True, "selection_fits": selection_fits}
    with disabling(disabled_plugins):
        try:
            state = folder_state(out)
            cfg = point_config(config, overrides)
            if state == "complete":  # a retry after the worker died once the run was in place
                check_config(cfg)
                if same_run(out, cfg):
                    outcome["status"] = "complete"
                elif not overwrite:
                    raise XhsiError(f"{out} holds the run of another config: pass --overwrite to replace it.")
                else:
                    run(point_config(config, overrides), overwrite=True, **how)
            elif state == "interrupted":
                try:
                    run(cfg, resume=True, **how)
                    outcome["resumed"] = True
                except XhsiError:
                    if not overwrite:
                        raise
                    run(point_config(config, overrides), overwrite=True, **how)
            else:
                run(cfg, **how)
            write_record(out, point, config, overrides)
        except XhsiError as exc:
            outcome.update(status="failed", error=str(exc))
    outcome["wall_s"] = time.perf_counter() - start
    return outcome


def write_record(folder: Path, point: dict, config: str | Path, overrides: Sequence[str]) -> None:
    """``sweep_point.json`` in a point's folder: which point of which sweep it is."""
    from ..results import write_json

    write_json(Path(folder) / RECORD, {**point, "config": str(config), "assignments": list(overrides)})


# -- the driver ----------------------------------------------------------------------------
@dataclass
class SweepReport:
    """What a sweep did: per point name its outcome, and the files it wrote."""

    sweep: Sweep
    outcomes: dict[str, dict]
    files: list[Path] = field(default_factory=list)
    plotted: list[str] = field(default_factory=list)
    unknown_metrics: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def failed(self) -> list[SweepPoint]:
        return [p for p in self.sweep.points if self.outcomes[p.name]["status"] == "failed"]

    @property
    def exit_code(self) -> int:
        """0 when every point is complete, 1 when a point failed."""
        return 1 if self.failed else 0

    def summary(self) -> str:
        counts = {}
        for outcome in self.outcomes.values():
            counts[outcome["status"]] = counts.get(outcome["status"], 0) + 1
        parts = [f"{counts.get('done', 0)} run", f"{counts.get('complete', 0)} already complete (skipped)",
                 f"{counts.get('failed', 0)} failed"]
        lines = [f"xhsi sweep: {len(self.outcomes)} points in {self.wall_s:.1f} s: {', '.join(parts)}; "
                 f"results in {self.sweep.out}: " + ", ".join(p.name for p in self.files)]
        for p in self.failed:
            lines.append(f"  failed: {p.name} ({p.label}): {self.outcomes[p.name]['error']}")
        if self.failed:
            lines.append("  Run the same command again to retry the failed points; completed ones are skipped.")
        return "\n".join(lines)


def run_sweep(sweep: Sweep, client, quiet: bool = False, retries: int = 1) -> SweepReport:
    """Run the pending points of ``sweep`` on the Dask ``client``, with progress as they
    complete, then write the table and plot (:func:`xhsi.distributed.report.write_report`).
    ``retries``: how many times a point that raised an unexpected exception is run again.
    ``client`` may be None when no point is pending."""
    from .report import write_report

    start = time.perf_counter()
    (sweep.out / POINTS).mkdir(parents=True, exist_ok=True)
    outcomes = {p.name: {"status": "complete", "error": None} for p in sweep.points if p.state == "complete"}
    for p in sweep.points:
        if p.previous is not None and not p.folder.exists():
            os.rename(p.previous, p.folder)
    config = str(sweep.config.resolve())
    futures = {}
    for p in sweep.pending:
        record = {"index": p.index, "name": p.name, "overrides": p.overrides}
        futures[client.submit(run_point, config, [*sweep.overrides, *assignments(p.overrides)],
                              str(p.folder.resolve()), record, sweep.overwrite, sweep.disabled_plugins,
                              key=f"xhsi-sweep-{p.name}-{uuid.uuid4().hex[:8]}", retries=retries, pure=False)] = p
    progress = _Progress(len(sweep.points), len(outcomes), quiet)
    try:
        for future in _as_completed(futures):
            p = futures[future]
            try:
                outcome = future.result()
            except Exception as exc:  # raised in the task after its retries, or KilledWorker
                outcome = {"status": "failed", "error": _task_error(exc)}
            outcomes[p.name] = outcome
            progress.update(p, outcome)
    except KeyboardInterrupt:
        client.cancel(list(futures))
        raise
    finally:
        progress.close()
    report = SweepReport(sweep, {p.name: outcomes[p.name] for p in sweep.points})
    for p in sweep.points:  # a worker lost between a run and its record leaves none
        if outcomes[p.name]["status"] != "failed" and not (p.folder / RECORD).exists() and p.folder.is_dir():
            write_record(p.folder, {"index": p.index, "name": p.name, "overrides": p.overrides}, config,
                         [*sweep.overrides, *assignments(p.overrides)])
    report.files, report.plotted, report.unknown_metrics = write_report(sweep, report.outcomes)
    report.wall_s = time.perf_counter() - start
    return report


def _as_completed(futures):
    if not futures:
        return iter(())
    from distributed import as_completed

    return as_completed(list(futures))


def _task_error(exc: BaseException) -> str:
    name = type(exc).__name__
    if name == "KilledWorker":
        return (f"every worker that ran it died ({exc}); it may need more memory than a worker has: fewer "
                "--workers, or workers with more memory.")
    return f"{name}: {exc}"


class _Progress:
    """Points done out of all: a tqdm bar on a terminal, a line per point otherwise."""

    def __init__(self, total: int, done: int, quiet: bool):
        self.quiet, self.done, self.total, self.bar = quiet, done, total, None
        if quiet:
            return
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, desc="xhsi sweep", unit="point", dynamic_ncols=True)
        elif done:
            print(f"xhsi sweep: {done}/{total} points already complete", file=sys.stderr, flush=True)

    def update(self, point: SweepPoint, outcome: dict) -> None:
        self.done += 1
        if self.quiet:
            return
        what = {"done": f"done in {outcome.get('wall_s', 0.0):.1f} s", "complete": "already complete",
                "failed": f"FAILED: {outcome.get('error')}"}[outcome["status"]]
        line = f"xhsi sweep: {self.done}/{self.total} {point.name} ({point.label}): {what}"
        if self.bar is not None:
            if outcome["status"] == "failed":
                self.bar.write(line, file=sys.stderr)
            self.bar.update(1)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
