"""Learnt emulators (surrogates) of spectral models, in the spirit of SUSHI (Lascar et al.
2024, A&A 686, A259): spectra sampled over the parameter bounds — optionally folded through
an instrument response — are compressed by a PCA, and a small fully connected network maps
the parameters to the PCA coefficients. Everything is plain array code in the namespace of
the run (numpy or cupy); no deep-learning framework is needed.

Model of the emulator, for parameters θ (``n_params``) and output bins (``n_out``):

    u = 2 (g(θ) - lo)/(hi - lo) - 1                    (inputs scaled to [-1, 1]; g = ln for
                                                        the ``log_parameters``, else identity)
    h_0 = u,  h_l = tanh(W_l h_{l-1} + b_l),  c = W_L h_{L-1} + b_L   (MLP)
    y = mean + scale · Vᵀ c                            (V: the first principal components)
    S = exp(y) - floor   ("log" transform)   or   S = y   ("linear")

The log transform makes relative errors uniform across bins whose fluxes differ by decades
(``floor`` = 1e-8 × the largest training value keeps empty channels finite). The weights are
trained by Adam (Kingma & Ba 2015, ICLR, arXiv:1412.6980) on the mean squared error of the
scaled coefficients — proportional to the squared error of y since V is orthonormal — with
a cosine learning-rate decay (Loshchilov & Hutter 2017, ICLR, arXiv:1608.03983) to 1 % of
the initial rate; Glorot-uniform initialisation (Glorot & Bengio 2010, AISTATS); after
Adam, the linear output layer is refitted by least squares on the learnt hidden features
(its exact optimum given them, a standard last step for small regression networks). Training
samples are a Latin hypercube over the bounds (McKay, Beckman & Conover 1979,
Technometrics 21, 239); a held-out fraction measures the validation error.

Files: ``NAME.npz`` (arrays only, read with ``allow_pickle=False``) and ``NAME.json``
(metadata: emulated model and options, parameters and training bounds, energy-grid hash,
instrument-response identity, architecture, training settings, validation error, and the
SHA-256 of the ``.npz`` so that a mismatched pair is refused). No pickle anywhere.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..backend import compat_namespace
from ..errors import DataError
from .models import Parameter
from .pairfiles import LearntFile, read_pair, write_pair

__all__ = ["Surrogate", "DeviceSurrogate", "save_surrogate", "load_surrogate", "mlp_forward", "mlp_backward"]

FORMAT = "xhsi-surrogate"
FORMAT_VERSION = 1
FLOOR_RELATIVE = 1e-8


# -- the trained emulator (host arrays) --------------------------------------------------
@dataclass
class Surrogate(LearntFile):
    """A trained emulator: numpy float64 arrays and its metadata (see the module docstring).
    ``weights[l]`` is (n_out_l, n_in_l), ``biases[l]`` (n_out_l,), ``components`` (k, n_out)."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    components: np.ndarray
    mean: np.ndarray
    coef_scale: float
    lower: np.ndarray
    upper: np.ndarray
    floor: float
    transform: str
    energy_edges_kev: np.ndarray
    metadata: dict = field(default_factory=dict)
    output_edges_kev: np.ndarray | None = None
    #: 1 where the network's input is ln θ (``lower``/``upper`` are then bounds of ln θ).
    log_inputs: np.ndarray | None = None

    def __post_init__(self):
        if self.log_inputs is None:
            self.log_inputs = np.zeros(self.lower.size)

    @property
    def parameters(self) -> tuple[Parameter, ...]:
        return tuple(Parameter.from_dict(p) for p in self.metadata["parameters"])

    @property
    def n_out(self) -> int:
        return int(self.mean.size)



class DeviceSurrogate:
    """A :class:`Surrogate` on an array namespace and dtype: forward pass, vjp (manual
    back-propagation) and jvp (forward-mode tangents), on parameters ``(n_params, N)``."""

    def __init__(self, surrogate: Surrogate, xp, dtype):
        xp = compat_namespace(xp)
        self.xp, self.dtype = xp, dtype
        put = lambda a: xp.asarray(np.asarray(a, dtype=np.float64), dtype=dtype)  # noqa: E731
        self.weights = [put(w) for w in surrogate.weights]
        self.biases = [put(b[:, None]) for b in surrogate.biases]
        self.basis = put(surrogate.components.T * surrogate.coef_scale)  # (n_out, k)
        self.mean = put(surrogate.mean[:, None])
        self.lower = put(surrogate.lower[:, None])
        self.inv_half_range = put(2.0 / (surrogate.upper - surrogate.lower)[:, None])
        self.any_log = bool(np.any(surrogate.log_inputs))
        self.log_inputs = xp.asarray(np.asarray(surrogate.log_inputs)[:, None] > 0)
        self.floor = float(surrogate.floor)
        self.log = surrogate.transform == "log"

    def _inputs(self, theta):
        if self.any_log:
            safe = self.xp.where(self.log_inputs, theta, self.xp.ones_like(theta))
            theta = self.xp.where(self.log_inputs, self.xp.log(safe), theta)
        return (theta - self.lower) * self.inv_half_range - 1.0

    def _input_rate(self, theta):
        """du/dθ per parameter."""
        if not self.any_log:
            return self.inv_half_range
        safe = self.xp.where(self.log_inputs, theta, self.xp.ones_like(theta))
        return self.xp.where(self.log_inputs, 1.0 / safe, self.xp.ones_like(theta)) * self.inv_half_range

    def _output(self, c):
        y = self.xp.matmul(self.basis, c) + self.mean
        return self.xp.exp(y) - self.floor if self.log else y

    def evaluate(self, theta):
        acts = mlp_forward(self.xp, self.weights, self.biases, self._inputs(theta))
        return self._output(acts[-1])

    def vjp(self, theta, cotangent):
        xp = self.xp
        acts = mlp_forward(xp, self.weights, self.biases, self._inputs(theta))
        g = cotangent
        if self.log:
            g = g * xp.exp(xp.matmul(self.basis, acts[-1]) + self.mean)
        g_c = xp.matmul(self.basis.T, g)
        g_u, _ = mlp_backward(xp, self.weights, acts, g_c, weights_too=False)
        return g_u * self._input_rate(theta)

    def jvp(self, theta, tangent):
        xp = self.xp
        h, dh = self._inputs(theta), tangent * self._input_rate(theta)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            z, dz = xp.matmul(w, h) + b, xp.matmul(w, dh)
            if i < last:
                h = xp.tanh(z)
                dh = (1.0 - h * h) * dz
            else:
                h, dh = z, dz
        dy = xp.matmul(self.basis, dh)
        if self.log:
            dy = dy * xp.exp(xp.matmul(self.basis, h) + self.mean)
        return dy


def mlp_forward(xp, weights, biases, u) -> list:
    """Activations [u, h_1, ..., c] of the tanh MLP for inputs ``u`` (n_in, N)."""
    acts = [u]
    h = u
    last = len(weights) - 1
    for i, (w, b) in enumerate(zip(weights, biases)):
        z = xp.matmul(w, h) + b
        h = xp.tanh(z) if i < last else z
        acts.append(h)
    return acts


def mlp_backward(xp, weights, acts, g_out, weights_too: bool = True):
    """Back-propagate ``g_out`` (n_last, N) through the MLP: (g_inputs, [(dW, db) per layer])."""
    g = g_out
    grads = []
    for i in range(len(weights) - 1, -1, -1):
        if i < len(weights) - 1:
            g = g * (1.0 - acts[i + 1] * acts[i + 1])
        if weights_too:
            grads.append((xp.matmul(g, acts[i].T), xp.sum(g, axis=1, keepdims=True)))
        g = xp.matmul(weights[i].T, g)
    return g, grads[::-1]


# -- files -------------------------------------------------------------------------------
def save_surrogate(surrogate: Surrogate, path: str | Path) -> Path:
    """Write ``NAME.npz`` (arrays) and ``NAME.json`` (metadata with the npz's SHA-256),
    each atomically. Returns the .npz path."""
    arrays = {"components": surrogate.components, "mean": surrogate.mean, "lower": surrogate.lower,
              "upper": surrogate.upper, "energy_edges_kev": surrogate.energy_edges_kev,
              "coef_scale": np.asarray(surrogate.coef_scale), "floor": np.asarray(surrogate.floor),
              "log_inputs": surrogate.log_inputs}
    if surrogate.output_edges_kev is not None:
        arrays["output_edges_kev"] = surrogate.output_edges_kev
    for i, (w, b) in enumerate(zip(surrogate.weights, surrogate.biases)):
        arrays[f"weight_{i}"], arrays[f"bias_{i}"] = w, b
    meta = dict(surrogate.metadata, transform=surrogate.transform, n_layers=len(surrogate.weights))
    return write_pair(path, arrays, meta, "a surrogate")


def load_surrogate(path: str | Path) -> Surrogate:
    """Read a surrogate pair (give either file); DataError for a missing, altered or
    mismatched pair, or for a file of another format."""
    arrays, meta, npz_path, _ = read_pair(path, "a surrogate", "surrogate", FORMAT, FORMAT_VERSION)
    try:
        n_layers = int(meta["n_layers"])
        return Surrogate(
            weights=[arrays[f"weight_{i}"] for i in range(n_layers)],
            biases=[arrays[f"bias_{i}"] for i in range(n_layers)],
            components=arrays["components"], mean=arrays["mean"], coef_scale=float(arrays["coef_scale"]),
            lower=arrays["lower"], upper=arrays["upper"], floor=float(arrays["floor"]), transform=meta["transform"],
            energy_edges_kev=arrays["energy_edges_kev"], metadata=meta,
            output_edges_kev=arrays.get("output_edges_kev"), log_inputs=arrays.get("log_inputs"))
    except (KeyError, ValueError, TypeError) as exc:
        raise DataError(f"{npz_path}: incomplete surrogate ({type(exc).__name__}: {exc}).") from None
