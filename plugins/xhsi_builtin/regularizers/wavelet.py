"""Sparsity in an orthonormal wavelet basis: φ(x) = λ‖detail(Wx)‖₁, W the periodic 2-D DWT
(Haar or Daubechies-4) of every (ny, nx) slice. Because W is orthonormal the prox is exact:
soft-threshold the detail coefficients by step·weight·λ and invert, since prox_{f∘W} =
W* ∘ prox_f ∘ W for orthonormal W (Combettes & Wajs 2005, Multiscale Model. Simul. 4, 1168;
Daubechies, Defrise & De Mol 2004, Comm. Pure Appl. Math. 57, 1413).
"""
from __future__ import annotations

from dataclasses import dataclass

from xhsi.backend import array_namespace
from xhsi.regularizers import Regularizer
from xhsi.schema import option
from xhsi.sparsity.wavelets import WAVELETS, dwt2, dwt2_approximation_shape, dwt2_keep_approximation, idwt2, soft_threshold

__all__ = ["Wavelet2dL1"]


@dataclass
class Wavelet2dL1Options:
    wavelet: str = option("haar", choices=tuple(WAVELETS), doc="orthonormal filter bank: haar or db2 (Daubechies 4 taps)")
    levels: int = option(2, min=1, unit="levels", doc="decomposition levels; ny and nx must be divisible by 2**levels")
    threshold: float = option(1.0, min=0.0, unit="units of the variable",
                              doc="λ: the detail coefficients are soft-thresholded by step·weight·λ")


class Wavelet2dL1(Regularizer):
    """ℓ1 norm of the orthonormal 2-D DWT detail coefficients (approximation free); exact prox."""

    name = "wavelet2d_l1"
    Options = Wavelet2dL1Options
    selection_grid = {"options.threshold": (0.03, 0.3, 3.0)}
    smooth = False
    exact_prox = True

    @classmethod
    def example(cls, xp, dtype):
        reg = cls(cls.Options(wavelet="db2", levels=2, threshold=0.4), weight=0.8)
        reg.setup((4, 16, 16), xp, dtype)
        return reg

    def setup(self, shape, xp, dtype) -> None:
        super().setup(shape, xp, dtype)
        dwt2_approximation_shape(tuple(shape), self.options.levels)  # ShapeError when sizes do not divide

    def _w(self, x):
        return dwt2(x, self.options.wavelet, self.options.levels)

    def _winv(self, c):
        return idwt2(c, self.options.wavelet, self.options.levels)

    def spatial_reach(self) -> int:
        """L levels of a 2-tap (haar) or 4-tap (db2) filter bank: about 2^L × the taps."""
        return 2 ** int(self.options.levels) * (2 if self.options.wavelet == "haar" else 4)

    def value(self, x) -> float:
        xp = array_namespace(x)
        c = self._w(x)
        detail = dwt2_keep_approximation(c, xp.zeros_like(c), self.options.levels)
        return self.weight * self.options.threshold * float(xp.sum(xp.abs(detail)))

    def prox(self, x, step: float):
        c = self._w(x)
        t = step * self.weight * self.options.threshold
        return self._winv(dwt2_keep_approximation(soft_threshold(c, t), c, self.options.levels))

    def prox_conjugate(self, x, step: float):
        """Prox of (step·weight·φ)*: the projection onto {y : |detail(Wy)| ≤ t, approx(Wy) = 0},
        t = step·weight·λ (Moreau: x = prox(x) + prox_conjugate(x))."""
        xp = array_namespace(x)
        c = self._w(x)
        t = step * self.weight * self.options.threshold
        clipped = xp.clip(c, min=-t, max=t)
        return self._winv(dwt2_keep_approximation(clipped, xp.zeros_like(c), self.options.levels))


