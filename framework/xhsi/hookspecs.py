"""Every hook xhsi calls. Hook names start with ``xhsi_`` so that a misspelt hook
implementation is caught by ``PluginManager.check_pending()`` instead of never running.

Registration hooks return a list of classes (or, for instruments, of paths). Each class
carries a ``name`` attribute: the name configs use. The plugin manager builds one registry
per kind from them and refuses a name registered twice.
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
    """Called when a run starts, after the problem is built and before the first iteration."""


@hookspec
def xhsi_iteration(iteration, cost, step, state):
    """Called every ``report_every`` iterations with the iteration number, the cost (a
    Python float), the step size and the solver state. Return True to ask the run to stop
    (the solver stops with reason ``"stopped by callback"``)."""


@hookspec
def xhsi_run_end(config, result):
    """Called when a run ends, after its outputs are written, with the Result."""
