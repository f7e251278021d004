"""A fake plugin module and registries for tests of the foundation (config, CLI, plugins)
that must not depend on the built-in numerics."""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

from xhsi import hookimpl
from xhsi.plugins import build_registries, get_plugin_manager
from xhsi.problems import Problem
from xhsi.schema import option


class ToyRegularizer:
    name = "toy_reg"

    @dataclass
    class Options:
        k: float = option(3.0, min=0.0, doc="threshold in noise sigmas")
        scales: int = option(3, min=1, max=10)


class ToySolver:
    name = "toy_solver"

    @dataclass
    class Options:
        restart: str = option("adaptive", choices=("adaptive", "none"))


class ToyProblem(Problem):
    name = "toy_problem"

    @classmethod
    def check_config(cls, config, regularizers=None) -> list:
        """Nothing to check: the toy config's instruments and scene are not registered."""
        return []


class ToyScene:
    name = "toy_scene"


class ToyLikelihood:
    name = "poisson"


def fake_plugin(**extra):
    """A plugin object (module-like) registering the toy classes plus ``extra`` hooks."""
    ns = SimpleNamespace(__name__="fake_plugin")

    @hookimpl
    def xhsi_register_regularizers():
        return [ToyRegularizer]

    @hookimpl
    def xhsi_register_solvers():
        return [ToySolver]

    @hookimpl
    def xhsi_register_problems():
        return [ToyProblem]

    @hookimpl
    def xhsi_register_scenes():
        return [ToyScene]

    @hookimpl
    def xhsi_register_likelihoods():
        return [ToyLikelihood]

    ns.xhsi_register_likelihoods = xhsi_register_likelihoods
    ns.xhsi_register_regularizers = xhsi_register_regularizers
    ns.xhsi_register_solvers = xhsi_register_solvers
    ns.xhsi_register_problems = xhsi_register_problems
    ns.xhsi_register_scenes = xhsi_register_scenes
    for key, value in extra.items():
        setattr(ns, key, value)
    return ns


def fake_registries(*plugins):
    pm = get_plugin_manager(load_entry_points=False)
    for i, plugin in enumerate(plugins or (fake_plugin(),)):
        pm.register(plugin, name=f"fake{i}")
    return build_registries(pm)


TOY_CONFIG = """\
[run]
problem = "toy_problem"
output = "out"
dtype = "float64"

[model]
energy = { min_kev = 0.5, max_kev = 10.0, bins = 40 }
pixels = [16, 16]
pixel_arcsec = 4.1

[[observations]]
name = "xmm"
instrument = "xmm_epic_pn"
exposure_s = 1.0e5
spectral_rebin = 4

[[regularizers]]
name = "toy_reg"
weight = 0.5
options = { k = 2.0 }

[solver]
name = "toy_solver"
max_iter = 20

[simulate]
scene = "toy_scene"
"""


#: A small Gaussian-response instrument (8 channels, 1–5 keV, 2″ pixels) for file tests.
TOY_INSTRUMENT = """\
[instrument]
name = "toy"
[channels]
min_kev = 1.0
max_kev = 5.0
count = 8
[spectral_response]
kind = "gaussian"
fwhm_ev = 100.0
[effective_area]
kind = "constant"
cm2 = 100.0
[spatial]
pixel_arcsec = 2.0
[psf]
kind = "gaussian"
fwhm_arcsec = 4.0
"""
