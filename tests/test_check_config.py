"""The Problem contract's ``check_config``: every user error it catches is refused by
``xhsi validate`` (exit 2, one paragraph) and by ``xhsi run`` before anything is written
(no output folder created, an existing one left as it was); the memory estimate; the
metrics a problem adds through ``extra_metrics``; one plugin manager and one set of
regularisers per run."""
from __future__ import annotations

import hashlib
import inspect
import json
import re
from pathlib import Path

import numpy as np
import pytest

import test_runner
import test_unmixing
from conftest import unwrapped
from xhsi import plugins
from xhsi.cli import main
from xhsi.config import load_config
from xhsi.problems import Deconvolution, Problem, checks
from xhsi.runner import run


def fusion(tmp_path, max_iter=20):
    return test_runner.tiny(tmp_path, max_iter=max_iter)


def unmixing(tmp_path, max_iter=10):
    return test_unmixing.tiny(tmp_path, max_iter=max_iter)


# The five errors `xhsi validate` used to call valid and `xhsi run` met only after writing
# config.resolved.toml (issue 22): (config, --set overrides, what the message says).
LATE_ERRORS = {
    "unknown instrument name": (fusion, ['observations[0].instrument="xmm_epic_pnn"'],
                                (r"observations\[0\] \(`xmm`\).instrument: no instrument named `xmm_epic_pnn` "
                                 r"\(did you mean `xmm_epic_pn`\?\)")),
    "missing instrument file": (fusion, ['observations[1].instrument="missing_instrument.toml"'],
                                (r"observations\[1\] \(`xrism`\).instrument: \S*missing_instrument.toml: no such "
                                 r"instrument file")),
    "missing scene file": (fusion, ['simulate.scene="fits"', 'simulate.options.path="missing_truth.fits"'],
                           r"\[simulate\]: scene `fits`: no file \S*missing_truth.fits"),
    "solver mismatch": (fusion, ['solver.name="palm"', "solver.options={}"],
                        (r"`solver.name`: problem `fusion` has one unknown .* but solver `palm` takes one unknown "
                         r"per map \(blocks\); use \[solver\] name = 'fista' or 'ista'")),
    "misspelt spectral model": (unmixing, ['components[0].model="thermall"'],
                                (r"`components\[0\]`.model: no spectral_model named `thermall` \(did you mean "
                                 r"`thermal`\?\)")),
}


def _sets(overrides):
    return [arg for item in overrides for arg in ("--set", item)]


def _one_paragraph(err: str, command: str) -> str:
    """The message of a user error: one `xhsi COMMAND: error:` paragraph, no traceback."""
    lines = err.strip().splitlines()
    assert lines and lines[0].startswith(f"xhsi {command}: error: "), err
    assert "Traceback" not in err and all(line.strip() for line in lines), err  # no blank line: one paragraph
    assert sum(line.startswith("xhsi ") for line in lines) == 1, err
    return unwrapped(err)


def _listing(folder: Path) -> dict:
    """Every path under ``folder`` with its size, modification time and content hash."""
    out = {}
    for path in sorted(folder.rglob("*")):
        stat = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        out[str(path.relative_to(folder))] = (path.is_dir(), stat.st_size, stat.st_mtime_ns, digest)
    return out


@pytest.mark.parametrize("case", list(LATE_ERRORS))
def test_validate_refuses_the_late_errors(tmp_path, capsys, case):
    make, overrides, message = LATE_ERRORS[case]
    assert main(["validate", str(make(tmp_path)), *_sets(overrides)]) == 2
    err = _one_paragraph(capsys.readouterr().err, "validate")
    assert re.search(message, err), err


@pytest.mark.parametrize("case", list(LATE_ERRORS))
def test_run_refuses_the_late_errors_without_creating_the_output_folder(tmp_path, capsys, case):
    make, overrides, message = LATE_ERRORS[case]
    config = make(tmp_path)
    before = _listing(tmp_path)
    assert main(["run", str(config), "--quiet", *_sets(overrides)]) == 2
    err = _one_paragraph(capsys.readouterr().err, "run")
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("case", list(LATE_ERRORS))
def test_run_refused_by_a_check_leaves_an_existing_folder_unchanged(tmp_path, capsys, case):
    make, overrides, _ = LATE_ERRORS[case]
    config = make(tmp_path)
    out = tmp_path / "out"  # an earlier run's outputs (stand-ins), replaced only by a run that starts
    (out / "sub").mkdir(parents=True)
    for name, data in (("config.resolved.toml", b"[run]\n"), ("result.fits", b"earlier result"),
                       ("checkpoint.npz", b"earlier checkpoint"), ("history.csv", b"iteration,cost\n"),
                       ("sub/notes.txt", b"kept")):
        (out / name).write_bytes(data)
    before = _listing(out)
    assert main(["run", str(config), "--quiet", "--overwrite", *_sets(overrides)]) == 2
    _one_paragraph(capsys.readouterr().err, "run")
    assert _listing(out) == before


def test_unmixing_with_a_single_unknown_solver_is_refused_by_validate(tmp_path, capsys):
    assert main(["validate", str(unmixing(tmp_path)), "--set", 'solver.name="fista"', "--set", "solver.options={}"]) == 2
    err = _one_paragraph(capsys.readouterr().err, "validate")
    assert "problem `unmixing` has one unknown per map (blocks) but solver `fista` takes one unknown; use [solver] " \
           "name = 'lbfgs' or 'palm'." in err


def test_counts_files_are_checked_by_validate_from_their_headers(tmp_path, capsys):
    from xhsi.runner import simulate

    simulate(load_config(fusion(tmp_path)), tmp_path / "sim")
    text = fusion(tmp_path).read_text()
    ok = tmp_path / "counts.toml"
    ok.write_text(text.replace("spectral_rebin = 4", 'spectral_rebin = 4\ncounts = "sim/xmm_counts.fits"'))
    assert main(["validate", str(ok)]) == 0
    capsys.readouterr()
    cases = {"spectral_rebin = 2": r"xmm_counts.fits: the counts cube of observation `xmm` has shape \(10, 12, 12\) "
                                   r"but .* give \(20, 12, 12\)",
             "spectral_rebin = 4": r"observations\[0\] \(`xmm`\): counts file \S*nope.fits does not exist"}
    for rebin, message in cases.items():
        bad = tmp_path / "bad.toml"
        counts = "sim/xmm_counts.fits" if rebin.endswith("2") else "nope.fits"
        bad.write_text(text.replace("spectral_rebin = 4", f'{rebin}\ncounts = "{counts}"'))
        assert main(["validate", str(bad)]) == 2
        assert re.search(message, _one_paragraph(capsys.readouterr().err, "validate"))


def test_fits_scene_and_start_file_are_checked_on_the_grid(tmp_path, capsys):
    from xhsi.grid import ModelGrid
    from xhsi.io.cubes import write_cube

    cfg = load_config(fusion(tmp_path))
    grid = ModelGrid.from_config(cfg.model)
    write_cube(tmp_path / "truth.fits", np.ones(grid.shape), grid.energy_edges_kev, pixel_arcsec=grid.pixel_arcsec)
    write_cube(tmp_path / "other.fits", np.ones((7, 12, 12)), np.linspace(5.5, 7.5, 8), pixel_arcsec=grid.pixel_arcsec)
    scene = ['simulate.scene="fits"', 'simulate.options.path="truth.fits"']
    assert main(["validate", str(fusion(tmp_path)), *_sets(scene)]) == 0
    assert main(["validate", str(fusion(tmp_path)), *_sets(['problem.start_file="truth.fits"'])]) == 0
    capsys.readouterr()
    for overrides, message in (
            (['simulate.scene="fits"', 'simulate.options.path="other.fits"'], "does not map onto the model grid"),
            (['problem.start_file="nope.fits"'], r"\[problem\] start_file \S*nope.fits: no such file"),
            (['problem.start_file="other.fits"'], r"\[problem\] start_file: .*does not map onto the model grid")):
        assert main(["validate", str(fusion(tmp_path)), *_sets(overrides)]) == 2
        assert re.search(message, _one_paragraph(capsys.readouterr().err, "validate"))


# -- the memory estimate ---------------------------------------------------------------------
def test_a_grid_too_large_for_memory_is_refused_quickly(tmp_path, capsys):
    # 10⁹ energy bins: the estimate is refused from the [model] numbers, before any grid (an
    # 8 GB array of edges alone) is built; the run used to reach a MemoryError after minutes.
    config = fusion(tmp_path)
    assert main(["validate", str(config), "--set", "model.energy.bins=1000000000"]) == 2
    err = _one_paragraph(capsys.readouterr().err, "validate")
    assert "this run needs about" in err and "GiB of memory, more than the" in err
    assert "1000000000 energy bins × 12 × 12 pixels in float64" in err and "Reduce [model] energy.bins" in err
    assert main(["run", str(config), "--quiet", "--set", "model.energy.bins=1000000000"]) == 2
    assert not (tmp_path / "out").exists()


def test_memory_estimate_against_the_available_memory(tmp_path, capsys, monkeypatch):
    cfg = load_config(fusion(tmp_path))
    cube = 40 * 12 * 12 * 8  # float64
    estimate = Deconvolution.memory_estimate(cfg)
    assert estimate == checks.BASE_BYTES + (9 + 8 * 2) * cube  # 9: the start_floor bound is one cube
    assert type(cfg).__name__ == "Config" and plugins.get("problem", "fusion").memory_estimate(cfg) == estimate
    monkeypatch.setattr(checks, "available_memory_bytes", lambda backend: estimate - 1)
    assert main(["validate", str(fusion(tmp_path))]) == 2
    assert "or use dtype = \"float32\"" in _one_paragraph(capsys.readouterr().err, "validate")
    monkeypatch.setattr(checks, "available_memory_bytes", lambda backend: estimate)
    assert main(["validate", str(fusion(tmp_path))]) == 0
    monkeypatch.setattr(checks, "available_memory_bytes", lambda backend: None)  # unknown: not checked
    monkeypatch.setattr(Problem, "memory_cubes", 1e30)
    assert main(["validate", str(fusion(tmp_path))]) == 0


def test_available_memory_is_read_from_the_system():
    available = checks.available_memory_bytes("numpy")
    if Path("/proc/meminfo").is_file():
        assert isinstance(available, int) and 0 < available < 1 << 50


# -- the contract the runner uses ------------------------------------------------------------
def test_unmixing_map_metrics_reach_metrics_json_through_extra_metrics(tmp_path):
    run(load_config(unmixing(tmp_path, max_iter=2)), quiet=True)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert list(metrics) == ["result", "baselines", "asam_by_flux", "maps", "maps_pixelfit"]
    assert set(metrics["maps"]) >= {"thermal.kT", "thermal.z", "synchrotron.index"}
    assert set(metrics["maps_pixelfit"]) == set(metrics["maps"])


class _Counted(Deconvolution):
    """Deconvolution with one metric of its own, registered under another name."""

    name = "deconvolution_counted"

    def extra_metrics(self, result, truth) -> dict:
        return {"total_flux": {"result": float(result.arrays["cube"].sum()), "truth": float(truth.cube.sum())}}


def _with_problem(monkeypatch, cls):
    from types import SimpleNamespace

    from xhsi import hookimpl

    pm = plugins.get_plugin_manager()
    pm.register(SimpleNamespace(xhsi_register_problems=hookimpl(lambda: [cls])), name="counted")
    monkeypatch.setitem(plugins._CACHE, "reg", plugins.build_registries(pm))


def test_a_problem_adds_metrics_through_the_contract(tmp_path, monkeypatch):
    _with_problem(monkeypatch, _Counted)
    xrism = '[[observations]]\nname = "xrism"\ninstrument = "xrism_resolve"\nexposure_s = 1.0e5\nspatial_rebin = 3\n'
    text = fusion(tmp_path, max_iter=2).read_text()
    assert xrism in text
    path = tmp_path / "counted.toml"
    path.write_text(text.replace(xrism, "").replace('problem = "fusion"', 'problem = "deconvolution_counted"'))
    run(load_config(path), quiet=True)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert list(metrics) == ["result", "baselines", "asam_by_flux", "total_flux"]
    assert metrics["total_flux"]["result"] > 0 and metrics["total_flux"]["truth"] > 0


def test_one_plugin_manager_and_one_set_of_regularisers_per_run(tmp_path, monkeypatch):
    from xhsi.problems import base

    monkeypatch.setattr(plugins, "_CACHE", {})  # a fresh process's cache
    managers, regularisers = [], []
    build, make = plugins.get_plugin_manager, base.make_regularizers
    monkeypatch.setattr(plugins, "get_plugin_manager", lambda *a, **k: managers.append(1) or build(*a, **k))
    monkeypatch.setattr(base, "make_regularizers", lambda cfg: regularisers.append(1) or make(cfg))
    extra = '\n[[regularizers]]\nname = "sobolev"\nweight = 0.1\n'
    run(load_config(test_runner.tiny(tmp_path, max_iter=2, extra=extra)), quiet=True)
    assert len(managers) == 1 and len(regularisers) == 1


def test_problems_take_no_plugin_manager():
    for name in plugins.available("problem"):
        cls = plugins.get("problem", name)
        assert issubclass(cls, Problem)
        assert "pm" not in inspect.signature(cls.__init__).parameters, name
