"""The selection rules: what is scored along each fit's path, and how (candidate, stopping
iteration) is chosen from the scores.

- ``holdout`` (default): each fold fits the thinned counts Y₁ (fraction p) and scores the
  held-out Y₂ by its Poisson deviance under the same sky seen with exposure × (1 − p);
  the choice minimises the fold-averaged deviance over every candidate and scored
  iteration.
- ``discrepancy``: each candidate fits the full counts; along the path the deviance D of
  the data is compared with E[D], its expectation were the model the truth
  (``thinning.expected_deviance``); each candidate stops at the first scored iteration
  where D ≤ E (Morozov's discrepancy principle as a stopping rule; for Poisson data:
  Bertero et al. 2010, Inverse Problems 26, 105004), and the candidate whose D/E there
  is nearest 1 is chosen (ties: the earliest stop).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..backend import to_numpy
from .thinning import expected_deviance, poisson_deviance


@dataclass
class Path:
    """What one fit recorded: per scored iteration, the score of each observation (holdout:
    held-out deviance; discrepancy: deviance and expected deviance)."""

    iterations: list[int] = field(default_factory=list)
    by_observation: list[dict[str, float]] = field(default_factory=list)
    expected: list[float] = field(default_factory=list)  # discrepancy only: Σ E[D]
    #: A fit in several basis passes (``ImagingProblem.selection_passes``): the paths of
    #: the passes before this one, each started from the best iterate of the one before.
    earlier: list[Path] = field(default_factory=list)

    def totals(self) -> list[float]:
        return [sum(row.values()) for row in self.by_observation]

    @classmethod
    def from_dict(cls, data: dict) -> Path:
        """The Path whose ``dataclasses.asdict`` is ``data`` (a Dask task's result), the
        paths of its earlier passes included."""
        data = dict(data)
        data["earlier"] = [cls.from_dict(e) for e in data.get("earlier") or []]
        return cls(**data)


class HoldoutScore:
    """Scores a fit of Y₁ (counts ``fit_counts``, background p·B) on Y₂. The fit's operators
    are the full-exposure ones, so its cube is p × the sky: Y₂'s expected counts are
    ((1 − p)/p)·A(x) + (1 − p)·B."""

    name = "holdout"

    def __init__(self, names, heldout, backgrounds, fraction: float, xp):
        self.names, self.heldout, self.backgrounds = list(names), list(heldout), list(backgrounds)
        self.ratio, self.keep, self.xp = (1.0 - fraction) / fraction, 1.0 - fraction, xp

    def __call__(self, operators, x, path: Path, iteration: int) -> None:
        row = {}
        for name, op, y2, b in zip(self.names, operators, self.heldout, self.backgrounds):
            mean = self.ratio * op.apply(x)
            if b is not None:
                mean = mean + self.keep * b
            row[name] = poisson_deviance(y2, mean, self.xp)
        path.iterations.append(int(iteration))
        path.by_observation.append(row)

    @staticmethod
    def done(path: Path, patience: int) -> bool:
        """The held-out deviance has not improved over the last ``patience`` scores."""
        totals = path.totals()
        return len(totals) - 1 - totals.index(min(totals)) >= patience


class DiscrepancyScore:
    """Scores a fit of the full counts by its deviance and the deviance expected at its own
    model (one host transfer of the expected counts per scored iteration)."""

    name = "discrepancy"

    def __init__(self, names, counts, backgrounds, xp):
        self.names, self.counts, self.backgrounds, self.xp = list(names), list(counts), list(backgrounds), xp

    def __call__(self, operators, x, path: Path, iteration: int) -> None:
        row, expected = {}, 0.0
        for name, op, y, b in zip(self.names, operators, self.counts, self.backgrounds):
            mean = op.apply(x)
            if b is not None:
                mean = mean + b
            row[name] = poisson_deviance(y, mean, self.xp)
            expected += expected_deviance(to_numpy(mean))
        path.iterations.append(int(iteration))
        path.by_observation.append(row)
        path.expected.append(expected)

    @staticmethod
    def done(path: Path, patience: int) -> bool:
        """The deviance has reached its expectation (the rule's stop; ``patience`` unused)."""
        return sum(path.by_observation[-1].values()) <= path.expected[-1]


@dataclass
class Choice:
    """A candidate's best point: ``iteration``, ``score`` (the rule's number, lower is
    better) and the per-observation numbers behind it."""

    iteration: int
    score: float
    by_observation: dict[str, float]
    extra: dict = field(default_factory=dict)


def _padded(paths: list[Path]) -> tuple[list[int], list[list[dict]]]:
    """The union of the folds' scored iterations, each fold's rows carried forward past its
    end (a fit that met its tolerance stays where it stopped)."""
    iterations = sorted({k for p in paths for k in p.iterations})
    rows = []
    for p in paths:
        out, j = [], 0
        for k in iterations:
            while j + 1 < len(p.iterations) and p.iterations[j + 1] <= k:
                j += 1
            out.append(p.by_observation[j])
        rows.append(out)
    return iterations, rows


def best_holdout(paths: list[Path]) -> Choice:
    """The iteration of lowest fold-averaged held-out deviance (ties: the earliest), over
    the folds' paths of one candidate."""
    iterations, rows = _padded(paths)
    best = None
    for i, k in enumerate(iterations):
        names = rows[0][i].keys()
        mean = {n: sum(r[i][n] for r in rows) / len(rows) for n in names}
        total = sum(mean.values())
        if math.isnan(total):
            continue
        if best is None or total < best.score:
            best = Choice(k, total, mean)
    return best


def best_discrepancy(paths: list[Path]) -> Choice:
    """The first scored iteration where the deviance is at most its expectation (else the
    one nearest it); the score is |D/E − 1| there."""
    path = paths[0]
    best = None
    for k, row, e in zip(path.iterations, path.by_observation, path.expected):
        d = sum(row.values())
        if math.isnan(d):
            continue
        gap = abs(d / e - 1.0) if e > 0 else math.inf
        choice = Choice(k, gap, dict(row), {"deviance": d, "expected_deviance": e})
        if d <= e:
            return choice
        if best is None or gap < best.score:
            best = choice
    return best


def choose(best: list[Choice | None]) -> int:
    """Index of the chosen candidate: the lowest score (candidates that failed are None);
    ties within 1e-9 relative go to the earlier iteration, then the earlier candidate."""
    ranked = [(c.score, c.iteration, i) for i, c in enumerate(best) if c is not None and not math.isnan(c.score)]
    if not ranked:
        raise ValueError("no candidate to choose")  # programmer error: the driver checks first
    low = min(s for s, _, _ in ranked)
    tied = [r for r in ranked if r[0] <= low + 1e-9 * abs(low)]
    return min(tied, key=lambda r: (r[1], r[2]))[2]
