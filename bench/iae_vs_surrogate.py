"""The IAE and the PCA + network surrogate of the thermal model on the CasA grid, compared
(issue 26 item 3; docs/spectral_models.md, "Interpolatory Auto-Encoders").

Trains both from their shipped configs (configs/train_iae_thermal_casa.toml,
configs/train_surrogate_thermal_casa.toml: same grid, range and number of samples), then
measures on one fresh test set (600 Latin-hypercube spectra, another seed, never seen in
training) the relative L2 error per spectrum of the surrogate at the true parameters and
of the IAE auto-encoding the spectrum (decoder of the weights the encoder gives), and the
IAE's physical parameters from those weights: the learnt read-out (``physical``) and the
per-pixel fit of the thermal model to the decoded spectra (``fit_physical``). Wall and
CPU time of each training.

    python bench/iae_vs_surrogate.py [bench/results/iae_thermal_casa.json]
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPEED_OF_LIGHT_KMS = 299792.458


def _quantiles(e) -> dict:
    return {"median": float(np.median(e)), "p90": float(np.quantile(e, 0.9)), "max": float(np.max(e))}


def main(argv: list[str]) -> int:
    from xhsi.spectral.models import build_spectral_model
    from xhsi.spectral.training import _sample, train_from_config
    from xhsi.spectral.iae_training import train_iae_from_config
    from xhsi_builtin.spectral_models import IAEModel, SurrogateModel

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        timed = {}
        for name, train, config in (("surrogate", train_from_config, "train_surrogate_thermal_casa.toml"),
                                    ("iae", train_iae_from_config, "train_iae_thermal_casa.toml")):
            t0, c0 = time.perf_counter(), time.process_time()
            timed[name] = train(ROOT / "configs" / config, Path(tmp) / f"{name}.npz")
            out[name] = {"train_wall_s": round(time.perf_counter() - t0, 1),
                         "train_cpu_s": round(time.process_time() - c0, 1)}
    edges = np.linspace(3.0, 8.0, 101)
    thermal = build_spectral_model("thermal", {"fit_abundance": False, "sigma_v_kms": 1000.0}).setup(edges)
    lo, hi = np.array([np.log(0.5), -0.02]), np.array([np.log(8.0), 0.02])
    unit = _sample(lo, hi, 600, np.random.default_rng(12345))
    theta = np.vstack([np.exp(unit[0]), unit[1]])
    truth = thermal.evaluate(theta)
    rel = lambda s: np.linalg.norm(s - truth, axis=0) / np.linalg.norm(truth, axis=0)  # noqa: E731
    surrogate = SurrogateModel(surrogate=timed["surrogate"]).setup(edges)
    out["surrogate"]["test_relative_l2"] = _quantiles(rel(surrogate.evaluate(theta)))
    iae = IAEModel(iae=timed["iae"]).setup(edges)
    weights = iae.encode(truth)
    out["iae"]["test_relative_l2"] = _quantiles(rel(iae.evaluate(weights)))
    phys = iae.physical(weights)
    out["iae"]["readout_kT_relative"] = _quantiles(np.abs(phys["kT"] / theta[0] - 1.0))
    z_error = SPEED_OF_LIGHT_KMS * np.abs(phys["z"] - theta[1])
    out["iae"]["readout_z_abs_kms"] = _quantiles(z_error)
    out["iae"]["readout_z_abs_kms_kT_above_2keV"] = _quantiles(z_error[theta[0] > 2.0])  # Fe K lines in the band
    t0 = time.perf_counter()
    fitted = iae.fit_physical(weights)  # the per-pixel fit of thermal to the decoded spectra
    out["iae"]["fit_physical_wall_s_600_spectra"] = round(time.perf_counter() - t0, 2)
    out["iae"]["fit_kT_relative"] = _quantiles(np.abs(fitted["kT"] / theta[0] - 1.0))
    z_error = SPEED_OF_LIGHT_KMS * np.abs(fitted["z"] - theta[1])
    out["iae"]["fit_z_abs_kms"] = _quantiles(z_error)
    out["iae"]["fit_z_abs_kms_kT_above_2keV"] = _quantiles(z_error[theta[0] > 2.0])
    out["iae"]["held_out_training_validation"] = timed["iae"].validation
    out["surrogate"]["held_out_training_validation"] = timed["surrogate"].validation
    text = json.dumps(out, indent=1)
    print(text)
    if argv:
        Path(argv[0]).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
