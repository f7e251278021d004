"""The interface between problems and solvers, and the run loop every solver shares.

A problem hands a solver

* a **smooth term** f (``SmoothTerm``): ``value(x) -> float``, ``gradient(x)``, optionally
  ``value_and_gradient(x) -> (float, array)`` (one forward model for both) and
  ``lipschitz() -> float | None`` (a Lipschitz constant of ∇f, or None when unknown);
* a **proximable term** g (``ProxTerm``): ``prox(x, step)`` =
  argmin_u ½‖u − x‖² + step·g(u), and ``value(x) -> float``.

Regularizer objects (``xhsi.regularizers.Regularizer``) already have these methods: a
smooth one is a SmoothTerm, a proximable one a ProxTerm. Adapters: :class:`Composite` sums
smooth terms (Poisson data terms of several observations + Sobolev/L2 regularisers),
:class:`Precomposed` composes one with a change of variable,
:class:`ProxChain` applies several proxes in turn (starlet soft-thresholding, then the
projection on x ≥ 0), :class:`NonNegative` is that projection, :class:`Zero` is g = 0
(the prox terms live in ``xhsi.solvers.prox``).

A solver is ``Solver(options, max_iter=, tol=, max_time_s=, report_every=)``; ``setup(...)``
gives it the problem, ``step()`` does one iteration, ``run()`` iterates until a stopping
rule fires and returns a :class:`SolverResult`. Its ``state`` is a plain dataclass of arrays
and Python scalars, replaced (never modified in place) at each iteration, so that it can be
kept, checkpointed (``xhsi.solvers.checkpoint``) and resumed bit for bit.

Host syncs: the cost (a float, so one device→host transfer) is computed only every
``report_every`` iterations and at checkpoints; backtracking and the monotone variant need
one scalar per trial and are documented as such in their classes.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from ..backend import array_namespace, compat_namespace, native_numpy
from ..errors import ConfigError, RunStopped
from ..schema import Context, NoOptions, from_dict

__all__ = [
    "SmoothTerm", "Composite", "Precomposed", "SolverResult", "Solver", "value_and_gradient", "lipschitz_of",
]


# -- the terms a problem hands a solver ------------------------------------------------
@runtime_checkable
class SmoothTerm(Protocol):
    def value(self, x) -> float: ...

    def gradient(self, x): ...


def value_and_gradient(term, x) -> tuple[float, Any]:
    """(f(x), ∇f(x)) through the term's ``value_and_gradient`` when it has one."""
    both = getattr(term, "value_and_gradient", None)
    if both is not None:
        v, g = both(x)
        return float(v), g
    return float(term.value(x)), term.gradient(x)


def lipschitz_of(term) -> float | None:
    """The term's Lipschitz constant, or None when it has none or does not know it."""
    fn = getattr(term, "lipschitz", None)
    if fn is None:
        return None
    try:
        value = fn()
    except NotImplementedError:
        return None
    return None if value is None else float(value)


class Composite:
    """f = Σ_i f_i of smooth terms. Lipschitz constant Σ_i L_i when every L_i is known."""

    def __init__(self, terms: Sequence):
        self.terms = list(terms)
        if not self.terms:
            raise ValueError("Composite needs at least one smooth term")

    def value(self, x) -> float:
        return sum(float(t.value(x)) for t in self.terms)

    def gradient(self, x):
        g = self.terms[0].gradient(x)
        for i, t in enumerate(self.terms[1:]):
            g = _accumulate(g, t.gradient(x), owned=i > 0)
        return g

    def value_and_gradient(self, x):
        total, g = value_and_gradient(self.terms[0], x)
        for i, t in enumerate(self.terms[1:]):
            v, gi = value_and_gradient(t, x)
            total, g = total + v, _accumulate(g, gi, owned=i > 0)
        return total, g

    def lipschitz(self) -> float | None:
        constants = [lipschitz_of(t) for t in self.terms]
        return None if any(c is None for c in constants) else sum(constants)


class Precomposed:
    """u ↦ f(L u) for a smooth term f and a linear operator L: the change of variable x = L u
    (e.g. a diagonal metric, ``xhsi.problems.metric.em_scaling``). Gradient Lᵀ∇f(L u);
    Lipschitz constant L_f·‖L‖² when f knows L_f."""

    def __init__(self, term, operator):
        self.term, self.operator = term, operator

    def value(self, u) -> float:
        return float(self.term.value(self.operator.apply(u)))

    def gradient(self, u):
        return self.operator.adjoint(self.term.gradient(self.operator.apply(u)))

    def value_and_gradient(self, u):
        v, g = value_and_gradient(self.term, self.operator.apply(u))
        return v, self.operator.adjoint(g)

    def lipschitz(self) -> float | None:
        c = lipschitz_of(self.term)
        return None if c is None else c * self.operator.norm() ** 2


def _accumulate(g, gi, owned: bool):
    """g + gi. ``owned``: g is a sum made here (not an array a term returned, which it may
    still hold), so on numpy it is updated in place: one gradient-sized array less for the
    third and later terms. Same bits as ``g + gi``."""
    np_ = native_numpy(array_namespace(g)) if owned and hasattr(g, "dtype") and hasattr(gi, "dtype") else None
    if np_ is not None and g.dtype == gi.dtype and g.shape == gi.shape:
        return np_.add(g, gi, out=g)
    return g + gi


# -- results ---------------------------------------------------------------------------
@dataclass
class SolverResult:
    """What ``run()`` returns. ``history`` rows are (iteration, cost, step, time_s), one per
    report (every ``report_every`` iterations, at iteration 0 of a fresh run, at checkpoints and at
    the last iteration); time_s counts from the start of the first run (resumes included)."""

    x: Any
    history: list[tuple[int, float, float, float]]
    n_iter: int
    stop_reason: str
    converged: bool
    state: Any = None


# -- state helpers ----------------------------------------------------------------------
def _is_array(v) -> bool:
    return hasattr(v, "shape") and hasattr(v, "dtype") and not isinstance(v, (bool, int, float))


def state_to_dict(state) -> dict:
    """A state dataclass as {field: value}; arrays stay on their device."""
    return {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}


def state_from_dict(cls, values: dict, xp, like=None):
    """Build state dataclass ``cls`` from ``values`` (numpy arrays and plain scalars, as
    ``load_checkpoint`` returns them), moving arrays to namespace ``xp``. ``like`` (an
    array) gives the expected dtype: a mismatch raises ConfigError. ``xp`` may be plain
    numpy or cupy."""
    xp = compat_namespace(xp)
    names = {f.name for f in dataclasses.fields(cls)}
    # a field with a default (added to a state after its checkpoints were written) may be absent
    missing = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING} - set(values)
    if missing:
        raise ConfigError(f"the checkpoint lacks state field(s) {', '.join(sorted(missing))}: it was "
                          "written by another solver or version. Start afresh with --overwrite.")

    def convert(v):
        if isinstance(v, list):
            return [convert(item) for item in v]
        if _is_array(v):
            if like is not None and v.ndim > 0 and str(v.dtype) not in str(like.dtype):
                raise ConfigError(f"the checkpoint holds {v.dtype} arrays but this run uses {like.dtype}: "
                                  "resume with the original config's [run] dtype, or use --overwrite.")
            return xp.asarray(v)
        return v

    return cls(**{k: convert(values[k]) for k in names if k in values})


# -- the solver base ---------------------------------------------------------------------
class Solver:
    """Base class of iterative solvers.

    Subclasses set ``name`` and ``Options``, implement ``setup`` (which sets ``self.state``
    and ``self.xp``), ``step`` (one iteration: replaces ``self.state``), ``objective()``
    (the cost at the current iterate, a float), ``current_step()`` (the step size to
    report) and the ``x`` property.

    Generic run options come from the config's ``[solver]`` table (``SolverSection``):
    ``max_iter`` (total, resumed iterations included), ``tol``, ``max_time_s`` (wall
    time of this ``run()`` call, in s) and ``report_every`` (iterations).
    """

    name: str = ""
    Options: type = NoOptions
    State: type = None
    #: The unknowns ``setup`` takes, which problems match (``Problem.solver_unknowns``):
    #: "one" — ``setup(x0, smooth, prox)``, one array (ISTA, FISTA); "blocks" —
    #: ``setup(x0, value, blocks)``, a list of arrays each with its own prox (PALM).
    unknowns: str = "one"
    #: True for a solver that minimises each nonsmooth penalty through a smooth version of it
    #: (``smooth(x, smoothing)``; ``lbfgs``) instead of its prox: it refuses a penalty
    #: without one, and its optimum is the smoothed objective's.
    smooths_penalties: bool = False

    def __init__(self, options: Any = None, *, max_iter: int = 500, tol: float = 1e-6,
                 max_time_s: float | None = None, report_every: int = 10):
        if isinstance(options, dict):
            options = from_dict(self.Options, options, Context(file=f"<{self.name} options>"))
        self.options = options if options is not None else self.Options()
        if max_iter < 0 or report_every < 1 or tol < 0:
            raise ConfigError(f"solver settings out of range: max_iter={max_iter} (>= 0), "
                              f"report_every={report_every} (>= 1), tol={tol} (>= 0).")
        self.max_iter, self.tol = int(max_iter), float(tol)
        self.max_time_s, self.report_every = max_time_s, int(report_every)
        self.state = None
        self.history: list[tuple[int, float, float, float]] = []
        self._time_offset = 0.0
        #: What the owner of the run adds to every checkpoint's ``meta`` (the runner: the
        #: digests of the input files and the xhsi version, checked by a resume).
        self.checkpoint_meta: dict[str, Any] = {}

    @classmethod
    def from_config(cls, section) -> "Solver":
        """Build from a validated ``[solver]`` table (``xhsi.config.SolverSection``)."""
        return cls(section.options, max_iter=section.max_iter, tol=section.tol,
                   max_time_s=section.max_time_s, report_every=section.report_every)

    # -- to implement ---------------------------------------------------------------
    def setup(self, *args, **kwargs) -> None:
        raise NotImplementedError

    def step(self) -> None:
        raise NotImplementedError

    def objective(self) -> float:
        raise NotImplementedError

    def current_step(self) -> float:
        raise NotImplementedError

    @property
    def x(self):
        raise NotImplementedError

    @property
    def iteration(self) -> int:
        return int(self.state.iteration)

    # -- checkpoint support -----------------------------------------------------------
    def state_dict(self) -> dict:
        return state_to_dict(self.state)

    def save_checkpoint(self, path: str | Path, config_digest: str | None = None, cost: float | None = None) -> Path:
        """Write the current state, the history and ``checkpoint_meta`` to ``path``
        (``xhsi.solvers.checkpoint.save_checkpoint``)."""
        from .checkpoint import save_checkpoint

        meta = {"solver": self.name, "config_digest": config_digest, "iteration": self.iteration, "cost": cost,
                "history": [list(r) for r in self.history], **self.checkpoint_meta}
        return save_checkpoint(path, self.state_dict(), meta)

    def load_state(self, values: dict) -> None:
        """Replace the state by ``values`` (as ``load_checkpoint`` returns them), moving
        arrays to this solver's namespace; ``setup`` must have been called."""
        if self.state is None:
            raise RuntimeError("call setup() before resuming")  # programmer error
        self.state = state_from_dict(type(self.state), values, self.xp, like=self._like())

    def _like(self):
        x = self.x
        return x[0] if isinstance(x, (list, tuple)) else x

    def relative_change(self, reference) -> float:
        """‖x − x_ref‖ / ‖x‖ between the current iterate and ``reference`` (an iterate of
        the same structure: one array or a list of blocks)."""
        x = self.x
        if isinstance(x, (list, tuple)):
            diff = tree_norm([a - b for a, b in zip(x, reference)])
        else:
            diff = tree_norm(x - reference)
        norm = tree_norm(x)
        return diff / norm if norm > 0 else diff

    def _stop_rule(self, cost: float, previous_cost: float | None, x_report) -> str | None:
        """Both changes are measured between two reports (``report_every`` iterations), not
        over one iteration: a single short step (e.g. after a momentum reset) must not
        pass for convergence."""
        if self.tol <= 0:
            return None
        if previous_cost is not None:
            change = abs(cost - previous_cost) / max(abs(cost), 1e-300)
            if change <= self.tol:
                return f"relative cost change {change:.3g} over {self.report_every} iterations <= tol {self.tol:g}"
        change = self.relative_change(x_report)
        if change <= self.tol:
            return f"relative iterate change {change:.3g} over {self.report_every} iterations <= tol {self.tol:g}"
        return None

    # -- the loop ---------------------------------------------------------------------
    def run(self, callback: Callable[[int, float, float, Any], bool] | None = None, *,
            checkpoint_path: str | Path | None = None, checkpoint_every: int = 0,
            resume_from=None, config_digest: str | None = None) -> SolverResult:
        """Iterate until ``max_iter`` (total), the tolerance, the time budget or the callback
        stops the run.

        Every ``report_every`` iterations the cost is computed (one host sync), a history
        row recorded, the relative changes of cost (since the previous report) and of iterate
        (last iteration) compared with ``tol``, and ``callback(iteration, cost, step, state)``
        called: True stops the run ("stopped by callback").

        ``checkpoint_path``/``checkpoint_every``: write a checkpoint every that many
        iterations and at the end (0: only at the end). ``resume_from`` (a Checkpoint from
        ``load_checkpoint`` or a path) continues a run; its config digest must equal
        ``config_digest`` when both are known. A non-finite cost raises RunStopped naming
        the iteration; the solver's state is then the last good one (cost checked finite),
        and the checkpoint on disk is never overwritten by a bad state.
        """
        from .checkpoint import Checkpoint, load_checkpoint

        if self.state is None:
            raise RuntimeError("call setup() before run()")  # programmer error
        fresh = True
        if resume_from is not None:
            ckpt = resume_from if isinstance(resume_from, Checkpoint) else load_checkpoint(resume_from)
            ckpt.check_compatible(solver=self.name, config_digest=config_digest)
            self.load_state(ckpt.state)
            self.history = [tuple(row) for row in ckpt.meta.get("history", [])]
            self._time_offset = self.history[-1][3] if self.history else 0.0
            fresh = False

        start = time.perf_counter()

        def elapsed() -> float:
            return self._time_offset + time.perf_counter() - start

        saved_at = [None]

        def save(cost: float) -> None:
            saved_at[0] = self.iteration
            self.save_checkpoint(checkpoint_path, config_digest, cost)

        last_good = self.state
        previous_cost = self.history[-1][1] if self.history else None
        if fresh:
            cost = self._checked_cost(last_good)
            self.history.append((self.iteration, cost, self.current_step(), elapsed()))
            previous_cost = cost
        stop_reason, converged = "max_iter", False
        reported_at = self.iteration
        x_report = self.x
        while self.iteration < self.max_iter:
            try:
                self.step()
            except RunStopped as exc:
                self.state = last_good
                raise RunStopped(f"{exc} The solver state is the last good one (iteration "
                                 f"{last_good.iteration}).") from None
            k = self.iteration
            report = k % self.report_every == 0 or k >= self.max_iter
            checkpoint_now = bool(checkpoint_path) and checkpoint_every > 0 and k % checkpoint_every == 0
            over_time = self.max_time_s is not None and time.perf_counter() - start >= self.max_time_s
            if not (report or checkpoint_now or over_time):
                continue
            cost = self._checked_cost(last_good)
            last_good = self.state
            step_size = self.current_step()
            self.history.append((k, cost, step_size, elapsed()))
            reported_at = k
            reason = None
            if report:
                reason = self._stop_rule(cost, previous_cost, x_report)
                previous_cost, x_report = cost, self.x
            if checkpoint_now:
                save(cost)
            if reason is not None:
                stop_reason, converged = f"converged: {reason}", True
                break
            if report and callback is not None and callback(k, cost, step_size, self.state):
                stop_reason = "stopped by callback"
                break
            if over_time:
                stop_reason = f"time budget max_time_s = {self.max_time_s:g} s spent"
                break
        if reported_at != self.iteration:  # max_iter reached on a non-report iteration
            cost = self._checked_cost(last_good)
            self.history.append((self.iteration, cost, self.current_step(), elapsed()))
        if checkpoint_path and saved_at[0] != self.iteration:
            save(self.history[-1][1])
        return SolverResult(x=self.x, history=list(self.history), n_iter=self.iteration,
                            stop_reason=stop_reason, converged=converged, state=self.state)

    def _checked_cost(self, last_good) -> float:
        cost = float(self.objective())
        if not math.isfinite(cost):
            k = self.iteration
            self.state = last_good
            raise RunStopped(
                f"the cost is {cost} at iteration {k} ({self.name}): the iterates diverged or the model "
                f"left the domain of the likelihood. The solver state is the last good one (iteration "
                f"{last_good.iteration}); try a smaller initial step, backtracking = true, or check the data."
            )
        return cost


def tree_norm(arrays) -> float:
    """√(Σ‖a‖²) over one array or a list of arrays (one host sync)."""
    if not isinstance(arrays, (list, tuple)):
        arrays = [arrays]
    xp = array_namespace(*arrays)
    total = None
    for a in arrays:
        s = xp.sum(a * a)
        total = s if total is None else total + s
    return math.sqrt(float(total))
