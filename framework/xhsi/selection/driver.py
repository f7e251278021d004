"""The selection driver: every candidate fitted on every fold, scored along its path, the
choice, and the config of the final fit.

Cost: (candidates × folds) fits of ``budget`` iterations for ``holdout`` (candidates fits
for ``discrepancy``), each scored every ``every`` iterations (one forward model per
observation), then the final fit. What is shared: the forward operators (compiled once by
the runner's ``prepare`` and used by every fit: a thinned fold keeps the full-exposure
operators and fits p × the sky, which is the same problem in the solver's dimensionless
variable), and each fold's start (computed once, handed to every candidate through
``ImagingProblem.start_cube``). Candidates are not warm-started from one another: the
stopping iteration is part of what is chosen, so every path starts where the final fit
will.

Each fit is an independent task (``fit_task``) run through ``map_fn`` (the built-in
``map``, i.e. one after the other, unless a caller passes a parallel map), or handed to
``fits`` to run elsewhere: ``xhsi.distributed.selection_tasks.DaskFits`` runs them as
Dask tasks that each load and prepare the data in their worker (``xhsi run --workers N``;
docs/selection.md "On a Dask cluster").
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .. import plugins
from ..backend import to_numpy
from ..config import SelectionSection
from ..errors import RunStopped, XhsiError
from . import rules
from .candidates import Candidate, candidate_config
from .candidates import budget as fit_budget
from .candidates import candidates as config_candidates
from .thinning import check_split, fold_rng, thin_counts


@dataclass
class Fold:
    """The data one fit sees: observations (counts, background) on the run's backend and the
    scorer of its path; ``starts`` ({[problem] start, start_file: cube}) is filled by the
    fold's first fit of each kind of start."""

    index: int
    observations: list
    scorer: Any
    fraction: float = 1.0
    starts: dict = field(default_factory=dict)
    #: Called as ``watch(iteration, cube)`` at every scored iteration, ``cube()`` giving the
    #: fit's sky cube (backend array, the fit's units): the benches' oracle (the truth's
    #: metrics along the path).
    watch: Callable | None = None


@dataclass
class FitRecord:
    candidate: int
    fold: int
    path: rules.Path | None
    seconds: float
    error: str | None = None


@dataclass
class Selection:
    """What the selection found: ``config`` (the final fit's), ``report`` (metrics.json's
    ``selection``) and ``lines`` (for the run summary)."""

    config: Any
    report: dict
    lines: list[str] = field(default_factory=list)

    def publish(self, result, folder) -> None:
        """Record the selection in a finished run: metrics.json ``selection`` (the report),
        run.json ``selection`` (the choice) and ``config.selected.toml`` (the final fit's
        config) in ``folder``."""
        from ..results import atomic_write_text

        result.metrics["selection"], result.metadata["selection"] = self.report, self.report["chosen"]
        atomic_write_text(folder / "config.selected.toml", self.config.to_toml())


def make_folds(cfg, prep, rule: str, only: int | None = None) -> list[Fold]:
    """The folds of ``rule``: ``folds`` seeded thinnings of every observation's counts
    (holdout), or the full data once (discrepancy). ``only``: just the fold of that index
    (each fold draws from its own stream, so it is the same fold)."""
    from ..problems.base import ObservationData

    backend, observations = prep.backend, prep.observations
    names = [o.name for o in observations]
    backgrounds = [o.background for o in observations]
    if rule == "discrepancy":
        scorer = rules.DiscrepancyScore(names, [o.counts for o in observations], backgrounds, backend.xp)
        return [Fold(0, list(observations), scorer)]
    sel = cfg.selection if cfg.selection is not None else SelectionSection()
    host = [to_numpy(o.counts) for o in observations]
    for o, y in zip(observations, host):
        check_split(o.name, float(np.sum(y)), sel.fraction)
    p = sel.fraction
    folds = []
    for f in range(sel.folds) if only is None else [only]:
        rng = fold_rng(cfg.run.seed, f)
        fit_obs, heldout, held_bkg = [], [], []
        for o, y in zip(observations, host):
            y1, y2 = thin_counts(y, p, rng)
            bkg = None if o.background is None else p * o.background
            fit_obs.append(ObservationData(o.name, o.forward, backend.asarray(y1), bkg, o.instrument, o.compile_host))
            heldout.append(backend.asarray(y2))
            held_bkg.append(o.background)
        scorer = rules.HoldoutScore(names, heldout, held_bkg, p, backend.xp)
        folds.append(Fold(f, fit_obs, scorer, p))
    return folds


def absolute_weight(reg) -> bool:
    """Whether ``reg``'s strength is absolute (a weight, an explicit threshold), so that a fit
    of counts thinned to p scales it by p: the data term of Y₁ through p·A is, in
    expectation, p × that of Y through A, and the penalty must follow to keep the full
    data's balance. Noise-calibrated regularisers (starlet k: thresholds in σ of the
    gradient's counting noise, measured on the thinned counts themselves) and
    parametrisations (rank) keep their values."""
    from ..regularizers import Parametrisation, Regularizer

    if isinstance(reg, Parametrisation):
        return False
    calibrated = type(reg).calibrate_noise is not Regularizer.calibrate_noise
    o = reg.options
    explicit = getattr(o, "thresholds", None) is not None or getattr(o, "noise_sigma", None) is not None
    return explicit or not calibrated


def fit_task(cfg_c, prep, fold: Fold, iterations: int, every: int, patience: int | None = None) -> rules.Path:
    """One candidate fitted on one fold for ``iterations`` iterations, scored at the start
    and every ``every`` iterations (and where the solver stops). ``patience``: stop once
    the fold's scorer says the path is past its choice (``done``), e.g. the held-out
    deviance has not improved for that many scores; None: the whole budget."""
    from ..config import options_schema
    from ..problems.base import make_regularizers
    from ..schema import NoOptions

    problem_cls = plugins.get("problem", cfg_c.run.problem)
    extra = {} if options_schema(problem_cls) is NoOptions else {"options": cfg_c.problem}
    regularizers = make_regularizers(cfg_c)
    for reg in regularizers:
        if fold.fraction < 1.0 and absolute_weight(reg):
            reg.weight *= fold.fraction
    problem = problem_cls(cfg_c, prep.backend, prep.grid, fold.observations, regularizers,
                          plugins.get("likelihood", cfg_c.run.likelihood), **extra)
    section = cfg_c.solver
    solver = plugins.get("solver", section.name)(section.options, max_iter=iterations, tol=section.tol,
                                                 report_every=every)
    setup, operators, scored, to_cube = problem.selection_fit(fold.starts, fold.fraction)
    # Held-out fits run the final fit's basis passes: each pass after the first starts from
    # the best iterate of the one before (on this fold's held-out score) and learns its
    # basis there; the path scored is the last pass's, the earlier ones ride along.
    passes = problem.selection_passes() if fold.fraction < 1.0 and hasattr(problem, "selection_passes") else 1
    earlier = []
    for _ in range(passes - 1):
        solver.setup(*setup)
        best: dict = {}
        earlier.append(_scored_run(solver, setup[0], fold, operators, scored, to_cube, patience, best))
        setup, operators, scored, to_cube = problem.selection_refit(best["cube"])
    solver.setup(*setup)
    path = _scored_run(solver, setup[0], fold, operators, scored, to_cube, patience)
    path.earlier = earlier
    return path


def _scored_run(solver, x0, fold: Fold, operators: list, scored: Callable, to_cube: Callable | None,
                patience: int | None, best: dict | None = None) -> rules.Path:
    """Run ``solver`` (set up at ``x0``), scoring ``scored(x)`` (what ``operators`` apply
    to) at the start, at every report and where it stops (``fit_task``). ``to_cube``: the
    sky cube of ``scored(x)`` for ``fold.watch`` (None: a path that is not watched).
    ``best``: filled with the sky cube (``"cube"``, float64 on the host) of the iterate of
    lowest score, formed once at the end (a solver's state arrays are never modified in
    place: ``xhsi.solvers.base``, so the iterate itself is kept until then)."""
    path = rules.Path()

    def score(x, iteration: int) -> None:
        y = scored(x)
        fold.scorer(operators, y, path, iteration)
        if fold.watch is not None and to_cube is not None:
            fold.watch(iteration, lambda: to_cube(y))
        total = path.totals()[-1]
        if best is not None and ("x" not in best or total < best["score"]):
            best.update(score=total, x=y)

    score(x0, 0)

    def callback(iteration, cost, step, state) -> bool:
        score(solver.x, iteration)
        return patience is not None and fold.scorer.done(path, patience)

    out = solver.run(callback)
    if path.iterations[-1] != out.n_iter:  # stopped by its tolerance between two scores
        score(solver.x, out.n_iter)
    if best is not None:
        best["cube"] = np.asarray(to_numpy(to_cube(best.pop("x"))), dtype=np.float64)
    return path


def failure_message(exc: BaseException) -> str:
    """How a failed fit is reported: a user error's message, else the exception's type too."""
    return str(exc) if isinstance(exc, XhsiError) else f"{type(exc).__name__}: {exc}"


def run_selection(cfg, prep, reason: str, quiet: bool = False, map_fn: Callable = map,
                  fits: Callable | None = None) -> Selection:
    """Fit every candidate on every fold, choose (candidate, stopping iteration), and return
    the final fit's config: the chosen overrides, ``solver.max_iter`` = the chosen
    iteration, ``selection.select = "off"``. Raises RunStopped when every candidate fails.

    ``fits``: runs the fits elsewhere, called as ``fits(cfg, folds, candidates, jobs)``
    with ``jobs`` [(candidate index, fold index)], yielding a FitRecord per job in any
    order (as they finish); None: ``map_fn`` over the jobs in this process."""
    t0 = time.perf_counter()
    sel = cfg.selection if cfg.selection is not None else SelectionSection()
    cands = config_candidates(cfg)
    configs = [candidate_config(cfg, c.overrides) for c in cands]
    iterations, every = fit_budget(cfg), sel.every
    folds = make_folds(cfg, prep, sel.rule)
    say = (lambda text: None) if quiet else (lambda text: print(text, file=sys.stderr, flush=True))
    n = len(cands) * len(folds)
    split = (f"{len(folds)} fold(s) of counts thinned to {sel.fraction:g}" if sel.rule == "holdout"
             else "the full counts")
    say(f"selection ({sel.rule}): {len(cands)} candidate(s) x {split}, {iterations} iterations each, "
        f"scored every {every}; {reason}")
    jobs = [(c, f) for f in range(len(folds)) for c in range(len(cands))]

    def one(job) -> FitRecord:
        c, f = job
        t = time.perf_counter()
        try:
            path = fit_task(configs[c], prep, folds[f], iterations, every, sel.patience)
            return FitRecord(c, f, path, time.perf_counter() - t)
        except Exception as exc:  # noqa: BLE001 — reported per candidate, never replaced by a default
            return FitRecord(c, f, None, time.perf_counter() - t, failure_message(exc))

    records = []
    for record in (map_fn(one, jobs) if fits is None else fits(cfg, folds, cands, jobs)):
        records.append(record)
        c, f, k = record.candidate, record.fold, len(records)
        if record.error is None:
            best = (rules.best_holdout if sel.rule == "holdout" else rules.best_discrepancy)([record.path])
            say(f"selection [{k}/{n}] fold {f + 1}, {cands[c].name}: best {best.score:.6g} at iteration "
                f"{best.iteration} ({record.seconds:.1f} s)")
        else:
            say(f"selection [{k}/{n}] fold {f + 1}, {cands[c].name}: FAILED ({record.error.splitlines()[0]})")
    records.sort(key=lambda r: jobs.index((r.candidate, r.fold)))  # as they finished: in job order again
    return _conclude(cfg, sel, cands, records, reason, iterations, time.perf_counter() - t0)


def _conclude(cfg, sel, cands: list[Candidate], records: list[FitRecord], reason: str, iterations: int,
              seconds: float) -> Selection:
    best_of = rules.best_holdout if sel.rule == "holdout" else rules.best_discrepancy
    rows, best = [], []
    for c, cand in enumerate(cands):
        mine = [r for r in records if r.candidate == c]
        errors = [f"fold {r.fold + 1}: {r.error}" for r in mine if r.error is not None]
        choice = None if errors else best_of([r.path for r in mine])
        best.append(choice)
        row = {"name": cand.name, "overrides": cand.overrides, "seconds": sum(r.seconds for r in mine)}
        if choice is None:
            row["error"] = "; ".join(errors) if errors else "no finite score along the path"
        else:
            row.update({"score": choice.score, "iteration": choice.iteration,
                        "by_observation": choice.by_observation, **choice.extra})
            paths = [r.path for r in mine]
            row["path"] = {"iteration": paths[0].iterations, "score": [sum(v.values()) for v in
                                                                      paths[0].by_observation]}
            if paths[0].earlier:  # the stops of the basis passes before the scored one
                row["pass_iter"] = [best_of([p.earlier[i] for p in paths]).iteration
                                    for i in range(len(paths[0].earlier))]
        rows.append(row)
    if all(b is None for b in best):
        detail = "; ".join(f"{r['name']}: {r['error']}" for r in rows)
        raise RunStopped(f"the selection failed: every candidate failed ({detail}). Nothing was written; fix the "
                         "candidates' options, or set [selection] select = \"off\" and choose them by hand.")
    k = rules.choose(best)
    chosen = best[k]
    final_iter = chosen.iteration  # exactly (0: the start is the result; ``final_fixed``)
    fixed = final_fixed(final_iter)
    final = candidate_config(cfg, cands[k].overrides, fixed)
    # the problem's own settings of a chosen fit, given the stops of the held-out fits' earlier passes
    more = getattr(plugins.get("problem", cfg.run.problem), "selection_final", None)
    extra = more(final, rows[k].get("pass_iter")) if more is not None else {}
    if extra:
        final = candidate_config(cfg, cands[k].overrides, {**fixed, **extra})
    at_end = chosen.iteration >= iterations
    report = {
        "rule": sel.rule, "reason": reason, "fraction": sel.fraction if sel.rule == "holdout" else None,
        "folds": sel.folds if sel.rule == "holdout" else 1, "every": sel.every, "budget": iterations,
        "candidates": rows,
        "chosen": {"name": cands[k].name, "overrides": cands[k].overrides, "iteration": chosen.iteration,
                   "final_max_iter": final_iter, "final_overrides": extra, "score": chosen.score,
                   "at_budget": at_end,
                   # what turns the given config into the final fit's (``xhsi tiles`` applies it to every tile)
                   "run_overrides": {**cands[k].overrides, **fixed, **extra}},
        "cost": {"fits": len(records), "seconds": seconds},
    }
    what = "held-out deviance" if sel.rule == "holdout" else "|deviance / expected - 1|"
    lines = [f"  selection ({sel.rule}; {reason}): chose {cands[k].name}, stopping at iteration {chosen.iteration} "
             f"({what} {chosen.score:.6g}); {len(records)} fits in {seconds:.1f} s"
             + ("; final fit with " + ", ".join(f"{key.split('.')[-1]} = {value}" for key, value in extra.items())
                if extra else "")]
    for row in rows:
        if "error" in row:
            lines.append(f"    candidate {row['name']}: failed: {row['error'].splitlines()[0]}")
        else:
            lines.append(f"    candidate {row['name']}: {row['score']:.6g} at iteration {row['iteration']}")
    if at_end:
        lines.append(f"    the chosen path was still improving at the budget of {iterations} iterations: raise "
                     "[selection] max_iter for a later stop")
    report["summary"] = lines
    return Selection(final, report, lines)


def final_fixed(iterations: int) -> dict[str, Any]:
    """What the final fit of a selection fixes besides the candidate's overrides: it runs
    exactly to the chosen iteration (the paths were scored at fixed iterations, so no
    tolerance may end it sooner) and selects nothing."""
    return {"solver.max_iter": int(iterations), "solver.tol": 0.0, "selection.select": "off"}


def run_overrides(chosen: dict) -> dict[str, Any]:
    """The overrides that turn a selecting config into its final fit's, from run.json's
    ``selection`` (``chosen``): its ``run_overrides``, or, for a run that did not record
    them, the candidate's overrides, ``final_fixed`` and the final fit's settings."""
    if "run_overrides" in chosen:
        return dict(chosen["run_overrides"])
    return {**chosen["overrides"], **final_fixed(chosen["final_max_iter"]), **(chosen.get("final_overrides") or {})}


def select_for_run(cfg, prep, regularizers: list, solver, resume_from=None, quiet: bool = False,
                   fits: Callable | None = None):
    """The runner's selection stage, after ``prepare``: (config, regularisers, solver,
    Selection) of the final fit, or the given ones and None when ``cfg`` does not select
    (``selection_reason``). A resume runs the selection again (seeded: the same choice)
    and then checks the checkpoint against the final fit's config. ``fits``: where the
    candidate fits run (``run_selection``)."""
    from .candidates import selection_reason

    reason = selection_reason(cfg)
    if reason is None:
        return cfg, regularizers, solver, None
    chosen = run_selection(cfg, prep, reason, quiet, fits=fits)
    final = chosen.config
    regularizers = plugins.get("problem", final.run.problem).check_config(final)
    solver = plugins.get("solver", final.solver.name).from_config(final.solver)
    if resume_from is not None:
        resume_from.check_compatible(solver=solver.name, config_digest=final.digest())
    return final, regularizers, solver, chosen


def truth_paths(cfg, prep, cands: list[Candidate], metric: Callable, iterations: int | None = None,
                every: int | None = None) -> list[list[tuple[int, float]]]:
    """For the benches' oracle: each candidate fitted on the full counts (the final fit's
    data), with ``metric(cube)`` (``cube`` a float64 numpy cube in physical units) at every
    scored iteration: [[(iteration, value), ...] per candidate]. ``iterations`` and ``every``
    default to the selection's. The truth never enters the selection itself."""
    sel = cfg.selection if cfg.selection is not None else SelectionSection()
    iterations, every = iterations or fit_budget(cfg), every or sel.every
    obs = prep.observations
    out = []
    for cand in cands:
        rows: list[tuple[int, float]] = []
        fold = Fold(0, list(obs), rules.DiscrepancyScore([o.name for o in obs], [o.counts for o in obs],
                                                         [o.background for o in obs], prep.backend.xp))
        fold.watch = lambda k, cube, rows=rows: rows.append((k, metric(np.asarray(to_numpy(cube()), np.float64))))
        fit_task(candidate_config(cfg, cand.overrides), prep, fold, iterations, every)
        out.append(rows)
    return out
