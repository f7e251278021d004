"""Count thinning, the held-out Poisson deviance and the expected deviance
(``xhsi.selection.thinning``, ``xhsi.selection.rules``): exact in distribution, and right on
problems whose answer is known."""
from __future__ import annotations

import math

import numpy as np
import pytest
from xhsi.errors import DataError
from xhsi.operators import Identity
from xhsi.selection import expected_deviance, poisson_deviance, thin_counts
from xhsi.selection.rules import (
    DiscrepancyScore,
    HoldoutScore,
    Path,
    best_discrepancy,
    best_holdout,
    choose,
)
from xhsi.selection.thinning import check_split, fold_rng

MEANS = np.array([0.3, 2.0, 15.0, 400.0])  # expected counts per voxel, from empty to bright


def test_thinning_splits_poisson_counts_into_independent_poisson_parts():
    """Y ~ Poisson(μ), Y₁ ~ Binomial(Y, p): Y₁ and Y − Y₁ have the means and variances pμ and
    (1 − p)μ of Poisson variables, and no covariance; every tolerance is 5 standard errors
    of the Monte Carlo estimate (n draws)."""
    n, p = 40000, 0.3
    rng = np.random.default_rng(7)
    y = rng.poisson(np.broadcast_to(MEANS, (n, MEANS.size)))
    y1, y2 = thin_counts(y, p, fold_rng(0, 0))
    assert np.array_equal(y1 + y2, y) and y1.min() >= 0 and y2.min() >= 0
    for part, lam in ((y1, p * MEANS), (y2, (1 - p) * MEANS)):
        assert np.all(np.abs(part.mean(axis=0) - lam) <= 5 * np.sqrt(lam / n))
        # the sample variance of Poisson(λ) has variance (λ + 2λ²)/n
        assert np.all(np.abs(part.var(axis=0) - lam) <= 5 * np.sqrt((lam + 2 * lam**2) / n))
    cov = ((y1 - y1.mean(axis=0)) * (y2 - y2.mean(axis=0))).mean(axis=0)
    assert np.all(np.abs(cov) <= 5 * np.sqrt(p * (1 - p) * MEANS**2 / n))
    # and the part kept is not Y's own share (a deterministic split has the wrong variance)
    assert np.all(np.abs(y1.var(axis=0) - p**2 * MEANS) > 5 * np.sqrt((MEANS + 2 * MEANS**2) / n) * p**2)


def test_folds_are_seeded_and_independent():
    y = np.full((50, 50), 20.0)
    a1, _ = thin_counts(y, 0.5, fold_rng(3, 0))
    b1, _ = thin_counts(y, 0.5, fold_rng(3, 0))
    c1, _ = thin_counts(y, 0.5, fold_rng(3, 1))
    d1, _ = thin_counts(y, 0.5, fold_rng(4, 0))
    assert np.array_equal(a1, b1)
    assert abs(np.corrcoef(a1.ravel(), c1.ravel())[0, 1]) < 0.1
    assert abs(np.corrcoef(a1.ravel(), d1.ravel())[0, 1]) < 0.1


def test_thinning_refuses_what_is_not_counts():
    with pytest.raises(DataError, match="whole numbers"):
        thin_counts(np.array([1.0, 2.5]), 0.5, fold_rng(0, 0))
    with pytest.raises(DataError, match="whole numbers"):
        thin_counts(np.array([1.0, -1.0]), 0.5, fold_rng(0, 0))
    with pytest.raises(DataError, match="fraction nearer 0.5"):
        check_split("xmm", 150.0, 0.2)
    check_split("xmm", 1000.0, 0.2)


def test_poisson_deviance_known_values(xp):
    y = xp.asarray([0.0, 4.0, 3.0], dtype=xp.float64)
    mu = xp.asarray([2.0, 2.0, 3.0], dtype=xp.float64)
    want = 2 * 2.0 + 2 * (2.0 - 4.0 + 4.0 * math.log(2.0)) + 0.0
    assert poisson_deviance(y, mu) == pytest.approx(want, rel=1e-12)
    assert poisson_deviance(y, xp.asarray([1e-9, 4.0, 3.0], dtype=xp.float64)) == pytest.approx(2e-9, abs=1e-12)


def test_expected_deviance_matches_monte_carlo():
    """E[D(Y; μ)] for Y ~ Poisson(μ): ≈ 1 for bright voxels, far below 1 for faint ones."""
    rng = np.random.default_rng(1)
    n = 200000
    for mu in (0.05, 0.7, 4.0, 90.0):
        y = rng.poisson(mu, n).astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            d = 2 * (mu - y + np.where(y > 0, y * np.log(np.where(y > 0, y, 1) / mu), 0.0))
        assert expected_deviance(np.array([mu])) == pytest.approx(d.mean(), abs=5 * d.std() / math.sqrt(n))
    assert expected_deviance(np.array([1e4])) == pytest.approx(1.0, rel=1e-4)
    assert expected_deviance(np.array([0.01])) < 0.1


def test_the_held_out_score_is_lowest_at_the_true_sky_and_has_the_expected_value(xp):
    """A fit of Y₁ = thinned counts, through the full-exposure operator (here the identity),
    is p × the sky: at the truth, the held-out deviance of Y₂ averages the expected deviance
    of Poisson((1 − p)μ), and a sky scaled by 0.8 or 1.25 scores worse."""
    p = 0.4
    mu = np.geomspace(0.5, 300.0, 2000)
    op = Identity((mu.size,))
    scores = {0.8: [], 1.0: [], 1.25: []}
    rng = np.random.default_rng(5)
    for fold in range(20):
        y = rng.poisson(mu)
        _, y2 = thin_counts(y, p, fold_rng(0, fold))
        score = HoldoutScore(["obs"], [xp.asarray(y2)], [None], p, xp)
        for scale in scores:
            path = Path()
            score([op], xp.asarray(scale * p * mu), path, 0)
            scores[scale].append(path.totals()[0])
    want = expected_deviance((1 - p) * mu)
    spread = np.std(scores[1.0]) / math.sqrt(len(scores[1.0]))
    assert np.mean(scores[1.0]) == pytest.approx(want, abs=5 * spread)
    assert np.mean(scores[1.0]) < min(np.mean(scores[0.8]), np.mean(scores[1.25])) - 10 * spread


def test_choice_of_iteration_and_candidate():
    def path(iterations, values, expected=None):
        p = Path(list(iterations), [{"a": v} for v in values])
        p.expected = list(expected or [])
        return p

    # two folds of one candidate: the fold-averaged minimum, the shorter fold carried forward
    best = best_holdout([path([0, 10, 20, 30], [9, 5, 3, 6]), path([0, 10, 20], [9, 4, 5])])
    assert (best.iteration, best.score) == (20, pytest.approx(4.0))
    assert best_holdout([path([0, 10, 20, 30], [9, 5, 3, 2]), path([0, 10, 20], [9, 4, 5])]).iteration == 30
    # discrepancy: the first iteration where D <= E
    best = best_discrepancy([path([0, 10, 20, 30], [30, 12, 9, 7], [10, 10, 10, 10])])
    assert best.iteration == 20 and best.extra["deviance"] == 9
    # a fit ends once the held-out deviance has not improved for `patience` scores, or once D <= E
    assert not HoldoutScore.done(path([0, 10, 20, 30], [9, 5, 3, 4]), 2)
    assert HoldoutScore.done(path([0, 10, 20, 30, 40], [9, 5, 3, 4, 3.5]), 2)
    assert DiscrepancyScore.done(path([0, 10], [30, 9], [10, 10]), 1)
    assert not DiscrepancyScore.done(path([0, 10], [30, 12], [10, 10]), 1)
    # the lowest score wins, ties go to the earlier iteration; failed candidates are skipped
    a, b = best_holdout([path([0, 10], [5, 3])]), best_holdout([path([0, 10, 20], [5, 4, 3])])
    assert choose([None, b, a]) == 2
    assert choose([b, None]) == 0


def test_a_scored_path_comes_back_from_its_dict_with_its_earlier_passes():
    import dataclasses

    from xhsi.selection.rules import Path as ScoredPath

    first = ScoredPath([0, 10], [{"a": 3.0}, {"a": 2.0}])
    path = ScoredPath([0, 10, 20], [{"a": 2.0}, {"a": 1.5}, {"a": 1.6}], earlier=[first])
    back = ScoredPath.from_dict(dataclasses.asdict(path))  # what a Dask task returns
    assert back == path and isinstance(back.earlier[0], ScoredPath)
