"""run.json's ``data_fit`` (``xhsi.outputs.data_fit``): what a result explains of each
observation's counts, the check a real-data run (no truth) gets."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from xhsi.backend import to_numpy
from xhsi.config import load_config
from xhsi.outputs import FIT_BANDS, data_fit, summary
from xhsi.results import Result
from xhsi.runner import prepare

CONFIG = """\
[run]
problem = "fusion"
output = "out"
dtype = "float64"

[model]
energy = { min_kev = 2.0, max_kev = 8.0, bins = 48 }
pixels = [9, 9]
pixel_arcsec = 4.1

[[observations]]
name = "xmm"
instrument = "xmm_epic_pn"
spectral_rebin = 4
exposure_s = 1.0e4

[[observations]]
name = "xrism"
instrument = "xrism_resolve"
spatial_rebin = 3
exposure_s = 2.0e4

[simulate]
scene = "casa_like"
"""


@pytest.fixture(scope="module")
def noise_free(tmp_path_factory):
    """A prepared fusion whose counts are their expectation under the truth (not whole
    numbers: data_fit does not need them to be)."""
    path = Path(tmp_path_factory.mktemp("fit")) / "run.toml"
    path.write_text(CONFIG)
    prep = prepare(load_config(path))
    truth = prep.backend.asarray(prep.truth)
    prep.observations = [dataclasses.replace(o, counts=o.forward.apply(truth)) for o in prep.observations]
    return prep


def test_the_truth_explains_every_count_and_the_spectrum_within_rounding(noise_free):
    maps, stats = data_fit(noise_free, to_numpy(noise_free.truth))
    assert set(stats) == set(maps) == {"xmm", "xrism"}
    for name, row in stats.items():
        assert row["counts_kept"] == pytest.approx(1.0, rel=1e-9), name
        assert row["expected_counts"] == pytest.approx(row["counts"], rel=1e-9)
        assert len(row["counts_kept_by_band"]) == FIT_BANDS
        assert all(v == pytest.approx(1.0, rel=1e-9) for v in row["counts_kept_by_band"].values())
        assert row["spectrum_deviance"] < 1e-6 < row["spectrum_expected_deviance"]
        assert np.abs(maps[name]).max() < 1e-6


def test_a_flux_shrunk_softer_result_is_seen_in_the_bands_and_the_spectrum(noise_free):
    truth = to_numpy(noise_free.truth)
    energy = noise_free.grid.energy_mid_kev
    shrunk = truth * (0.9 * (energy / energy[0]) ** -0.2)[:, None, None]  # 10 % less flux, and softer
    _, stats = data_fit(noise_free, shrunk)
    for name, row in stats.items():
        kept = list(row["counts_kept_by_band"].values())  # bands in increasing energy
        assert row["counts_kept"] < 0.9 and all(np.diff(kept) < 0), name
        assert 0.6 < min(kept) < max(kept) < 0.9
        assert row["spectrum_deviance"] > 10 * row["spectrum_expected_deviance"]


def test_the_summary_prints_what_the_result_explains(noise_free):
    _, stats = data_fit(noise_free, 0.95 * to_numpy(noise_free.truth))
    result = Result(arrays={}, metadata={"problem": "fusion", "solver": "fista", "n_iter": 3, "data_fit": stats})
    text = summary(result, Path("out"))
    assert "data `xmm`: the result explains 95.0 % of its" in text and "data `xrism`" in text
    assert "keV 95.0 %" in text and "expected of a true model" in text
