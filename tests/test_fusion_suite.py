"""The scene builders of the fusion suite (bench/suite_scenes.py) make valid truth cubes and
configs, and its oracle helpers pick what they say (bench/suite_oracle.py). The suite's runs
themselves are in bench/, not here."""
from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest


def _bench_module(name: str):
    """A module of bench/ (not a package), loaded without putting bench/ on sys.path."""
    path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


suite_oracle = _bench_module("suite_oracle")
suite_scenes = _bench_module("suite_scenes")


@pytest.mark.parametrize("name", sorted(suite_scenes.ALL_SCENES))
def test_scene_builds_a_valid_cube(name):
    spec = suite_scenes.ALL_SCENES[name]
    if suite_scenes.missing_data(spec) is not None:
        pytest.skip(suite_scenes.missing_data(spec))
    n = 12 if spec.data_file is None else 16
    edges = np.linspace(spec.band_kev[0], spec.band_kev[1], 41)
    cube = spec.build(edges, n, suite_scenes.SHARED_DATA)
    assert cube.shape == (40, n, n)
    assert np.all(np.isfinite(cube)) and cube.min() >= 0 and cube.sum() > 0
    # every pixel has a spectrum of its own shape: no scene is one spectrum times an image
    spectra = cube.reshape(40, -1)
    spectra = spectra[:, spectra.sum(0) > 0] / spectra[:, spectra.sum(0) > 0].sum(0)
    assert np.ptp(spectra, axis=1).max() > 1e-3


def test_scene_specs_cover_the_issue():
    specs = suite_scenes.SCENES.values()
    counts = [s.counts for s in specs]
    assert len(suite_scenes.SCENES) >= 8 and min(counts) <= 1e5 and max(counts) >= 1e8
    pairs = {(s.pair.imager, s.pair.spectrometer) for s in specs}
    assert {("xmm_epic_pn", "xrism_resolve"), ("chandra_acis_s", "xrism_resolve"), ("xmm_epic_pn", "athena_xifu"),
            ("suite_imager", "suite_calorimeter")} <= pairs
    assert not set(suite_scenes.HELD_OUT) & set(suite_scenes.SCENES)
    for s in suite_scenes.ALL_SCENES.values():
        assert 2 <= s.pair.spatial_rebin <= 5 and 4 <= s.pair.spectral_rebin <= 40
        assert s.pixels % s.pair.spatial_rebin == 0 and s.bins % s.pair.spectral_rebin == 0
    assert sum(s.data_file is not None for s in specs) >= 1


def test_written_scene_is_a_valid_untuned_config(tmp_path):
    from xhsi.config import load_config
    from xhsi.runner import check_config

    spec = dataclasses.replace(suite_scenes.SCENES["knots"], bins=40, pixels=10)  # small: the writing is tested
    _, truth = suite_scenes.write_scene(spec, tmp_path)
    counts = suite_scenes.expected_counts(truth.astype(np.float64), spec, tmp_path)
    assert sum(counts.values()) == pytest.approx(spec.counts, rel=1e-3)
    for kind in suite_scenes.UNTUNED:
        cfg = load_config(tmp_path / suite_scenes.config_name(kind))
        check_config(cfg)  # instruments, the truth file's grid, the observations
        raw = (tmp_path / suite_scenes.config_name(kind)).read_text()
        assert "max_iter" not in raw and "[solver]" not in raw and "options = { k" not in raw
        assert (kind in ("none", "stop")) == (not cfg.regularizers)
        assert (kind == "stop") == ("regularizers = []" in raw)  # written: no regulariser, only the stop chosen
    assert (tmp_path / "suite_imager.toml").exists() and (tmp_path / "suite_calorimeter.toml").exists()


def test_oracle_helpers_pick_the_best_point():
    bases = {"a": {"psnr_db": 30.0, "asam_deg": 20.0, "rel_error_voxel": 0.5},
             "b": {"psnr_db": 32.0, "asam_deg": 25.0, "rel_error_voxel": 0.4}}
    p = [{"iteration": 0, "psnr_db": 31.0, "asam_deg": 19.0, "rel_error_voxel": 0.3},
         {"iteration": 10, "psnr_db": 33.0, "asam_deg": 19.5, "rel_error_voxel": 0.35},
         {"iteration": 20, "psnr_db": 34.0, "asam_deg": 30.0, "rel_error_voxel": 0.3}]
    q = [{"iteration": 0, "psnr_db": 33.5, "asam_deg": 21.0, "rel_error_voxel": 0.3}]
    entries = [{"name": "p", "path": p, "best": max(p, key=lambda x: x["psnr_db"])},
               {"name": "q", "path": q, "best": q[0]}]
    assert suite_oracle.oracle(entries) == {"candidate": "p", **p[2]}
    assert suite_oracle.beating_both(entries, bases) == ["p@10"]
    assert suite_oracle.beats(q[0], bases) == {"psnr_db": True, "asam_deg": False, "rel_error_voxel": True}
    assert suite_oracle.as_set({"solver.max_iter": 50, "regularizers[0].options.k": 1.5}) == [
        "solver.max_iter=50", "regularizers[0].options.k=1.5"]


def test_equal_pixels_get_equal_ranks():
    """Parameters set by brightness rank (the Crab's Γ, Cas A's kT): pixels of one brightness
    (a real image's empty sky) share the lowest rank of their group, whatever order a sort
    would leave them in."""
    values = np.array([[3.0, 0.0, 0.0], [1.0, 0.0, 5.0]])
    np.testing.assert_allclose(suite_scenes._rank(values), [[0.8, 0.0, 0.0], [0.6, 0.0, 1.0]])
