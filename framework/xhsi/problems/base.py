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
    the host (None: ``forward`` is that operator already), see ``host_forward``."""

    name: str
    forward: Any
    counts: Any
    background: Any = None
    instrument: Any = None
    compile_host: Callable[[], Any] | None = None

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


class Problem:
    """Base class of problem plugins (kind ``problem``).

    ``Problem(config, backend, grid, observations)`` then ``solve(...) -> Result``; the
    runner (``xhsi.runner``) reads data, compiles operators and writes outputs around it."""

    name: str = ""
    Options = NoOptions
    #: (minimum, maximum or None) number of observations the problem takes.
    observations_allowed: tuple[int, int | None] = (1, None)

    @classmethod
    def check_config(cls, config, regularizers: list) -> None:
        """Checks of a run config that need the problem's knowledge (``regularizers``: the
        instantiated [[regularizers]]), run by ``xhsi validate`` and by ``xhsi run`` before
        any data is read or simulated; raise ConfigError. Default: none."""
