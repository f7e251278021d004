"""Interpolatory Auto-Encoder (IAE) spectral models at run time: the decoder, the encoder,
the barycentric weights, the read-out of physical parameters, and their files.

The IAE (Bobin, Gertosio, Thiam & Bobin 2023, A&A 670, A163, "Interpolatory
Auto-Encoders"; Gertosio et al. 2023, Signal Processing 202, 108776; used for X-ray
unmixing in SUSHI, Lascar et al. 2024, A&A 686, A259) represents a family of spectra by
barycentres of the latent codes of a few *anchor* spectra. Here, for spectra X normalised
to unit sum, on ``n_out`` bins:

    x   = (ln(X + floor) - m) / s                     (standardised log spectrum; m, s per bin)
    f:  h_0 = A x + a,  h_l = h_{l-1} + φ(W_l h_{l-1} + b_l)  (l = 1..L),  f(X) = h_L   (encoder)
    Φ_E = [f(E_1), ..., f(E_k)]                        (latent codes of the k anchors, d × k)
    λ   = argmin ‖f(X) - Φ_E λ‖² + ε‖λ‖²  [s.t. Σ λ = 1]  (barycentric weights)
        = Φ_X Φ_Eᵀ(Φ_E Φ_Eᵀ + εI)⁻¹ without the constraint (row convention), the bordered
          (KKT) system with it
    g:  h_0 = Φ_E λ,  h_l = h_{l-1} + φ(V_l h_{l-1} + c_l),  y = m + s·(B h_L + β)  (decoder)
    S   = exp(y) / Σ_e exp(y)                          (unit sum: an additive model)

φ is the leaky ReLU of slope 0.01 of the published IAE (``"leaky_relu"``) or its smooth
counterpart ``"smooth_leaky_relu"``, 0.01 z + 0.99 (softplus(z) - ln 2), which is C∞
(continuous Jacobians for gradient-based unmixing and finite-difference checks) and, like
the leaky ReLU, is 0 at 0 so that a residual block with zero weights is the identity (the
warm start of a new layer when the depth grows in stages). The decoder works in log space
and ends with a normalised exponential, so every decoded spectrum is positive with unit
sum whatever λ.

As a :class:`~xhsi.spectral.models.SpectralModel` (plugin ``iae``), the parameters are the
free barycentric weights λ_free (with the sum-to-one constraint the first k - 1, the last
weight being 1 - Σ; all k without it), or, when the file has an *alignment* (``weight_matrix``
M, ``weight_offset`` c: trained with ``aligned = true`` and as many free weights as physical
parameters), their affine coordinates w = M λ_free + c, M and c fitted by least squares on
the training set so that w_i ≈ the i-th physical parameter scaled to [0, 1] over its
training range (in ln θ for log parameters). The decoder and the encoder are unchanged (an
affine change of coordinates of the same weights); what changes is the geometry of the
maps a separable prior sees: each weight map follows one physical parameter, as exact-model
maps do, instead of a mixture of all of them. The parameters' bounds are the range of the
training spectra's weights widened by a margin, their defaults the training mean, so that
unmixing regularises the weight maps like any parameter map. Physical parameters are read
back by a polynomial regression of the training parameters (in ln θ for log-sampled ones)
on the standardised parameters (:meth:`DeviceIAE.physical`), fitted by least squares on the
training set, or fitted per pixel to the decoded spectra (:meth:`DeviceIAE.fit_physical`).

Files: ``NAME.npz`` (numeric arrays only, read with ``allow_pickle=False``) and
``NAME.json`` (metadata with the SHA-256 of the npz), as for surrogates.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations_with_replacement
from pathlib import Path

import numpy as np

from ..backend import compat_namespace
from ..errors import ConfigError, DataError
from .models import Parameter
from .pairfiles import LearntFile, check_trained_grid, read_pair, write_pair

__all__ = ["IAE", "DeviceIAE", "save_iae", "load_iae", "check_anchors", "check_energy_grid", "fit_physical", "ACTIVATIONS",
           "activation", "blocks_forward", "blocks_backward", "barycentric_system", "monomial_exponents"]

FORMAT = "xhsi-iae"
#: 2: the optional alignment (``weight_matrix``, ``weight_offset``); version-1 files load unchanged.
FORMAT_VERSION = 2
#: The largest condition number of an alignment M (training refuses, loading refuses).
ALIGNMENT_MAX_COND = 1e8
LEAKY_SLOPE = 0.01
ACTIVATIONS = ("smooth_leaky_relu", "leaky_relu")
_LN2 = math.log(2.0)


# -- network pieces shared by the runtime and the training ------------------------------
def activation(xp, name: str, z):
    """(φ(z), φ'(z)) of the activation ``name`` (see the module docstring)."""
    a = LEAKY_SLOPE
    if name == "leaky_relu":
        positive = z >= 0
        return xp.where(positive, z, a * z), xp.where(positive, xp.ones_like(z), xp.full_like(z, a))
    e = xp.exp(-xp.abs(z))  # softplus and the logistic function without overflow
    softplus = xp.log1p(e) + xp.maximum(z, xp.zeros_like(z))
    sigmoid = xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return a * z + (1.0 - a) * (softplus - _LN2), a + (1.0 - a) * sigmoid


def blocks_forward(xp, blocks, h, act: str):
    """Residual blocks h_l = h_{l-1} + φ(W_l h_{l-1} + b_l) on ``h`` (d, N). Returns the
    output and the cache [(h_{l-1}, φ'(z_l))] for :func:`blocks_backward`."""
    cache = []
    for w, b in blocks:
        value, slope = activation(xp, act, xp.matmul(w, h) + b)
        cache.append((h, slope))
        h = h + value
    return h, cache


def blocks_backward(xp, blocks, cache, g, weights_too: bool = True):
    """Back-propagate ``g`` = ∂L/∂h_L through the blocks: (∂L/∂h_0, [(∂L/∂W_l, ∂L/∂b_l)])."""
    grads = []
    for (w, _), (h_in, slope) in zip(blocks[::-1], cache[::-1]):
        dz = g * slope
        if weights_too:
            grads.append((xp.matmul(dz, h_in.T), xp.sum(dz, axis=1, keepdims=True)))
        g = g + xp.matmul(w.T, dz)
    return g, grads[::-1]


def barycentric_system(codes: np.ndarray, ridge: float, sum_to_one: bool) -> np.ndarray:
    """The matrix K of the weights' normal equations for anchor codes Φ_E (d, k):
    G = Φ_EᵀΦ_E + εI, bordered by ones ([[G, 1], [1ᵀ, 0]], the KKT system of Σ λ = 1)
    when ``sum_to_one``. The weights of codes Φ (d, N) are the first k rows of
    K⁻¹ [Φ_EᵀΦ; 1ᵀ] (K⁻¹ Φ_EᵀΦ without the constraint)."""
    k = codes.shape[1]
    gram = codes.T @ codes + ridge * np.eye(k)
    if not sum_to_one:
        return gram
    out = np.zeros((k + 1, k + 1))
    out[:k, :k], out[:k, k], out[k, :k] = gram, 1.0, 1.0
    return out


def monomial_exponents(n_vars: int, degree: int) -> np.ndarray:
    """(n_terms, n_vars) exponents of every monomial of total degree ≤ ``degree``, the
    constant first."""
    rows = [np.zeros(n_vars, dtype=np.int64)]
    for d in range(1, degree + 1):
        for combo in combinations_with_replacement(range(n_vars), d):
            row = np.zeros(n_vars, dtype=np.int64)
            for i in combo:
                row[i] += 1
            rows.append(row)
    return np.array(rows)


# -- the trained model (host arrays) -----------------------------------------------------
@dataclass
class IAE(LearntFile):
    """A trained IAE: numpy float64 arrays and its metadata (see the module docstring).
    ``encoder_in`` / ``decoder_out``: (W, b) of the input and output dense layers;
    ``encoder_blocks`` / ``decoder_blocks``: [(W, b)] of the residual blocks (b as (d, 1));
    ``anchor_codes`` Φ_E (d, k); ``log_mean``/``log_scale`` m, s (n_out,); ``readout_*``:
    the polynomial read-out of the physical parameters; ``weight_matrix``, ``weight_offset``
    M (n, n), c (n,): the alignment w = M λ_free + c (None: w = λ_free)."""

    encoder_in: tuple[np.ndarray, np.ndarray]
    encoder_blocks: list[tuple[np.ndarray, np.ndarray]]
    decoder_blocks: list[tuple[np.ndarray, np.ndarray]]
    decoder_out: tuple[np.ndarray, np.ndarray]
    log_mean: np.ndarray
    log_scale: np.ndarray
    floor: float
    anchor_codes: np.ndarray
    anchor_parameters: np.ndarray
    readout_coef: np.ndarray
    readout_exponents: np.ndarray
    readout_center: np.ndarray
    readout_scale: np.ndarray
    energy_edges_kev: np.ndarray
    metadata: dict = field(default_factory=dict)
    output_edges_kev: np.ndarray | None = None
    weight_matrix: np.ndarray | None = None
    weight_offset: np.ndarray | None = None

    @property
    def parameters(self) -> tuple[Parameter, ...]:
        """The model's parameters: the free barycentric weights, or their aligned
        coordinates when the file has an alignment."""
        return tuple(Parameter.from_dict(p) for p in self.metadata["parameters"])

    @property
    def physical_parameters(self) -> tuple[Parameter, ...]:
        """The parameters of the spectra the IAE was trained on (bounds: the training range)."""
        return tuple(Parameter.from_dict(p) for p in self.metadata["physical_parameters"])

    @property
    def log_physical(self) -> np.ndarray:
        return np.array([bool(p.get("log", False)) for p in self.metadata["physical_parameters"]])

    @property
    def architecture(self) -> dict:
        return self.metadata["architecture"]

    @property
    def n_out(self) -> int:
        return int(self.log_mean.size)

    @property
    def n_anchors(self) -> int:
        return int(self.anchor_codes.shape[1])



class DeviceIAE:
    """An :class:`IAE` on an array namespace and dtype. Parameters ``theta`` are
    ``(n_weights, N)``: the free barycentric weights (k - 1 with the sum-to-one constraint,
    the last weight being 1 - Σ; k without), or their aligned coordinates M λ_free + c when
    the file has an alignment (module docstring)."""

    def __init__(self, iae: IAE, xp, dtype):
        xp = compat_namespace(xp)
        self.xp, self.dtype = xp, dtype
        put = lambda a: xp.asarray(np.asarray(a, dtype=np.float64), dtype=dtype)  # noqa: E731
        arch = iae.architecture
        self.act = arch["activation"]
        self.sum_to_one = bool(arch["sum_to_one"])
        codes = np.asarray(iae.anchor_codes, dtype=np.float64)
        k = codes.shape[1]
        if self.sum_to_one:  # Φ_E λ = Φ_E[:, k-1] + (Φ_E[:, :k-1] - Φ_E[:, k-1]) λ_free
            matrix, offset = codes[:, :k - 1] - codes[:, k - 1:], codes[:, k - 1:]
        else:
            matrix, offset = codes, np.zeros((codes.shape[0], 1))
        self.aligned = iae.weight_matrix is not None
        if self.aligned:  # λ_free = M⁻¹ (θ - c): the latent code stays affine in θ
            m_inv = np.linalg.inv(np.asarray(iae.weight_matrix, dtype=np.float64))
            c = np.reshape(np.asarray(iae.weight_offset, dtype=np.float64), (-1, 1))
            matrix, offset = matrix @ m_inv, offset - matrix @ (m_inv @ c)
            self.weight_matrix, self.weight_offset = put(iae.weight_matrix), put(c)
        self.latent_matrix, self.latent_offset = put(matrix), put(offset)
        col = lambda b: put(np.reshape(b, (-1, 1)))  # noqa: E731  biases as columns
        self.decoder = [(put(w), col(b)) for w, b in iae.decoder_blocks]
        self.encoder = [(put(w), col(b)) for w, b in iae.encoder_blocks]
        self.enc_w, self.enc_b = put(iae.encoder_in[0]), col(iae.encoder_in[1])
        self.out_w, self.out_b = put(iae.decoder_out[0]), col(iae.decoder_out[1])
        self.log_mean, self.log_scale = put(iae.log_mean[:, None]), put(iae.log_scale[:, None])
        self.floor = float(iae.floor)
        # Weights of codes Φ: rows of K⁻¹ [Φ_EᵀΦ; 1ᵀ], i.e. P Φ + q with P, q fixed here.
        system = barycentric_system(codes, float(arch["ridge"]), self.sum_to_one)
        inverse = np.linalg.inv(system)
        self.project = put(inverse[:k, :k] @ codes.T)
        self.project_offset = put(inverse[:k, k:k + 1]) if self.sum_to_one else None
        self.n_weights = k - 1 if self.sum_to_one else k
        self.exponents = np.asarray(iae.readout_exponents, dtype=np.int64)
        self.readout_coef = put(iae.readout_coef)
        self.readout_center = put(iae.readout_center[:, None])
        self.readout_scale = put(iae.readout_scale[:, None])
        self.physical_names = [p.name for p in iae.physical_parameters]
        self.physical_bounds = [p.bounds for p in iae.physical_parameters]
        self.log_physical = iae.log_physical
        self.source, self.response = iae.metadata.get("source", {}), iae.response
        self.energy_edges_kev = iae.energy_edges_kev

    # -- decoder: the spectral model ------------------------------------------------------
    def _latent(self, theta):
        return self.xp.matmul(self.latent_matrix, theta) + self.latent_offset

    def _decode(self, theta):
        xp = self.xp
        h, cache = blocks_forward(xp, self.decoder, self._latent(theta), self.act)
        y = self.log_mean + self.log_scale * (xp.matmul(self.out_w, h) + self.out_b)
        y = y - xp.max(y, axis=0, keepdims=True)
        e = xp.exp(y)
        return e / xp.sum(e, axis=0, keepdims=True), cache

    def evaluate(self, theta):
        """Decoded spectra (n_out, N), unit sum, for parameters ``theta`` (n_weights, N)."""
        return self._decode(theta)[0]

    def vjp(self, theta, cotangent):
        xp = self.xp
        s, cache = self._decode(theta)
        g_y = s * (cotangent - xp.sum(cotangent * s, axis=0, keepdims=True))  # softmax
        g_h = xp.matmul(self.out_w.T, g_y * self.log_scale)
        g_psi, _ = blocks_backward(xp, self.decoder, cache, g_h, weights_too=False)
        return xp.matmul(self.latent_matrix.T, g_psi)

    def jvp(self, theta, tangent):
        xp = self.xp
        h, dh = self._latent(theta), xp.matmul(self.latent_matrix, tangent)
        for w, b in self.decoder:
            value, slope = activation(xp, self.act, xp.matmul(w, h) + b)
            h, dh = h + value, dh + slope * xp.matmul(w, dh)
        y = self.log_mean + self.log_scale * (xp.matmul(self.out_w, h) + self.out_b)
        dy = self.log_scale * xp.matmul(self.out_w, dh)
        y = y - xp.max(y, axis=0, keepdims=True)
        e = xp.exp(y)
        s = e / xp.sum(e, axis=0, keepdims=True)
        return s * (dy - xp.sum(s * dy, axis=0, keepdims=True))

    # -- encoder: spectra to weights ------------------------------------------------------
    def encode(self, spectra):
        """The parameters (n_weights, N) of spectra (n_out, N): their free barycentric
        weights, aligned when the file has an alignment (any positive normalisation: they
        are normalised to unit sum first)."""
        xp = self.xp
        total = xp.sum(spectra, axis=0, keepdims=True)
        x = (xp.log(spectra / total + self.floor) - self.log_mean) / self.log_scale
        codes, _ = blocks_forward(xp, self.encoder, xp.matmul(self.enc_w, x) + self.enc_b, self.act)
        lam = xp.matmul(self.project, codes)
        if self.sum_to_one:
            lam = lam + self.project_offset
        lam = lam[:self.n_weights, ...]
        return self.xp.matmul(self.weight_matrix, lam) + self.weight_offset if self.aligned else lam

    # -- read-out: weights to physical parameters -----------------------------------------
    def physical(self, theta) -> dict:
        """{name: (N,)} physical parameters read from the parameters ``theta`` (n_weights, N)
        by the learnt polynomial, clipped to the training bounds."""
        xp = self.xp
        u = (theta - self.readout_center) / self.readout_scale
        ones = xp.ones_like(u[0:1, ...])
        terms = []
        for row in self.exponents:
            term = ones
            for i, power in enumerate(row):
                for _ in range(int(power)):
                    term = term * u[i:i + 1, ...]
            terms.append(term)
        values = xp.matmul(self.readout_coef, xp.concat(terms, axis=0))  # (n_physical, N)
        out = {}
        for i, (name, (lo, hi)) in enumerate(zip(self.physical_names, self.physical_bounds)):
            v = values[i, ...]
            v = xp.exp(v) if self.log_physical[i] else v
            out[name] = xp.clip(v, min=lo, max=hi)
        return out

    def fit_physical(self, theta, iterations: int = 30, where="this IAE") -> dict:
        """{name: (N,)} physical parameters fitted to the decoded spectra of ``theta`` by the
        model the IAE was trained on (:func:`fit_physical`), from the read-out
        (:meth:`physical`), inside the training range. ConfigError when that model is not
        known (a library) or its spectra are not the decoder's (trained after a response)."""
        from .models import build_spectral_model

        if "model" not in self.source or self.response is not None:
            raise ConfigError(f"{where} was trained on a library or after an instrument response: its physical model "
                              "cannot be fitted to the decoded spectra; use physical(theta).")
        model = build_spectral_model(self.source["model"], self.source.get("options") or {}).setup(
            self.energy_edges_kev, self.xp, self.dtype)
        start = self.physical(theta)
        fitted = fit_physical(model, self.evaluate(theta), self.xp.stack([start[n] for n in model.parameter_names]),
                              iterations, bounds=self.physical_bounds)
        return {n: fitted[i, ...] for i, n in enumerate(model.parameter_names)}


# -- files -------------------------------------------------------------------------------
def save_iae(iae: IAE, path: str | Path) -> Path:
    """Write ``NAME.npz`` (arrays) and ``NAME.json`` (metadata with the npz's SHA-256),
    each atomically. Returns the .npz path."""
    arrays = {"encoder_in_w": iae.encoder_in[0], "encoder_in_b": iae.encoder_in[1],
              "decoder_out_w": iae.decoder_out[0], "decoder_out_b": iae.decoder_out[1],
              "log_mean": iae.log_mean, "log_scale": iae.log_scale, "floor": np.asarray(iae.floor),
              "anchor_codes": iae.anchor_codes, "anchor_parameters": iae.anchor_parameters,
              "readout_coef": iae.readout_coef, "readout_exponents": iae.readout_exponents,
              "readout_center": iae.readout_center, "readout_scale": iae.readout_scale,
              "energy_edges_kev": iae.energy_edges_kev}
    if iae.output_edges_kev is not None:
        arrays["output_edges_kev"] = iae.output_edges_kev
    if iae.weight_matrix is not None:
        arrays["weight_matrix"], arrays["weight_offset"] = iae.weight_matrix, iae.weight_offset
    for part, blocks in (("encoder", iae.encoder_blocks), ("decoder", iae.decoder_blocks)):
        for i, (w, b) in enumerate(blocks):
            arrays[f"{part}_w_{i}"], arrays[f"{part}_b_{i}"] = w, b
    return write_pair(path, arrays, iae.metadata, "an IAE model")


def load_iae(path: str | Path) -> IAE:
    """Read an IAE pair (give either file); DataError for a missing, altered or mismatched
    pair, a file of another format, or anchors outside the physical bounds it declares."""
    a, meta, npz_path, json_path = read_pair(path, "an IAE model", "IAE model", FORMAT, FORMAT_VERSION)
    try:
        arch = meta["architecture"]
        blocks = {part: [(a[f"{part}_w_{i}"], a[f"{part}_b_{i}"]) for i in range(int(arch["layers"]))]
                  for part in ("encoder", "decoder")}
        iae = IAE(encoder_in=(a["encoder_in_w"], a["encoder_in_b"]), encoder_blocks=blocks["encoder"],
                  decoder_blocks=blocks["decoder"], decoder_out=(a["decoder_out_w"], a["decoder_out_b"]),
                  log_mean=a["log_mean"], log_scale=a["log_scale"], floor=float(a["floor"]),
                  anchor_codes=a["anchor_codes"], anchor_parameters=a["anchor_parameters"],
                  readout_coef=a["readout_coef"], readout_exponents=a["readout_exponents"].astype(np.int64),
                  readout_center=a["readout_center"], readout_scale=a["readout_scale"],
                  energy_edges_kev=a["energy_edges_kev"], metadata=meta, output_edges_kev=a.get("output_edges_kev"),
                  weight_matrix=a.get("weight_matrix"), weight_offset=a.get("weight_offset"))
        if (iae.weight_matrix is None) != (iae.weight_offset is None):
            raise ValueError("weight_matrix and weight_offset come together")
        n_free = iae.n_anchors - bool(arch["sum_to_one"])
        if iae.weight_matrix is not None and (iae.weight_matrix.shape != (n_free, n_free) or
                                              iae.weight_offset.shape != (n_free,) or
                                              not np.all(np.isfinite(iae.weight_matrix)) or
                                              not np.all(np.isfinite(iae.weight_offset)) or
                                              np.linalg.cond(iae.weight_matrix) > ALIGNMENT_MAX_COND):
            raise ValueError(f"the alignment must be a finite, well-conditioned {n_free} x {n_free} matrix and "
                             f"{n_free} finite offsets")
        physical, weights = iae.physical_parameters, iae.parameters
        if arch["activation"] not in ACTIVATIONS:
            raise ValueError(f"activation {arch['activation']!r}")
    except (KeyError, ValueError, TypeError, DataError) as exc:
        raise DataError(f"{npz_path}: incomplete or invalid IAE model ({type(exc).__name__}: {exc}).") from None
    check_anchors(iae.anchor_parameters, physical, str(json_path))
    if len(weights) != iae.n_anchors - bool(arch["sum_to_one"]):
        raise DataError(f"{json_path}: {len(weights)} weight parameters for {iae.n_anchors} anchors.")
    return iae


def check_anchors(anchors: np.ndarray, physical, where: str, error=DataError) -> None:
    """Refuse anchors (k, p) outside the bounds of the physical parameters."""
    for j, row in enumerate(np.atleast_2d(anchors)):
        for value, p in zip(row, physical):
            lo, hi = p.bounds
            tol = 1e-9 * max(abs(lo), abs(hi), 1.0)
            if not (lo - tol <= value <= hi + tol):
                raise error(f"{where}: anchor {j + 1} has {p.name} = {value:g} {p.unit}".rstrip() +
                            f", outside the parameter bounds [{lo:g}, {hi:g}]; anchors must lie inside them.")


def check_energy_grid(iae: IAE, energy_edges_kev, source) -> None:
    """Refuse a model grid other than the one the IAE was trained on (DataError)."""
    check_trained_grid(iae.metadata, energy_edges_kev, source)


def fit_physical(model, target, start, iterations: int = 30, bounds=None):
    """Per-pixel fit of a physical spectral model (``model``, set up on the IAE's grid,
    namespace and dtype) to decoded spectra ``target`` (n_out, N), from ``start`` (p, N)
    (the learnt read-out): Levenberg–Marquardt (Marquardt 1963) on the χ²-like cost
    Σ_e (S_e(θ) - T_e)² / T_e (the weighting of Poisson counts), the damping divided by 3
    after an accepted step and multiplied by 4 after a rejected one, steps projected on
    ``bounds`` ([(lo, hi)] per parameter; default the model's). Returns the parameters
    (p, N); the cost never increases."""
    xp = model.xp
    p = model.n_params
    bounds = [q.bounds for q in model.parameters] if bounds is None else bounds
    lo = xp.asarray([[float(b[0])] for b in bounds], dtype=start.dtype)
    hi = xp.asarray([[float(b[1])] for b in bounds], dtype=start.dtype)
    weight = 1.0 / (target + 1e-6 * xp.max(target, axis=0, keepdims=True))

    def cost(theta):
        r = model.evaluate(theta) - target
        return xp.sum(weight * r * r, axis=0)

    theta = xp.minimum(xp.maximum(start, lo), hi)
    current = cost(theta)
    damping = xp.full_like(current, 1e-3)
    eye = xp.eye(p, dtype=theta.dtype)
    for _ in range(int(iterations)):
        residual = model.evaluate(theta) - target
        cols = [model.jvp(theta, xp.zeros_like(theta) + xp.reshape(eye[:, k], (p, 1))) for k in range(p)]
        normal = xp.stack([xp.stack([xp.sum(weight * cols[k] * cols[j], axis=0) for j in range(p)], axis=-1)
                           for k in range(p)], axis=-2)  # (N, p, p)
        grad = xp.stack([xp.sum(weight * cols[k] * residual, axis=0) for k in range(p)], axis=-1)  # (N, p)
        diag = xp.stack([normal[:, k, k] for k in range(p)], axis=-1)
        system = normal + (damping[:, None] * diag)[:, :, None] * eye
        step = xp.linalg.solve(system, -grad[..., None])[..., 0]
        trial = xp.minimum(xp.maximum(theta + xp.permute_dims(step, (1, 0)), lo), hi)
        value = cost(trial)
        better = value < current
        theta = xp.where(better[None, :], trial, theta)
        current = xp.where(better, value, current)
        damping = xp.where(better, damping / 3.0, damping * 4.0)
    return theta
