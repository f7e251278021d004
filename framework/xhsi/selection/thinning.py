"""Count thinning (data fission) and the Poisson deviance the selection scores with.

If Y ~ Poisson(μ), then Y₁ ~ Binomial(Y, p) and Y₂ = Y − Y₁ are independent, Poisson with
means pμ and (1 − p)μ (the thinning property of the Poisson process; as a way to split one
data set into a fit part and a test part: Leiner, Duan, Wasserman & Ramdas 2023, JASA,
"Data fission"). A fit of Y₁ through the forward operators A_k scaled by p is therefore
scored, with no model of the noise beyond Poisson, by the likelihood of Y₂ under the same
sky seen through A_k scaled by 1 − p.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import DataError

#: The stream of the thinning draws (``"sele"``), apart from the simulation's and the
#: gradient noise's, so that a selection shifts no other draw of the run.
THINNING_STREAM = 0x73656C65
#: Fewest counts each part of a split must expect in every observation: below that the
#: held-out deviance is dominated by a handful of counts and its fold-to-fold scatter by
#: far exceeds the differences between candidates.
MIN_PART_COUNTS = 100


def fold_rng(seed: int, fold: int) -> np.random.Generator:
    """The generator of fold ``fold``'s split: seeded by the run's seed, independent between
    folds (a stream of its own per fold)."""
    return np.random.default_rng([int(seed), THINNING_STREAM, int(fold)])


def thin_counts(counts, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(Y₁, Y₂): Y₁ ~ Binomial(Y, ``fraction``) voxel by voxel and Y₂ = Y − Y₁, float64 numpy
    arrays of ``counts``' shape. ``counts`` must hold non-negative whole numbers."""
    y = np.asarray(counts, dtype=np.float64)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")  # programmer error: the schema checks it
    whole = np.rint(y)
    if y.size and (np.any(y < 0) or np.max(np.abs(y - whole)) > 1e-3):
        raise DataError("count thinning needs counts: non-negative whole numbers in every voxel. Use "
                        "[selection] select = \"off\" (and set the regularisers and max_iter by hand) for "
                        "data that are not counts.")
    y1 = rng.binomial(whole.astype(np.int64), fraction).astype(np.float64)
    return y1, whole - y1


def check_split(name: str, total: float, fraction: float) -> None:
    """Refuse a split that leaves fewer than ``MIN_PART_COUNTS`` expected counts in either
    part of observation ``name`` (``total`` counts)."""
    smaller = min(fraction, 1.0 - fraction) * total
    if smaller < MIN_PART_COUNTS:
        raise DataError(f"observation `{name}` has {total:.0f} counts: a thinning with fraction {fraction:g} leaves "
                        f"~{smaller:.0f} in one part, fewer than the {MIN_PART_COUNTS} a held-out score needs. Use a "
                        "fraction nearer 0.5, rule = \"discrepancy\" (no split), or select = \"off\".")


def poisson_deviance(counts, mean, xp=None) -> float:
    """2 Σ [μ − y + y·log(y/μ)] (terms with y = 0 are μ), the Poisson deviance of the counts
    ``counts`` under the means ``mean`` (same shape, any backend), summed in float64."""
    if xp is None:
        from ..backend import array_namespace

        xp = array_namespace(counts, mean)
    y = xp.astype(counts, xp.float64)
    mu = xp.clip(xp.astype(mean, xp.float64), min=1e-300)
    positive = y > 0
    log_ratio = xp.where(positive, xp.log(xp.where(positive, y, xp.ones_like(y)) / mu), xp.zeros_like(y))
    return 2.0 * float(xp.sum(mu - y + y * log_ratio))


# -- the expected deviance (the discrepancy rule) ------------------------------------------
_GRID = np.geomspace(1e-6, 60.0, 600)


def _expected_unit_deviance(mu: float) -> float:
    """E[2(μ − Y + Y log(Y/μ))] for Y ~ Poisson(μ), by the sum over Y (exact to 1e-12)."""
    k = np.arange(0, int(mu + 12.0 * math.sqrt(mu) + 30.0))
    log_pmf = k * math.log(mu) - mu - np.array([math.lgamma(v + 1.0) for v in k])
    pmf = np.exp(log_pmf)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(k > 0, k * np.log(np.where(k > 0, k, 1.0) / mu), 0.0)
    return float(np.sum(pmf * 2.0 * (mu - k + term)))


_TABLE = np.array([_expected_unit_deviance(m) for m in _GRID])


def expected_deviance(mean) -> float:
    """Σ over voxels of E[D(Y; μ)] for Y ~ Poisson(μ), μ = ``mean`` (a numpy array): the
    deviance a model equal to the truth leaves on average. It is ≈ 1 per voxel for μ ≫ 1
    (1 + 1/(6μ), used above μ = 60) and → 0 for μ → 0, so counting one per data voxel (the
    Gaussian discrepancy principle) would over-regularise low-count data (Bertero et al.
    2010, Inverse Problems 26, 105004, discuss the same bias)."""
    mu = np.asarray(mean, dtype=np.float64).ravel()
    out = np.empty_like(mu)
    big = mu > _GRID[-1]
    out[big] = 1.0 + 1.0 / (6.0 * mu[big])
    small = ~big
    out[small] = np.interp(np.log(np.clip(mu[small], _GRID[0], None)), np.log(_GRID), _TABLE)
    out[small & (mu < _GRID[0])] *= mu[small & (mu < _GRID[0])] / _GRID[0]
    return float(np.sum(out))
