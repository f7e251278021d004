"""Data-driven choice of a run's hyper-parameters and stopping iteration (docs/selection.md):
count thinning and the held-out Poisson deviance (``thinning``), the candidates and the
[selection] checks (``candidates``), the rules (``rules``) and the driver (``driver``)."""
from __future__ import annotations

from .candidates import Candidate, candidate_config, check_selection, default_candidates, selection_reason
from .driver import Selection, run_selection, select_for_run
from .thinning import expected_deviance, poisson_deviance, thin_counts

__all__ = ["Candidate", "Selection", "candidate_config", "check_selection", "default_candidates",
           "expected_deviance", "poisson_deviance", "run_selection", "select_for_run", "selection_reason",
           "thin_counts"]
