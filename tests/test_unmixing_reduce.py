"""``problem = "unmixing"`` tabulates its spectra by default (``reduce``, ``table_tol``:
``xhsi.problems.reduction``): the same cost and gradients as the exact models at the same
point to the table's tolerance, close maps after a few iterations, result cubes from the
exact models, and the config errors."""
from __future__ import annotations

import numpy as np
import pytest

from xhsi import plugins
from xhsi.config import load_config
from xhsi.errors import ConfigError
from xhsi.problems.unmixing import Unmixing
from xhsi.runner import check_config, prepare

from test_unmixing import tiny

TOL = 1e-3  # table_tol of these tests (the default)


def _problem(path, reduce, overrides=()):
    cfg = load_config(path, [f'problem.reduce="{reduce}"', f"problem.table_tol={TOL}", *overrides])
    prep = prepare(cfg)
    return Unmixing(cfg, prep.backend, prep.grid, prep.observations, [], plugins.get("likelihood", "poisson"),
                    cfg.problem), cfg


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The tiny CasA-like unmixing built with tables and with the exact models, from the same
    data-only start (``init_bin = 0``: back-projection and the init values, no pixel fits),
    so that both have the same variables and flux scale."""
    path = tiny(tmp_path_factory.mktemp("reduce"), max_iter=3)
    built = {}
    for reduce in ("table", "none"):
        problem, _ = _problem(path, reduce, ["problem.init_bin=0"])
        built[reduce] = (problem, *problem.build())
    return built


def test_auto_tabulates_unmixing(tmp_path):
    problem, _ = _problem(tiny(tmp_path), "auto")
    assert [t.rank >= 1 for t in problem.tables] == [True, True]
    assert [c.name for c in problem.exact_components] == ["thermal", "synchrotron"]
    # refined until within TOL or at MAX_NODES: on these 125 eV bins the broadened lines
    # crossing bins as z moves stop the z axis at 128 intervals, 3.4e-3 (run.json reports it)
    assert all(0 < t.table_error < 10 * TOL for t in problem.tables)


def test_same_cost_and_gradients_at_the_same_point(pair):
    table, _, value_t, blocks_t, mixture_t = pair["table"]
    exact, x0, value_e, blocks_e, mixture_e = pair["none"]
    assert table.tables and not exact.tables
    np.testing.assert_array_equal(mixture_t.scale, mixture_e.scale)
    xs = [np.asarray(x) + 0.05 if i < mixture_e.n_amp else np.asarray(x) for i, x in enumerate(x0)]
    # Expected counts: the tables' spectra are within TOL (relative L2 per spectrum) of the
    # exact ones, and the folded operator is exact, so the counts are too.
    obs = exact.observations[0]
    m_exact = obs.forward.apply(mixture_e.cube(xs))
    _, (op,) = table._mixture(mixture_t.n_amp, mixture_t.scale)
    m_table = op.apply(mixture_t.cube(xs))
    assert np.linalg.norm(m_table - m_exact) <= TOL * np.linalg.norm(m_exact)
    # The cost f = Σ (m − y log m) + const moves by Σ (1 − y/m) δm ≤ Σ |m − y| · |δm|/m.
    y = np.asarray(obs.counts)
    bound = float(np.sum(np.abs(m_exact - y) * np.abs(m_table - m_exact) / m_exact))
    assert abs(value_t(xs) - value_e(xs)) <= 1.01 * bound + 1e-9
    assert bound < TOL * float(np.sum(np.abs(m_exact - y)))
    # Block gradients (the PALM steps) agree to a few times the tolerance.
    for bt, be in zip(blocks_t, blocks_e):
        gt, ge = np.asarray(bt.gradient(xs)), np.asarray(be.gradient(xs))
        assert np.linalg.norm(gt - ge) <= 10 * TOL * np.linalg.norm(ge), bt.name


def test_maps_close_after_a_few_iterations_and_cubes_exact(pair):
    solver = lambda: plugins.get("solver", "palm").from_config(pair["none"][0].config.solver)  # noqa: E731
    result_t = pair["table"][0].solve(solver())
    result_e = pair["none"][0].solve(solver())
    assert result_t.metadata["spectral_tables"]["thermal"]["rank"] >= 1
    assert result_e.metadata["spectral_tables"] == {}
    for name in ("thermal.kT", "thermal.z", "synchrotron.index", "thermal.amplitude"):
        a, b = result_t.maps[name], result_e.maps[name]
        scale = np.max(np.abs(b)) if name != "thermal.z" else 0.02  # z: the bounds' half-width
        assert np.max(np.abs(a - b)) <= 0.02 * scale, (name, np.max(np.abs(a - b)))
    # The result's cubes come from the exact models at the tabulated run's solution.
    problem, _, _, _, mixture = pair["table"]
    out = problem._output_mixture(mixture)
    assert [c.model for c in out.components] == [c.model for c in problem.exact_components]
    assert result_t.arrays["cube"].shape == (40, 8, 8)


def test_auto_keeps_exact_models_for_four_fitted_maps(tmp_path):
    path = tiny(tmp_path)
    path.write_text(path.read_text().replace(
        'model = "thermal"\noptions = { fit_abundance = false, sigma_v_kms = 1000.0 }',
        'model = "absorption * thermal"\noptions = { thermal = { fit_abundance = true, sigma_v_kms = 1000.0 } }'))
    cfg = load_config(path)
    check_config(cfg)  # auto: accepted, with the exact models
    prep = prepare(cfg)
    problem = Unmixing(cfg, prep.backend, prep.grid, prep.observations, [], plugins.get("likelihood", "poisson"),
                       cfg.problem)
    assert len(problem.components[0].slots) == 4
    assert problem.tables == [] and problem.components is problem.exact_components
    with pytest.raises(ConfigError, match="fits 4 parameter maps.*tabulates at most 3.*reduce = \"none\""):
        check_config(load_config(path, ['problem.reduce="table"']))


@pytest.mark.parametrize("override, fragment", [
    ('problem.reduce="tabel"', "reduce"),
    ("problem.table_tol=0.5", "table_tol"),
    ("problem.table_tol=0", "table_tol"),
])
def test_reduce_option_errors(tmp_path, override, fragment):
    with pytest.raises(ConfigError, match=fragment):
        check_config(load_config(tiny(tmp_path), [override]))


def test_the_summary_says_when_a_table_missed_its_tolerance(tmp_path):
    """A table that reached its size limit is less accurate than table_tol: the run says so."""
    from xhsi.outputs import summary
    from xhsi.results import Result

    tables = {"thermal": {"rank": 82, "intervals": [64, 128], "relative_error": 3.5e-3, "tolerance": 1e-3},
              "synchrotron": {"rank": 3, "intervals": [16], "relative_error": 2e-4, "tolerance": 1e-3}}
    text = summary(Result(arrays={}, metadata={"problem": "unmixing", "spectral_tables": tables}), tmp_path)
    assert "`thermal` is within 3.5e-03" in text and "table_tol = 0.001" in text and "`synchrotron`" not in text
