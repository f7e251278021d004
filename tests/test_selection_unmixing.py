"""The selection on a mixture (``unmixing``, ``fusion_unmixing``; docs/unmixing.md,
"Choosing the amplitude prior"): its default candidates, when it runs, and a run that
chooses from held-out likelihood."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from xhsi.config import load_config
from xhsi.errors import ConfigError
from xhsi.selection.candidates import AMPLITUDE_K_GRID, check_selection, default_candidates, selection_reason

sys.path.insert(0, str(Path(__file__).parent))
from test_unmixing import tiny  # noqa: E402


def test_a_mixture_selects_only_when_asked(tmp_path):
    path = tiny(tmp_path)
    assert selection_reason(load_config(path)) is None  # the default: no selection, no extra fits
    assert "auto" in selection_reason(load_config(path, ['selection.select="auto"']))


def test_its_default_candidates_are_the_amplitude_prior_of_every_fitted_amplitude(tmp_path):
    cands = default_candidates(load_config(tiny(tmp_path), ['selection.select="auto"']))
    assert [c.name for c in cands] == ["no amplitude prior"] + [f"amplitude_k={k:g}" for k in AMPLITUDE_K_GRID[1:]]
    for cand, k in zip(cands, AMPLITUDE_K_GRID):
        assert cand.overrides == {"components.thermal.amplitude_k": k, "components.synchrotron.amplitude_k": k}
    fixed = tiny(tmp_path, sync_extra="fixed_amplitude = true")
    cands = default_candidates(load_config(fixed, ['selection.select="auto"']))
    assert all(list(c.overrides) == ["components.thermal.amplitude_k"] for c in cands)


def test_a_candidate_may_set_a_component_and_is_checked_like_one(tmp_path):
    path = tiny(tmp_path)
    good = ['selection.select="auto"', 'selection.candidates=[{components = {thermal = {parameter_k = 0.5}}}, '
                                       '{components = {thermal = {parameter_k = 2.0}}}]']
    assert len(check_selection(load_config(path, good))) == 2
    bad = ['selection.select="auto"', 'selection.candidates=[{components = {thermal = {amplitude_k = -1.0}}}, '
                                      '{components = {thermal = {amplitude_k = 1.0}}}]']
    with pytest.raises(ConfigError, match="candidate 0"):
        check_selection(load_config(path, bad))


def test_an_unmixing_run_chooses_its_amplitude_prior_and_stop_from_held_out_counts(tmp_path):
    from xhsi.runner import run

    path = tiny(tmp_path, max_iter=4)
    cfg = load_config(path, ['selection.select="auto"', "selection.folds=1", "selection.every=2",
                             'selection.candidates=[{components = {thermal = {amplitude_k = 0.0}}}, '
                             '{components = {thermal = {amplitude_k = 2.0}}}]'])
    result = run(cfg, out=tmp_path / "run", quiet=True)
    sel = result.metrics["selection"]
    assert len(sel["candidates"]) == 2 and all("score" in c for c in sel["candidates"])
    best = min(sel["candidates"], key=lambda c: c["score"])
    assert sel["chosen"]["overrides"] == best["overrides"] and sel["chosen"]["iteration"] in (0, 2, 4)
    chosen = load_config(tmp_path / "run" / "config.selected.toml")
    assert chosen.components[0].amplitude_k == best["overrides"]["components.thermal.amplitude_k"]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["selection"]["rule"] == "holdout"
    assert result.metadata["n_iter"] == sel["chosen"]["iteration"]


def test_a_problem_that_cannot_fit_a_fold_is_refused_with_those_that_can(tmp_path):
    cfg = load_config(tiny(tmp_path), ['run.problem="pixelfit"', 'selection.select="auto"'])
    with pytest.raises(ConfigError, match="works for the problems deconvolution, fusion, fusion_unmixing, unmixing, "
                                          "not `pixelfit`"):
        check_selection(cfg)
