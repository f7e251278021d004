"""Training of Interpolatory Auto-Encoders (``xhsi train-model`` with an ``[iae]`` table):
Adam with the depth grown in stages, the bounds of the weights, the polynomial read-out of
the physical parameters and the held-out errors. The model is described in ``iae.py``; the
config and the training set (sampled spectra or a library, anchors) are ``iae_data.py``.

Loss of a batch of spectra X (unit sum), after Bobin et al. (2023, A&A 670, A163):

    L = ‖f(X) - Φ_E λ(X)‖² / d  +  μ · Σ_e w_e (ln(S_e + floor) - ln(X_e + floor))² / n_out

(means over the batch), S = g(Φ_E λ(X)) the decoded spectrum and w the per-bin weights of
``weighting``: ``"poisson"`` w ∝ X (to second order the χ² Σ (S - X)²/X of Poisson counts,
the statistic of the fits that use the model), ``"log"`` w = 1 (the same relative error in
every bin), ``"l2"`` w ∝ X² (the relative L2 error); normalised to mean 1 per spectrum.
Gradients by explicit back-propagation, through the encoder of the batch and of the
anchors and through the solve of the barycentric system (for x = K⁻¹r: r̄ = K⁻¹x̄,
K̄ = -r̄ xᵀ, K symmetric). Adam (Kingma & Ba 2015) with a cosine decay of the step to 1 %
(Loshchilov & Hutter 2017) in each of ``layers`` stages; stage s trains s residual blocks in
the encoder and in the decoder, the new block starting at zero weights (the identity), so
each stage starts where the previous one ended.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..schema import to_dict
from .iae import ALIGNMENT_MAX_COND, FORMAT, FORMAT_VERSION, IAE, DeviceIAE, barycentric_system, blocks_backward, blocks_forward, \
    monomial_exponents, save_iae
from .iae_data import WEIGHTING_POWER, TrainIAESection, TrainingSet, _to_log, load_iae_training_config, \
    training_set_from_config
from .models import Parameter, edges_digest
from .training import _relative_errors

__all__ = ["train_iae", "train_iae_from_config", "summary_lines"]

FLOOR_RELATIVE = 1e-8


# -- training ----------------------------------------------------------------------------
def _glorot(rng, rows, cols, gain=1.0):
    limit = gain * math.sqrt(6.0 / (rows + cols))
    return rng.uniform(-limit, limit, (rows, cols))


class _Net:
    """The trainable arrays (numpy) and the loss with its gradient (module docstring)."""

    def __init__(self, n_out, width, layers, act, rng):
        self.act = act
        self.enc_in = [_glorot(rng, width, n_out), np.zeros((width, 1))]
        self.dec_out = [_glorot(rng, n_out, width), np.zeros((n_out, 1))]
        self.enc = [[np.zeros((width, width)), np.zeros((width, 1))] for _ in range(layers)]
        self.dec = [[np.zeros((width, width)), np.zeros((width, 1))] for _ in range(layers)]
        for w in (self.enc[0], self.dec[0]):  # the first stage starts from random blocks, later ones at 0
            w[0][...] = _glorot(rng, width, width)

    def params(self, depth):
        return [self.enc_in, self.dec_out] + self.enc[:depth] + self.dec[:depth]

    def encode(self, x, depth):
        h0 = self.enc_in[0] @ x + self.enc_in[1]
        return blocks_forward(np, self.enc[:depth], h0, self.act)

    def decode(self, psi, depth):
        h, cache = blocks_forward(np, self.dec[:depth], psi, self.act)
        return self.dec_out[0] @ h + self.dec_out[1], h, cache

    def loss(self, x, logx, weights, x_anchor, data, depth, grad=True):
        """Loss and gradients (same structure as ``params``) for a batch (columns)."""
        ridge, sum_to_one, mu, mean, scale, floor = data
        k, n = x_anchor.shape[1], x.shape[1]
        codes, enc_cache = self.encode(np.concatenate([x_anchor, x], axis=1), depth)
        phi_e, phi_x = codes[:, :k], codes[:, k:]
        system = barycentric_system(phi_e, ridge, sum_to_one)
        rhs = phi_e.T @ phi_x
        if sum_to_one:
            rhs = np.concatenate([rhs, np.ones((1, n))], axis=0)
        sol = np.linalg.solve(system, rhs)
        lam = sol[:k]
        psi = phi_e @ lam
        d = psi.shape[0]
        latent_err = phi_x - psi
        r, h, dec_cache = self.decode(psi, depth)
        y = mean + scale * r
        y = y - y.max(axis=0, keepdims=True)
        s = np.exp(y)
        s /= s.sum(axis=0, keepdims=True)
        ell = np.log(s + floor) - logx
        n_out = s.shape[0]
        value = float(np.sum(latent_err ** 2) / (d * n) + mu * np.sum(weights * ell ** 2) / (n_out * n))
        if not grad:
            return value, None, s, lam
        g_s = (2.0 * mu / (n_out * n)) * weights * ell / (s + floor)
        g_r = scale * s * (g_s - np.sum(g_s * s, axis=0, keepdims=True))
        g_dec_out = [g_r @ h.T, g_r.sum(axis=1, keepdims=True)]
        g_psi, g_dec = blocks_backward(np, self.dec[:depth], dec_cache, self.dec_out[0].T @ g_r)
        g_phi_x = (2.0 / (d * n)) * latent_err
        g_psi = g_psi - g_phi_x
        g_phi_e = g_psi @ lam.T
        g_sol = np.zeros_like(sol)
        g_sol[:k] = phi_e.T @ g_psi
        g_rhs = np.linalg.solve(system, g_sol)  # K symmetric
        g_gram = -(g_rhs @ sol.T)[:k, :k]
        g_b = g_rhs[:k]
        g_phi_e = g_phi_e + phi_e @ (g_gram + g_gram.T) + phi_x @ g_b.T
        g_phi_x = g_phi_x + phi_e @ g_b
        g_codes = np.concatenate([g_phi_e, g_phi_x], axis=1)
        g_h0, g_enc = blocks_backward(np, self.enc[:depth], enc_cache, g_codes)
        x_all = np.concatenate([x_anchor, x], axis=1)
        g_enc_in = [g_h0 @ x_all.T, g_h0.sum(axis=1, keepdims=True)]
        grads = [g_enc_in, g_dec_out] + [list(g) for g in g_enc] + [list(g) for g in g_dec]
        return value, grads, s, lam


def _readout(free, targets, degree):
    """Least-squares polynomial (center, scale, exponents, coefficients (p, n_terms))."""
    center, scale = free.mean(axis=1), free.std(axis=1)
    scale = np.where(scale > 0, scale, 1.0)
    exponents = monomial_exponents(free.shape[0], degree)
    if 2 * exponents.shape[0] > free.shape[1]:
        raise ConfigError(f"iae.readout_degree = {degree}: the read-out polynomial of {free.shape[0]} weights has "
                          f"{exponents.shape[0]} terms for {free.shape[1]} training spectra (at least 2 per term "
                          "needed); lower readout_degree or add spectra.")
    feats = _features((free - center[:, None]) / scale[:, None], exponents)
    gram = feats @ feats.T
    lam = 1e-10 * np.trace(gram) / gram.shape[0]
    coef = np.linalg.solve(gram + lam * np.eye(gram.shape[0]), feats @ targets.T).T
    return center, scale, exponents, coef


def _features(u, exponents):
    return np.stack([np.prod(u ** e[:, None], axis=0) for e in exponents], axis=0)


def _quantiles(errors) -> dict:
    return {"median": float(np.median(errors)), "p90": float(np.quantile(errors, 0.9)),
            "p95": float(np.quantile(errors, 0.95)), "max": float(np.max(errors))}


def train_iae(data: TrainingSet, settings: TrainIAESection, log=None, model_options=None) -> IAE:
    """Train an IAE on ``data``. Its metadata's ``validation`` holds the relative L2 error
    of held-out spectra auto-encoded (decoded from the weights their encoding gives:
    median, 90th and 95th percentiles, max) and the read-out errors of the physical
    parameters on them."""
    from .. import __version__

    t0, cpu0 = time.perf_counter(), time.process_time()
    rng = np.random.default_rng(settings.seed)
    spectra = data.spectra / data.spectra.sum(axis=0, keepdims=True)
    anchors = data.anchors / data.anchors.sum(axis=0, keepdims=True)
    n_out, n = spectra.shape
    n_val = max(1, int(round(settings.validation_fraction * n)))
    if n - n_val < 2 * anchors.shape[1]:
        raise ConfigError("iae: too few training spectra for the validation split; raise n_samples.")
    order = rng.permutation(n)
    val, tr = order[:n_val], order[n_val:]
    floor = FLOOR_RELATIVE * float(spectra.max())
    logx = np.log(spectra + floor)
    mean = logx[:, tr].mean(axis=1, keepdims=True)
    scale = logx[:, tr].std(axis=1, keepdims=True)
    scale = np.maximum(scale, 1e-3 * max(float(scale.max()), 1e-12))
    x_all = (logx - mean) / scale
    x_anchor = (np.log(anchors + floor) - mean) / scale
    power = WEIGHTING_POWER[settings.weighting]
    weights = (spectra + floor) ** power
    weights = weights / weights.mean(axis=0, keepdims=True)
    width, layers = int(settings.width), int(settings.layers)
    net = _Net(n_out, width, layers, settings.activation, rng)
    consts = (float(settings.ridge) * width, bool(settings.sum_to_one), float(settings.mu), mean, scale, floor)
    batch = min(int(settings.batch_size), tr.size)
    steps = max(1, tr.size // batch)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    history = []
    for depth in range(1, layers + 1):
        params = net.params(depth)
        flat = [a for pair in params for a in pair]
        m, v = [np.zeros_like(a) for a in flat], [np.zeros_like(a) for a in flat]
        total, step = max(1, settings.epochs * steps), 0
        for epoch in range(settings.epochs):
            perm = tr[rng.permutation(tr.size)]
            for s in range(steps):
                idx = perm[s * batch:(s + 1) * batch]
                _, grads, _, _ = net.loss(x_all[:, idx], logx[:, idx], weights[:, idx], x_anchor, consts, depth)
                step += 1
                lr = settings.learning_rate * (0.01 + 0.495 * (1.0 + math.cos(math.pi * (step - 1) / total)))
                c1, c2 = 1.0 - beta1 ** step, 1.0 - beta2 ** step
                for i, g in enumerate(a for pair in grads for a in pair):
                    m[i] = beta1 * m[i] + (1.0 - beta1) * g
                    v[i] = beta2 * v[i] + (1.0 - beta2) * (g * g)
                    flat[i] -= (lr / c1) * m[i] / (np.sqrt(v[i] / c2) + eps)  # in place: the net's arrays
        value, _, s_val, _ = net.loss(x_all[:, val], logx[:, val], weights[:, val], x_anchor, consts, depth, grad=False)
        err = float(np.median(_relative_errors(s_val, spectra[:, val])))
        history.append({"depth": depth, "validation_loss": value, "validation_median_error": err})
        if log is not None:
            log(f"stage {depth}/{layers} ({settings.epochs} epochs): validation loss {value:.3g}, median relative "
                f"L2 error {err:.3g} ({time.perf_counter() - t0:.1f} s)")
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - cpu0
    codes, _ = net.encode(x_anchor, layers)
    iae = IAE(encoder_in=(net.enc_in[0], net.enc_in[1][:, 0]), encoder_blocks=[(w, b) for w, b in net.enc],
              decoder_blocks=[(w, b) for w, b in net.dec], decoder_out=(net.dec_out[0], net.dec_out[1][:, 0]),
              log_mean=mean[:, 0], log_scale=scale[:, 0], floor=floor, anchor_codes=codes,
              anchor_parameters=data.anchor_parameters.T.copy(), readout_coef=np.zeros((0, 0)),
              readout_exponents=np.zeros((0, 0), dtype=np.int64), readout_center=np.zeros(0),
              readout_scale=np.zeros(0), energy_edges_kev=data.energy_edges_kev,
              output_edges_kev=data.output_edges_kev)
    k = anchors.shape[1]
    n_w = k - 1 if settings.sum_to_one else k
    iae.metadata = {"architecture": {"activation": settings.activation, "sum_to_one": bool(settings.sum_to_one),
                                     "ridge": consts[0], "layers": layers, "width": width, "n_anchors": k}}
    # Weights of every spectrum by the trained encoder (the runtime path), bounds, read-out.
    probe = DeviceIAE(_with_dummy_readout(iae, n_w, data), np, np.float64)
    free = np.asarray(probe.encode(spectra))
    targets = _to_log(data.parameters, data.log_parameters)
    alignment, not_aligned = None, None
    if settings.aligned and n_w == len(data.physical):
        iae.weight_matrix, iae.weight_offset, alignment = _alignment(free[:, tr], targets[:, tr], data)
        free = iae.weight_matrix @ free + iae.weight_offset[:, None]
    elif settings.aligned:
        not_aligned = (f"aligned = true needs as many free weights as physical parameters; {n_w} free weights for "
                       f"{len(data.physical)} parameters: the barycentric weights are the parameters")
        if log is not None:
            log(f"iae: {not_aligned}")
    lo, hi = free[:, tr].min(axis=1), free[:, tr].max(axis=1)
    pad = settings.weight_margin * np.maximum(hi - lo, 1e-6)
    default = free[:, tr].mean(axis=1)
    center, rscale, exponents, coef = _readout(free[:, tr], targets[:, tr], int(settings.readout_degree))
    iae.readout_center, iae.readout_scale, iae.readout_exponents, iae.readout_coef = center, rscale, exponents, coef
    anchor_text = [", ".join(f"{p.name} = {v:.4g}" for p, v in zip(data.physical, row))
                   for row in data.anchor_parameters.T]
    if alignment is not None:
        docs = [f"weight coordinate aligned with {'ln ' if f else ''}{q.name} (≈ 0 to 1 over its training range)"
                for q, f in zip(data.physical, data.log_parameters)]
    else:
        docs = [f"barycentric weight of anchor {j + 1} ({anchor_text[j]})"
                + (f"; anchor {k} ({anchor_text[k - 1]}) has 1 - Σ w" if settings.sum_to_one and j == n_w - 1 else "")
                for j in range(n_w)]
    weight_params = [Parameter(f"w{j + 1}", "", float(default[j]), (float(lo[j] - pad[j]), float(hi[j] + pad[j])),
                               linkable=True, fixable=True, doc=docs[j]) for j in range(n_w)]
    iae.metadata.update({
        "format": FORMAT, "format_version": FORMAT_VERSION, "xhsi_version": __version__, "additive": True,
        "source": dict(data.source, options=to_dict(model_options) if model_options is not None else {}),
        "parameters": [p.to_dict() for p in weight_params],
        "weights": ({"kind": "aligned", **alignment} if alignment is not None else
                    {"kind": "barycentric", **({"why": not_aligned} if not_aligned else {})}),
        "physical_parameters": [dict(p.to_dict(), log=bool(f)) for p, f in zip(data.physical, data.log_parameters)],
        "anchors": [{p.name: float(v) for p, v in zip(data.physical, row)} for row in data.anchor_parameters.T],
        "energy_grid": {"n_e": int(data.energy_edges_kev.size - 1), "min_kev": float(data.energy_edges_kev[0]),
                        "max_kev": float(data.energy_edges_kev[-1]), "sha256": edges_digest(data.energy_edges_kev)},
        "response": data.response, "n_out": int(n_out),
        "training": {"n_samples": int(n), "n_validation": int(n_val), "epochs_per_stage": int(settings.epochs),
                     "batch_size": int(batch), "learning_rate": float(settings.learning_rate), "mu": float(settings.mu),
                     "weighting": settings.weighting, "readout_degree": int(settings.readout_degree),
                     "seed": int(settings.seed), "stages": history, "seconds": round(seconds, 3),
                     "cpu_seconds": round(cpu_seconds, 3)},
    })
    iae.metadata["validation"] = _validation(iae, spectra[:, val], free[:, val], data, val)
    return iae


def _alignment(free, targets, data: TrainingSet) -> tuple[np.ndarray, np.ndarray, dict]:
    """(M, c, report) of the aligned weight coordinates w = M λ + c: least squares over the
    training spectra of w_i ≈ the i-th physical parameter scaled to [0, 1] over its training
    range (``targets``: ln θ for the log parameters). ConfigError when the weights do not
    determine the parameters (M singular)."""
    lo = _to_log(np.array([q.bounds[0] for q in data.physical]), data.log_parameters)
    hi = _to_log(np.array([q.bounds[1] for q in data.physical]), data.log_parameters)
    scaled = (targets - lo[:, None]) / np.maximum(hi - lo, 1e-300)[:, None]
    design = np.vstack([free, np.ones((1, free.shape[1]))]).T
    coef, *_ = np.linalg.lstsq(design, scaled.T, rcond=None)
    matrix, offset = coef[:-1].T, coef[-1]
    if not np.all(np.isfinite(matrix)) or np.linalg.cond(matrix) > ALIGNMENT_MAX_COND:
        raise ConfigError("iae.aligned: the trained weights do not determine the physical parameters (a singular "
                          "alignment); set aligned = false, or move the anchors apart.")
    residual = matrix @ free + offset[:, None] - scaled
    return matrix, offset, {"rms_residual": [float(r) for r in np.sqrt(np.mean(residual ** 2, axis=1))]}


def _with_dummy_readout(iae: IAE, n_w: int, data: TrainingSet) -> IAE:
    """``iae`` with an empty read-out and placeholder parameters, to run its encoder."""
    p = len(data.physical)
    iae.readout_coef, iae.readout_exponents = np.zeros((p, 1)), np.zeros((1, n_w), dtype=np.int64)
    iae.readout_center, iae.readout_scale = np.zeros(n_w), np.ones(n_w)
    iae.metadata["physical_parameters"] = [dict(q.to_dict(), log=bool(f)) for q, f in zip(data.physical,
                                                                                         data.log_parameters)]
    return iae


def _validation(iae: IAE, truth, free, data: TrainingSet, val) -> dict:
    dev = DeviceIAE(iae, np, np.float64)
    decoded = np.asarray(dev.evaluate(free))
    phys = dev.physical(free)
    readout = {}
    for i, p in enumerate(data.physical):
        err = np.abs(np.asarray(phys[p.name]) - data.parameters[i, val])
        readout[p.name] = {"unit": p.unit, "median_abs": float(np.median(err)), "p90_abs": float(np.quantile(err, 0.9)),
                           "range": float(p.bounds[1] - p.bounds[0])}
    return {"metric": "relative L2 error per held-out spectrum, auto-encoded (decoder of the encoder's weights)",
            "reconstruction": _quantiles(_relative_errors(decoded, truth)), "readout": readout}


def summary_lines(iae: IAE, out) -> list[str]:
    """What ``xhsi train-model`` prints after training an IAE."""
    meta, rec = iae.metadata, iae.validation["reconstruction"]
    source = meta["source"].get("model") or meta["source"].get("library")
    lines = [f"{out}: IAE of {source} ({iae.n_anchors} anchors; weights {', '.join(p.name for p in iae.parameters)}; "
             f"{meta['n_out']} output bins; trained in {meta['training']['seconds']:.3g} s)",
             f"held-out relative L2 error per spectrum: median {rec['median']:.3g}, 90% {rec['p90']:.3g}, "
             f"max {rec['max']:.3g}"]
    weights = meta.get("weights", {})
    if weights.get("kind") == "aligned":
        names = [q["name"] for q in meta["physical_parameters"]]
        lines.append("weights aligned with " + ", ".join(names) + " (rms residual "
                     + ", ".join(f"{r:.2g}" for r in weights["rms_residual"]) + " of each training range)")
    for name, e in iae.validation["readout"].items():
        unit = f" {e['unit']}" if e["unit"] else ""
        lines.append(f"read-out of {name}: median |error| {e['median_abs']:.3g}{unit}, 90% {e['p90_abs']:.3g}{unit} "
                     f"(training range {e['range']:.3g}{unit})")
    return lines


def train_iae_from_config(path: str | Path, out: str | Path, log=None) -> IAE:
    """``xhsi train-model CONFIG --out FILE.npz`` for a config with an ``[iae]`` table."""
    cfg = load_iae_training_config(path)
    iae = train_iae(training_set_from_config(cfg), cfg.iae, log=log, model_options=cfg.iae.options)
    save_iae(iae, out)
    return iae
