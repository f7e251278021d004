"""The bootstrap's replicates on a Dask cluster through ``xhsi run --workers`` (issue 26 item
2; ``xhsi.distributed.bootstrap_tasks``, ``xhsi.distributed.run_tasks``): replicate b gives
the same maps here and on Dask, the replicates come back in order whatever order they
finish in, a line per replicate says how far the bootstrap is, run.json says where the
replicates ran, and bad input is refused with exit 2 before anything runs."""
from __future__ import annotations

import functools
import json
import sys

import numpy as np
import pytest
from astropy.io import fits
from conftest import unwrapped
from test_bootstrap import cluster, solved
from xhsi.cli import main
from xhsi.config import load_config
from xhsi.errors import XhsiError
from xhsi.problems import bootstrap
from xhsi.problems.bootstrap import ReplicateFit, fit_replicates
from xhsi.runner import run

BOOTSTRAP = 'errors = "bootstrap"\nbootstrap_samples = 3\nbootstrap_iter = 2'


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of two single-threaded workers inside this process (fast to start)."""
    pytest.importorskip("distributed")
    from xhsi.distributed import connect

    with connect(workers=2, processes=False) as c:
        yield c


class Backwards:
    """A ``tasks`` callable that fits the replicates here, last first (as a cluster may
    finish them), and says it ran on a scheduler."""

    def __init__(self):
        self.calls = []

    def where(self):
        return {"where": "tcp://fake:8786", "workers": 3}

    def __call__(self, fit, indices, seed):
        self.calls.append(list(indices))
        for b in reversed(indices):
            yield (b, *bootstrap.timed_fit(fit, b, seed))


class Numbered:
    """A ReplicateFit stand-in whose replicate b at seed s is the map b + s / 10."""

    def fit(self, index, seed):
        return {"m": np.full((1, 2), index + seed / 10)}


def error_maps(folder):
    with fits.open(folder / "maps.fits") as hdul:
        return {h.name: np.array(h.data) for h in hdul if h.name.endswith("_ERR")}


def test_replicates_come_back_in_order_with_a_line_each():
    lines = []
    reps = fit_replicates(Numbered(), 4, seed=3, tasks=Backwards(), say=lines.append)
    assert [float(r["m"][0, 0]) for r in reps] == [0.3, 1.3, 2.3, 3.3]
    assert [line.split(" done")[0] for line in lines] == [
        "bootstrap [1/4] replicate 4", "bootstrap [2/4] replicate 3", "bootstrap [3/4] replicate 2",
        "bootstrap [4/4] replicate 1"]
    assert all(line.endswith(" left") for line in lines[:3]) and lines[3].endswith(" in all"), lines
    here = []
    fit_replicates(Numbered(), 2, seed=0, say=here.append)
    assert [line.split(" done")[0] for line in here] == ["bootstrap [1/2] replicate 1", "bootstrap [2/2] replicate 2"]


def test_durations_read_as_seconds_minutes_hours():
    assert [bootstrap._duration(s) for s in (12.4, 200.0, 3 * 3600.0)] == ["12 s", "3 min", "3.0 h"]


def test_the_runner_hands_its_tasks_and_progress_to_the_bootstrap(tmp_path, capsys):
    """``run(bootstrap_tasks=)`` runs the replicates by them (the same maps as here: each
    replicate its own stream), run.json says where, and a line per replicate goes to
    stderr unless quiet."""
    path = cluster(tmp_path, problem=BOOTSTRAP)
    run(load_config(path), out=tmp_path / "here", quiet=True)
    assert capsys.readouterr().err == ""
    tasks = Backwards()
    run(load_config(path), out=tmp_path / "there", bootstrap_tasks=tasks)
    err = capsys.readouterr().err
    assert tasks.calls == [[0, 1, 2]]
    assert "bootstrap: 3 replicates drawn at the solution, 2 palm iterations each, as Dask tasks on tcp://fake:8786 (3 workers)" in err
    assert "bootstrap [1/3] replicate 3 done in " in err and "bootstrap [3/3] replicate 1 done in " in err, err
    here, there = error_maps(tmp_path / "here"), error_maps(tmp_path / "there")
    assert set(here) == set(there) and here
    for name in here:
        np.testing.assert_array_equal(there[name], here[name])
    errors = {d: json.loads((tmp_path / d / "run.json").read_text())["errors"] for d in ("here", "there")}
    assert errors["here"]["where"] == "local" and "workers" not in errors["here"]
    assert errors["there"]["where"] == "tcp://fake:8786" and errors["there"]["workers"] == 3


def test_replicate_b_is_the_same_on_dask_as_here(tmp_path, client):
    from xhsi.distributed.bootstrap_tasks import DaskReplicates

    problem, solver, mixture, blocks, xs, _, _ = solved(cluster(tmp_path))
    fit = ReplicateFit(problem, solver, mixture, blocks, xs, 2)
    here = fit_replicates(fit, 4, seed=4)
    lines = []
    tasks = DaskReplicates(client)
    there = fit_replicates(fit, 4, seed=4, tasks=tasks, say=lines.append)
    for a, b in zip(here, there):
        assert set(a) == set(b)
        for name in a:
            np.testing.assert_array_equal(b[name], a[name])
    assert len(lines) == 4 and lines[-1].startswith("bootstrap [4/4] replicate ")
    assert tasks.where() == {"where": client.scheduler.address, "workers": 2}


def test_a_replicate_whose_workers_died_stops_the_run_with_a_message(tmp_path, client, monkeypatch):
    from types import SimpleNamespace

    from distributed.scheduler import KilledWorker
    from xhsi.distributed.bootstrap_tasks import DaskReplicates

    real = bootstrap.timed_fit

    def lost(fit, index, seed):
        if index == 1:
            raise KilledWorker("xhsi-bootstrap-1", SimpleNamespace(address="tcp://10.0.0.9:40000"), 3)
        return real(fit, index, seed)

    monkeypatch.setattr(bootstrap, "timed_fit", lost)
    with pytest.raises(XhsiError, match="bootstrap replicate 2: every worker that ran it died"):
        fit_replicates(Numbered(), 3, seed=0, tasks=DaskReplicates(client))


def in_process(monkeypatch):
    """``xhsi run --workers N`` starts its LocalCluster's workers as threads of this process."""
    from xhsi.distributed import cluster as cluster_module

    monkeypatch.setattr(cluster_module, "connect", functools.partial(cluster_module.connect, processes=False))


def test_xhsi_run_workers_runs_the_replicates_on_dask(tmp_path, capsys, monkeypatch):
    pytest.importorskip("distributed")
    in_process(monkeypatch)
    path = cluster(tmp_path, problem=BOOTSTRAP)
    assert main(["run", str(path), "--out", str(tmp_path / "here"), "--quiet"]) == 0
    assert main(["run", str(path), "--out", str(tmp_path / "there"), "--workers", "2"]) == 0
    err = capsys.readouterr().err
    assert "bootstrap [3/3] replicate " in err and "as Dask tasks on inproc://" in err, err
    meta = json.loads((tmp_path / "there" / "run.json").read_text())["errors"]
    assert meta["where"].startswith("inproc://") and meta["workers"] == 2 and meta["samples"] == 3
    here, there = error_maps(tmp_path / "here"), error_maps(tmp_path / "there")
    for name in here:
        np.testing.assert_array_equal(there[name], here[name])


def test_workers_without_dask_is_refused_for_the_bootstrap_too(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` raises ImportError
    path = cluster(tmp_path, problem=BOOTSTRAP)
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--workers", "2"]) == 2
    err = unwrapped(capsys.readouterr().err)
    assert "not installed" in err and "pip install 'xhsi[distributed]'" in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_workers_on_a_config_that_neither_selects_nor_bootstraps_is_refused(tmp_path, capsys):
    path = cluster(tmp_path)
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--workers", "2"]) == 2
    err = unwrapped(capsys.readouterr().err)
    for words in ("does not select", 'errors = "bootstrap"', "xhsi sweep"):
        assert words in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_xhsi_run_workers_2_with_worker_processes_matches_the_local_run(tmp_path, capsys):
    """Worker processes: the ReplicateFit is serialised to each of them (scatter)."""
    pytest.importorskip("distributed")
    path = cluster(tmp_path, problem=BOOTSTRAP)
    assert main(["run", str(path), "--out", str(tmp_path / "here"), "--quiet"]) == 0
    assert main(["run", str(path), "--out", str(tmp_path / "there"), "--quiet", "--workers", "2"]) == 0
    assert capsys.readouterr().err == ""
    meta = json.loads((tmp_path / "there" / "run.json").read_text())["errors"]
    assert meta["where"].startswith("tcp://") and meta["workers"] == 2
    here, there = error_maps(tmp_path / "here"), error_maps(tmp_path / "there")
    for name in here:
        np.testing.assert_array_equal(there[name], here[name])
