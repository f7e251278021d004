"""``[metrics] truth_maps``: parameter maps simulated outside a run score its maps as the
simulated scene's components do; ``xhsi simulate`` and simulated runs write them as
``truth_maps.fits``; a run's ``maps.fits`` reads back as a truth; every bad file is a
ConfigError at check time."""
from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits

from test_unmixing import tiny
from xhsi.config import load_config
from xhsi.errors import ConfigError
from xhsi.problems.components import map_metrics
from xhsi.problems.truth_maps import read_map_truth, truth_from_maps
from xhsi.runner import check_config, run, simulate

MAPS = ["thermal.amplitude", "synchrotron.amplitude", "thermal.kT", "thermal.z", "synchrotron.index"]


def pixelfit(path, *overrides):
    return load_config(path, ['run.problem="pixelfit"', "solver.max_iter=30", *overrides])


def without_simulate(tmp_path, name="nosim.toml"):
    """The tiny config without its [simulate] table (counts given with --set)."""
    text = tiny(tmp_path).read_text()
    path = tmp_path / name
    path.write_text(text[:text.index("[simulate]")])
    return path


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """(folder, result) of the tiny pixelfit run on its [simulate] scene."""
    folder = tmp_path_factory.mktemp("simulated")
    return folder, run(pixelfit(tiny(folder)), quiet=True)


def write_hdus(path, hdus: dict[str, tuple[np.ndarray, str]], mapname: bool = False):
    """A truth maps file by hand: {EXTNAME: (image, BUNIT)}."""
    images = []
    for name, (image, unit) in hdus.items():
        hdu = fits.ImageHDU(image, name=name)
        hdu.header["BUNIT"] = unit
        if mapname:
            hdu.header["MAPNAME"] = name
        images.append(hdu)
    fits.HDUList([fits.PrimaryHDU(), *images]).writeto(path)
    return path


def test_truth_maps_score_as_the_simulated_truth_without_simulate(tmp_path, simulated):
    folder, reference = simulated
    written = simulate(pixelfit(tiny(tmp_path)), tmp_path / "sim")
    assert tmp_path / "sim" / "truth_maps.fits" in written
    cfg = pixelfit(without_simulate(tmp_path), f'observations.acis.counts="{tmp_path / "sim" / "acis_counts.fits"}"',
                   'metrics.truth_maps="sim/truth_maps.fits"')  # relative to the config's folder
    result = run(cfg, quiet=True)
    assert set(result.metrics["maps"]) == set(MAPS)
    for name in MAPS:
        for key, value in reference.metrics["maps"][name].items():
            assert result.metrics["maps"][name][key] == pytest.approx(value, rel=1e-9), (name, key)
    assert "result" not in result.metrics  # no true cube: only the maps are scored
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())["map_truth"]
    assert report["source"] == "truth_maps" and report["missing"] == [] and set(report["compared"]) == set(MAPS)
    assert json.loads((tmp_path / "out" / "run.json").read_text())["map_truth"] == "truth_maps"
    # the simulated scene scored every map: run.json says so, metrics.json keeps its keys
    assert reference.metadata["map_truth"] == "simulate" and "map_truth" not in reference.metrics
    with fits.open(folder / "out" / "truth_maps.fits") as hdul:  # a simulated run writes them too
        assert hdul["THERMAL_KT"].header["BUNIT"] == "keV" and hdul["THERMAL_KT"].data.shape == (8, 8)


def test_truth_maps_win_over_the_scene_in_their_unit_and_say_what_is_missing(tmp_path, simulated):
    # The same fit (same scene, seed and config), scored against kT maps 1.25 times the
    # fitted ones, written in eV, NaN in the first row, with no amplitude map: every pixel
    # where the truth is finite counts, unweighted, and every relative error is exactly 0.2.
    _, reference = simulated
    kT_ev = 1.25e3 * reference.maps["thermal.kT"]
    kT_ev[0] = np.nan
    write_hdus(tmp_path / "kT.fits", {"thermal.kT": (kT_ev, "eV")})
    result = run(pixelfit(tiny(tmp_path), f'metrics.truth_maps="{tmp_path / "kT.fits"}"'), quiet=True)
    np.testing.assert_array_equal(result.maps["thermal.kT"], reference.maps["thermal.kT"])
    assert set(result.metrics["maps"]) == {"thermal.kT"}
    for key in ("median_relative_error", "flux_weighted_relative_error"):
        assert result.metrics["maps"]["thermal.kT"][key] == pytest.approx(0.2, rel=1e-12)
    assert result.metrics["map_truth"]["missing"] == [m for m in result.maps if m != "thermal.kT"]
    assert result.metadata["map_truth"] == "truth_maps"
    assert "result" in result.metrics  # the simulated cube still scores the result cube


def test_maps_fits_reads_back_as_truth_maps(tmp_path, simulated):
    folder, reference = simulated
    cfg = pixelfit(tiny(tmp_path), f'metrics.truth_maps="{folder / "out" / "maps.fits"}"')
    check_config(cfg)
    truth = read_map_truth(cfg)
    assert sorted(truth.names) == sorted(MAPS)  # the _ERR HDUs are skipped
    for comp in truth.truth.components:
        np.testing.assert_array_equal(comp.amplitude, reference.maps[f"{comp.name}.amplitude"])
        for pname, image in comp.parameters.items():
            np.testing.assert_array_equal(image, reference.maps[f"{comp.name}.{pname}"])
    scores = map_metrics(reference.maps, truth.truth)
    assert all(s["median_absolute_error"] == 0.0 for s in scores.values()) and set(scores) == set(MAPS)


def test_extname_only_files_match_case_insensitively(tmp_path):
    kT = np.full((8, 8), 3.0)
    write_hdus(tmp_path / "t.fits", {"THERMAL_KT": (kT, "keV"), "synchrotron.index": (kT - 1, ""),
                                     "THERMAL_KT_ERR": (kT, "keV")})
    truth = read_map_truth(pixelfit(tiny(tmp_path), f'metrics.truth_maps="{tmp_path / "t.fits"}"'))
    assert sorted(truth.names) == ["synchrotron.index", "thermal.kT"]


def test_map_metrics_without_amplitude_and_with_nans():
    # Known answer: the estimate is 1.1 x the truth on the finite pixels, wildly off where
    # the truth is NaN (ignored); with no amplitude map every finite pixel weighs the same.
    t = np.arange(1.0, 17.0).reshape(4, 4)
    est = 1.1 * t
    t[0, :2] = np.nan
    est[0, :2] = 1e6
    scores = map_metrics({"a.kT": est}, truth_from_maps({"a.kT": t}))
    assert scores["a.kT"]["median_relative_error"] == pytest.approx(0.1)
    assert scores["a.kT"]["flux_weighted_relative_error"] == pytest.approx(0.1)
    # with an amplitude map, its faint pixels (< 1 % of the peak) and NaN pixels are left out
    amp = np.ones((4, 4))
    amp[3] = 1e-3
    amp[2, 0] = np.nan
    est[3] = 1e6
    est[2, 0] = 1e6
    scores = map_metrics({"a.kT": est}, truth_from_maps({"a.kT": t, "a.amplitude": amp}))
    assert scores["a.kT"]["median_relative_error"] == pytest.approx(0.1)


@pytest.mark.parametrize("make, fragment", [
    (lambda d: d / "absent.fits", r"absent.fits does not exist"),
    (lambda d: (d / "text.fits").write_text("not a FITS file") and d / "text.fits", "cannot be read as a FITS"),
    (lambda d: write_hdus(d / "x.fits", {"thermal.kTT": (np.ones((8, 8)), "keV")}),
     r"HDU `THERMAL.KTT` names no map of this run \(did you mean `thermal.kT`\?\)"),
    (lambda d: write_hdus(d / "x.fits", {"thermal.kT": (np.ones((4, 6)), "keV")}),
     r"has shape 4 × 6; expected 8 × 8 \(ny × nx"),
    (lambda d: write_hdus(d / "x.fits", {"thermal.kT": (np.full((8, 8), np.nan), "keV")}), "no finite value"),
    (lambda d: write_hdus(d / "x.fits", {"thermal.kT": (np.ones((8, 8)), "cm")}), "BUNIT `cm` is not the unit"),
    (lambda d: write_hdus(d / "x.fits", {"thermal.kT": (np.ones((8, 8)), "keV"), "THERMAL_KT": (np.ones((8, 8)),
                                                                                               "keV")}),
     "a second HDU for map `thermal.kT`"),
    (lambda d: fits.PrimaryHDU().writeto(d / "x.fits") or d / "x.fits", "holds no image HDU"),
])
def test_bad_truth_maps_are_refused_before_anything_is_written(tmp_path, make, fragment):
    cfg = pixelfit(tiny(tmp_path), f'metrics.truth_maps="{make(tmp_path)}"')
    with pytest.raises(ConfigError, match=fragment):
        run(cfg, quiet=True)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("problem", ["deconvolution", "fusion"])
def test_truth_maps_need_a_problem_with_maps(tmp_path, problem):
    write_hdus(tmp_path / "t.fits", {"thermal.kT": (np.ones((8, 8)), "keV")})
    text = tiny(tmp_path).read_text()
    path = tmp_path / "imaging.toml"
    second = text[text.index("[[observations]]"):text.index("[[components]]")].replace('"acis"', '"acis2"')
    path.write_text(text[:text.index("[[components]]")] + (second if problem == "fusion" else "")
                    + "[solver]\nname = \"fista\"\nmax_iter = 3\n" + text[text.index("[simulate]"):])
    cfg = load_config(path, [f'run.problem="{problem}"', f'metrics.truth_maps="{tmp_path / "t.fits"}"'])
    with pytest.raises(ConfigError, match=f"problem `{problem}` writes no parameter maps"):
        check_config(cfg)
