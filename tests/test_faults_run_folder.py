"""Faults of run folders (issue 23), grouped by kind: overwrite, kill -9, signals,
checkpoints and inputs, stale temporaries. Each case asserts the exit code, the message's
key words, and what the output folder and the input files hold afterwards: the previous
complete run, the new complete run, or a checkpoint that ``--resume`` continues to the
bits of an uninterrupted run (``xhsi.runfolder`` states the rules).

Processes are forked from this one rather than started with ``python -m xhsi``: xhsi is
imported and its caches are warm here, so a child runs the small config in ~0.2 s where a
fresh interpreter takes ~1.5 s, which is what lets the SIGKILL loop kill 20 runs quickly.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from conftest import unwrapped
from xhsi import runfolder
from xhsi.cli import main
from xhsi.config import load_config
from xhsi.errors import XhsiError
from xhsi.interrupts import stop_signals
from xhsi.results import read_history
from xhsi.runfolder import folder_state
from xhsi.runner import Progress, run, simulate
from xhsi.solvers import load_checkpoint

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="forks processes to kill them")

SMALL = """\
[run]
problem = "fusion"
output = "out"
dtype = "float64"
quicklook = false
checkpoint_every = 1
seed = {seed}

[model]
energy = {{ min_kev = 5.5, max_kev = 7.5, bins = 20 }}
pixels = [9, 9]
pixel_arcsec = 4.1

[[observations]]
name = "xmm"
instrument = "xmm_epic_pn"
exposure_s = 5.0e4
spectral_rebin = 4
{xmm}
[[observations]]
name = "xrism"
instrument = "xrism_resolve"
exposure_s = 1.0e5
spatial_rebin = 3
{xrism}
[solver]
name = "fista"
max_iter = {max_iter}
tol = 0.0
report_every = 2
{tail}"""
SCENE = '\n[simulate]\nscene = "casa_like"\n'


def small(folder: Path, max_iter: int = 6, seed: int = 0, counts: bool = False, name: str = "small.toml") -> Path:
    """The small fusion config: simulated counts, or (``counts``) those of ``sim/`` and no truth."""
    files = {"xmm": 'counts = "sim/xmm_counts.fits"\n', "xrism": 'counts = "sim/xrism_counts.fits"\n'}
    text = SMALL.format(max_iter=max_iter, seed=seed, xmm=files["xmm"] if counts else "",
                        xrism=files["xrism"] if counts else "", tail="" if counts else SCENE)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def listing(folder: Path) -> dict[str, str]:
    """{name: SHA-256} of the files a reader of ``folder`` sees (hidden temporaries aside)."""
    if not folder.is_dir():
        return {}
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if not p.name.startswith(".")}


def debris(out: Path) -> list[str]:
    """Hidden temporaries inside ``out`` and staging or old folders beside it."""
    inside = [p.name for p in out.iterdir() if p.name.startswith(".")] if out.is_dir() else []
    beside = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    return sorted(inside + beside)


def inputs(folder: Path) -> dict[str, str]:
    """{path: SHA-256} of a test's input files: the configs in ``folder``, the counts in ``sim/``."""
    files = [*folder.glob("*.toml"), *folder.glob("sim/*.fits")]
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(files)}


def cube(folder: Path) -> np.ndarray:
    return fits.getdata(folder / "result.fits")


def assert_same_run(folder: Path, reference: Path) -> None:
    """``folder`` holds a complete run whose every file is of the run ``reference`` holds:
    the same files, config digest everywhere it is recorded, FITS data, metrics and history
    (times aside), so that a mix of two runs' files fails even where they share a name."""
    assert set(listing(folder)) == set(listing(reference)), sorted(listing(folder))
    digest = load_config(reference / "config.resolved.toml").digest()
    assert load_config(folder / "config.resolved.toml").digest() == digest
    assert json.loads((folder / "run.json").read_text())["config_digest"] == digest
    assert load_checkpoint(folder / "checkpoint.npz").meta["config_digest"] == digest
    for name in listing(reference):
        if name.endswith(".fits"):
            with fits.open(folder / name) as mine, fits.open(reference / name) as theirs:
                assert [h.header.get("CFGHASH") for h in mine] == [h.header.get("CFGHASH") for h in theirs]
                for a, b in zip(mine, theirs):
                    np.testing.assert_array_equal(a.data, b.data, err_msg=name)
    if (reference / "metrics.json").exists():
        assert json.loads((folder / "metrics.json").read_text()) == json.loads((reference / "metrics.json").read_text())
    rows = [(r["iteration"], r["cost"]) for r in read_history(folder / "history.csv")]
    assert rows == [(r["iteration"], r["cost"]) for r in read_history(reference / "history.csv")]


def forked(target, kill_after: float | None = None, stderr: Path | None = None, timeout: float = 60.0,
           spans: list | None = None) -> int | None:
    """Run ``target()`` (it returns an exit code) in a child forked from this process, its
    stderr into the file ``stderr``; SIGKILL it ``kill_after`` s after its run started
    writing (``RunFolder.start``: the checks passed, the operators are built) if it is
    still running. Returns its exit code (-n when a signal n ended it), or None when it was
    killed here; appends to ``spans`` the seconds from that start to the end."""
    started, signal_start = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 70
        try:
            os.close(started)
            if stderr is not None:  # pytest has replaced sys.stderr: replace it in turn
                sys.stderr = open(stderr, "w", buffering=1)  # noqa: SIM115 (closed by _exit)
            start = runfolder.RunFolder.start

            def announced(self):
                start(self)
                os.write(signal_start, b"s")

            runfolder.RunFolder.start = announced
            code = target()
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code if isinstance(code, int) else 70)
    os.close(signal_start)
    os.set_blocking(started, False)
    begun, deadline = None, time.perf_counter() + timeout
    try:
        while time.perf_counter() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                if spans is not None and begun is not None:
                    spans.append(time.perf_counter() - begun)
                return os.waitstatus_to_exitcode(status)
            if begun is None:
                try:
                    if os.read(started, 1):
                        begun = time.perf_counter()
                except BlockingIOError:
                    pass
            if kill_after is not None and begun is not None and time.perf_counter() - begun >= kill_after:
                break
            time.sleep(0.0005)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        assert kill_after is not None, f"the child ran past {timeout} s"
        return None
    finally:
        os.close(started)


def xhsi(*argv: str):
    return lambda: main(list(argv))


def stop_at(signum: int, iteration: int):
    """Make the run send itself ``signum`` once the solver reports ``iteration``."""
    update = Progress.update

    def sending(self, k, cost, step):
        update(self, k, cost, step)
        if k >= iteration:
            os.kill(os.getpid(), signum)

    Progress.update = sending


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


# -- overwrite --------------------------------------------------------------------------------
def test_overwrite_replaces_the_previous_run_as_a_whole(tmp_path, capsys):
    simulate(load_config(small(tmp_path)), tmp_path / "sim")
    with_truth, from_counts = small(tmp_path), small(tmp_path, counts=True, name="counts.toml")
    out = tmp_path / "out"
    assert main(["run", str(with_truth), "--quiet"]) == 0
    assert "metrics.json" in listing(out)
    before = inputs(tmp_path)
    assert main(["run", str(from_counts), "--quiet"]) == 2
    assert "already holds a run" in unwrapped(capsys.readouterr().err)
    assert main(["run", str(from_counts), "--quiet", "--overwrite"]) == 0
    # nothing of the previous run is left: it had metrics.json, this one has no truth
    assert "metrics.json" not in listing(out) and "result.fits" in listing(out)
    assert load_config(out / "config.resolved.toml").digest() == load_config(from_counts).digest()
    assert debris(out) == [] and inputs(tmp_path) == before


def test_overwrite_that_fails_leaves_the_previous_run(tmp_path, capsys, monkeypatch):
    config = small(tmp_path)
    out = tmp_path / "out"
    assert main(["run", str(config), "--quiet"]) == 0
    previous, before = listing(out), inputs(tmp_path)
    # refused by a check: nothing is written
    assert main(["run", str(config), "--quiet", "--overwrite", "--set", 'observations.xmm.counts="nope.fits"']) == 2
    assert "nope.fits does not exist" in unwrapped(capsys.readouterr().err)
    assert listing(out) == previous and debris(out) == [] and inputs(tmp_path) == before

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("xhsi.outputs.write_json", full)  # fails after result.fits was staged
    with pytest.raises(OSError, match="No space left"):
        run(load_config(config, ["run.seed=1"]), overwrite=True, quiet=True)
    assert listing(out) == previous and debris(out) == [] and inputs(tmp_path) == before


def test_an_interrupted_run_is_resumed_or_overwritten_not_rerun(tmp_path, capsys):
    config = small(tmp_path)
    out = tmp_path / "out"
    run(load_config(config), quiet=True)
    for name in listing(out):  # what a kill leaves: the checkpoint alone
        if name != "checkpoint.npz":
            (out / name).unlink()
    previous = listing(out)
    assert main(["run", str(config), "--quiet"]) == 2
    err = unwrapped(capsys.readouterr().err)
    assert "did not finish (checkpoint.npz)" in err and "--resume" in err and "--overwrite" in err
    assert listing(out) == previous
    assert main(["run", str(config), "--quiet", "--overwrite"]) == 0 and folder_state(out) == "complete"


def test_a_folder_holding_no_run_is_used_or_refused(tmp_path, capsys):
    config = small(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.resolved.toml").write_text("[run]\n")  # what an older xhsi left after a failed check
    assert main(["run", str(config), "--quiet", "--resume"]) == 2
    assert "no checkpoint.npz to continue from; run without --resume" in unwrapped(capsys.readouterr().err)
    assert main(["run", str(config), "--quiet"]) == 0 and folder_state(out) == "complete"
    data = tmp_path / "data"  # not a run folder: a completed run would replace it as a whole
    data.mkdir()
    (data / "counts.fits").write_bytes(b"mine")
    assert main(["run", str(config), "--quiet", "--out", str(data), "--overwrite"]) == 2
    assert "holds files that are not an xhsi run's (counts.fits)" in unwrapped(capsys.readouterr().err)
    assert listing(data) == {"counts.fits": hashlib.sha256(b"mine").hexdigest()} and debris(data) == []


# -- kill -9 ----------------------------------------------------------------------------------
def test_kill_9_while_outputs_are_written(tmp_path):
    """A new run killed after staging result.fits: the previous run stays whole (a fresh
    run: its last checkpoint), and the next run removes the staging folder."""
    config = small(tmp_path)
    out = tmp_path / "out"
    reference = tmp_path / "reference"
    run(load_config(config), out=reference, quiet=True)

    def killed_in_write_outputs(*argv):
        def target():
            import xhsi.outputs

            def write_json(path, data):  # called after result.fits and the residuals
                os.kill(os.getpid(), signal.SIGKILL)

            xhsi.outputs.write_json = write_json
            return main(list(argv))
        return target

    # over a complete run (of another seed): it stays as it was
    assert main(["run", str(config), "--quiet", "--set", "run.seed=1"]) == 0
    previous = listing(out)
    assert forked(killed_in_write_outputs("run", str(config), "--quiet", "--overwrite")) == -signal.SIGKILL
    assert listing(out) == previous and any(".staging-" in name for name in debris(out))
    # a fresh run: its checkpoint of the last iterate, which --resume finishes
    fresh = tmp_path / "fresh"
    assert forked(killed_in_write_outputs("run", str(config), "--quiet", "--out", str(fresh))) == -signal.SIGKILL
    assert list(listing(fresh)) == ["checkpoint.npz"] and load_checkpoint(fresh / "checkpoint.npz").iteration == 6
    assert main(["run", str(config), "--quiet", "--out", str(fresh), "--resume"]) == 0
    assert_same_run(fresh, reference)
    assert main(["run", str(config), "--quiet", "--overwrite"]) == 0
    assert debris(out) == [] and debris(fresh) == []
    assert_same_run(out, reference)


@pytest.mark.slow  # ~6 s of forked runs; the single-moment kills above stay in the unit suite
def test_sigkill_at_20_random_moments(tmp_path):
    """SIGKILL runs at 20 random moments (a fixed seed) of their course: 10 in chains where
    each run continues what the last left (a fresh run, then --resume of its checkpoint; a
    new chain once one completes), 10 that --overwrite a complete run with a run of another
    seed. After each kill the folder is what it was, a checkpoint at least as far on (never
    over a complete run), or a complete run with the bits of an uninterrupted one; a last
    --resume gives those bits."""
    config = small(tmp_path, max_iter=12)
    references = [tmp_path / "reference0", tmp_path / "reference1"]
    for seed, reference in enumerate(references):  # also warms the caches the children inherit
        run(load_config(config, [f"run.seed={seed}"]), out=reference, quiet=True)
    assert not np.array_equal(cube(references[0]), cube(references[1]))
    # Moments from the start of the run's writing (the checks passed, the operators built)
    # until a little past its end: iterations, checkpoints, outputs, moving into place.
    spans = []
    for _ in range(2):  # the first fork is the slower
        assert forked(xhsi("run", str(config), "--quiet", "--out", str(tmp_path / "timing"), "--overwrite"),
                      spans=spans) == 0
    moments = iter(np.random.default_rng(23).uniform(0.0, 1.2 * min(spans), 20))

    def kill_and_check(out: Path, flags: list[str], seen: list[str], iteration: int = 0, seed: int = 0) -> int:
        state, previous = folder_state(out), listing(out)
        argv = ["run", str(config), "--quiet", "--out", str(out), "--set", f"run.seed={seed}", *flags]
        assert forked(xhsi(*argv), kill_after=float(next(moments))) in (None, 0)
        now = listing(out)
        if now == previous:
            seen.append("unchanged")
        elif set(now) == {"checkpoint.npz"}:
            assert state != "complete", "a kill -9 left a checkpoint where a complete run was"
            iteration, before = load_checkpoint(out / "checkpoint.npz").iteration, iteration
            assert before <= iteration <= 12
            seen.append("checkpoint")
        else:
            assert_same_run(out, references[seed])
            seen.append("complete")
        return iteration

    chains, seen, iteration = [tmp_path / "chain0"], [], 0
    for _ in range(10):
        if folder_state(chains[-1]) == "complete":
            chains.append(tmp_path / f"chain{len(chains)}")
            iteration = 0
        chain = chains[-1]
        iteration = kill_and_check(chain, ["--resume"] if folder_state(chain) != "none" else [], seen, iteration)
    assert "checkpoint" in seen, seen  # some kills fell within the solver's iterations
    for chain in chains:  # finish each chain (or, when complete, clear what the last kill left)
        assert main(["run", str(config), "--quiet", "--out", str(chain),
                     *(["--resume"] if folder_state(chain) != "none" else [])]) == 0
        assert_same_run(chain, references[0])
        assert debris(chain) == []

    replaced, seen = tmp_path / "replaced", []
    assert main(["run", str(config), "--quiet", "--out", str(replaced)]) == 0
    for _ in range(10):
        seed = 1 - int(np.array_equal(cube(replaced), cube(references[1])))  # the other one
        kill_and_check(replaced, ["--overwrite"], seen, seed=seed)
    assert "unchanged" in seen, seen  # some kills fell before the new run was moved into place
    seed = int(np.array_equal(cube(replaced), cube(references[1])))
    assert main(["run", str(config), "--quiet", "--out", str(replaced), "--set", f"run.seed={seed}",
                 "--resume"]) == 0  # clears the debris
    assert_same_run(replaced, references[seed])
    assert debris(replaced) == []


def test_a_crash_between_the_two_renames_of_a_swap_is_completed(tmp_path, capsys):
    """Where the system cannot exchange two folders in one step, publishing is two renames;
    a kill between them leaves OUT absent, and the next run puts the new folder in place."""
    config = small(tmp_path)
    out = tmp_path / "out"
    assert main(["run", str(config), "--quiet"]) == 0

    def target():
        rename = os.rename

        def killed_after_moving_aside(src, dst):
            rename(src, dst)
            if Path(dst).name.startswith(".out.old-"):
                os.kill(os.getpid(), signal.SIGKILL)

        runfolder._exchange = lambda a, b: False
        os.rename = killed_after_moving_aside
        return main(["run", str(config), "--quiet", "--overwrite", "--set", "run.seed=1"])

    assert forked(target) == -signal.SIGKILL
    assert not out.exists() and len(debris(out)) == 2  # the old folder and the staged one
    assert main(["run", str(config), "--quiet"]) == 2  # completes the swap, then refuses to replace it
    assert "already holds a run" in unwrapped(capsys.readouterr().err)
    assert load_config(out / "config.resolved.toml").run.seed == 1
    assert main(["run", str(config), "--quiet", "--overwrite"]) == 0 and debris(out) == []


# -- signals ----------------------------------------------------------------------------------
@pytest.mark.parametrize("signum, over_a_run", [(signal.SIGTERM, False), (signal.SIGHUP, False),
                                                (signal.SIGTERM, True)],
                         ids=["sigterm", "sighup", "sigterm-overwrite"])
def test_sigterm_and_sighup_write_a_checkpoint_and_the_hint_resumes(tmp_path, signum, over_a_run):
    folder = tmp_path / "my runs"  # a space: the hint must quote
    config = small(folder, max_iter=6)
    sets = ["solver.max_iter=8", "run.seed = 2"]
    out = tmp_path / "elsewhere"
    reference = tmp_path / "reference"
    run(load_config(config, sets), out=reference, quiet=True)
    argv = ["run", str(config), "--set", sets[0], "--set", sets[1], "--out", str(out)]
    if over_a_run:
        assert main(["run", str(config), "--quiet", "--out", str(out)]) == 0
    before = inputs(folder)

    def target():
        stop_at(signum, 3)
        return main([*argv, *(["--overwrite"] if over_a_run else [])])

    err = tmp_path / "stderr.txt"
    assert forked(target, stderr=err) == 128 + signum  # an exit, not a death by the signal (-signum)
    text = err.read_text()
    name = signal.Signals(signum).name
    assert f"interrupted ({name}) at iteration" in unwrapped(text) and "checkpoint written to" in unwrapped(text)
    assert list(listing(out)) == ["checkpoint.npz"] and debris(out) == [] and inputs(folder) == before
    assert load_checkpoint(out / "checkpoint.npz").iteration >= 3
    hint = shlex.split(text.strip().splitlines()[-1])
    assert hint == ["xhsi", *argv, "--resume"]  # config, every --set, --out: the exact command
    assert main(hint[1:] + ["--quiet"]) == 0  # followed literally, it finishes this run
    np.testing.assert_array_equal(cube(out), cube(reference))


def test_stop_signals_installs_handlers_for_the_block_only():
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    ignored = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup leaves it
    try:
        with stop_signals() as signals:
            assert signal.getsignal(signal.SIGTERM) == signals.handler
            assert signal.getsignal(signal.SIGINT) == signals.handler
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN  # nohup is obeyed
            with pytest.raises(KeyboardInterrupt), signals.held():  # postponed, then raised
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.01)
        assert signal.getsignal(signal.SIGTERM) == previous[signal.SIGTERM]
        assert signal.getsignal(signal.SIGINT) == previous[signal.SIGINT]
    finally:
        signal.signal(signal.SIGHUP, ignored)
    assert signal.getsignal(signal.SIGHUP) == previous[signal.SIGHUP]


# -- checkpoints and inputs -------------------------------------------------------------------
def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _bit_flipped(data: bytes) -> bytes:
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10  # inside an array: the zip's CRC sees it
    return bytes(flipped)


@pytest.mark.parametrize("damage", [_truncated, _bit_flipped, lambda data: b"", lambda data: b"not a zip" * 50],
                         ids=["truncated", "bit-flipped", "empty", "garbage"])
def test_a_damaged_checkpoint_is_refused(tmp_path, capsys, damage):
    config = small(tmp_path, max_iter=3)
    out = tmp_path / "out"
    run(load_config(config), quiet=True)
    path = out / "checkpoint.npz"
    path.write_bytes(damage(path.read_bytes()))
    previous, before = listing(out), inputs(tmp_path)
    assert main(["run", str(config), "--quiet", "--resume", "--set", "solver.max_iter=6"]) == 2
    err = unwrapped(capsys.readouterr().err)
    assert "checkpoint.npz is not a readable xhsi checkpoint" in err and "--overwrite" in err
    assert "Traceback" not in err
    assert listing(out) == previous and debris(out) == [] and inputs(tmp_path) == before


def test_an_input_or_version_changed_since_the_run_began_is_refused(tmp_path, capsys, monkeypatch):
    simulate(load_config(small(tmp_path)), tmp_path / "sim")
    config = small(tmp_path, max_iter=3, counts=True, name="counts.toml")
    out = tmp_path / "out"
    assert main(["run", str(config), "--quiet"]) == 0
    resume = ["run", str(config), "--quiet", "--resume", "--set", "solver.max_iter=6"]
    previous = listing(out)

    monkeypatch.setattr("xhsi.__version__", "99.0")
    assert main(resume) == 2
    err = unwrapped(capsys.readouterr().err)
    assert "written by xhsi 0" in err and "this is xhsi 99.0" in err and "--overwrite" in err
    monkeypatch.undo()

    counts = tmp_path / "sim" / "xmm_counts.fits"
    with fits.open(counts, mode="update") as hdul:  # one more photon: same grid, same header
        hdul[0 if hdul[0].data is not None else 1].data.flat[0] += 1
    before = inputs(tmp_path)
    assert main(resume) == 2
    err = unwrapped(capsys.readouterr().err)
    assert "input files changed since the run" in err and f"observations[0].counts ({counts})" in err
    assert "xrism" not in err  # only what changed is named
    assert listing(out) == previous and debris(out) == [] and inputs(tmp_path) == before


# -- stale temporaries --------------------------------------------------------------------------
def test_stale_staging_folders_and_temporaries_are_removed_by_the_next_run(tmp_path, capsys):
    config = small(tmp_path)
    out = tmp_path / "out"
    assert main(["run", str(config), "--quiet"]) == 0
    host = socket.gethostname()
    for name in (f".out.staging-{dead_pid()}@{host}", f".out.old-{dead_pid()}@{host}"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "result.fits").write_bytes(b"half written")
    (out / ".run.json.x1y2z3.tmp").write_bytes(b"{")
    left = debris(out)
    assert len(left) == 3
    assert main(["run", str(config), "--quiet"]) == 2  # a refused run touches nothing
    capsys.readouterr()
    assert debris(out) == left
    assert main(["run", str(config), "--quiet", "--overwrite"]) == 0
    assert debris(out) == []


def test_temporaries_in_an_interrupted_folder_are_removed_when_it_is_resumed(tmp_path):
    config = small(tmp_path)
    out = tmp_path / "out"
    run(load_config(config), quiet=True)
    for name in listing(out):
        if name != "checkpoint.npz":
            (out / name).unlink()
    (out / ".checkpoint.npz.a1b2c3.tmp").write_bytes(b"PK")  # what a kill during a checkpoint leaves
    folder = runfolder.RunFolder(out, resume=True)
    assert folder.in_place and folder.checkpoint_path == out / "checkpoint.npz"
    folder.start()
    try:
        assert sorted(p.name for p in out.iterdir()) == ["checkpoint.npz"]
    finally:
        folder.discard()
    assert debris(out) == []


@pytest.mark.parametrize("owner", ["live", "other host"])
def test_a_live_run_on_the_folder_is_not_disturbed(tmp_path, capsys, owner):
    config = small(tmp_path)
    out = tmp_path / "out"
    token = f"{os.getppid()}@{socket.gethostname()}" if owner == "live" else f"{dead_pid()}@elsewhere"
    staging = tmp_path / f".out.staging-{token}"
    staging.mkdir()
    assert main(["run", str(config), "--quiet"]) == 2
    err = unwrapped(capsys.readouterr().err)
    assert "another xhsi run (pid" in err and f"is writing {out}" in err and f"delete {staging}" in err
    assert staging.is_dir() and not out.exists()


@pytest.mark.parametrize("owner", ["live", "other host"])
def test_an_exclusive_run_takes_over_only_another_hosts_staging_folder(tmp_path, owner):
    """A Dask task (exclusive: the folder's only writer, rerun elsewhere once its worker is
    gone) removes the staging folder another host's run left; a live run on this host is
    still refused."""
    token = f"{os.getppid()}@{socket.gethostname()}" if owner == "live" else f"{dead_pid()}@elsewhere"
    out = tmp_path / "out"
    staging = tmp_path / f".out.staging-{token}"
    staging.mkdir()
    if owner == "live":
        with pytest.raises(XhsiError, match="another xhsi run"):
            runfolder.RunFolder(out, exclusive=True)
        return
    folder = runfolder.RunFolder(out, exclusive=True)
    try:
        folder.start()
        assert not staging.exists()
    finally:
        folder.discard()
