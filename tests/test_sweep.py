"""``xhsi sweep`` (issue 28 item 2): grid expansion and point names; the [sweep] table; every
bad input refused with exit 2 before any task starts; sweeps on a LocalCluster and on a
scheduler started separately, with bit-identical results for identical points, re-runs that
skip completed points, a failed point that does not stop the others, and a killed worker
that does not lose the sweep."""
from __future__ import annotations

import csv
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

import test_runner
from conftest import unwrapped
from xhsi.cli import main
from xhsi.config import load_config
from xhsi.distributed import connect, expand_points, parse_grid_option, plan_sweep, point_name, run_sweep
from xhsi.errors import ConfigError, XhsiError
from xhsi.runner import run


def tiny(tmp_path, max_iter=6, extra=""):
    """test_runner's tiny fusion (12 x 12 pixels, 40 energy bins, float64, no quicklooks)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    return test_runner.tiny(tmp_path, max_iter=max_iter, extra=extra)


def cube(folder: Path) -> np.ndarray:
    with fits.open(folder / "result.fits") as hdul:
        return np.array(hdul[0].data)


def statuses(report) -> list[str]:
    return [report.outcomes[p.name]["status"] for p in report.sweep.points]


def error_paragraph(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("xhsi sweep: error: ") and "Traceback" not in err, err
    return unwrapped(err)


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of two single-threaded workers inside this process (fast to start)."""
    pytest.importorskip("distributed")
    with connect(workers=2, processes=False) as c:
        yield c


# -- the grid ------------------------------------------------------------------------------
def test_grid_points_are_the_cartesian_product_last_key_fastest():
    assert expand_points({"a": [1, 2], "b": ["x", "y"]}) == [
        {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]
    assert expand_points({"a": [1, 2]}, [{"c": 0}, {"c": 1}]) == [
        {"c": 0, "a": 1}, {"c": 0, "a": 2}, {"c": 1, "a": 1}, {"c": 1, "a": 2}]
    assert expand_points({}, [{"c": 0}, {"d": 1}]) == [{"c": 0}, {"d": 1}]
    assert expand_points({"a": [1], "b": []}) == [] and expand_points({"a": [1]}, []) == []
    with pytest.raises(ConfigError, match="`a` is both a \\[sweep\\] points key and a grid key"):
        expand_points({"a": [1]}, [{"a": 2}])


def test_point_names_are_stable_filesystem_safe_and_tell_override_sets_apart():
    name = point_name(3, {"solver.max_iter": 50, "regularizers[0].weight": 0.5})
    assert re.fullmatch(r"003-[0-9a-f]{8}", name)
    assert name == point_name(3, {"regularizers[0].weight": 0.5, "solver.max_iter": 50})  # key order
    assert name != point_name(3, {"solver.max_iter": 51, "regularizers[0].weight": 0.5})
    assert len({point_name(0, {"k": v}) for v in (1, 1.0, "1", [1])}) == 4
    assert point_name(0, {"solver.max_iter": 50}) == "000-42a5945e"  # the same in every process and session


def test_grid_option_syntax():
    assert parse_grid_option("solver.max_iter=[50, 100]") == ("solver.max_iter", [50, 100])
    assert parse_grid_option('simulate.scene = ["a", "b"]') == ("simulate.scene", ["a", "b"])
    for bad in ("solver.max_iter=50", "=[1, 2]", "solver.max_iter"):
        with pytest.raises(ConfigError, match=r"expected KEY=\[v1, v2, ...\]"):
            parse_grid_option(bad)


SWEEP_TABLE = """
[sweep]
metrics = ["psnr_db"]
points = [{ "observations[0].exposure_s" = 4.0e4 }, { observations.xmm.exposure_s = 6.0e4 }]

[sweep.grid]
solver.max_iter = [3, 5]
"""


def test_sweep_table_is_read_validated_and_ignored_by_a_run(tmp_path, capsys):
    path = tiny(tmp_path, extra=SWEEP_TABLE)
    cfg = load_config(path)
    assert cfg.sweep.grid == {"solver.max_iter": [3, 5]}  # a nested table reads as dotted keys
    assert cfg.sweep.points == [{"observations[0].exposure_s": 4e4}, {"observations.xmm.exposure_s": 6e4}]
    assert cfg.digest() == load_config(tiny(tmp_path / "plain")).digest()  # not part of what a run is
    assert main(["validate", str(path)]) == 0
    sweep = plan_sweep(path)
    assert [p.overrides for p in sweep.points] == [
        {"observations[0].exposure_s": 4e4, "solver.max_iter": 3}, {"observations[0].exposure_s": 4e4, "solver.max_iter": 5},
        {"observations.xmm.exposure_s": 6e4, "solver.max_iter": 3}, {"observations.xmm.exposure_s": 6e4, "solver.max_iter": 5}]
    assert sweep.metrics == ["psnr_db"] and sweep.out == tmp_path / "out_sweep"
    # --grid replaces a key of the table and adds its own; --metric replaces the table's
    sweep = plan_sweep(path, grid=["solver.max_iter=[4]", "solver.tol=[0.0, 1e-9]"], metrics=["asam_deg"])
    assert [p.overrides["solver.max_iter"] for p in sweep.points] == [4] * 4
    assert [p.overrides["solver.tol"] for p in sweep.points] == [0.0, 1e-9] * 2 and sweep.metrics == ["asam_deg"]
    bad = tiny(tmp_path / "bad", extra='\n[sweep]\ngrid = { "solver.max_iter" = 5 }\n')
    assert main(["validate", str(bad)]) == 2
    assert "`sweep`: `grid.solver.max_iter`: expected an array of values" in unwrapped(capsys.readouterr().err)


# -- bad input: exit 2 before any task -----------------------------------------------------
BAD_INPUTS = {
    "unknown grid key": (["--grid", "solver.max_itr=[1, 2]"], "",
                         r"sweep key `solver.max_itr` \(--grid\): .*`solver.max_itr`: unknown key \(did you mean "
                         r"`max_iter`\?\)"),
    "unknown [sweep] key": ([], '\n[sweep]\ngrid = { "solver.maxiter" = [1] }\n',
                            r"sweep key `solver.maxiter` \(\[sweep\] grid\): .*unknown key \(did you mean `max_iter`"),
    "unknown plugin option": (["--grid", "simulate.options.total_flx=[1.0]"], "",
                              r"sweep key `simulate.options.total_flx` \(--grid\): .*`simulate.options.total_flx`: "
                              r"unknown key \(did you mean `total_flux`\?\)"),
    "bad value": (["--grid", "solver.max_iter=[5, -1]"], "",
                  r"sweep point 001-[0-9a-f]{8} \(solver.max_iter=-1\): .*`solver.max_iter`: must be >= 0"),
    "a check of xhsi validate": (["--grid", 'solver.name=["fista", "palm"]'], "",
                                 r"sweep point 001-[0-9a-f]{8} \(solver.name=\"palm\"\): .*but solver `palm` takes "
                                 r"one unknown per map"),
    "zero points (--grid)": (["--grid", "solver.max_iter=[]"], "",
                             r"the sweep has zero points: `solver.max_iter` \(--grid\) has no values"),
    "zero points ([sweep] points)": ([], "\n[sweep]\npoints = []\n",
                                     r"the sweep has zero points: \[sweep\] points is empty"),
    "nothing to sweep": ([], "", r"nothing to sweep: give --grid 'KEY=\[v1, v2, ...\]'"),
    "malformed --grid": (["--grid", "solver.max_iter=5"], "", r"--grid `solver.max_iter=5`: expected KEY=\[v1, v2"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_before_any_task(tmp_path, capsys, case):
    args, extra, message = BAD_INPUTS[case]
    path, out = tiny(tmp_path, extra=extra), tmp_path / "sweep"
    assert main(["sweep", str(path), *args, "--out", str(out)]) == 2
    assert re.search(message, error_paragraph(capsys)), case
    assert not out.exists()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_scheduler_exits_2_before_any_task(tmp_path, capsys):
    pytest.importorskip("distributed")
    path, out = tiny(tmp_path), tmp_path / "sweep"
    port = _closed_port()
    args = ["sweep", str(path), "--grid", "solver.max_iter=[3]", "--out", str(out)]
    assert main([*args, "--scheduler", f"tcp://127.0.0.1:{port}", "--timeout", "0.5"]) == 2
    assert f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port} within 0.5 s" in error_paragraph(capsys)
    missing = tmp_path / "scheduler.json"
    assert main([*args, "--scheduler-file", str(missing)]) == 2
    assert f"--scheduler-file {missing}: no such file. Start a scheduler" in error_paragraph(capsys)
    missing.write_text("{}")
    assert main([*args, "--scheduler-file", str(missing)]) == 2
    assert "is not a Dask scheduler file" in error_paragraph(capsys)
    assert not out.exists()


def test_sweep_without_dask_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` raises ImportError
    path, out = tiny(tmp_path), tmp_path / "sweep"
    args = ["sweep", str(path), "--grid", "solver.max_iter=[3, 4]", "--out", str(out)]
    assert main(args) == 2
    assert "not installed here" in (message := error_paragraph(capsys))
    assert "Install it with: pip install 'xhsi[distributed]'" in message
    assert not out.exists()
    assert main([*args, "--dry-run"]) == 0  # checking and listing the points needs no Dask
    assert "2 points in" in capsys.readouterr().out and not out.exists()


# -- sweeps --------------------------------------------------------------------------------
@pytest.mark.slow  # ~6 s: every point a whole run on the cluster
def test_sweep_runs_points_as_normal_runs_and_a_rerun_skips_them(tmp_path, client):
    path, out = tiny(tmp_path), tmp_path / "sweep"
    sweep = plan_sweep(path, ["solver.max_iter=[3, 6]"], out=out)
    assert [p.state for p in sweep.points] == ["new", "new"]
    report = run_sweep(sweep, client, quiet=True)
    assert statuses(report) == ["done", "done"] and report.exit_code == 0
    run(load_config(path, ["solver.max_iter=6"]), out=tmp_path / "plain", quiet=True)
    np.testing.assert_array_equal(cube(sweep.points[1].folder), cube(tmp_path / "plain"))  # bit-identical
    for point, n_iter in zip(sweep.points, (3, 6)):
        record = json.loads((point.folder / "sweep_point.json").read_text())
        assert record["overrides"] == {"solver.max_iter": n_iter} and record["name"] == point.name
    with open(out / "sweep.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [(r["name"], r["status"], r["solver.max_iter"], r["run.n_iter"]) for r in table] == [
        (sweep.points[0].name, "done", "3", "3"), (sweep.points[1].name, "done", "6", "6")]
    assert float(table[1]["result.psnr_db"]) > 0 and "baselines.xmm.psnr_db" in table[0]
    assert json.loads((out / "sweep.json").read_text())["grid"] == {"solver.max_iter": [3, 6]}
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report.plotted == [c for c in table[0] if c.startswith("result.")]

    # the same sweep again: every point complete, nothing submitted (no client), nothing rewritten
    stamps = {p.name: (p.folder / "result.fits").stat().st_mtime_ns for p in sweep.points}
    again = plan_sweep(path, ["solver.max_iter=[3, 6]"], out=out)
    assert [p.state for p in again.points] == ["complete", "complete"] and not again.pending
    assert statuses(run_sweep(again, None, quiet=True)) == ["complete", "complete"]
    assert stamps == {p.name: (p.folder / "result.fits").stat().st_mtime_ns for p in sweep.points}

    # a longer grid: the complete points keep their runs under their new index, one point runs
    longer = plan_sweep(path, ["solver.max_iter=[2, 3, 6]"], out=out)
    assert [p.state for p in longer.points] == ["new", "complete", "complete"]
    assert statuses(run_sweep(longer, client, quiet=True)) == ["done", "complete", "complete"]
    assert sorted(os.listdir(out / "points")) == [p.name for p in longer.points]
    assert (longer.points[2].folder / "result.fits").stat().st_mtime_ns == stamps[sweep.points[1].name]

    # the same point in another sweep: bit-identical
    other = plan_sweep(path, ["solver.max_iter=[6]"], out=tmp_path / "other")
    assert statuses(run_sweep(other, client, quiet=True)) == ["done"]
    np.testing.assert_array_equal(cube(other.points[0].folder), cube(longer.points[2].folder))

    # another config (here a --set) in the same folders: refused, or replaced with --overwrite
    with pytest.raises(XhsiError, match="3 point folders of .* hold the run of another config .* --overwrite"):
        plan_sweep(path, ["solver.max_iter=[2, 3, 6]"], overrides=["solver.tol=1e-12"], out=out)
    replaced = plan_sweep(path, ["solver.max_iter=[6]"], overrides=["solver.tol=1e-12"], out=out, overwrite=True)
    assert [p.state for p in replaced.points] == ["other"]
    assert statuses(run_sweep(replaced, client, quiet=True)) == ["done"]
    assert "tol = 1e-12" in (replaced.points[0].folder / "config.resolved.toml").read_text()


def test_a_failed_point_is_reported_and_does_not_stop_the_others(tmp_path, client):
    path, out = tiny(tmp_path), tmp_path / "sweep"
    # an exposure so short that the simulated counts are all zero: a DataError in the run itself
    sweep = plan_sweep(path, ["observations[0].exposure_s=[1e-30, 5e4]"], out=out, metrics=["psnr_db", "nope"])
    report = run_sweep(sweep, client, quiet=True)
    assert statuses(report) == ["failed", "done"] and report.exit_code == 1
    failed = sweep.points[0]
    error = report.outcomes[failed.name]["error"]
    assert "the simulated counts of observation `xmm` are all zero" in error
    assert not error.startswith("DataError")  # a user error is reported by the task, not raised and retried
    summary = unwrapped(report.summary())
    assert f"failed: {failed.name} (observations[0].exposure_s=1e-30): " in summary and "all zero" in summary
    assert report.plotted == ["result.psnr_db"] and report.unknown_metrics == ["nope"]
    with open(out / "sweep.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [r["status"] for r in table] == ["failed", "done"] and "all zero" in table[0]["error"]
    assert table[0]["result.psnr_db"] == "" and float(table[1]["result.psnr_db"]) > 0
    assert not any(p.name in ("result.fits", "run.json") for p in failed.folder.glob("*"))
    # a re-run tries the failed point again and skips the complete one
    assert [p.state for p in plan_sweep(path, ["observations[0].exposure_s=[1e-30, 5e4]"], out=out).points] == [
        "new", "complete"]


def test_an_unexpected_error_is_retried_then_reported_and_does_not_stop_the_others(tmp_path, client, monkeypatch):
    from xhsi.distributed import sweep as sweep_module

    attempts, real = tmp_path / "attempts.txt", sweep_module.run_point

    def flaky(config, overrides, folder, point, *args):
        if point["index"] == 0:
            with open(attempts, "a") as fh:
                fh.write("x")
            raise RuntimeError("a bug, not a user error")
        return real(config, overrides, folder, point, *args)

    monkeypatch.setattr(sweep_module, "run_point", flaky)
    path = tiny(tmp_path)
    report = run_sweep(plan_sweep(path, ["solver.max_iter=[3, 4]"], out=tmp_path / "sweep"), client, quiet=True,
                       retries=1)
    assert statuses(report) == ["failed", "done"] and report.exit_code == 1
    assert report.outcomes[report.sweep.points[0].name]["error"] == "RuntimeError: a bug, not a user error"
    assert attempts.read_text() == "xx"  # --retries 1: run twice


@pytest.mark.slow  # starts cluster processes; run by .ci/run (pytest -m slow)
def test_cli_sweep_on_the_default_local_cluster(tmp_path, capsys):
    """`xhsi sweep` with no scheduler: a LocalCluster of worker processes; exit 1 when a
    point failed, each failure named with its message; the same results as in-process."""
    pytest.importorskip("distributed")
    path, out = tiny(tmp_path), tmp_path / "sweep"
    code = main(["sweep", str(path), "--grid", "observations[0].exposure_s=[1e-30, 5e4]", "--workers", "2",
                 "--out", str(out), "--metric", "result.psnr_db"])
    err = unwrapped(capsys.readouterr().err)
    assert code == 1, err
    assert "2 points in" in err and "1 run, 0 already complete (skipped), 1 failed" in err
    assert re.search(r"failed: 000-\w+ \(observations\[0\].exposure_s=1e-30\): .*all zero", err)
    done = next((out / "points").glob("001-*"))
    run(load_config(path, ["observations[0].exposure_s=5e4"]), out=tmp_path / "plain", quiet=True)
    np.testing.assert_array_equal(cube(done), cube(tmp_path / "plain"))


def test_local_cluster_workers_start_without_dasks_malloc_trim_threshold(monkeypatch):
    """Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in the workers it starts, which made the
    runs 1.7-1.8x slower (docs/scaling.md): the LocalCluster's workers start without it, and
    this process's environment, which the nanny writes into, is left as it was."""
    pytest.importorskip("distributed")
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    before = dict(os.environ)
    with connect(workers=1) as c:
        (env,) = c.run(lambda: dict(os.environ)).values()
    assert "MALLOC_TRIM_THRESHOLD_" not in env and env.get("OMP_NUM_THREADS") == "1"
    assert dict(os.environ) == before


def _dask(*args) -> list[str]:
    return [str(Path(sys.executable).parent / "dask"), *args]


def _wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow  # starts cluster processes; run by .ci/run (pytest -m slow)
def test_sweep_on_a_separate_scheduler_survives_a_killed_worker(tmp_path, capsys):
    """`dask scheduler` and two `dask worker` processes, started apart from the sweep; the
    worker running a point is killed (SIGKILL) after the point's first checkpoint: the
    scheduler reruns the task on the other worker, which resumes the point, and the sweep
    completes with the results of an uninterrupted run."""
    pytest.importorskip("distributed")
    scheduler_file = tmp_path / "scheduler.json"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [subprocess.Popen(_dask("scheduler", "--port", "0", "--no-dashboard", "--scheduler-file",
                                    str(scheduler_file)), **quiet)]
    try:
        _wait_for(scheduler_file.is_file, 60, "the scheduler file")
        workers = {}
        for _ in range(2):
            proc = subprocess.Popen(_dask("worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1",
                                          "--no-nanny", "--no-dashboard"), **quiet)
            procs.append(proc)
            workers[proc.pid] = proc
        path, out = tiny(tmp_path, max_iter=10), tmp_path / "sweep"
        grid = "solver.max_iter=[300, 301]"
        args = ["sweep", str(path), "--grid", grid, "--set", "run.checkpoint_every=5",
                "--scheduler-file", str(scheduler_file), "--timeout", "60", "--out", str(out), "--quiet"]
        result = {}
        sweeping = threading.Thread(target=lambda: result.update(code=main(args)))
        sweeping.start()

        def running_with_checkpoint():
            # a run's staging folder is .POINT.staging-PID@HOST, PID the worker's (no nanny)
            for staging in (out / "points").glob(".*.staging-*"):
                point, _, token = staging.name[1:].partition(".staging-")
                pid = int(token.partition("@")[0])
                if pid in workers and (out / "points" / point / "checkpoint.npz").is_file():
                    return point, pid
            return None

        point, pid = _wait_for(running_with_checkpoint, 120, "a point to checkpoint")
        workers[pid].kill()
        workers[pid].wait()  # reaped: the retry sees its run as dead
        sweeping.join(timeout=300)
        assert not sweeping.is_alive() and result["code"] == 0, capsys.readouterr().err
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    killed = out / "points" / point
    n_iter = json.loads((killed / "sweep_point.json").read_text())["overrides"]["solver.max_iter"]
    assert json.loads((killed / "run.json").read_text())["n_iter"] == n_iter
    plain = tmp_path / "plain"
    run(load_config(path, [f"solver.max_iter={n_iter}", "run.checkpoint_every=5"]), out=plain, quiet=True)
    np.testing.assert_array_equal(cube(killed), cube(plain))
    with open(out / "sweep.csv", newline="") as fh:
        assert [r["status"] for r in csv.DictReader(fh)] == ["done", "done"]
