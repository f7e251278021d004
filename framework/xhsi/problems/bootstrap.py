"""Parametric bootstrap error maps of an unmixing solution (``[problem] errors =
"bootstrap"``; docs/unmixing.md, "Error maps").

The Fisher error maps (``Unmixing.error_maps``) are those of a per-pixel fit at the
solution: they ignore the starlet prior, which both narrows the spread of the maps and
biases them (a MAP estimate is shrunk towards a smooth map). The bootstrap measures both on
the problem itself (Efron & Tibshirani 1993, *An Introduction to the Bootstrap*, ch. 6 and
10, the parametric bootstrap of the standard error and of the bias):

1. the expected counts μ_k = A_k Z(θ̃) + B_k of every observation, background included,
   at θ̃: by default (``[problem] bootstrap_from = "solution"``) the solution θ̂, else
   (``"pilot"``) an **unregularised pilot**, the problem solved without its prior
   (``unregularised_pilot``);
2. B replicates y*_b ~ Poisson(μ_k), each from its own stream ``replicate_rng(seed, b)``
   (a ``numpy.random.SeedSequence`` child of the run's seed: replicate b is the same
   whatever B, on every backend);
3. each replicate fitted by the estimator itself (``start = "rerun"``): the problem's own
   start on the replicate (its per-pixel fits), its start metrics and prior thresholds,
   then ``iterations`` iterations of the run's solver (default the run's ``max_iter``) with the run's
   tolerance: θ*_b. (``start = "solution"``, PALM on the replicate from θ̂ with the run's
   blocks, is cheaper but under-disperses: the run's maps keep much of their start's noise
   after 30 iterations, a replicate started at the smooth θ̂ never had it: its sd of the
   parameter maps was 0.16–0.59 × the Fisher error against 0.49–0.88 for the whole
   estimator, and its 68 % intervals covered 21–68 %; bench/coverage_unmixing.py);
4. per pixel and map, the root-mean-square deviation of the replicates from θ̃,

       err = √( (1/B) Σ_b (θ*_b − θ̃)² ) = √( sd*² (B−1)/B + bias*² ),

   bias* = mean(θ*) − θ̃, the bootstrap estimate of the estimator's root-mean-square
   error at a sky like θ̃: the spread the prior leaves *and* the shift it causes, so that
   θ̂ ± err is an interval about the map that is written (``half_width``; ``INTERVALS``
   lists the alternatives bench/coverage_unmixing.py measured) — ``[problem]
   bootstrap_interval = "rms"``, and always with replicates drawn at the pilot;
5. by default (``bootstrap_interval = "sure"``, replicates drawn at θ̂) instead Stein's
   unbiased estimate of the error at the truth, from one more fit, the unregularised pilot
   θ_p: err² = max(sd*², (θ_p − θ̂)² + (2 s − 1) σ_F²), s = sd*/σ_F (``half_width``). The
   prior's bias enters through the data's own departure from the map, which the smooth θ̂
   cannot show its replicates. On the coverage suite (4 noise draws) its 68 % intervals
   covered 62–79 % (22 of 24 cells within 60–76 %; the rms 51–75 %, 19 of 24), on three
   held-out scenes 62–81 % (24 of 30; the rms 60–76 %, 30 of 30): wider where the prior's
   bias is small, but it does not under-cover where the rms does.

Where to draw them (docs/unmixing.md, "Error maps"; bench/coverage_unmixing.py). The pilot
follows Hall 1992 ("Effect of bias estimation on coverage accuracy of bootstrap confidence
intervals for a probability density", Ann. Statist. 20, 675: resample from an
undersmoothed estimate): the prior's bias is largest where the sky has structure the prior
smooths away, and drawn at the smooth θ̂ the replicates are re-smoothed little. With
L-BFGS stopped at 100 iterations the pilot was the better calibrated (16 of 24 cells within
60–76 %, at θ̂ 17 but failing low, 41–59 %). With L-BFGS run to convergence, as the configs
do since 2026-12-07, the estimator's errors shrank and the pilot's rough sky overstates
them: 68 % intervals drawn at the pilot covered 66–97 % (9 of 24 cells within 60–76 %),
drawn at θ̂ 50–75 % (19 of 24, mean of 3 noise draws). So θ̂ is the default again; where
the rms misses it is too narrow (50–58 % where the prior's bias dominates, at 1e5 s), the
pilot too wide: hence Stein's risk (5.), which keeps the replicates at θ̂ for their spread
and takes the bias from the pilot's departure.

The replicates are independent fits: ``fit_replicates`` runs them one after the other, or
hands them to ``tasks`` (``xhsi run --workers N``: Dask tasks,
``xhsi.distributed.bootstrap_tasks``), which yields them as they finish; either way they
come back in replicate order, and a line per replicate done says how far it is. The runner
says where and how for the duration of a solve (``running``), so that a problem's ``solve``
needs no argument for it.
"""
from __future__ import annotations

import contextvars
import copy
import dataclasses
import functools
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..backend import to_numpy
from ..errors import ConfigError

#: The half-widths of 68 % intervals from the replicates that bench/coverage_unmixing.py
#: compares: ``sd`` the replicates' standard deviation (spread only), ``rms`` their
#: root-mean-square deviation from the solution (spread and bias), ``fisher_bias``
#: √(σ_F² + bias*²) (Fisher spread, bootstrap bias), ``shrinkage``
#: √(sd*² + (bias*² − sd*²/B)₊/s²) with the local shrinkage s = sd*/σ_F, ``sure`` Stein's
#: unbiased estimate of the error at the truth from the unregularised pilot θ_p,
#: √max(sd*², (θ_p − θ̂)² + (2s − 1) σ_F²), ``covariance`` the same with Efron's bootstrap
#: covariance penalty 2 cov*(θ*, θ_p*) − var*(θ_p*) in place of (2s − 1) σ_F²
#: (``half_width``).
INTERVALS = ("sd", "rms", "fisher_bias", "shrinkage", "sure", "covariance")
#: Key prefix of a replicate's per-pixel fit maps (``ReplicateFit`` with ``pilots``): the
#: unregularised estimator θ_p* on the replicate counts, which the ``covariance`` interval
#: pairs with the replicate's map θ*.
PILOT = "pixelfit:"
#: How ``errors = "bootstrap"`` turns the replicates into an error (``[problem]
#: bootstrap_interval``): ``sure`` (``half_width``; needs one more fit, the unregularised
#: pilot) or ``rms``, their root-mean-square deviation from where they were drawn.
WRITTEN = ("sure", "rms")
#: The smallest local shrinkage s of the ``shrinkage`` interval: bias* is divided by at most 10.
SHRINKAGE_FLOOR = 0.1
#: Where a replicate's fit starts: ``rerun`` the whole estimator (its own per-pixel start,
#: metrics and thresholds, then PALM), ``solution`` PALM from the solution with the run's
#: blocks (cheaper; measured to under-disperse, bench/coverage_unmixing.py).
STARTS = ("rerun", "solution")
#: Where the replicates are drawn (``[problem] bootstrap_from``): ``solution`` the solution
#: itself (the default), ``pilot`` an unregularised fit of the data.
FROM = ("solution", "pilot")
#: Spawn key of the replicates' random streams: the run's seed with this key gives streams
#: independent of the simulation's (``Backend.rng``, the seed with no key).
_STREAM = 26


def replicate_rng(seed: int, index: int) -> np.random.Generator:
    """The random generator of replicate ``index`` of a run whose seed is ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(_STREAM, int(index))))


def replicate_counts(expected: list, seed: int, index: int) -> list[np.ndarray]:
    """Poisson counts (float64 host arrays) of each observation whose expected counts are
    ``expected`` (host or device arrays, same order), for replicate ``index``."""
    rng = replicate_rng(seed, index)
    return [rng.poisson(np.clip(to_numpy(mu), 0.0, None)).astype(np.float64) for mu in expected]


def check_bootstrap(samples: int, iterations: int, source: str = "config") -> None:
    """ConfigError unless B ≥ 2 replicates (a spread needs two) and ≥ 1 iteration."""
    if int(samples) < 2:
        raise ConfigError(f"{source}: `problem.bootstrap_samples` is {samples}; the bootstrap needs at least 2 "
                          "replicates to measure a spread (16 or more for errors good to ~20 %).")
    if int(iterations) < 1:
        raise ConfigError(f"{source}: the bootstrap's replicates would run {iterations} solver iterations "
                          "(`problem.bootstrap_iter`, or `solver.max_iter` when it is 0): each needs at least 1; "
                          "set `problem.bootstrap_iter`.")


def written_interval(options) -> str:
    """The interval ``errors = "bootstrap"`` writes (``WRITTEN``): ``[problem]
    bootstrap_interval``, ``auto`` being ``sure`` at the solution and ``rms`` at the pilot."""
    if options.bootstrap_interval != "auto":
        return options.bootstrap_interval
    return "sure" if options.bootstrap_from == "solution" else "rms"


def check_options(options, max_iter: int, source: str = "config") -> None:
    """ConfigError unless the bootstrap options of a problem (``UnmixingOptions``) can run:
    ``check_bootstrap``, and ``sure`` only with replicates drawn at the solution."""
    check_bootstrap(options.bootstrap_samples, options.bootstrap_iter or max_iter, source)
    if written_interval(options) == "sure" and options.bootstrap_from != "solution":
        raise ConfigError(f"{source}: `problem.bootstrap_interval = \"sure\"` estimates the error from replicates "
                          "drawn at the solution, not at the pilot: set `problem.bootstrap_from = \"solution\"`, or "
                          "`problem.bootstrap_interval` to \"rms\" or \"auto\".")


class ReplicateFit:
    """Draws replicate counts at the solution ``xs`` (``expected``: each observation's
    expected counts there, background included) and fits them: ``start = "rerun"`` by the
    whole estimator (a copy of the problem on the replicate counts: its own start, metrics
    and thresholds, then PALM with the run's solver settings and ``iterations``);
    ``"solution"`` by PALM from ``xs`` with the run's ``blocks`` (their proxes, metrics and
    step caps: the same prior) and gradients of the replicate's likelihood.

    ``problem`` an ``Unmixing`` (its ``_mixture``, ``build``, observations, likelihood class,
    backend, ``_maps``); ``solver`` the run's solver (its class and options are reused);
    ``mixture`` the run's (its ``n_amp`` and flux ``scale``)."""

    def __init__(self, problem, solver, mixture, blocks, xs, iterations: int, start: str = "rerun",
                 pilots: bool = False):
        if start not in STARTS:
            raise ValueError(f"unknown replicate start {start!r}; one of {STARTS}")  # programmer error
        self.problem, self.iterations, self.start, self.pilots = problem, int(iterations), start, bool(pilots)
        self.solver_cls, self.solver_options, self.tol = type(solver), solver.options, float(solver.tol)
        self.report_every = int(solver.report_every)
        # A fresh mixture and the operators from its cube to the counts (a problem with
        # tables caches spectra per mixture: the replicates' are their own).
        self.mixture, self.operators = problem._mixture(mixture.n_amp, mixture.scale)
        self.blocks, self.xs = list(blocks), list(xs)
        backgrounds = [o.background for o in problem.observations]
        z = self.mixture.cube(self.xs)
        self.expected = [to_numpy(op.apply(z) if b is None else op.apply(z) + b)
                         for op, b in zip(self.operators, backgrounds)]

    def fit(self, index: int, seed: int) -> dict[str, np.ndarray]:
        """The maps (host, physical units) of replicate ``index`` re-solved; with ``pilots``
        also its per-pixel fits (the problem's ``baseline_maps`` on the replicate), keyed
        ``PILOT + name``."""
        problem = self.problem
        counts = [problem.backend.asarray(c) for c in replicate_counts(self.expected, seed, index)]
        copied = problem_copy(problem, counts=counts) if self.start == "rerun" or self.pilots else None
        maps = self._rerun(copied) if self.start == "rerun" else self._from_solution(counts)
        if self.pilots:  # after the rerun: its start is these fits when init_bin = 1 (cached)
            maps.update({PILOT + name: m for name, m in copied.baseline_maps().items()})
        return maps

    def _from_solution(self, counts: list) -> dict[str, np.ndarray]:
        """PALM on the replicate ``counts`` from the solution, with the run's blocks."""
        problem = self.problem
        from ..likelihoods import DataTerm
        from .mixture import DataFit

        terms = [DataTerm(problem.likelihood_cls.for_counts(c), op, c, o.background,
                          what=f"replicate counts of `{o.name}`")
                 for c, op, o in zip(counts, self.operators, problem.observations)]
        data = DataFit(self.mixture, terms)
        blocks = [dataclasses.replace(b, gradient=functools.partial(data.partial, i)) for i, b in enumerate(self.blocks)]
        solver = self.solver_cls(self.solver_options, max_iter=self.iterations, tol=0.0, report_every=self.iterations)
        solver.setup(list(self.xs), data.value, blocks)
        out = solver.run()
        return dict(problem._maps(self.mixture, out.x))

    def _rerun(self, copied) -> dict[str, np.ndarray]:
        """The whole estimator on the replicate counts (``copied``: a ``problem_copy`` on
        them): the problem's own start (per-pixel fits of the replicate), metrics and
        thresholds, then ``iterations`` iterations of the run's solver with the run's
        tolerance."""
        solver = self.solver_cls(self.solver_options, max_iter=self.iterations, tol=self.tol,
                                 report_every=self.report_every)
        return dict(solved_copy(copied, solver)[3])


def problem_copy(problem, counts: list | None = None, prior_factor: float | None = None):
    """A shallow copy of an unmixing ``problem`` that builds and solves on its own: on
    ``counts`` (one array per observation; None: the problem's) and with the prior's
    thresholds × ``prior_factor`` (None: the problem's). build() sets the amplitude slots
    and fixed amplitudes on the components: the copy's are its own; the spectral responses
    do not depend on the counts."""
    out = copy.copy(problem)
    if counts is not None:
        out.observations = [dataclasses.replace(o, counts=c) for o, c in zip(problem.observations, counts)]
    if prior_factor is not None:
        out.prior_factor = float(prior_factor)
    out.components = [dataclasses.replace(c) for c in problem.components]
    out._responses = dict(problem._responses)
    out._pixelfit_maps = None
    return out


def solved_copy(copied, solver):
    """(mixture, blocks, solution, maps) of a ``problem_copy`` solved from its own start by
    ``solver`` (a fresh one: set up here)."""
    x0, value, blocks, mixture = copied.build()
    solver.setup(x0, value, blocks)
    xs = solver.run().x
    return mixture, blocks, xs, copied._maps(mixture, xs)


def unregularised_pilot(problem, solver, iterations: int):
    """The pilot of ``bootstrap_from = "pilot"``: the problem without its prior (every
    threshold × 0), solved from its own start by ``iterations`` iterations of the run's
    solver with the run's tolerance. Returns (mixture, blocks, solution, maps)."""
    fresh = type(solver)(solver.options, max_iter=int(iterations), tol=float(solver.tol),
                         report_every=int(solver.report_every))
    return solved_copy(problem_copy(problem, prior_factor=0.0), fresh)


def timed_fit(fit: ReplicateFit, index: int, seed: int) -> tuple[dict[str, np.ndarray], float]:
    """(maps of replicate ``index``, seconds its fit took): the task of every way of running
    the replicates."""
    t0 = time.perf_counter()
    maps = fit.fit(index, seed)
    return maps, time.perf_counter() - t0


#: ``tasks(fit, indices, seed)``: runs ``timed_fit`` of each replicate index elsewhere and
#: yields ``(index, maps, seconds)`` as each finishes, in any order; ``tasks.where()`` says
#: where for run.json (``{"where": address, "workers": n}``).
Tasks = Callable[[ReplicateFit, list, int], Iterable[tuple[int, dict, float]]]


@dataclasses.dataclass(frozen=True)
class Running:
    """Where a run's replicates run (``tasks``; None: here, one after the other) and where
    their progress lines go (``say``; None: nowhere)."""

    tasks: Tasks | None = None
    say: Callable[[str], None] | None = None


_running: contextvars.ContextVar[Running] = contextvars.ContextVar("xhsi_bootstrap_running")


@contextmanager
def running(tasks: Tasks | None = None, say: Callable[[str], None] | None = None) -> Iterator[None]:
    """For the block (the runner's solve): the bootstrap of ``error_maps`` runs its
    replicates by ``tasks`` and reports to ``say``. Outside it, or in another thread (a
    Dask worker's), they run here, silently."""
    token = _running.set(Running(tasks, say))
    try:
        yield
    finally:
        _running.reset(token)


def where(tasks: Tasks | None) -> dict[str, Any]:
    """What run.json's ``errors`` block says of where the replicates ran."""
    return dict(tasks.where()) if tasks is not None and hasattr(tasks, "where") else {"where": "local"}


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def fit_replicates(fit: ReplicateFit, samples: int, seed: int, tasks: Tasks | None = None,
                   say: Callable[[str], None] | None = None) -> list[dict[str, np.ndarray]]:
    """Replicates 0 … samples−1 fitted here one after the other, or by ``tasks`` (as they
    finish); returned in replicate order. ``say`` gets a line per replicate done: how many
    of all, its time, and the time left at the rate so far (wall-clock: on a cluster the
    rate of all its workers)."""
    indices = list(range(int(samples)))
    done = tasks(fit, indices, seed) if tasks is not None else ((b, *timed_fit(fit, b, seed)) for b in indices)
    t0, out = time.perf_counter(), {}
    for b, maps, seconds in done:
        out[b] = maps
        if say is not None:
            k, elapsed = len(out), time.perf_counter() - t0
            left = (f"~{_duration(elapsed / k * (samples - k))} left" if k < samples
                    else f"{_duration(elapsed)} in all")
            say(f"bootstrap [{k}/{samples}] replicate {b + 1} done in {seconds:.1f} s, {left}")
    missing = sorted(set(indices) - set(out))
    if missing:  # a tasks callable that lost some: a programmer error
        raise RuntimeError(f"bootstrap replicates {missing} never came back")
    return [out[b] for b in indices]


def stack(replicates: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """{map name: (B, ny, nx) float64 array} of the replicates' maps."""
    return {name: np.stack([np.asarray(r[name], dtype=np.float64) for r in replicates]) for name in replicates[0]}


def half_width(estimate, replicates, how: str = "rms", fisher=None, pilot=None, pilot_replicates=None) -> np.ndarray:
    """Half-width of the 68 % interval about ``estimate`` (ny, nx) from ``replicates``
    (B, ny, nx): ``INTERVALS`` (``fisher``: σ_F, needed by ``fisher_bias``, ``shrinkage``
    and ``sure``; ``pilot``: the unregularised fit θ_p, needed by ``sure`` and
    ``covariance``; ``pilot_replicates``: (B, ny, nx) the same unregularised estimator on
    each replicate, θ_p*_b, needed by ``covariance``).

    ``covariance`` is Stein's risk with Efron's covariance penalty (Efron 2004, "The
    estimation of prediction error: covariance penalties and cross-validation", JASA 99,
    619): σ_F² ∂g/∂θ_p = cov(θ̂, θ_p), and var θ_p, measured on the replicates, where the
    map and the pilot are both refitted:

        err² = max(sd*², (θ_p − θ̂)² + 2 cov*(θ*, θ_p*) − var*(θ_p*)).

    It needs no Fisher error and no model of the smoother: s = sd*/σ_F (``sure``) is the
    divergence only where the map at a pixel moves with that pixel's pilot alone; a prior
    that averages a pixel with its neighbours spreads it (a mean of n pixels: sd*/σ_F =
    1/√n, the divergence 1/n) and ``sure`` over-covers there. Where the pilot carries no
    information (NaN) or does not vary it is ``rms``.

    ``sure`` is Stein's unbiased risk estimate (Stein 1981, Ann. Statist. 9, 1135) of the
    mean squared error at the truth, pixel by pixel. Take the unregularised pilot as the
    observation, θ_p = θ + n with var n = σ_F², and the map as a function of it, θ̂ = g(θ_p);
    then E(θ̂ − θ)² = E(θ_p − θ̂)² − σ_F² + 2 σ_F² ∂g/∂θ_p, with the local shrinkage
    s = sd*/σ_F (clipped to [0, 1]; exact for a linear smoother) standing for ∂g/∂θ_p. The
    bias enters through θ_p − θ̂, the data's own departure from the map, and not through the
    replicates' bias about θ̂, which is the prior's bias at a sky as smooth as θ̂: too small
    where the truth has structure the prior smooths away (docs/unmixing.md, "Error maps").
    The estimate is a single draw per pixel and may fall below the variance: it is floored
    at sd*² (an error is never below the spread). Where σ_F or θ_p carries no information
    (inf, NaN) it is ``rms``.

    ``shrinkage`` corrects the bootstrap's bias for the smoothness of the point it is drawn
    at. For an estimator that shrinks each mode of the unregularised fit by s (a linear
    smoother, θ̂ = S θ_p, var θ_p = σ_F²), the bias at the truth θ is (s − 1) θ, the
    replicates' spread sd* = s σ_F, and their bias about θ̂ is (s − 1) s θ on average: s
    times too small. So bias*/s, with s = sd*/σ_F per pixel (clipped to
    [``SHRINKAGE_FLOOR``, 1]), estimates the bias at the truth; bias*² is first freed of its
    own noise (E bias*² = bias² + sd*²/B), which the division would amplify. Where the prior
    hardly acts (s = 1) the interval is close to ``rms``."""
    estimate = np.asarray(estimate, dtype=np.float64)
    replicates = np.asarray(replicates, dtype=np.float64)
    if how == "sd":
        return np.std(replicates, axis=0, ddof=1)
    rms = np.sqrt(np.mean(np.square(replicates - estimate[None]), axis=0))
    if how == "rms":
        return rms
    bias = np.mean(replicates, axis=0) - estimate
    if how == "fisher_bias":
        sigma = np.nan_to_num(np.asarray(fisher, dtype=np.float64), nan=np.inf)
        return np.sqrt(np.square(sigma) + np.square(bias))
    if how == "covariance":
        return _covariance_risk(estimate, replicates, pilot, pilot_replicates, rms)
    if how not in ("shrinkage", "sure"):
        raise ValueError(f"unknown interval {how!r}; one of {INTERVALS}")  # programmer error
    # the local shrinkage s = sd*/σ_F, where σ_F (and, for sure, the pilot) carries information
    var = np.var(replicates, axis=0, ddof=1)
    sigma = np.asarray(fisher, dtype=np.float64)
    known = np.isfinite(sigma) & (sigma > 0)
    if how == "sure":
        known &= np.isfinite(np.asarray(pilot, dtype=np.float64))
    sigma = np.where(known, sigma, 1.0)
    shrink = np.sqrt(var) / sigma
    if how == "shrinkage":  # no spread or no information: no correction
        shrink = np.clip(np.where(known & (var > 0), shrink, 1.0), SHRINKAGE_FLOOR, 1.0)
        bias2 = np.maximum(np.square(bias) - var / replicates.shape[0], 0.0)  # E[bias*²] = bias² + var/B
        return np.sqrt(var + bias2 / np.square(shrink))
    shrink = np.clip(shrink, 0.0, 1.0)
    departure = np.where(known, np.asarray(pilot, dtype=np.float64), estimate) - estimate
    risk = np.square(departure) + (2.0 * shrink - 1.0) * np.square(sigma)
    return np.where(known, np.sqrt(np.maximum(risk, var)), rms)


def _covariance_risk(estimate, replicates, pilot, pilot_replicates, rms) -> np.ndarray:
    """``half_width(..., "covariance")``: √max(sd*², (θ_p − θ̂)² + 2 cov* − var*θ_p*)."""
    pilot = np.asarray(pilot, dtype=np.float64)
    pilots = np.asarray(pilot_replicates, dtype=np.float64)
    var = np.var(replicates, axis=0, ddof=1)
    pvar = np.var(pilots, axis=0, ddof=1)
    known = np.isfinite(pilot) & np.all(np.isfinite(pilots), axis=0) & (pvar > 0)
    cov = np.sum((replicates - replicates.mean(axis=0)) * (pilots - pilots.mean(axis=0)), axis=0) / (
        replicates.shape[0] - 1)
    risk = np.square(np.where(known, pilot, estimate) - estimate) + 2.0 * cov - pvar
    return np.where(known, np.sqrt(np.maximum(risk, var)), rms)


def bootstrap_replicates(problem, solver, mixture, blocks, xs, samples: int, iterations: int, seed: int,
                         start: str = "rerun", tasks: Tasks | None = None,
                         say: Callable[[str], None] | None = None, pilots: bool = False) -> dict[str, np.ndarray]:
    """The maps of ``samples`` replicates re-solved for ``iterations`` solver iterations each
    (``stack``): here one after the other, or by ``tasks`` (e.g. as Dask tasks:
    ``xhsi.distributed.bootstrap_tasks.DaskReplicates(client)``); ``say``: progress lines
    (``fit_replicates``); ``pilots``: also each replicate's per-pixel fits (``PILOT``)."""
    fit = ReplicateFit(problem, solver, mixture, blocks, xs, iterations, start, pilots=pilots)
    return stack(fit_replicates(fit, samples, seed, tasks, say))


def bootstrap_errors(problem, solver, mixture, blocks, xs, maps: dict, samples: int, iterations: int, seed: int,
                     tasks: Tasks | None = None, say: Callable[[str], None] | None = None,
                     start_from: str = "solution", interval: str = "rms") -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(1-σ error maps of the fitted ``maps`` by the parametric bootstrap, what run.json
    reports: method, B, iterations, seed, where the replicates ran, time). The replicates
    are drawn at ``start_from`` (the solution or the unregularised pilot); ``interval``
    ``rms`` is their root-mean-square deviation from that point (module docstring),
    ``sure`` (drawn at the solution only) Stein's unbiased estimate of the error at the
    truth from the unregularised pilot, the Fisher errors at the solution and the
    replicates' spread (``half_width``). Maps the replicates do not fit (physical
    read-outs) get none."""
    check_bootstrap(samples, iterations, str(getattr(problem.config, "source", "config")))
    if start_from not in FROM or interval not in WRITTEN:
        raise ValueError(f"unknown bootstrap point {start_from!r} or interval {interval!r}")  # programmer error
    if interval == "sure" and start_from != "solution":  # refused by Unmixing.check_config
        raise ValueError("the sure interval needs replicates drawn at the solution")  # programmer error
    t0 = time.perf_counter()
    place = where(tasks)
    at = "an unregularised pilot fit" if start_from == "pilot" else "the solution"
    if say is not None:
        how = ("here, one after the other" if place["where"] == "local" else
               f"as Dask tasks on {place['where']}" + (f" ({place['workers']} workers)" if "workers" in place else ""))
        say(f"bootstrap: {samples} replicates drawn at {at}, {iterations} {solver.name} iterations each, {how}"
            + (", and one unregularised fit" if interval == "sure" else ""))
    centre, pilot = maps, None
    if start_from == "pilot" or interval == "sure":
        pmixture, pblocks, pxs, pilot = unregularised_pilot(problem, solver, iterations)
        if start_from == "pilot":
            mixture, blocks, xs, centre = pmixture, pblocks, pxs, pilot
    reps = bootstrap_replicates(problem, solver, mixture, blocks, xs, samples, iterations, seed, tasks=tasks, say=say)
    if interval == "sure":
        fisher = problem.error_maps(maps)
        errors = {name: half_width(maps[name], r, "sure", fisher[name], pilot[name])
                  for name, r in reps.items() if name in maps}
        text = ("Stein's unbiased estimate of the error at the truth: the unregularised fit's departure from the map, "
                "the Fisher errors and the spread of replicates drawn at the solution")
    else:
        errors = {name: half_width(centre[name], r, "rms") for name, r in reps.items() if name in maps}
        text = f"root-mean-square deviation of the replicates from {at}, where they were drawn"
    notes = {"method": "bootstrap", "samples": int(samples), "iterations": int(iterations), "from": start_from,
             "interval": text, "interval_kind": interval, "seed": int(seed), **place,
             "wall_s": time.perf_counter() - t0}
    return errors, notes


def error_maps(problem, solver, mixture, blocks, xs, maps: dict) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The error maps of a solved unmixing by its ``[problem] errors`` method, and
    ``{"errors": ...}`` for run.json (method; for the bootstrap B, iterations, seed, where,
    time): ``fisher`` the problem's own (``Unmixing.error_maps``), ``bootstrap``
    ``bootstrap_errors`` with ``bootstrap_samples`` replicates of ``bootstrap_iter``
    iterations (0: the run's ``max_iter``), seeded by the run's seed, run and reported as
    the enclosing ``running`` block says."""
    options = problem.options
    if options.errors == "fisher":
        return problem.error_maps(maps), {"errors": {"method": "fisher"}}
    iterations = options.bootstrap_iter or solver.max_iter
    seed = problem.config.run.seed or 0
    how = _running.get(Running())  # outside a ``running`` block: here, silently
    errors, notes = bootstrap_errors(problem, solver, mixture, blocks, xs, maps, options.bootstrap_samples,
                                     iterations, seed, tasks=how.tasks, say=how.say,
                                     start_from=options.bootstrap_from, interval=written_interval(options))
    return errors, {"errors": notes}


def coverage(estimate, error, truth, mask) -> float:
    """Fraction of the pixels in ``mask`` where |estimate − truth| ≤ error (NaN errors
    count as not covering)."""
    estimate, error, truth = (np.asarray(a, dtype=np.float64) for a in (estimate, error, truth))
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return float("nan")
    inside = np.abs(estimate - truth) <= np.nan_to_num(error, nan=-1.0)
    return float(np.mean(inside[mask]))
