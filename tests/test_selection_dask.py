"""The selection's candidate fits as Dask tasks (issue 28 item 2, ``xhsi run --workers N``;
``xhsi.distributed.selection_tasks``): the same choice, scores and final fit as the
sequential selection; the worker prepares the same counts and thinning, and a worker that
sees other data or another config stops the selection; a failed fit is a failed candidate
as without Dask; bad input is refused with exit 2 before anything runs."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import test_selection_run
from astropy.io import fits
from conftest import unwrapped
from xhsi.cli import build_parser, main, resume_command
from xhsi.config import load_config
from xhsi.errors import RunStopped, XhsiError
from xhsi.runner import check_config, prepare, run
from xhsi.selection import driver, run_selection

SOBOLEV = '[[regularizers]]\nname = "sobolev"\n'  # untuned: candidates weight 0.03 / 0.3 / 3


def selecting(tmp_path, selection="max_iter = 30\nevery = 5\npatience = 2", **parts):
    """test_selection_run's tiny fusion (9 x 9 pixels, 32 bins) selecting among 3 candidates."""
    return test_selection_run.write(tmp_path, regularizers=SOBOLEV, selection=selection, **parts)


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of two single-threaded workers inside this process (fast to start)."""
    pytest.importorskip("distributed")
    from xhsi.distributed import connect

    with connect(workers=2, processes=False) as c:
        yield c


def dask_fits(client, path, overrides=()):
    from xhsi.distributed.selection_tasks import DaskFits

    return DaskFits(client, str(path.resolve()), list(overrides))


def cube(folder):
    with fits.open(folder / "result.fits") as hdul:
        return np.array(hdul[0].data)


def test_a_selection_on_dask_chooses_and_scores_as_the_sequential_one(tmp_path, client):
    path = selecting(tmp_path)
    here = run(load_config(path), tmp_path / "here", quiet=True)
    there = run(load_config(path), tmp_path / "there", quiet=True, selection_fits=dask_fits(client, path))
    mine, theirs = here.metrics["selection"], there.metrics["selection"]
    assert len(mine["candidates"]) == 3 and mine["cost"]["fits"] == theirs["cost"]["fits"] == 6
    assert theirs["chosen"] == mine["chosen"]
    for a, b in zip(mine["candidates"], theirs["candidates"]):
        assert b["name"] == a["name"] and b["iteration"] == a["iteration"]
        np.testing.assert_allclose(b["score"], a["score"], rtol=1e-12)
        assert b["path"]["iteration"] == a["path"]["iteration"]
        np.testing.assert_allclose(b["path"]["score"], a["path"]["score"], rtol=1e-12)
    # the final fit ran here, from the same choice: the same cube
    np.testing.assert_array_equal(cube(tmp_path / "there"), cube(tmp_path / "here"))
    assert (tmp_path / "there" / "config.selected.toml").read_text() == \
        (tmp_path / "here" / "config.selected.toml").read_text()


LOWRANK = ('[[regularizers]]\nname = "lowrank_pca"\noptions = { rank = 4, basis = "nmf" }\n\n'
           '[[regularizers]]\nname = "sobolev"\n')


@pytest.mark.slow
def test_held_out_fits_in_basis_passes_come_back_from_dask_with_their_earlier_passes(tmp_path, client):
    """A selected low-rank run fits each fold in two basis passes; the path of a Dask task
    carries the first pass's (it came back as a dict, and the selection crashed)."""
    path = test_selection_run.write(tmp_path, regularizers=LOWRANK, selection="max_iter = 20\nevery = 5\npatience = 2")
    here = run(load_config(path), tmp_path / "here", quiet=True).metrics["selection"]
    there = run(load_config(path), tmp_path / "there", quiet=True,
                selection_fits=dask_fits(client, path)).metrics["selection"]
    assert here["chosen"]["final_overrides"]["problem.basis_passes"] == 2
    # the same choice; the scores agree to the float32 sums' order (a worker's BLAS may use
    # other threads: 0.8 % apart on the README example, equal here)
    for key in ("name", "iteration", "final_overrides"):
        assert there["chosen"][key] == here["chosen"][key]
    assert there["chosen"]["score"] == pytest.approx(here["chosen"]["score"], rel=1e-2)


def test_a_worker_prepares_the_same_counts_and_thinning_as_the_run(tmp_path):
    from xhsi.distributed import selection_tasks

    path = selecting(tmp_path)
    cfg = load_config(path)
    check_config(cfg)
    folds = driver.make_folds(cfg, prepare(cfg), "holdout")
    out = selection_tasks.fit_candidate(str(path), [], {"regularizers[0].weight": 0.3}, 1, "token-a")
    assert out["error"] is None and out["config"] == selection_tasks.config_digest(cfg)
    assert out["counts"] == selection_tasks.fold_digest(folds[1]) != selection_tasks.fold_digest(folds[0])
    # the worker kept the prepared data: a second fit of the same selection reuses it
    kept = selection_tasks._latest.prep
    selection_tasks.fit_candidate(str(path), [], {"regularizers[0].weight": 3.0}, 0, "token-a")
    assert selection_tasks._latest.prep is kept
    other = selection_tasks.fit_candidate(str(path), ["run.seed=7"], {}, 1, "token-b")
    assert other["counts"] != out["counts"]


def test_a_worker_that_sees_another_config_or_other_counts_stops_the_selection(tmp_path, client):
    path = selecting(tmp_path)
    cfg = load_config(path)
    check_config(cfg)
    prep = prepare(cfg)
    with pytest.raises(XhsiError, match="with other contents than this process"):
        run_selection(cfg, prep, "test", quiet=True, fits=dask_fits(client, path, ["run.seed=7"]))
    seven = load_config(path, ["run.seed=7"])
    check_config(seven)
    folds = driver.make_folds(seven, prepare(seven), "holdout")  # the counts of another seed
    cands = driver.config_candidates(cfg)
    with pytest.raises(XhsiError, match="prepared other counts for selection fold 1"):
        list(dask_fits(client, path)(cfg, folds, cands, [(0, 0), (1, 0)]))


def test_a_failed_fit_is_a_failed_candidate_as_without_dask(tmp_path, client, monkeypatch):
    path = selecting(tmp_path)
    cfg = load_config(path)
    check_config(cfg)
    prep = prepare(cfg)
    real = driver.fit_task

    def failing(cfg_c, *args):  # the workers are threads of this process: they see the patch
        if cfg_c.regularizers[0].weight == 0.03:
            raise FloatingPointError("overflow in the gradient")
        return real(cfg_c, *args)

    monkeypatch.setattr(driver, "fit_task", failing)
    here = run_selection(cfg, prep, "test", quiet=True)
    there = run_selection(cfg, prep, "test", quiet=True, fits=dask_fits(client, path))
    rows = there.report["candidates"]
    assert rows[0]["error"] == here.report["candidates"][0]["error"]
    assert "FloatingPointError: overflow in the gradient" in rows[0]["error"] and "score" not in rows[0]
    assert there.report["chosen"] == here.report["chosen"] and there.report["chosen"]["name"] != rows[0]["name"]
    monkeypatch.setattr(driver, "fit_task", lambda *a: (_ for _ in ()).throw(FloatingPointError("nan")))
    with pytest.raises(RunStopped, match="every candidate failed"):
        run_selection(cfg, prep, "test", quiet=True, fits=dask_fits(client, path))


def test_a_task_whose_workers_all_died_is_a_failed_fit(tmp_path, client, monkeypatch):
    """What the scheduler reports once a task's workers died ``allowed-failures`` times."""
    from types import SimpleNamespace

    from distributed.scheduler import KilledWorker
    from xhsi.distributed import selection_tasks

    path = selecting(tmp_path)
    cfg = load_config(path)
    check_config(cfg)
    real = selection_tasks.fit_candidate

    def lost(config, overrides, candidate, fold, *rest):
        if candidate == {"regularizers[0].weight": 3.0} and fold == 1:
            raise KilledWorker("xhsi-select-2-1", SimpleNamespace(address="tcp://10.0.0.9:40000"), 3)
        return real(config, overrides, candidate, fold, *rest)

    monkeypatch.setattr(selection_tasks, "fit_candidate", lost)
    sel = run_selection(cfg, prepare(cfg), "test", quiet=True, fits=dask_fits(client, path))
    rows = sel.report["candidates"]
    assert "fold 2: every worker that ran it died" in rows[2]["error"] and "score" not in rows[2]
    assert all("score" in row for row in rows[:2]) and sel.report["cost"]["fits"] == 6


@pytest.mark.parametrize("options, selection, words", [
    (["--workers", "2"], 'select = "off"', ["--workers runs the candidate fits", "does not select",
                                            "xhsi sweep"]),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:9"], None, ["--workers sizes the cluster"]),
    (["--workers", "0"], None, ["--workers must be at least 1"]),
    (["--scheduler", "tcp://127.0.0.1:9", "--timeout", "0.5"], None, ["cannot reach the Dask scheduler"]),
    (["--scheduler-file", "nowhere.json"], None, ["--scheduler-file nowhere.json: no such file"]),
], ids=["not-selecting", "workers-and-scheduler", "zero-workers", "unreachable", "no-scheduler-file"])
def test_bad_cluster_options_are_refused_before_anything_runs(tmp_path, capsys, options, selection, words):
    pytest.importorskip("distributed")
    path = selecting(tmp_path, **({} if selection is None else {"selection": selection}))
    code = main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet", *options])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("xhsi run: error: ") and "Traceback" not in err, err
    for word in words:
        assert word in unwrapped(err), err
    assert not (tmp_path / "out").exists()


def test_the_resume_command_keeps_where_the_selection_ran():
    args = build_parser().parse_args(["run", "c.toml", "--workers", "2"])
    assert resume_command(args) == "xhsi run c.toml --workers 2 --resume"
    args = build_parser().parse_args(["run", "c.toml", "--scheduler-file", "s.json"])
    assert resume_command(args) == "xhsi run c.toml --scheduler-file s.json --resume"


@pytest.mark.slow
def test_xhsi_run_workers_2_matches_the_sequential_run_and_plain_runs_never_import_dask(tmp_path):
    pytest.importorskip("distributed")
    path = selecting(tmp_path)
    code = ("import sys; from xhsi.cli import main; code = main(sys.argv[1:]); "
            "assert 'distributed' not in sys.modules and 'dask' not in sys.modules; sys.exit(code)")
    subprocess.run([sys.executable, "-c", code, "run", str(path), "--out", str(tmp_path / "here"), "--quiet"],
                   check=True)
    assert main(["run", str(path), "--out", str(tmp_path / "there"), "--quiet", "--workers", "2"]) == 0
    here, there = ((json.loads((tmp_path / d / "metrics.json").read_text())["selection"]) for d in ("here", "there"))
    assert there["chosen"] == here["chosen"]
    np.testing.assert_allclose([c["score"] for c in there["candidates"]], [c["score"] for c in here["candidates"]],
                               rtol=1e-12)
    np.testing.assert_array_equal(cube(tmp_path / "there"), cube(tmp_path / "here"))
