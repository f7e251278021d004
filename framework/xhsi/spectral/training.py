"""Training of surrogates (``xhsi train-model``): the training config schema, the instrument
response a surrogate may be folded through, Latin-hypercube sampling, PCA, Adam and the
least-squares refit of the output layer (the method is described in ``surrogate.py``)."""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import to_numpy
from ..config import EnergyGrid
from ..errors import ConfigError, DataError
from ..schema import Context, from_dict, option, to_dict
from .models import SpectralModel, build_spectral_model, check_energy_edges, edges_digest
from .surrogate import (FLOOR_RELATIVE, FORMAT, FORMAT_VERSION, DeviceSurrogate, Surrogate, mlp_backward, mlp_forward,
                        save_surrogate)

__all__ = ["TrainingConfig", "TrainSurrogateSection", "load_training_config", "train_surrogate", "train_from_config",
           "response_identity"]


# -- training config ---------------------------------------------------------------------
@dataclass
class TrainModelSection:
    energy: EnergyGrid = option(doc="true-energy grid of the emulated model (linear bins)")


@dataclass
class TrainResponseSection:
    instrument: str = option(doc="fold the spectra through this instrument (shipped name or TOML path)")
    spectral_rebin: int = option(1, min=1, doc="channel = rebin x model energy bin, as in run configs")
    effective_area: bool = option(True, doc="fold the bin-averaged effective area (cm^2) in as well")


@dataclass
class TrainSurrogateSection:
    model: str = option(doc="spectral model to emulate: a registered name or a product such as \"absorption * thermal\"")
    options: dict = option({}, doc="the emulated model's options (keyed by model name for a product)")
    bounds: dict = option({}, doc="training range per parameter, e.g. {z = [-0.01, 0.01]}; default: the model's bounds")
    log_parameters: list[str] = option([], doc="parameters sampled log-uniformly and fed to the network as ln θ "
                                               "(positive ranges spanning decades, e.g. kT)")
    n_samples: int = option(4000, min=20, unit="spectra", doc="sampled spectra, training + validation")
    validation_fraction: float = option(0.2, min=0.01, max=0.9, doc="share of the samples held out for validation")
    n_components: int = option(12, min=1, doc="principal components kept")
    hidden: list[int] = option([64, 64], min=1, doc="units of each hidden tanh layer")
    epochs: int = option(300, min=0, unit="passes")
    batch_size: int = option(128, min=1, unit="spectra")
    learning_rate: float = option(3e-3, min=0.0, exclusive_min=True, doc="initial Adam step (cosine decay to 1 %)")
    transform: str = option("log", choices=("log", "linear"), doc="emulate log spectra (relative accuracy) or spectra")
    seed: int = option(0, min=0)
    backend: str = option("numpy", choices=("numpy", "cupy"), doc="array library used for training")


@dataclass
class TrainingConfig:
    model: TrainModelSection = option(doc="the true-energy grid")
    surrogate: TrainSurrogateSection = option(doc="what to emulate and how to train")
    response: TrainResponseSection | None = option(None, doc="fold through an instrument response (optional)")
    _source: Path | None = field(default=None, repr=False, compare=False)


def load_training_config(path: str | Path) -> TrainingConfig:
    """Read and validate a ``train-model`` TOML."""
    from ..tomlio import load_toml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such training config.")
    cfg = from_dict(TrainingConfig, load_toml(path), Context(file=str(path), base_dir=path.parent))
    cfg._source = path
    return cfg


# -- the instrument response a surrogate may be folded through ---------------------------
def _folding(response: TrainResponseSection | None, edges: np.ndarray):
    """(matrix (n_e, n_out) host, output edges, identity) for a [response] section, or Nones."""
    if response is None:
        return None, None, None
    return response_identity(response.instrument, edges, response.spectral_rebin, response.effective_area,
                             with_matrix=True)


def response_identity(instrument, energy_edges_kev, spectral_rebin: int = 1, effective_area: bool = True,
                      with_matrix: bool = False):
    """The identity of an instrument response on a model grid, as stored with a folded
    surrogate: instrument name, rebinning, whether the area is folded in, and hashes of the
    channel edges and of the folding matrix (n_e, n_chan) = diag(area) · R. A problem that
    uses a folded surrogate computes this for its own response and passes it to
    ``SpectralModel.check_response``. With ``with_matrix``: (matrix, channel edges, identity)."""
    import scipy.sparse as sp

    from ..instruments import load_instrument

    inst = load_instrument(instrument)
    edges = check_energy_edges(energy_edges_kev)
    matrix = inst.redistribution(edges, spectral_rebin)
    matrix = matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix, dtype=np.float64)
    if effective_area:
        matrix = inst.mean_effective_area(edges)[:, None] * matrix
    channels = np.asarray(inst.detector_channels(edges, spectral_rebin), dtype=np.float64)
    identity = {"instrument": inst.name, "spectral_rebin": int(spectral_rebin), "effective_area": bool(effective_area),
                "channel_edges_sha256": edges_digest(channels),
                "matrix_sha256": hashlib.sha256(np.ascontiguousarray(matrix).tobytes()).hexdigest()[:16]}
    return (matrix, channels, identity) if with_matrix else identity


# -- training ----------------------------------------------------------------------------
def _training_bounds(model: SpectralModel, bounds: dict) -> tuple[np.ndarray, np.ndarray]:
    unknown = [k for k in bounds if k not in model.parameter_names]
    if unknown:
        from ..errors import did_you_mean

        raise ConfigError(f"surrogate.bounds: `{unknown[0]}` is not a parameter of `{model.name}`"
                          f"{did_you_mean(unknown[0], model.parameter_names)}; parameters: "
                          f"{', '.join(model.parameter_names)}.")
    lo = np.array([p.bounds[0] for p in model.parameters])
    hi = np.array([p.bounds[1] for p in model.parameters])
    for k, p in enumerate(model.parameters):
        if p.name in bounds:
            pair = bounds[p.name]
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2
                    and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair)):
                raise ConfigError(f"surrogate.bounds.{p.name}: expected [lower, upper], got {pair!r}.")
            a, b = float(pair[0]), float(pair[1])
            if not (p.bounds[0] <= a < b <= p.bounds[1]):
                raise ConfigError(f"surrogate.bounds.{p.name}: [{a}, {b}] must be increasing and inside the "
                                  f"model's bounds {list(p.bounds)} ({p.unit or 'dimensionless'}).")
            lo[k], hi[k] = a, b
    return lo, hi


def _sample(lo: np.ndarray, hi: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n_params, n) Latin-hypercube samples inside [lo, hi]: each parameter's range cut in
    n equal strata, one sample drawn uniformly in each, strata shuffled independently per
    parameter (McKay et al. 1979)."""
    strata = np.argsort(rng.random((lo.size, n)), axis=1)
    unit = (strata + rng.random((lo.size, n))) / n
    return lo[:, None] + (hi - lo)[:, None] * unit


def _evaluate_batched(model: SpectralModel, theta: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """(n_e, n) host spectra of ``model`` (set up on numpy float64) for host parameters."""
    parts = [to_numpy(model.evaluate(model.xp.asarray(theta[:, i:i + chunk]))) for i in range(0, theta.shape[1], chunk)]
    return np.concatenate(parts, axis=1)


def _relative_errors(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """‖pred - true‖₂ / ‖true‖₂ per spectrum (columns)."""
    return np.linalg.norm(pred - true, axis=0) / np.maximum(np.linalg.norm(true, axis=0), 1e-300)


def _summary(errors: np.ndarray) -> dict:
    return {"median": float(np.median(errors)), "p95": float(np.quantile(errors, 0.95)), "max": float(np.max(errors))}


def train_surrogate(model: SpectralModel, settings: TrainSurrogateSection, *, fold: np.ndarray | None = None,
                    output_edges_kev: np.ndarray | None = None, response: dict | None = None,
                    model_options: Any = None, log=None) -> Surrogate:
    """Train an emulator of ``model`` (set up on its true-energy grid, numpy float64).

    ``fold`` (n_e, n_out), when given, is applied to every sampled spectrum first (an
    instrument response; ``response`` its identity, ``output_edges_kev`` the channel edges).
    ``log`` (a callable taking a string) receives progress lines. The validation error
    (relative L2 error per spectrum: median, 95th percentile, max; and the same for the PCA
    truncation alone) is stored in ``metadata["validation"]``."""
    from ..backend import Backend

    t0 = time.perf_counter()
    rng = np.random.default_rng(settings.seed)
    lo, hi = _training_bounds(model, settings.bounds)
    n = int(settings.n_samples)
    n_val = max(1, int(round(settings.validation_fraction * n)))
    if n - n_val < 2:
        raise ConfigError("surrogate.n_samples is too small for the validation split; raise it.")
    unknown = [name for name in settings.log_parameters if name not in model.parameter_names]
    if unknown:
        raise ConfigError(f"surrogate.log_parameters: `{unknown[0]}` is not a parameter of `{model.name}`; "
                          f"parameters: {', '.join(model.parameter_names)}.")
    log_inputs = np.array([float(name in settings.log_parameters) for name in model.parameter_names])
    if np.any((log_inputs > 0) & (lo <= 0)):
        bad = [name for name, flag, a in zip(model.parameter_names, log_inputs, lo) if flag and a <= 0]
        reach = lo[model.parameter_names.index(bad[0])]
        raise ConfigError(f"surrogate.log_parameters: `{bad[0]}` has a training range reaching {reach} <= 0; "
                          "set surrogate.bounds for it above 0.")
    glo = np.where(log_inputs > 0, np.log(np.where(log_inputs > 0, lo, 1.0)), lo)
    ghi = np.where(log_inputs > 0, np.log(np.where(log_inputs > 0, hi, 1.0)), hi)
    sample = _sample(glo, ghi, n, rng)
    theta = np.where(log_inputs[:, None] > 0, np.exp(sample), sample)
    theta = np.clip(theta, lo[:, None], hi[:, None])  # exp(ln x) may round past a bound
    spectra = _evaluate_batched(model, theta)
    if fold is not None:
        spectra = fold.T @ spectra
    if not np.all(np.isfinite(spectra)):
        raise DataError(f"the spectral model `{model.name}` returned non-finite values inside the training bounds "
                        f"{dict(zip(model.parameter_names, zip(lo.tolist(), hi.tolist())))}; narrow surrogate.bounds.")
    if settings.transform == "log":
        if np.any(spectra < 0):
            raise DataError(f"`{model.name}` has negative values: use transform = \"linear\".")
        floor = FLOOR_RELATIVE * float(np.max(spectra))
        y = np.log(spectra + floor)
    else:
        floor = 0.0
        y = spectra
    order = rng.permutation(n)
    val, tr = order[:n_val], order[n_val:]
    mean = y[:, tr].mean(axis=1)
    _, sing, vt = np.linalg.svd((y[:, tr] - mean[:, None]).T, full_matrices=False)
    k = min(int(settings.n_components), vt.shape[0])
    components = vt[:k]
    coeffs = components @ (y - mean[:, None])  # (k, n)
    scale = float(np.std(coeffs[0, tr])) or 1.0
    targets = coeffs / scale
    # Training arrays on the chosen backend.
    be = Backend(settings.backend, "float64", seed=settings.seed)
    xp = be.xp
    sizes = [lo.size, *[int(h) for h in settings.hidden], k]
    weights, biases = [], []
    for a, b in zip(sizes[:-1], sizes[1:]):
        limit = math.sqrt(6.0 / (a + b))
        weights.append(be.asarray(rng.uniform(-limit, limit, (b, a))))
        biases.append(be.zeros((b, 1)))
    params = weights + biases
    m = [xp.zeros_like(p) for p in params]
    v = [xp.zeros_like(p) for p in params]
    u_all = be.asarray(2.0 * (sample - glo[:, None]) / (ghi - glo)[:, None] - 1.0)
    t_all = be.asarray(targets)
    n_tr = tr.size
    batch = min(int(settings.batch_size), n_tr)
    steps_per_epoch = max(1, n_tr // batch)
    total_steps = max(1, settings.epochs * steps_per_epoch)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    step = 0
    for epoch in range(settings.epochs):
        perm = tr[rng.permutation(n_tr)]
        for s in range(steps_per_epoch):
            idx = be.asarray(perm[s * batch:(s + 1) * batch], dtype=xp.int64)
            u, t = xp.take(u_all, idx, axis=1), xp.take(t_all, idx, axis=1)
            acts = mlp_forward(xp, weights, biases, u)
            g_out = (2.0 / batch) * (acts[-1] - t)
            _, grads = mlp_backward(xp, weights, acts, g_out)
            flat = [g for g, _ in grads] + [gb for _, gb in grads]
            step += 1
            lr = settings.learning_rate * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * (step - 1) / total_steps)))
            corr1, corr2 = 1.0 - beta1 ** step, 1.0 - beta2 ** step
            for i, g in enumerate(flat):
                m[i] = beta1 * m[i] + (1.0 - beta1) * g
                v[i] = beta2 * v[i] + (1.0 - beta2) * (g * g)
                params[i] = params[i] - (lr / corr1) * m[i] / (xp.sqrt(v[i] / corr2) + eps)
            weights, biases = params[:len(weights)], params[len(weights):]
        if log is not None and (epoch + 1) % max(1, settings.epochs // 10) == 0:
            acts = mlp_forward(xp, weights, biases, u_all)
            loss = float(xp.mean((acts[-1] - t_all) ** 2))
            log(f"epoch {epoch + 1}/{settings.epochs}: mean squared coefficient error {loss:.3g}")
    weights, biases = _refit_output_layer(xp, weights, biases, xp.take(u_all, be.asarray(tr, dtype=xp.int64), axis=1),
                                          xp.take(t_all, be.asarray(tr, dtype=xp.int64), axis=1))
    surrogate = Surrogate(
        weights=[np.asarray(to_numpy(w), dtype=np.float64) for w in weights],
        biases=[np.asarray(to_numpy(b), dtype=np.float64)[:, 0] for b in biases],
        components=components, mean=mean, coef_scale=scale, lower=glo, upper=ghi, floor=floor,
        transform=settings.transform, energy_edges_kev=model.energy_edges_kev, output_edges_kev=output_edges_kev,
        log_inputs=log_inputs)
    # Validation in the output space, for the network and for the PCA truncation alone.
    dev = DeviceSurrogate(surrogate, np_namespace(), np.float64)
    pred = to_numpy(dev.evaluate(theta[:, val]))
    recon = mean[:, None] + components.T @ coeffs[:, val]
    recon = np.exp(recon) - floor if settings.transform == "log" else recon
    truth = spectra[:, val]
    params_meta = [dict(p.to_dict(), bounds=[float(lo[i]), float(hi[i])],
                        default=float(min(max(p.default, lo[i]), hi[i])))
                   for i, p in enumerate(model.parameters)]
    from .. import __version__

    surrogate.metadata = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "xhsi_version": __version__,
        "emulated_model": model.name, "model_options": to_dict(model_options) if model_options is not None else {},
        "additive": bool(model.additive), "parameters": params_meta,
        "energy_grid": {"n_e": int(model.n_e), "min_kev": float(model.energy_edges_kev[0]),
                        "max_kev": float(model.energy_edges_kev[-1]),
                        "sha256": edges_digest(model.energy_edges_kev)},
        "response": response, "n_out": int(mean.size),
        "architecture": {"transform": settings.transform, "n_components": int(k), "hidden": list(sizes[1:-1]),
                         "activation": "tanh", "explained_variance": float((sing[:k] ** 2).sum() / (sing ** 2).sum())},
        "training": {"n_samples": n, "n_validation": int(n_val), "epochs": int(settings.epochs),
                     "batch_size": int(batch), "learning_rate": float(settings.learning_rate),
                     "seed": int(settings.seed), "backend": settings.backend,
                     "sampling": "latin hypercube" + (f" (log-uniform in {', '.join(settings.log_parameters)})"
                                                      if settings.log_parameters else ""),
                     "seconds": round(time.perf_counter() - t0, 3)},
        "validation": {"metric": "relative L2 error per spectrum", "network": _summary(_relative_errors(pred, truth)),
                       "pca_only": _summary(_relative_errors(recon, truth))},
    }
    return surrogate


def _refit_output_layer(xp, weights, biases, u, targets, ridge: float = 1e-10):
    """Replace the last (linear) layer by the least-squares fit of the targets on the last
    hidden activations of the training set (ridge-regularised normal equations, relative
    ridge 1e-10 of the mean feature energy): the output layer's optimum given the features
    Adam has learnt, which removes most of the residual optimisation error cheaply."""
    if len(weights) < 2:
        return weights, biases
    h = mlp_forward(xp, weights, biases, u)[-2]
    feats = xp.concat([h, xp.ones((1, h.shape[1]), dtype=h.dtype)], axis=0)  # (n_h + 1, N)
    gram = to_numpy(xp.matmul(feats, feats.T))
    rhs = to_numpy(xp.matmul(targets, feats.T))  # (k, n_h + 1)
    lam = ridge * float(np.trace(gram)) / gram.shape[0]
    try:
        sol = np.linalg.solve(gram + lam * np.eye(gram.shape[0]), rhs.T).T
    except np.linalg.LinAlgError:
        return weights, biases
    new_w = xp.asarray(sol[:, :-1], dtype=weights[-1].dtype)
    new_b = xp.asarray(sol[:, -1:], dtype=biases[-1].dtype)
    return weights[:-1] + [new_w], biases[:-1] + [new_b]


def np_namespace():
    import array_api_compat.numpy as xp

    return xp


def train_from_config(path: str | Path, out: str | Path, log=None) -> Surrogate:
    """``xhsi train-model CONFIG --out FILE.npz``: train, save, return the surrogate."""
    cfg = load_training_config(path)
    s = cfg.surrogate
    where = f"{path}: `surrogate.model`"
    model = build_spectral_model(s.model, s.options, where=where)
    grid = cfg.model.energy
    edges = np.linspace(grid.min_kev, grid.max_kev, grid.bins + 1)
    model.setup(edges, np_namespace(), np.float64)
    fold, channels, identity = _folding(cfg.response, edges)
    surrogate = train_surrogate(model, s, fold=fold, output_edges_kev=channels, response=identity,
                                model_options=s.options, log=log)
    save_surrogate(surrogate, out)
    return surrogate


