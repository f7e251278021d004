"""A third-party regulariser: weight · ‖x‖₁, whose prox is soft-thresholding (exact)."""
from __future__ import annotations

from dataclasses import dataclass

from array_api_compat import array_namespace

from xhsi import hookimpl
from xhsi.regularizers import Regularizer
from xhsi.schema import option


class ExampleL1(Regularizer):
    """φ(x) = scale · Σ|x|; prox = soft-thresholding by step · weight · scale."""

    name = "example_l1"
    exact_prox = True

    @dataclass
    class Options:
        scale: float = option(1.0, min=0.0, doc="multiplies the L1 norm")

    def value(self, x) -> float:
        xp = array_namespace(x)
        return self.weight * self.options.scale * float(xp.sum(xp.abs(x)))

    def prox(self, x, step: float):
        xp = array_namespace(x)
        t = step * self.weight * self.options.scale
        return xp.sign(x) * xp.maximum(xp.abs(x) - t, 0.0)

    @classmethod
    def example(cls, xp, dtype):
        reg = cls(cls.Options(scale=0.5), weight=1.0)
        reg.setup((3, 4, 4), xp, dtype)
        return reg


@hookimpl
def xhsi_register_regularizers():
    return [ExampleL1]
