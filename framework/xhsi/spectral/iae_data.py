"""The training config and the training set of an Interpolatory Auto-Encoder (``xhsi
train-model`` with an ``[iae]`` table; the model is described in ``iae.py``, its training in
``iae_training.py``): spectra sampled from any spectral model over the training bounds (a
Latin hypercube, log-uniform for the log parameters, McKay et al. 1979), optionally folded
through an instrument response, or read from a spectral library file (``library.py``; its
spectra re-binned to ``[model.energy]`` when given, flat within each library bin); and the
anchors: the model's spectra at the anchor points (by default the p + 1 vertices of a
simplex in the bounds, ``anchor_layout = "simplex"``; or the 2^p corners of the published
IAE, ``"corners"``), or the library spectra nearest to them in the bounds scaled to the
unit box (in ln θ for the log parameters). Every check a user's input can fail runs here,
before any training."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import EnergyGrid
from ..errors import ConfigError, DataError, did_you_mean
from ..schema import Context, from_dict, option
from .iae import ACTIVATIONS, check_anchors
from .models import Parameter, build_spectral_model
from .training import (TrainResponseSection, _evaluate_batched, _folding, _sample, _training_bounds,
                       load_training_config)

__all__ = ["TrainIAESection", "IAEModelSection", "IAETrainingConfig", "TrainingSet", "is_iae_config",
           "load_iae_training_config", "training_set_from_config", "sample_model", "library_set", "simplex_vertices",
           "WEIGHTING_POWER", "ANCHOR_LAYOUTS"]

WEIGHTING_POWER = {"log": 0.0, "poisson": 1.0, "l2": 2.0}
MAX_ANCHORS = 16
ANCHOR_LAYOUTS = ("simplex", "corners")


@dataclass
class IAEModelSection:
    energy: EnergyGrid | None = option(None, doc="true-energy grid (linear bins); a library is re-binned onto it")


@dataclass
class TrainIAESection:
    model: str = option("", doc="spectral model to learn (a registered name or a product); or give `library`")
    options: dict = option({}, doc="the model's options (keyed by model name for a product)")
    library: Path | None = option(None, doc="spectral library file (.npz or FITS, docs/spectral_models.md) instead "
                                            "of a model")
    bounds: dict = option({}, doc="training range per parameter; default: the model's bounds, or the library's range")
    log_parameters: list[str] = option([], doc="parameters sampled log-uniformly and read out in ln θ")
    anchors: list[dict] = option([], doc="anchor points, e.g. [{kT = 0.5, z = -0.02}, ...]; default: "
                                         "`anchor_layout`'s points")
    anchor_layout: str = option("simplex", choices=ANCHOR_LAYOUTS,
                                doc="default anchors: the p + 1 vertices of a simplex in the bounds (as many free "
                                    "weights as parameters), or the 2^p corners of the bounds (the published IAE)")
    n_samples: int = option(3000, min=20, unit="spectra", doc="sampled spectra, training + validation (models only)")
    validation_fraction: float = option(0.2, min=0.01, max=0.9, doc="share held out to measure the errors")
    width: int = option(48, min=2, unit="units", doc="latent dimension and width of every hidden layer")
    layers: int = option(3, min=1, doc="residual blocks in the encoder and in the decoder (one more per stage)")
    epochs: int = option(300, min=0, unit="passes", doc="epochs of each stage")
    batch_size: int = option(64, min=1, unit="spectra")
    learning_rate: float = option(4e-3, min=0.0, exclusive_min=True, doc="initial Adam step of each stage")
    mu: float = option(10.0, min=0.0, doc="weight μ of the reconstruction error against the latent error")
    weighting: str = option("poisson", choices=tuple(WEIGHTING_POWER), doc="per-bin weights of the "
                                                                          "reconstruction error")
    ridge: float = option(1e-4, min=0.0, doc="ε of the barycentric weights, per latent unit")
    sum_to_one: bool = option(True, doc="constrain the barycentric weights to sum to 1")
    activation: str = option("smooth_leaky_relu", choices=ACTIVATIONS)
    aligned: bool = option(True, doc="unmixing's parameters: the weights' affine coordinates aligned with the "
                                     "physical parameters (w_i ≈ parameter i scaled to [0, 1]), when the free weights "
                                     "are as many as the parameters (the simplex); false: the barycentric weights")
    readout_degree: int = option(5, min=1, max=6, doc="degree of the polynomial read-out of the physical parameters")
    weight_margin: float = option(0.1, min=0.0, doc="bounds of each weight: training range widened by this share")
    seed: int = option(0, min=0)

    def check(self):
        if bool(self.model) == (self.library is not None):
            raise ValueError("give exactly one of `model` (a spectral model to sample) and `library` (a file).")


@dataclass
class IAETrainingConfig:
    iae: TrainIAESection = option(doc="what to learn and how")
    model: IAEModelSection = option(IAEModelSection(), doc="the true-energy grid (required with a model)")
    response: TrainResponseSection | None = option(None, doc="fold through an instrument response (optional)")
    _source: Path | None = field(default=None, repr=False, compare=False)


def is_iae_config(path: str | Path) -> bool:
    """Whether a training TOML trains an IAE (it has an ``[iae]`` table)."""
    from ..tomlio import load_toml

    return Path(path).is_file() and "iae" in load_toml(path)


def load_iae_training_config(path: str | Path) -> IAETrainingConfig:
    from ..tomlio import load_toml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such training config.")
    cfg = from_dict(IAETrainingConfig, load_toml(path), Context(file=str(path), base_dir=path.parent))
    if cfg.iae.model and cfg.model.energy is None:
        raise ConfigError(f"{path}: `model.energy` is required to sample `iae.model` (the true-energy grid).")
    cfg._source = path
    return cfg


# -- the training set --------------------------------------------------------------------
@dataclass
class TrainingSet:
    """Spectra (n_out, n) and parameters (p, n) to learn from, the anchors (n_out, k) and
    their parameters (k, p), the physical parameters (bounds = training range) and which of
    them are read out in log, plus the grid and the source's description."""

    spectra: np.ndarray
    parameters: np.ndarray
    anchors: np.ndarray
    anchor_parameters: np.ndarray
    physical: list[Parameter]
    log_parameters: np.ndarray
    energy_edges_kev: np.ndarray
    source: dict
    output_edges_kev: np.ndarray | None = None
    response: dict | None = None


def simplex_vertices(p: int) -> np.ndarray:
    """(p + 1, p) vertices of a simplex in the unit box [0, 1]^p: the origin, e_1, and for
    j = 2..p the point with coordinate j at 1, coordinates 1..j-1 at ½ and the rest at 0
    (for p = 2: (0, 0), (1, 0), (½, 1)). Each parameter spans its whole range, and the
    barycentric weights are as many as the parameters (with the sum-to-one constraint), so
    the weight maps have no direction that leaves the spectra's manifold."""
    out = np.zeros((p + 1, p))
    for j in range(1, p + 1):
        out[j, :j - 1], out[j, j - 1] = 0.5, 1.0
    return out


def _anchor_points(settings: TrainIAESection, names, lo, hi) -> np.ndarray:
    """(k, p) anchor parameters: the given ones (checked inside [lo, hi]), or the layout's
    points in the bounds (the middle of a log parameter is its geometric mean)."""
    if not settings.anchors:
        p = len(names)
        if settings.anchor_layout == "corners":
            if 2 ** p > MAX_ANCHORS:
                raise ConfigError(f"iae.anchors: {p} parameters have {2 ** p} corners; give at most "
                                  f"{MAX_ANCHORS} anchors explicitly, or use anchor_layout = \"simplex\".")
            unit = np.array([[(c >> (p - 1 - i)) & 1 for i in range(p)] for c in range(2 ** p)], dtype=np.float64)
        else:
            if p + 1 > MAX_ANCHORS:
                raise ConfigError(f"iae.anchors: {p} parameters need {p + 1} anchors, more than {MAX_ANCHORS}; fix "
                                  "some parameters of the model (its options) or give the anchors explicitly.")
            unit = simplex_vertices(p)
        log = np.array([n in settings.log_parameters for n in names])
        glo, ghi = _to_log(lo, log), _to_log(hi, log)
        points = glo + unit * (ghi - glo)
        points = np.where(log, np.exp(points), points)
        return np.clip(points, lo, hi)  # the corners exactly, despite exp(ln θ)
    points = []
    for j, anchor in enumerate(settings.anchors):
        unknown = [k for k in anchor if k not in names]
        missing = [n for n in names if n not in anchor]
        if unknown or missing:
            bad = unknown[0] if unknown else None
            raise ConfigError(f"iae.anchors[{j}]: " + (f"`{bad}` is not a parameter{did_you_mean(bad, names)}; "
                                                       if bad else f"no value for {', '.join(missing)}; ")
                              + f"each anchor gives every parameter: {', '.join(names)}.")
        if not all(isinstance(anchor[n], (int, float)) and not isinstance(anchor[n], bool) for n in names):
            raise ConfigError(f"iae.anchors[{j}]: values must be numbers.")
        points.append([float(anchor[n]) for n in names])
    if not 2 <= len(points) <= MAX_ANCHORS:
        raise ConfigError(f"iae.anchors: give between 2 and {MAX_ANCHORS} anchors, got {len(points)}.")
    return np.array(points)


def _physical(names, units, lo, hi) -> list[Parameter]:
    """Library parameters: bounds the training range, default its middle."""
    return [Parameter(n, units[i], float(0.5 * (lo[i] + hi[i])), (float(lo[i]), float(hi[i])))
            for i, n in enumerate(names)]


def _log_flags(settings: TrainIAESection, names, lo) -> np.ndarray:
    unknown = [n for n in settings.log_parameters if n not in names]
    if unknown:
        raise ConfigError(f"iae.log_parameters: `{unknown[0]}` is not a parameter{did_you_mean(unknown[0], names)}; "
                          f"parameters: {', '.join(names)}.")
    flags = np.array([n in settings.log_parameters for n in names])
    if np.any(flags & (lo <= 0)):
        bad = names[int(np.argmax(flags & (lo <= 0)))]
        raise ConfigError(f"iae.log_parameters: `{bad}` reaches values <= 0; set iae.bounds for it above 0.")
    return flags


def _to_log(values, log):
    """ln of the rows (parameters, axis 0) flagged in ``log``, the others unchanged."""
    flags = log.reshape((-1,) + (1,) * (np.ndim(values) - 1))
    return np.where(flags, np.log(np.where(flags, values, 1.0)), values)


def sample_model(model, settings: TrainIAESection, fold=None, output_edges_kev=None, response=None) -> TrainingSet:
    """Latin-hypercube samples of ``model`` (set up on numpy float64) over the training
    bounds (log-uniform for the log parameters), and the anchors evaluated exactly."""
    if not model.additive:
        raise ConfigError(f"iae.model: `{model.name}` is multiplicative; an IAE learns emission spectra (unit sum). "
                          f"Train it on the emission model and use a product such as \"absorption * iae\".")
    names = list(model.parameter_names)
    lo, hi = _training_bounds(model, settings.bounds)
    log = _log_flags(settings, names, lo)
    anchors = _anchor_points(settings, names, lo, hi)
    physical = [Parameter(p.name, p.unit, min(max(p.default, lo[i]), hi[i]), (lo[i], hi[i]), doc=p.doc)
                for i, p in enumerate(model.parameters)]
    check_anchors(anchors, physical, "iae.anchors", error=ConfigError)
    glo, ghi = _to_log(lo, log), _to_log(hi, log)
    unit = _sample(glo, ghi, int(settings.n_samples), np.random.default_rng(settings.seed))
    theta = np.clip(np.where(log[:, None], np.exp(unit), unit), lo[:, None], hi[:, None])
    spectra = _evaluate_batched(model, theta)
    anchor_spectra = _evaluate_batched(model, anchors.T.copy())
    if fold is not None:
        spectra, anchor_spectra = fold.T @ spectra, fold.T @ anchor_spectra
    for what, s in (("sampled", spectra), ("anchor", anchor_spectra)):
        if not np.all(np.isfinite(s)) or np.any(s < 0) or np.any(s.sum(axis=0) <= 0):
            raise DataError(f"`{model.name}` returned non-finite, negative or empty {what} spectra inside the "
                            "training bounds; narrow iae.bounds.")
    return TrainingSet(spectra, theta, anchor_spectra, anchors.T.copy(), physical, log, model.energy_edges_kev,
                       {"model": model.name}, output_edges_kev, response)


def library_set(settings: TrainIAESection, grid: EnergyGrid | None, response_section) -> TrainingSet:
    """The spectra of a library file (re-binned to ``grid`` if given, folded if asked), those
    inside ``bounds``; anchors: the library spectra nearest each anchor point."""
    from ..instruments import overlap_matrix
    from .library import read_spectral_library

    lib = read_spectral_library(settings.library)
    names, params, spectra, edges = lib.names, lib.parameters.T, lib.spectra.T, lib.energy_edges_kev
    lo, hi = params.min(axis=1), params.max(axis=1)
    for name, pair in settings.bounds.items():
        if name not in names:
            raise ConfigError(f"iae.bounds: `{name}` is not a parameter of the library{did_you_mean(name, names)}; "
                              f"parameters: {', '.join(names)}.")
        if not (isinstance(pair, list) and len(pair) == 2 and pair[0] < pair[1]):
            raise ConfigError(f"iae.bounds.{name}: expected [lower, upper], increasing.")
        i = names.index(name)
        lo[i], hi[i] = max(lo[i], float(pair[0])), min(hi[i], float(pair[1]))
    keep = np.all((params >= lo[:, None]) & (params <= hi[:, None]), axis=0)
    if keep.sum() < 20 or np.any(lo >= hi):
        raise DataError(f"{lib.path}: {int(keep.sum())} library spectra lie inside the training bounds (need >= 20, "
                        "with every parameter varying); widen iae.bounds or use a larger library.")
    params, spectra = params[:, keep], spectra[:, keep]
    if grid is not None:
        model_edges = np.linspace(grid.min_kev, grid.max_kev, grid.bins + 1)
        tol = 1e-6 * edges[-1]
        if model_edges[0] < edges[0] - tol or model_edges[-1] > edges[-1] + tol:
            raise DataError(f"{lib.path} covers {edges[0]:.6g}–{edges[-1]:.6g} keV, but [model.energy] spans "
                            f"{model_edges[0]:.6g}–{model_edges[-1]:.6g} keV: choose a grid inside the library's.")
        spectra = (overlap_matrix(edges, model_edges).toarray() / np.diff(edges)[None, :]) @ spectra
        edges = model_edges
    log = _log_flags(settings, names, lo)
    physical = _physical(names, lib.units, lo, hi)
    targets = _anchor_points(settings, names, lo, hi)
    check_anchors(targets, physical, "iae.anchors", error=ConfigError)
    glo, gspan = _to_log(lo, log), _to_log(hi, log) - _to_log(lo, log)
    scaled = lambda v: (_to_log(v, log) - glo[:, None]) / gspan[:, None]  # noqa: E731  in the unit box
    dist = ((scaled(params)[:, None, :] - scaled(targets.T)[:, :, None]) ** 2).sum(axis=0)  # (k, n)
    chosen = np.argmin(dist, axis=1)
    if np.unique(chosen).size != chosen.size:
        raise DataError(f"{lib.path}: two anchors fall on the same library spectrum (row {int(chosen[0])}); give "
                        "iae.anchors farther apart or a denser library.")
    fold, channels, identity = _folding(response_section, edges)
    anchors = spectra[:, chosen]
    if fold is not None:
        spectra, anchors = fold.T @ spectra, fold.T @ anchors
        if np.any(spectra.sum(axis=0) <= 0):
            raise DataError(f"{lib.path}: a library spectrum has no counts after the response.")
    return TrainingSet(spectra, params, anchors, params[:, chosen], physical, log, edges,
                       {"library": str(lib.path), "library_rows": int(keep.sum())}, channels, identity)


def training_set_from_config(cfg: IAETrainingConfig) -> TrainingSet:
    """The training spectra and anchors of a validated config: every check a user's input can
    fail (model, bounds, anchors, library file, response) runs here, before any training;
    ``xhsi validate`` runs it too."""
    s, path = cfg.iae, cfg._source or Path("<config>")
    if s.library is not None:
        return library_set(s, cfg.model.energy, cfg.response)
    model = build_spectral_model(s.model, s.options, where=f"{path}: `iae.model`", base_dir=Path(path).parent)
    grid = cfg.model.energy
    edges = np.linspace(grid.min_kev, grid.max_kev, grid.bins + 1)
    model.setup(edges, "numpy", "float64")
    fold, channels, identity = _folding(cfg.response, edges)
    return sample_model(model, s, fold, channels, identity)


def training_config_summary(path) -> str | None:
    """``xhsi validate``'s line for a ``xhsi train-model`` config (an IAE's, checked up to
    its training set, or a surrogate's), or None when ``path`` is not one."""
    from ..tomlio import load_toml

    if is_iae_config(path):
        training = load_iae_training_config(path)
        data = training_set_from_config(training)
        return (f"valid training config for `xhsi train-model` (IAE of {training.iae.model or training.iae.library}, "
                f"{data.spectra.shape[1]} spectra, {data.anchors.shape[1]} anchors).")
    if Path(path).is_file() and "surrogate" in load_toml(path):
        return f"valid training config for `xhsi train-model` (surrogate of {load_training_config(path).surrogate.model})."
    return None
