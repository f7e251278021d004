"""Iterative solvers: ISTA/FISTA (Beck & Teboulle 2009), PALM/iPALM (Bolte, Sabach &
Teboulle 2014; Pock & Sabach 2016) and a projected L-BFGS over the same blocks, the terms
problems hand them, and checkpoints.

See docs/solvers.md for the algorithms, options and stopping rules.
"""
from .base import Composite, Precomposed, SmoothTerm, Solver, SolverResult, lipschitz_of, value_and_gradient
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .fista import FISTA, ISTA, FistaState
from .palm import PALM, Block, PalmState
from .quasi_newton import BlockLBFGS, LbfgsState
from .prox import Box, LowerBound, NonNegative, ProxChain, ProxTerm, Zero

__all__ = [
    "Solver", "SolverResult", "SmoothTerm", "ProxTerm", "Composite", "Precomposed", "ProxChain", "NonNegative", "LowerBound", "Box", "Zero",
    "value_and_gradient", "lipschitz_of", "ISTA", "FISTA", "FistaState", "PALM", "Block", "PalmState", "BlockLBFGS", "LbfgsState",
    "Checkpoint", "save_checkpoint", "load_checkpoint",
]
