"""Elementary regularisers: non-negativity, Tikhonov (ℓ2) and spatial Sobolev smoothness.

See docs/regularizers.md for the mathematics and the options.
"""
from __future__ import annotations

from array_api_compat import device

from xhsi.backend import array_namespace
from xhsi.regularizers import Regularizer

__all__ = ["NonNegative", "L2", "Sobolev"]


def _random_example(cls, shape, xp, dtype, **kw):
    reg = cls(**kw)
    reg.setup(shape, xp, dtype)
    return reg


class NonNegative(Regularizer):
    """Indicator of the non-negative orthant: φ(x) = 0 if every x ≥ 0, +∞ otherwise. Its prox
    is the projection max(x, 0), exact and independent of the step and the weight (> 0)."""

    name = "nonnegative"
    smooth = False
    diagonal_metric = "voxels"  # a clip at 0 whatever the positive scaling

    def spatial_reach(self) -> int:
        return 0
    exact_prox = True

    @classmethod
    def example(cls, xp, dtype):
        return _random_example(cls, (4, 16, 16), xp, dtype)

    def value(self, x) -> float:
        xp = array_namespace(x)
        return 0.0 if bool(xp.all(x >= 0)) else float("inf")

    def prox(self, x, step: float):
        xp = array_namespace(x)
        return xp.clip(x, min=0.0)

    def prox_conjugate(self, x, step: float):
        """Prox of (step·weight·φ)*, the indicator of x ≤ 0: min(x, 0) (Moreau: x = prox + this)."""
        xp = array_namespace(x)
        return xp.clip(x, max=0.0)


class L2(Regularizer):
    """Tikhonov: φ(x) = ½‖x‖². Smooth (∇ = weight·x, Lipschitz constant weight) and with the
    exact prox x / (1 + step·weight)."""

    name = "l2"
    smooth = True
    selection_grid = {"weight": (0.03, 0.3, 3.0)}

    def spatial_reach(self) -> int:
        return 0  # ½‖x‖²: voxel by voxel
    exact_prox = True

    @classmethod
    def example(cls, xp, dtype):
        return _random_example(cls, (4, 16, 16), xp, dtype, weight=0.7)

    def value(self, x) -> float:
        xp = array_namespace(x)
        return 0.5 * self.weight * float(xp.sum(x * x))

    def gradient(self, x):
        return self.weight * x

    def lipschitz(self) -> float:
        return self.weight

    def prox(self, x, step: float):
        return x / (1.0 + step * self.weight)

    def prox_conjugate(self, x, step: float):
        """Prox of (step·weight·½‖·‖²)* = ‖·‖² / (2·step·weight)."""
        t = step * self.weight
        return x * (t / (1.0 + t))


class Sobolev(Regularizer):
    """Spatial smoothness φ(x) = ½‖∇x‖², ∇ the forward differences along the last two axes
    (y, x) with Neumann boundary (the difference past the last row/column is 0). Batched
    over leading axes, so it applies to rank maps (k, ny, nx) and to cubes (n_e, ny, nx).

    ∇(weight·φ) = weight·DᵀD x (minus the Neumann Laplacian); its Lipschitz constant is
    weight·‖DᵀD‖ ≤ 8·weight (each 1-D second difference has norm < 4)."""

    name = "sobolev"
    smooth = True
    selection_grid = {"weight": (0.03, 0.3, 3.0)}

    def spatial_reach(self) -> int:
        return 1  # forward differences: one neighbour

    @classmethod
    def example(cls, xp, dtype):
        return _random_example(cls, (3, 16, 16), xp, dtype, weight=0.3)

    @staticmethod
    def _differences(x, xp):
        return x[..., 1:, :] - x[..., :-1, :], x[..., :, 1:] - x[..., :, :-1]

    @staticmethod
    def _difference_adjoint(d, axis: int, xp):
        """Dᵀ of the forward difference along ``axis`` (-2 or -1): (Dᵀd)[i] = d[i-1] − d[i]
        with d[-1] = d[n-1] = 0."""
        if d.shape[axis] == 0:
            shape = list(d.shape)
            shape[axis] = 1
            return xp.zeros(tuple(shape), dtype=d.dtype, device=device(d))
        if axis == -2:
            first, last = d[..., :1, :], d[..., -1:, :]
            mid = d[..., :-1, :] - d[..., 1:, :]
        else:
            first, last = d[..., :1], d[..., -1:]
            mid = d[..., :-1] - d[..., 1:]
        return xp.concat([-first, mid, last], axis=axis)

    def value(self, x) -> float:
        xp = array_namespace(x)
        dy, dx = self._differences(x, xp)
        return 0.5 * self.weight * (float(xp.sum(dy * dy)) + float(xp.sum(dx * dx)))

    def gradient(self, x):
        xp = array_namespace(x)
        dy, dx = self._differences(x, xp)
        lap = self._difference_adjoint(dy, -2, xp) + self._difference_adjoint(dx, -1, xp)
        return self.weight * lap

    def lipschitz(self) -> float:
        return 8.0 * self.weight


