"""Linear operators: algebra in ``base``, physical building blocks in their own modules."""
from .base import BlockDiagonal, Composition, Identity, LinearOperator, Scaled, Sum, VStack, vdot

__all__ = ["LinearOperator", "Identity", "Composition", "Sum", "Scaled", "VStack", "BlockDiagonal", "vdot"]
