"""The Problem base class and the data of one observation as problems see it."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from ..schema import NoOptions


@dataclass
class ObservationData:
    """One observation ready for a problem: its forward operator A (sky cube → expected
    counts), counts Y and expected background counts B (same shape as Y, or None), all on
    the run's backend. ``compile_host`` builds the same forward operator in float32 numpy on
    the host (None: ``forward`` is that operator already; the runner gives
    ``xhsi.instruments.compile_observation`` with the observation's settings), see
    ``host_forward``."""

    name: str
    forward: Any
    counts: Any
    background: Any = None
    instrument: Any = None
    compile_host: Callable[[], Any] | None = None
    wstat: Any = None  # a spectrum's (background counts, α), same shape as counts, for W-stat

    def host_forward(self):
        """The forward operator in float32 numpy on the host, whatever the run's backend and
        dtype: the operator of the simulation and of the data-only start, so that runs of
        one config in float32 and float64 (numpy or cupy) simulate the same counts and start
        from the same bits. Built on each call when the run's operator is not that one."""
        return self.forward if self.compile_host is None else self.compile_host()

    @property
    def channel_edges_kev(self):
        return getattr(self.forward, "channel_edges_kev", None)

    @property
    def pixel_arcsec(self) -> float | None:
        return getattr(self.forward, "detector_pixel_arcsec", None)


def run_solver(problem_name: str, solver, setup_args: tuple, callback=None, **run_options):
    """Set ``solver`` up on ``setup_args`` (its ``setup`` signature: x0 and the problem's
    terms), run it (``run_options``: checkpoint_path, checkpoint_every, resume_from,
    config_digest) and time it: (solver result, history rows, run metadata)."""
    solver.setup(*setup_args)
    t0 = time.perf_counter()
    out = solver.run(callback, **run_options)
    history, meta = solver_report(problem_name, solver.name, out, time.perf_counter() - t0)
    return out, history, meta


def solver_report(problem_name: str, solver_name: str, out, wall_s: float) -> tuple[list[dict], dict]:
    """(history rows as dicts, run metadata) of a finished solver run (a SolverResult)."""
    history = [dict(zip(("iteration", "cost", "step", "time_s"), row)) for row in out.history]
    meta = {"problem": problem_name, "solver": solver_name, "n_iter": out.n_iter, "stop_reason": out.stop_reason,
            "converged": out.converged, "solve_wall_s": wall_s,
            "final_cost": history[-1]["cost"] if history else None}
    return history, meta


def make_regularizers(config) -> list:
    """The [[regularizers]] of ``config`` as plugin instances, in config order."""
    from .. import plugins

    return [plugins.get("regularizer", r.name)(r.options, weight=r.weight) for r in config.regularizers]


class Problem:
    """Base class of problem plugins (kind ``problem``): the contract between a problem and
    the runner (``xhsi.runner``), which reads data, compiles operators and writes outputs
    around it and knows nothing else of the problem.

    - ``check_config(config)`` (class method): every check a user's input can fail, run by
      ``xhsi validate`` and by ``xhsi run`` before anything is read, computed or written. The base checks what every problem shares (observations, solver, memory,
      instruments, data files, scene: ``checks.py``); a subclass adds its own after
      ``super().check_config(...)``.
    - ``Problem(config, backend, grid, observations, regularizers, likelihood_cls,
      options=...)`` (``options``: the validated [problem] table, when the class declares
      ``Options``), then ``solve(solver, callback, ...) -> Result``: the cube, maps and
      components the runner writes (result.fits, maps.fits, components.fits).
    - ``baselines()`` and ``extra_metrics(result, truth)``: what metrics.json holds beyond
      the result cube's own metrics."""

    name: str = ""
    Options = NoOptions
    #: (minimum, maximum or None) number of observations the problem takes.
    observations_allowed: tuple[int, int | None] = (1, None)
    #: The ``Solver.unknowns`` the problem's ``solve`` hands to ``solver.setup``: "one"
    #: (x0, smooth, prox) or "blocks" (x0 list, value, blocks); None: any solver (the
    #: problem uses only its stopping rules, max_iter and tol).
    solver_unknowns: str | None = None
    #: Arrays the size of the sky cube (n_e × ny × nx in the run's dtype) that the problem and
    #: its solver hold at their peak, and that each observation adds (its operator's
    #: precomputed transforms, counts-sized temporaries, the float32 simulation): the memory
    #: estimate of ``check_config``. Rough; the defaults are deconvolution's and fusion's
    #: (the published fusion, 2400 × 45 × 45 with two observations, peaks ~24 cubes above
    #: the libraries: bench/memory.py, before the ``start_floor`` bound added one cube).
    memory_cubes: float = 9.0
    memory_cubes_per_observation: float = 8.0
    #: True when each pixel (or block of ``[problem] bin`` pixels) is solved alone, with no
    #: PSF or prior coupling it to its neighbours: ``xhsi tiles`` then cuts the field with no
    #: overlap (distributed/tiles.py).
    pixel_local: bool = False

    @classmethod
    def check_config(cls, config, regularizers: list | None = None) -> list:
        """Every check of ``config`` (an ``xhsi.config.Config`` whose keys and plugin options
        are already validated) that a user's input can fail; raise an XhsiError
        (ConfigError, DataError) saying what to change. Returns the [[regularizers]] as
        plugin instances (``regularizers``, or built from ``config`` when None), checked, for
        the run to use. Fast: files are read for their headers, nothing is compiled,
        simulated or written. In order: the regularisers, observations and solver, the
        memory estimate (from the [model] numbers, before any grid is built), then
        instruments, data files, the [simulate] scene and the [metrics] truth on the grid.
        A subclass adds its checks after ``regularizers = super().check_config(config,
        regularizers)`` and returns them."""
        from . import checks

        if regularizers is None:
            regularizers = make_regularizers(config)
        checks.check_observation_count(cls, config)
        checks.check_solver(cls, config)
        checks.check_memory(cls, config)
        grid = checks.model_grid(config)
        checks.check_observations(config, grid)
        checks.check_simulate(config, grid)
        checks.check_truth(config, grid)
        return regularizers

    @classmethod
    def memory_estimate(cls, config) -> int:
        """A rough estimate of a run's peak memory in bytes, from its [model] numbers,
        dtype and number of observations (``memory_cubes``, ``memory_cubes_per_observation``)."""
        from .checks import BASE_BYTES

        n_e, (ny, nx) = config.model.energy.bins, config.model.pixels
        cube = float(n_e) * ny * nx * (4 if config.run.dtype == "float32" else 8)
        cubes = cls.memory_cubes + cls.memory_cubes_per_observation * len(config.observations)
        return int(BASE_BYTES + cubes * cube)

    def baselines(self) -> dict[str, Any]:
        """Data-only estimates of the sky cube, {name: numpy cube (n_e, ny, nx)} in the
        result's units, whose metrics metrics.json reports next to the result's (to show
        what the problem gained over them). Default: none."""
        return {}

    def extra_metrics(self, result, truth) -> dict:
        """Metrics of ``result`` beyond those of its cube, merged into metrics.json when a
        truth is known: ``truth`` is an ``xhsi.simulate.SceneTruth``, the [simulate] scene's
        cube and components (or the [metrics] truth cube, with no components). Default:
        none."""
        return {}
