"""Every hook xhsi calls. Hook names start with ``xhsi_`` so that a misspelt hook
implementation is caught by ``PluginManager.check_pending()`` instead of never running.

Registration hooks return a list of classes (or, for instruments, of paths). Each class
carries a ``name`` attribute: the name configs use. The plugin manager builds one registry
per kind from them and refuses a name registered twice.

Run-event hooks are called by ``xhsi run`` (``xhsi.runner.run``) while a run goes on; only
``xhsi_iteration``'s return value is used. docs/plugins.md describes every hook with an
example.
"""
from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("xhsi")
hookimpl = pluggy.HookimplMarker("xhsi")


@hookspec
def xhsi_register_operators():
    """Called once when the registries are built. Return a list of LinearOperator classes."""


@hookspec
def xhsi_register_likelihoods():
    """Called once when the registries are built. Return a list of Likelihood classes."""


@hookspec
def xhsi_register_regularizers():
    """Called once when the registries are built. Return a list of Regularizer classes."""


@hookspec
def xhsi_register_solvers():
    """Called once when the registries are built. Return a list of Solver classes."""


@hookspec
def xhsi_register_spectral_models():
    """Called once when the registries are built. Return a list of SpectralModel classes."""


@hookspec
def xhsi_register_problems():
    """Called once when the registries are built. Return a list of Problem classes."""


@hookspec
def xhsi_register_scenes():
    """Called once when the registries are built. Return a list of Scene classes
    (ground-truth sky generators used by ``[simulate]``)."""


@hookspec
def xhsi_register_instruments():
    """Called once when the registries are built. Return a list of paths to instrument
    TOML files; each file's ``[instrument] name`` is the name configs use."""


@hookspec
def xhsi_run_start(config, problem):
    """Called once per run (a resumed one included) when it starts: after the problem is
    built and ``config.resolved.toml`` written, before the first iteration. ``config`` is the
    validated ``xhsi.config.Config``, ``problem`` the problem instance the solver will run.
    The return value is ignored."""


@hookspec
def xhsi_iteration(iteration, cost, step, state):
    """Called every ``[solver] report_every`` iterations and at the last one (``max_iter``),
    but not at the iteration where the tolerance stops the run, with the iteration number
    (an int counted from the start of the run, across resumes), the cost (a Python float),
    the step size (a Python float) and the solver state (the ``pixelfit`` problem, which
    has no solver state, calls it after every iteration with ``state=None`` and its mean
    damping as ``step``). Return True to ask the run to stop (the solver stops with reason
    ``"stopped by callback"`` and the run writes its outputs as usual); None or False to
    go on."""


@hookspec
def xhsi_run_end(config, result):
    """Called once when a run ends (iteration limit, tolerance, time budget or a stop asked
    by ``xhsi_iteration``), after its outputs are written, with the validated ``Config`` and
    the ``xhsi.results.Result`` (``arrays["cube"]``, ``metadata["stop_reason"]``,
    ``metrics``). Not called when the run is interrupted or fails. The return value is
    ignored."""
