"""Checkpoints: atomic .npz files without pickle, and resumes that repeat an uninterrupted
run bit for bit."""
from __future__ import annotations

import json

import numpy as np
import pytest
from array_api_compat import array_namespace

from xhsi.backend import Backend, to_numpy
from xhsi.errors import ConfigError, DataError, RunStopped
from xhsi.likelihoods import DataTerm, Poisson
from xhsi.operators import LinearOperator
from xhsi.solvers import FISTA, ISTA, PALM, Block, NonNegative, load_checkpoint, save_checkpoint
from xhsi.solvers.checkpoint import Checkpoint


class Dense(LinearOperator):
    def __init__(self, matrix, n):
        super().__init__((n,), (n,))
        self.matrix, self.xp = matrix, array_namespace(matrix)

    def _apply(self, x):
        return self.xp.matmul(self.matrix, x)

    def _adjoint(self, y):
        return self.xp.matmul(self.matrix.T, y)


def poisson_problem(be: Backend, n: int = 16):
    rng = np.random.default_rng(0)
    i = np.arange(n)
    a = np.exp(-0.5 * (i[:, None] - i[None, :]) ** 2)
    a /= a.sum(axis=0)
    x_true = rng.uniform(1.0, 20.0, n)
    counts = rng.poisson(a @ x_true + 0.5).astype(np.float64)
    term = DataTerm(Poisson(), Dense(be.asarray(a), n), be.asarray(counts), background=be.asarray(np.full(n, 0.5)))
    return term, be.asarray(np.full(n, counts.mean()))


def test_save_load_round_trip(tmp_path, xp):
    path = tmp_path / "run" / "checkpoint.npz"
    state = {"iteration": 7, "x": xp.asarray(np.arange(6.0, dtype=np.float32)), "t": xp.asarray(1.5),
             "blocks": [xp.ones((2, 3)), xp.zeros((4,))], "step": 0.1 + 0.2, "cost": None, "L": [1.0, 2.5]}
    meta = {"solver": "fista", "config_digest": "abc", "iteration": 7, "history": [[0, 1.0, 0.5, 0.0]]}
    save_checkpoint(path, state, meta)
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.npz"]  # no temporary file left
    ckpt = load_checkpoint(path)
    assert ckpt.meta == meta and ckpt.iteration == 7
    assert ckpt.state["step"] == 0.1 + 0.2 and ckpt.state["cost"] is None and ckpt.state["L"] == [1.0, 2.5]
    assert ckpt.state["x"].dtype == np.float32 and ckpt.state["t"].shape == ()
    np.testing.assert_array_equal(ckpt.state["x"], np.arange(6.0))
    assert [b.shape for b in ckpt.state["blocks"]] == [(2, 3), (4,)]
    with np.load(path, allow_pickle=False) as npz:  # plain arrays only
        assert all(npz[k].dtype != object for k in npz.files)


def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, {"x": np.ones(3), "iteration": 1}, {"iteration": 1})

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"x": np.zeros(3), "iteration": 2}, {"iteration": 2})
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]
    assert load_checkpoint(path).iteration == 1


def test_load_rejects_missing_pickled_and_foreign_files(tmp_path):
    with pytest.raises(DataError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.npz")
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, meta=np.asarray(json.dumps({"format": 1})), **{"state.x": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(DataError, match="not a readable xhsi checkpoint"):
        load_checkpoint(pickled)
    other = tmp_path / "other.npz"
    np.savez(other, meta=np.asarray(json.dumps({"format": 99})))
    with pytest.raises(DataError, match="format 99"):
        load_checkpoint(other)


def test_compatibility_checks():
    ckpt = Checkpoint(state={}, meta={"solver": "fista", "config_digest": "aaa"})
    ckpt.check_compatible(solver="fista", config_digest="aaa")
    ckpt.check_compatible(solver="fista", config_digest=None)
    with pytest.raises(ConfigError, match="--overwrite"):
        ckpt.check_compatible(solver="fista", config_digest="bbb")
    with pytest.raises(ConfigError, match="solver `fista`"):
        ckpt.check_compatible(solver="palm")


@pytest.mark.parametrize("cls, options", [(FISTA, {}), (FISTA, {"monotone": True}), (ISTA, {})],
                         ids=["fista", "mfista", "ista"])
def test_fista_resume_is_bit_for_bit(tmp_path, backend_name, cls, options):
    be = Backend(backend_name, "float64" if backend_name == "numpy" else "float32")
    term, x0 = poisson_problem(be)
    full = cls(options, max_iter=20, report_every=3)
    full.setup(x0, term, NonNegative())
    x_full = to_numpy(full.run().x)

    path = tmp_path / "checkpoint.npz"
    first = cls(options, max_iter=10, report_every=3)
    first.setup(x0, term, NonNegative())
    first.run(checkpoint_path=path, checkpoint_every=4, config_digest="cfg")
    second = cls(options, max_iter=20, report_every=3)
    second.setup(x0, term, NonNegative())
    result = second.run(resume_from=load_checkpoint(path), checkpoint_path=path, config_digest="cfg")
    np.testing.assert_array_equal(to_numpy(result.x), x_full)
    assert result.n_iter == 20 and result.history[0][0] == 0
    assert load_checkpoint(path).iteration == 20


@pytest.mark.parametrize("inertial", [False, True], ids=["palm", "ipalm"])
def test_palm_resume_is_bit_for_bit(tmp_path, inertial):
    be = Backend("numpy", "float64")
    rng = np.random.default_rng(1)
    y = rng.uniform(0, 1, (6, 2)) @ rng.uniform(0, 1, (2, 5))
    xp = be.xp

    def value(xs):
        r = xs[0] @ xs[1] - y
        return 0.5 * float(xp.sum(r * r))

    blocks = [Block(gradient=lambda xs: (xs[0] @ xs[1] - y) @ xs[1].T, prox=NonNegative()),
              Block(gradient=lambda xs: xs[0].T @ (xs[0] @ xs[1] - y), prox=NonNegative())]
    x0 = [rng.uniform(0, 1, (6, 2)), rng.uniform(0, 1, (2, 5))]

    def solver(max_iter):
        s = PALM({"inertial": inertial}, max_iter=max_iter, report_every=5)
        s.setup(x0, value, blocks)
        return s

    full = solver(16).run().x
    path = tmp_path / "palm.npz"
    solver(9).run(checkpoint_path=path)
    resumed = solver(16).run(resume_from=path).x
    for a, b in zip(full, resumed):
        np.testing.assert_array_equal(a, b)


def test_resume_refuses_other_config_solver_or_dtype(tmp_path):
    be = Backend("numpy", "float64")
    term, x0 = poisson_problem(be)
    path = tmp_path / "checkpoint.npz"
    s = FISTA(max_iter=3)
    s.setup(x0, term)
    s.run(checkpoint_path=path, config_digest="one")
    again = FISTA(max_iter=6)
    again.setup(x0, term)
    with pytest.raises(ConfigError, match="another config .* --overwrite"):
        again.run(resume_from=path, config_digest="two")
    other = ISTA(max_iter=6)
    other.setup(x0, term)
    with pytest.raises(ConfigError, match="solver `fista`"):
        other.run(resume_from=path, config_digest="one")
    be32 = Backend("numpy", "float32")
    term32, x32 = poisson_problem(be32)
    single = FISTA(max_iter=6)
    single.setup(x32, term32)
    with pytest.raises(ConfigError, match="float64 .* float32"):
        single.run(resume_from=path, config_digest="one")


class Exploding:
    """f(x) = ½‖x − 1‖², whose value turns to +inf after ``good`` value calls."""

    def __init__(self, xp, good):
        self.xp, self.good, self.calls = xp, good, 0

    def value(self, x):
        self.calls += 1
        if self.calls > self.good:
            return float("inf")
        return 0.5 * float(self.xp.sum((x - 1.0) ** 2))

    def gradient(self, x):
        return x - 1.0

    def lipschitz(self):
        return 1.0


def test_non_finite_cost_keeps_last_good_checkpoint(tmp_path, xp):
    path = tmp_path / "checkpoint.npz"
    term = Exploding(xp, good=3)  # costs at iterations 0, 5, 10 are finite, 15 is not
    solver = FISTA({"backtracking": False}, max_iter=50, tol=0.0, report_every=5)
    solver.setup(xp.zeros((4,)), term)
    with pytest.raises(RunStopped, match="iteration 15"):
        solver.run(checkpoint_path=path, checkpoint_every=5)
    ckpt = load_checkpoint(path)
    assert ckpt.iteration == 10 and solver.state.iteration == 10
    np.testing.assert_array_equal(ckpt.state["x"], to_numpy(solver.state.x))
