"""``xhsi tiles`` (issue 28 item 3): the plan (cores partition the field, tiles aligned to
every observation's detector pixels, the overlap from the PSF and regulariser reach), the
blending weights (a partition of unity that never counts a pixel within the reach of a
tile's edge), bad input refused with exit 2 before any task, and a tiled fusion that
matches the untiled run of the same config."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from xhsi.cli import main
from xhsi.config import load_config
from xhsi.distributed.tiles import (axis_weights, blend, enclosed_radius, plan_tiles, regulariser_reach,
                                    tile_weights)
from xhsi.distributed.tiles_run import run_tiles
from xhsi.errors import ConfigError
from xhsi.io.cubes import read_cube
from xhsi.runner import check_config, run


def field(tmp_path, pixels=48, bins=16, psf=5, extra="", max_iter=15):
    """A pn + Resolve fusion over ``pixels``² model pixels, PSFs cropped to ``psf`` pixels."""
    path = tmp_path / "field.toml"
    path.write_text(textwrap.dedent(f"""\
        [run]
        problem = "fusion"
        output = "untiled"
        dtype = "float64"
        quicklook = false

        [model]
        energy = {{ min_kev = 2.0, max_kev = 8.0, bins = {bins} }}
        pixels = [{pixels}, {pixels}]
        pixel_arcsec = 4.1

        [[observations]]
        name = "xmm"
        instrument = "xmm_epic_pn"
        exposure_s = 1.0e5
        spectral_rebin = 2
        psf_size = {psf}

        [[observations]]
        name = "xrism"
        instrument = "xrism_resolve"
        exposure_s = 2.0e5
        spatial_rebin = 3
        psf_size = {psf}

        [solver]
        name = "fista"
        max_iter = {max_iter}
        tol = 0.0

        [simulate]
        scene = "casa_like"
        """) + extra)
    return path


# The starlet's thresholds are calibrated per band over the pixels a run sees: on the cube
# itself (absolute) the noise is near uniform, so a tile calibrates as the whole field does;
# relative to the start's brightness (the default) it is not, and tiles then differ from the
# untiled run by ~4 % (median, measured), not by the tiling (docs/scaling.md).
STARLET = ('\n[problem]\nregularize = "absolute"\n'
           '\n[[regularizers]]\nname = "starlet2d1d_l1"\noptions = { scales_2d = 2, scales_1d = 2 }\n')


def test_cores_partition_the_field_and_tiles_cut_whole_detector_pixels(tmp_path):
    plan = plan_tiles(field(tmp_path), tile=18)
    assert plan.unit == 3 and plan.reach == 3 and plan.overlap == 6  # 5 x 5 PSF: its corners, 2.8 px; + 2, up to 3
    owned = np.zeros(plan.field, int)
    for t in plan.tiles:
        owned[slice(*t.core_y), slice(*t.core_x)] += 1
        for (lo, hi), (clo, chi), n in ((t.y, t.core_y, 48), (t.x, t.core_x, 48)):
            assert lo == max(0, clo - plan.overlap) and hi == min(n, chi + plan.overlap)
            assert lo % 3 == 0 and hi % 3 == 0
    assert np.all(owned == 1) and len(plan.tiles) == 9  # cores of 18, 18 and 12 pixels


def test_regulariser_reach_is_what_each_regulariser_declares(tmp_path):
    plan = plan_tiles(field(tmp_path, extra=STARLET), tile=24)
    assert plan.reach == plan.psf_reach + 6 == 9  # 2 (2^2 - 1) pixels for 2 spatial scales
    default = check_config(load_config(field(tmp_path, extra=STARLET.replace("scales_2d = 2, ", ""))))
    assert regulariser_reach(default) == 2 * (2 ** 3 - 1)  # the plugin's default: 3 scales
    sobolev = check_config(load_config(field(tmp_path, extra='[[regularizers]]\nname = "sobolev"\n')))
    assert regulariser_reach(sobolev) == 1


def test_a_regulariser_of_unknown_reach_needs_an_explicit_overlap(tmp_path):
    """A third-party regulariser that does not declare spatial_reach: no overlap is guessed."""
    pytest.importorskip("xhsi_example_plugin")
    config = field(tmp_path, extra='[[regularizers]]\nname = "example_l1"\n')
    with pytest.raises(ConfigError, match="spatial_reach.*give --overlap"):
        plan_tiles(config, tile=24)
    assert plan_tiles(config, tile=24, overlap=9).overlap == 9


def test_enclosed_radius_of_known_kernels():
    delta = np.zeros((7, 7))
    delta[3, 3] = 1.0
    assert enclosed_radius(delta) == 0
    ring = np.zeros((21, 21))
    ring[10, 10 + 8] = ring[10 - 8, 10] = 1.0  # all flux 8 pixels out
    assert enclosed_radius(ring) == 8
    wide = np.zeros((7, 7))
    wide[3, 0] = 1.0  # all flux 3 pixels out
    assert enclosed_radius(np.stack([delta, wide])) == 3  # the widest plane counts


@pytest.mark.parametrize("ramp", [0, 3])
def test_weights_are_a_partition_of_unity_that_ignores_tile_edges(tmp_path, ramp):
    plan = plan_tiles(field(tmp_path), tile=18)
    plan.overlap = plan.reach + ramp
    total = np.zeros(plan.field)
    for t in plan.tiles:
        w = tile_weights(plan, t)
        total[slice(*t.y), slice(*t.x)] += w
        for axis, (span, core) in enumerate(((t.y, t.core_y), (t.x, t.core_x))):
            profile = axis_weights(span, core, 48, plan.ramp)
            for edge, inside in ((span[0], core[0] > 0), (span[1], core[1] < 48)):
                if inside:  # no weight within the reach of a tile edge inside the field
                    near = np.abs(np.arange(*span) + 0.5 - edge) < plan.reach
                    assert np.all(profile[near] == 0.0)
    np.testing.assert_allclose(total, 1.0, rtol=1e-12)
    constant = blend(plan, {t.index: np.full((2,) + t.shape, 5.0) for t in plan.tiles})
    np.testing.assert_allclose(constant, 5.0, rtol=1e-12)


@pytest.mark.parametrize("case,args,message", [
    ("small", ["--tile", "6"], "not larger than the overlap"),
    ("overlap", ["--tile", "18", "--overlap", "1"], "below the reach"),
    ("unit", ["--tile", "20"], "multiple of 3"),
    ("one", ["--tile", "48"], "fits in one tile"),
])
def test_bad_tiles_exit_2_before_any_task(tmp_path, capsys, case, args, message):
    assert main(["tiles", str(field(tmp_path)), *args, "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split()) and "Traceback" not in err
    assert not (tmp_path / "t").exists()


def test_spectrum_observations_cannot_be_tiled(tmp_path, monkeypatch):
    cfg = load_config(field(tmp_path))
    cfg.observations[0].spectrum = tmp_path / "x.pha"
    monkeypatch.setattr("xhsi.config.load_config", lambda *a, **k: cfg)
    monkeypatch.setattr("xhsi.runner.check_config", lambda c: [])
    with pytest.raises(ConfigError, match="OGIP spectrum"):
        plan_tiles(tmp_path / "field.toml", tile=18)


@pytest.mark.slow
def test_tiled_fusion_matches_the_untiled_run(tmp_path):
    pytest.importorskip("distributed")
    from xhsi.distributed import connect

    config = field(tmp_path, extra=STARLET)
    untiled = run(load_config(config), quiet=True)
    plan = plan_tiles(config, tile=24, out=tmp_path / "tiled")
    with connect(workers=2, processes=False) as client:
        report = run_tiles(plan, client, quiet=True)
        assert not report.failed and len(plan.tiles) == 4
        a = np.asarray(untiled.arrays["cube"], dtype=np.float64)
        b = read_cube(tmp_path / "tiled" / "mosaic" / "result.fits").data
        rel = np.abs(a - b) / np.maximum(np.abs(a), 1e-3 * np.abs(a).max())
        assert np.median(rel) < 0.01, np.median(rel)
        seams = np.zeros(plan.field, bool)  # within the overlap of a core edge inside the field
        seams[24 - plan.overlap: 24 + plan.overlap, :] = seams[:, 24 - plan.overlap: 24 + plan.overlap] = True
        assert np.median(rel[:, seams]) < 3e-3  # 3e-4 measured; 1e-2 when tiles are averaged without weights
        plain = np.median(np.abs(a - read_cube(plan.folder(plan.tiles[0]) / "run" / "result.fits").data.mean())
                          / np.maximum(np.abs(a), 1e-3 * np.abs(a).max()))
        assert plain > 0.1  # the comparison can fail
        tiles = json.loads((tmp_path / "tiled" / "mosaic" / "tiles.json").read_text())
        assert tiles["overlap"] == plan.overlap and len(tiles["tiles"]) == 4
        assert json.loads((tmp_path / "tiled" / "mosaic" / "metrics.json").read_text())["result"]["psnr_db"] > 20
        again = run_tiles(plan, client, quiet=True)  # completed tiles are skipped
        assert {o["status"] for o in again.outcomes.values()} == {"complete"}


@pytest.mark.slow
def test_per_pixel_fits_are_tiled_without_overlap_and_match_the_untiled_maps(tmp_path):
    """pixelfit solves each bin x bin block alone: tiles cut along whole blocks with no
    overlap, and the mosaic's maps are the untiled run's (exactly: same blocks, same fits)."""
    pytest.importorskip("distributed")
    from test_unmixing import tiny

    from xhsi.distributed import connect

    config = tiny(tmp_path, max_iter=15)
    sets = ['run.problem="pixelfit"', "problem.bin=2"]
    plan = plan_tiles(config, tile=4, overrides=sets, out=tmp_path / "tiled")
    assert plan.overlap == plan.reach == 0 and plan.unit == 2 and len(plan.tiles) == 4
    with pytest.raises(ConfigError, match="multiple of 2"):
        plan_tiles(config, tile=3, overrides=sets)
    untiled = run(load_config(config, sets), quiet=True)
    with connect(workers=1, processes=False) as client:
        assert not run_tiles(plan, client, quiet=True).failed
    from astropy.io import fits

    with fits.open(tmp_path / "tiled" / "mosaic" / "maps.fits") as hdul:
        for name, image in untiled.maps.items():
            hdu = name.replace(".", "_").upper()
            np.testing.assert_allclose(hdul[hdu].data, image, rtol=1e-9, err_msg=name)
            np.testing.assert_allclose(hdul[hdu + "_ERR"].data, untiled.map_errors[name], rtol=1e-9)
    # the mosaic's maps scored against the simulated field's truth_maps.fits, as the untiled run's
    mosaic = json.loads((tmp_path / "tiled" / "mosaic" / "metrics.json").read_text())["maps"]
    assert set(mosaic) == set(untiled.metrics["maps"]) and mosaic
    for name, scores in untiled.metrics["maps"].items():
        for key, value in scores.items():
            assert mosaic[name][key] == pytest.approx(value, rel=1e-9), (name, key)


def test_every_builtin_regulariser_declares_its_reach_and_grid():
    """The built-in plugins use the mechanism third-party ones use: no name in the core."""
    import xhsi

    for name in xhsi.available("regularizer"):
        cls = xhsi.get("regularizer", name)
        if not cls.__module__.startswith("xhsi_builtin"):
            continue
        reach = cls().spatial_reach()
        assert isinstance(reach, int) and reach >= 0, name
        assert isinstance(cls.selection_grid, dict), name


SELECTING = "\n[selection]\nmax_iter = 10\nevery = 5\n"  # no [[regularizers]], no max_iter: the defaults chosen


def test_the_tiles_of_a_config_that_selects_select_as_it_does(tmp_path):
    from xhsi.distributed.tiles import prepare_tiles
    from xhsi.selection.candidates import budget, candidates, selection_reason

    path = field(tmp_path, extra=SELECTING)
    path.write_text(path.read_text().replace("max_iter = 15\n", ""))
    given = load_config(path)
    assert selection_reason(given) is not None
    plan = plan_tiles(path, tile=18, out=tmp_path / "tiled")
    assert plan.selects == selection_reason(given) and "chooses, once, for every tile" in plan.describe()
    assert plan.reach == plan.psf_reach + 1  # sobolev, one of the candidates' regularisers
    for config in prepare_tiles(plan):
        tile = load_config(config)
        assert selection_reason(tile) == selection_reason(given)  # not the unregularised 500 iterations
        assert budget(tile) == budget(given)
        assert [c.overrides for c in candidates(tile)] == [c.overrides for c in candidates(given)]
    # a config that chose by hand writes tiles that do not select
    plan = plan_tiles(field(tmp_path, extra=STARLET), tile=24, out=tmp_path / "hand")
    assert plan.selects is None
    assert all(selection_reason(load_config(c)) is None for c in prepare_tiles(plan))


@pytest.mark.slow
def test_a_tiled_run_that_selects_chooses_once_on_the_tile_with_the_most_counts(tmp_path):
    pytest.importorskip("distributed")
    from xhsi.distributed import connect
    from xhsi.distributed.tiles_run import lead_tile

    path = field(tmp_path, pixels=24, extra=SELECTING)
    path.write_text(path.read_text().replace("max_iter = 15\n", ""))
    plan = plan_tiles(path, tile=12, out=tmp_path / "tiled")
    with connect(workers=2, processes=False) as client:
        report = run_tiles(plan, client, quiet=True)
    assert not report.failed and len(plan.tiles) == 4
    lead = lead_tile(plan)
    runs = {t.name: plan.folder(t) / "run" for t in plan.tiles}
    chosen = json.loads((runs[lead.name] / "run.json").read_text())["selection"]
    assert (runs[lead.name] / "config.selected.toml").is_file()
    tiles = json.loads((tmp_path / "tiled" / "mosaic" / "tiles.json").read_text())
    assert tiles["selection"] == {"tile": lead.name, "chosen": chosen["name"], "iteration": chosen["iteration"],
                                  "run_overrides": chosen["run_overrides"]}
    selected = load_config(runs[lead.name] / "config.selected.toml")
    for name, run_folder in runs.items():
        if name == lead.name:
            continue
        meta = json.loads((run_folder / "run.json").read_text())
        assert "selection" not in meta  # ran the choice, chose nothing
        resolved = load_config(run_folder / "config.resolved.toml")
        assert resolved.to_dict()["regularizers"] == selected.to_dict()["regularizers"]
        assert resolved.solver.max_iter == selected.solver.max_iter == chosen["iteration"]
    assert "ran the choice of tile " + lead.name in report.summary()


def test_run_overrides_are_recorded_or_rebuilt_from_an_older_run_json():
    from xhsi.selection.driver import final_fixed, run_overrides

    chosen = {"overrides": {"sobolev.weight": 0.3}, "final_max_iter": 40,
              "final_overrides": {"problem.basis_passes": 2, "problem.pass_iter": [30]}}
    rebuilt = run_overrides(chosen)  # run.json written before run_overrides was recorded
    assert rebuilt == {"sobolev.weight": 0.3, **final_fixed(40), "problem.basis_passes": 2, "problem.pass_iter": [30]}
    assert rebuilt["solver.max_iter"] == 40 and rebuilt["selection.select"] == "off"
    assert run_overrides({**chosen, "run_overrides": {"x.y": 1}}) == {"x.y": 1}


@pytest.mark.slow
def test_when_the_lead_tile_fails_no_other_tile_runs_and_the_report_says_why(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    import xhsi.distributed.sweep as sweep
    from xhsi.distributed import connect
    from xhsi.distributed.tiles_run import lead_tile

    path = field(tmp_path, pixels=24, extra=SELECTING)
    path.write_text(path.read_text().replace("max_iter = 15\n", ""))
    plan = plan_tiles(path, tile=12, out=tmp_path / "tiled")
    calls = []

    def failing(config, overrides, folder, point, *args, **kwargs):
        calls.append(point["name"])
        return {"status": "failed", "error": "every candidate failed", "wall_s": 0.0}

    monkeypatch.setattr(sweep, "run_point", failing)
    with connect(workers=1, processes=False) as client:
        report = run_tiles(plan, client, quiet=True)
    lead = lead_tile(plan).name
    assert calls == [lead] and len(report.failed) == len(plan.tiles) == 4
    assert report.outcomes[lead]["error"] == "every candidate failed"
    assert all(f"not run: tile {lead}" in o["error"] for name, o in report.outcomes.items() if name != lead)
    assert not (tmp_path / "tiled" / "mosaic").exists() and "was not written" in report.summary()
