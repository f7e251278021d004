"""Iterative solvers: ISTA/FISTA (Beck & Teboulle 2009) and PALM/iPALM (Bolte, Sabach &
Teboulle 2014; Pock & Sabach 2016), the terms problems hand them, and checkpoints.

See docs/solvers.md for the algorithms, options and stopping rules.
"""
from .base import (Composite, NonNegative, Precomposed, ProxChain, ProxTerm, SmoothTerm, Solver, SolverResult, Zero,
                   lipschitz_of, value_and_gradient)
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .fista import FISTA, ISTA, FistaState
from .palm import PALM, Block, PalmState

__all__ = [
    "Solver", "SolverResult", "SmoothTerm", "ProxTerm", "Composite", "Precomposed", "ProxChain", "NonNegative", "Zero",
    "value_and_gradient", "lipschitz_of", "ISTA", "FISTA", "FistaState", "PALM", "Block", "PalmState",
    "Checkpoint", "save_checkpoint", "load_checkpoint",
]
