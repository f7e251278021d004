"""Per-pixel fits (the unmixing baseline): outputs with error maps, binning, and whether
the Fisher errors describe the actual scatter of the estimates."""
from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from test_unmixing import tiny
from xhsi.config import load_config
from xhsi.errors import ConfigError
from xhsi.runner import prepare, run


def pixelfit_config(tmp_path, *overrides):
    return load_config(tiny(tmp_path, max_iter=30), ['run.problem="pixelfit"', *overrides])


def test_pixelfit_writes_maps_with_errors(tmp_path):
    result = run(pixelfit_config(tmp_path), quiet=True)
    with fits.open(tmp_path / "out" / "maps.fits") as hdul:
        names = {h.name for h in hdul[1:]}
    assert {"THERMAL_KT", "THERMAL_KT_ERR", "SYNCHROTRON_INDEX_ERR"} <= names
    assert np.all(result.map_errors["thermal.kT"] > 0)
    assert set(result.metrics["maps"]) >= {"thermal.kT", "synchrotron.index"}
    costs = [row["cost"] for row in result.history]
    assert costs[-1] < costs[0]


@pytest.mark.parametrize("parameter", ["kT", "z"])
def test_fisher_errors_match_the_scatter(tmp_path, parameter):
    # Pull (estimate − truth) / σ over the pixels where the plasma is bright: its spread is
    # about one when the errors are right. The tiny scene's lines are broadened by 1000 km/s
    # (scene and model), which makes the counts smooth in z; with thermal broadening only
    # (~1 eV lines in 125 eV bins) the likelihood is flat in z within a bin and the spreads
    # were 4.0 (kT) and 14.5 (z). Measured with 1000 km/s: 1.02 (kT), 0.93 (z).
    cfg = pixelfit_config(tmp_path)
    result = run(cfg, quiet=True)
    truth = prepare(cfg).scene_truth.component("thermal")
    bright = truth.amplitude > np.percentile(truth.amplitude, 50)
    pull = (result.maps[f"thermal.{parameter}"] - truth.parameters[parameter]) / result.map_errors[f"thermal.{parameter}"]
    spread = np.std(pull[bright])
    assert 0.6 < spread < 1.6, spread


def test_binning_gives_block_constant_maps(tmp_path):
    result = run(pixelfit_config(tmp_path, "problem.bin=2"), quiet=True)
    kT = result.maps["thermal.kT"]
    np.testing.assert_array_equal(kT[0::2, 0::2], kT[1::2, 1::2])
    # amplitudes are shared between the model pixels of a block, so fluxes add up
    assert result.maps["thermal.amplitude"].shape == (8, 8)


@pytest.mark.parametrize("overrides, fragment", [
    (["problem.bin=3"], "bin = 3 does not divide"),
    (['run.likelihood="gaussian"'], "Poisson likelihoods only"),
    (["problem.bins=2"], r"problem.bins.*did you mean `bin`"),
])
def test_pixelfit_errors(tmp_path, overrides, fragment):
    with pytest.raises(ConfigError, match=fragment):
        run(pixelfit_config(tmp_path, *overrides), quiet=True)


@pytest.mark.slow  # a whole run or many fits: `pytest -m slow` (CI runs both)
def test_damping_is_per_pixel_and_per_variable(tmp_path):
    # The Levenberg–Marquardt ridge is λ·diag(F) of each pixel's own variables. A ridge
    # shared by the field (formerly 1e-12·max F) took its scale from the most curved
    # variable anywhere — a near-empty pixel's amplitude, curvature ∝ 1/a² — and on this
    # scene (half empty sky, seed 0) froze 96-97 % of the kT and Γ maps at their init, at
    # 12 x the final deviance (measured 55710 vs 4616).
    from test_unmixing import tiny

    cfg = load_config(tiny(tmp_path, max_iter=30), ["observations.acis.exposure_s=1e4", "model.pixels=[24, 24]",
                                                     "run.seed=0", 'run.problem="pixelfit"'])
    result = run(cfg, quiet=True)
    for name, init in (("synchrotron.index", 2.5), ("thermal.kT", 2.0)):
        frozen = np.mean(np.abs(result.maps[name] - init) < 1e-6)
        assert frozen < 0.05, (name, frozen)
    assert result.history[-1]["cost"] < 0.2 * result.history[0]["cost"]
