"""The in-place (numpy) paths of the solvers and likelihoods write only to arrays they
allocated: the caller's x0, the data, the states kept by the run loop and the arrays the
terms return stay untouched."""
from __future__ import annotations

import numpy as np
import pytest

from xhsi.backend import Backend, to_numpy
from xhsi.likelihoods import DataTerm, Gaussian, Poisson
from xhsi.operators import Identity
from xhsi.solvers import FISTA, ISTA, Composite, NonNegative

OPTIONS = [(FISTA, {}), (FISTA, {"monotone": True}), (FISTA, {"restart": "none"}),
           (FISTA, {"backtracking": False, "step": 0.05}), (ISTA, {})]


def _problem(be: Backend, n: int = 24):
    rng = np.random.default_rng(3)
    counts = be.asarray(rng.poisson(5.0, n).astype(np.float64))
    background = be.asarray(np.full(n, 0.5))
    term = DataTerm(Poisson(), Identity((n,)), counts, background=background)
    return term, counts, background, be.asarray(np.full(n, 2.0))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cls, options", OPTIONS, ids=[f"{c.name}-{o}" for c, o in OPTIONS])
def test_solver_leaves_inputs_and_kept_states_alone(backend_name, dtype, cls, options):
    be = Backend(backend_name, dtype)
    term, counts, background, x0 = _problem(be)
    kept = [to_numpy(a).copy() for a in (x0, counts, background)]
    solver = cls(options, max_iter=30, tol=0.0)
    solver.setup(x0, term, NonNegative())
    solver.step()
    first = solver.state
    first_copies = {k: to_numpy(v).copy() for k, v in vars(first).items() if hasattr(v, "shape")}
    solver.run()
    for before, after in zip(kept, (x0, counts, background)):
        np.testing.assert_array_equal(to_numpy(after), before)
    for name, copy in first_copies.items():  # a state the run loop may hold for rollback
        np.testing.assert_array_equal(to_numpy(getattr(first, name)), copy, err_msg=name)
    assert solver.state.x is not x0 and solver.iteration == 30


class _Held:
    """A smooth term whose gradient is an array it keeps (and would notice being changed)."""

    def __init__(self, g):
        self.g = g

    def value(self, x):
        return 0.0

    def gradient(self, x):
        return self.g

    def value_and_gradient(self, x):
        return 0.0, self.g


def test_composite_does_not_write_into_returned_gradients(backend_name):
    be = Backend(backend_name, "float32")
    held = [be.asarray(np.full(5, float(i + 1))) for i in range(4)]
    total = Composite([_Held(g) for g in held])
    _, g = total.value_and_gradient(held[0])
    np.testing.assert_array_equal(to_numpy(g), np.full(5, 10.0))
    np.testing.assert_array_equal(to_numpy(total.gradient(held[0])), np.full(5, 10.0))
    for i, h in enumerate(held):
        np.testing.assert_array_equal(to_numpy(h), np.full(5, float(i + 1)))


@pytest.mark.parametrize("kind", ["poisson", "gaussian", "gaussian-variance"])
def test_likelihood_leaves_model_and_data_alone(backend, kind):
    be = backend
    rng = np.random.default_rng(4)
    model = be.asarray(rng.uniform(-0.2, 4.0, 6))  # below the Poisson floor too
    data = be.asarray(rng.poisson(2.0, 6).astype(np.float64))
    likelihood = {"poisson": Poisson(), "gaussian": Gaussian(),
                  "gaussian-variance": Gaussian(variance=be.asarray(np.full(6, 2.0)))}[kind]
    m0, y0 = to_numpy(model).copy(), to_numpy(data).copy()
    value, grad = likelihood.value_and_gradient(model, data)
    assert float(value) == pytest.approx(likelihood.value(model, data), rel=1e-6)
    np.testing.assert_allclose(to_numpy(grad), to_numpy(likelihood.gradient(model, data)), rtol=1e-6)
    np.testing.assert_array_equal(to_numpy(model), m0)
    np.testing.assert_array_equal(to_numpy(data), y0)
