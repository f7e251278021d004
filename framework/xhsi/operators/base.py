"""Linear operators: the base class and its algebra (composition, sum, scaling, stacking).

Every operator maps arrays of ``shape_in`` to arrays of ``shape_out`` in the namespace of
its input, and knows its adjoint. ``norm()`` is the spectral norm ‖A‖₂ by power iteration,
computed once and cached; solvers use ‖A‖₂² as the Lipschitz constant of a quadratic.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..backend import array_namespace, compat_namespace
from ..errors import ShapeError
from ..schema import NoOptions


def _shape(shape) -> tuple[int, ...]:
    return tuple(int(s) for s in shape)


class LinearOperator:
    """Base class. Subclasses set ``shape_in``/``shape_out`` and implement ``_apply`` and
    ``_adjoint``; ``apply``/``adjoint`` check shapes and name both on a mismatch.

    Registered operator plugins also declare ``name`` (what configs and ``xhsi.get`` use)
    and, optionally, an ``Options`` schema.
    """

    name: str = ""
    Options = NoOptions

    def __init__(self, shape_in: Sequence[int], shape_out: Sequence[int]):
        self.shape_in = _shape(shape_in)
        self.shape_out = _shape(shape_out)
        self._norm: float | None = None

    # -- to implement -------------------------------------------------------------
    def _apply(self, x):
        raise NotImplementedError

    def _adjoint(self, y):
        raise NotImplementedError

    # -- public -------------------------------------------------------------------
    def apply(self, x):
        if tuple(x.shape) != self.shape_in:
            raise ShapeError(f"{self!r} takes arrays of shape {self.shape_in}, got {tuple(x.shape)}.")
        return self._apply(x)

    def adjoint(self, y):
        if tuple(y.shape) != self.shape_out:
            raise ShapeError(f"{self!r}.adjoint takes arrays of shape {self.shape_out}, got {tuple(y.shape)}.")
        return self._adjoint(y)

    __call__ = apply

    @property
    def H(self) -> "LinearOperator":
        return _Adjoint(self)

    def norm(self, xp=None, n_iter: int = 100, rtol: float = 1e-6, seed: int = 0, dtype=None) -> float:
        """Spectral norm ‖A‖₂ by power iteration on A*A (cached after the first call).

        ``xp``/``dtype`` give the namespace and dtype of the trial vectors; by default those
        of the arrays the operator holds (its ``xp``/``dtype`` attributes), else numpy
        float64; ``xp`` may be plain numpy or cupy."""
        if self._norm is None:
            xp = compat_namespace(xp) or self.namespace() or _default_xp()
            dtype = dtype or getattr(self, "dtype", None) or xp.float64
            x = xp.asarray(np.random.default_rng(seed).standard_normal(self.shape_in), dtype=dtype)
            x = x / xp.linalg.vector_norm(x)
            estimate = 0.0
            for _ in range(n_iter):
                y = self._adjoint(self._apply(x))
                new = float(xp.linalg.vector_norm(y))
                if new == 0.0:
                    break
                x = y / new
                if abs(new - estimate) <= rtol * new:
                    estimate = new
                    break
                estimate = new
            self._norm = math.sqrt(estimate)
        return self._norm

    def namespace(self):
        """The array namespace of the arrays this operator holds, or None if it holds none."""
        xp = getattr(self, "xp", None)
        if xp is not None:
            return xp
        for op in getattr(self, "ops", ()):
            xp = op.namespace()
            if xp is not None:
                return xp
        inner = getattr(self, "op", None)
        return inner.namespace() if inner is not None else None

    # -- algebra ------------------------------------------------------------------
    def __matmul__(self, other: "LinearOperator") -> "LinearOperator":
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return Composition(self, other)

    def __add__(self, other: "LinearOperator") -> "LinearOperator":
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return Sum([self, other])

    def __sub__(self, other: "LinearOperator") -> "LinearOperator":
        return Sum([self, Scaled(other, -1.0)])

    def __mul__(self, scalar: float) -> "LinearOperator":
        if isinstance(scalar, LinearOperator):
            return NotImplemented
        return Scaled(self, float(scalar))

    __rmul__ = __mul__

    def __neg__(self) -> "LinearOperator":
        return Scaled(self, -1.0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.shape_in} -> {self.shape_out})"


def _default_xp():
    import array_api_compat.numpy as xp

    return xp


class _Adjoint(LinearOperator):
    def __init__(self, op: LinearOperator):
        super().__init__(op.shape_out, op.shape_in)
        self.op = op

    def _apply(self, x):
        return self.op._adjoint(x)

    def _adjoint(self, y):
        return self.op._apply(y)

    def __repr__(self) -> str:
        return f"{self.op!r}.H"


class Identity(LinearOperator):
    name = "identity"

    def __init__(self, shape: Sequence[int]):
        super().__init__(shape, shape)

    def _apply(self, x):
        return x

    def _adjoint(self, y):
        return y

    @classmethod
    def example(cls, xp, dtype) -> "Identity":
        """A small instance for the operator contract tests."""
        return cls((2, 3, 4))


class Composition(LinearOperator):
    """``A @ B``: apply B, then A."""

    def __init__(self, outer: LinearOperator, inner: LinearOperator):
        if inner.shape_out != outer.shape_in:
            raise ShapeError(f"cannot compose {outer!r} @ {inner!r}: {inner.shape_out} != {outer.shape_in}.")
        super().__init__(inner.shape_in, outer.shape_out)
        # Flatten nested compositions so long chains do not recurse deeply.
        self.ops: list[LinearOperator] = []  # innermost first
        for op in (inner, outer):
            self.ops += op.ops if isinstance(op, Composition) else [op]

    def _apply(self, x):
        for op in self.ops:
            x = op._apply(x)
        return x

    def _adjoint(self, y):
        for op in reversed(self.ops):
            y = op._adjoint(y)
        return y

    def __repr__(self) -> str:
        return " @ ".join(repr(op) for op in reversed(self.ops))


class Sum(LinearOperator):
    def __init__(self, ops: Sequence[LinearOperator]):
        ops = list(ops)
        for op in ops[1:]:
            if op.shape_in != ops[0].shape_in or op.shape_out != ops[0].shape_out:
                raise ShapeError(f"cannot add {ops[0]!r} and {op!r}: shapes differ.")
        super().__init__(ops[0].shape_in, ops[0].shape_out)
        self.ops = ops

    def _apply(self, x):
        out = self.ops[0]._apply(x)
        for op in self.ops[1:]:
            out = out + op._apply(x)
        return out

    def _adjoint(self, y):
        out = self.ops[0]._adjoint(y)
        for op in self.ops[1:]:
            out = out + op._adjoint(y)
        return out


class Scaled(LinearOperator):
    def __init__(self, op: LinearOperator, scalar: float):
        super().__init__(op.shape_in, op.shape_out)
        self.op, self.scalar = op, float(scalar)

    def _apply(self, x):
        return self.scalar * self.op._apply(x)

    def _adjoint(self, y):
        return self.scalar * self.op._adjoint(y)

    def norm(self, *args, **kwargs) -> float:
        return abs(self.scalar) * self.op.norm(*args, **kwargs)


def vdot(a, b) -> float:
    """Real inner product <a, b> of two arrays of any shape, as a Python float."""
    xp = array_namespace(a, b)
    return float(xp.sum(a * b))
