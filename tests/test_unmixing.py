"""Unmixing from TOML at a tiny size: outputs, map metrics, and the config errors of
[[components]] (unknown parameters, init out of bounds, links between different units)."""
from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from xhsi.config import load_config
from xhsi.errors import ConfigError
from xhsi.runner import run

TINY = """\
[run]
problem = "unmixing"
output = "out"
dtype = "float64"
quicklook = false

[model]
energy = {{ min_kev = 3.0, max_kev = 8.0, bins = 40 }}
pixels = [8, 8]
pixel_arcsec = 3.936

[[observations]]
name = "acis"
instrument = "chandra_acis_s"
exposure_s = 1.0e5
spectral_rebin = 2

[[components]]
name = "thermal"
model = "thermal"
options = {{ fit_abundance = false }}
init = {{ kT = 2.0, z = 0.0 }}
bounds = {{ kT = [0.5, 8.0], z = [-0.02, 0.02] }}
{thermal_extra}

[[components]]
name = "synchrotron"
model = "powerlaw"
init = {{ index = 2.5 }}
{sync_extra}

[solver]
name = "palm"
max_iter = {max_iter}
report_every = 5
options = {{ backtracking = true }}

[simulate]
scene = "casa_like"
"""


def tiny(tmp_path, max_iter=10, thermal_extra="", sync_extra=""):
    path = tmp_path / "unmix.toml"
    path.write_text(TINY.format(max_iter=max_iter, thermal_extra=thermal_extra, sync_extra=sync_extra))
    return path


def test_unmixing_writes_maps_components_and_map_metrics(tmp_path):
    result = run(load_config(tiny(tmp_path)), quiet=True)
    out = tmp_path / "out"
    with fits.open(out / "maps.fits") as hdul:
        names = {h.name for h in hdul[1:]}
        maps = {"THERMAL_AMPLITUDE", "THERMAL_KT", "THERMAL_Z", "SYNCHROTRON_AMPLITUDE", "SYNCHROTRON_INDEX"}
        assert names == maps | {name + "_ERR" for name in maps}
        assert hdul["THERMAL_KT"].header["BUNIT"] == "keV" and hdul["THERMAL_KT"].data.shape == (8, 8)
        assert "CTYPE1" in hdul["THERMAL_KT"].header
    with fits.open(out / "components.fits") as hdul:
        assert hdul["THERMAL"].data.shape == (40, 8, 8) and "EBOUNDS" in hdul
    kT = result.maps["thermal.kT"]
    assert np.all((kT >= 0.5) & (kT <= 8.0))  # projected on the bounds
    assert np.all(result.maps["synchrotron.amplitude"] >= 0)
    np.testing.assert_allclose(sum(result.components.values()), result.arrays["cube"], rtol=1e-10)
    assert set(result.metrics["maps"]) >= {"thermal.kT", "thermal.z", "synchrotron.index"}
    assert set(result.metrics["maps_pixelfit"]) == set(result.metrics["maps"])  # the yardstick, side by side
    costs = [row["cost"] for row in result.history]
    assert costs[-1] < costs[0]


def test_linked_and_fixed_parameters(tmp_path):
    # two thermal plasmas sharing one velocity map; the second's temperature fixed
    text = tiny(tmp_path).read_text().replace(
        '[[components]]\nname = "synchrotron"\nmodel = "powerlaw"\ninit = { index = 2.5 }',
        '[[components]]\nname = "cool"\nmodel = "thermal"\noptions = { fit_abundance = false }\n'
        'init = { kT = 0.8 }\nfixed = ["kT"]\nlink = { z = "thermal.z" }')
    path = tmp_path / "linked.toml"
    path.write_text(text)
    result = run(load_config(path, ["solver.max_iter=3"]), quiet=True)
    assert "cool.z" not in result.maps and "cool.kT" not in result.maps and "thermal.z" in result.maps


@pytest.mark.parametrize("thermal_extra, sync_extra, fragment", [
    ("", "bounds = { idx = [1, 3] }", r"components\[1\]`.bounds.idx.*no parameter `idx`.*did you mean `index`"),
    ("", "init = { index = 9.0 }", "init.index: 9.0.*outside the bounds"),
    ('link = { kT = "synchrotron.index" }', "", "cannot link `kT` \\(keV\\) to `synchrotron.index`.*units differ"),
    ('link = { kT = "nowhere.kT" }', "", "must be \"component.parameter\""),
    ('fixed = ["temperature"]', "", "fixed: `thermal` has no parameter `temperature`"),
])
def test_component_errors(tmp_path, thermal_extra, sync_extra, fragment):
    if sync_extra.startswith("init"):
        text = tiny(tmp_path).read_text().replace("init = { index = 2.5 }", sync_extra)
        path = tmp_path / "bad.toml"
        path.write_text(text)
    else:
        path = tiny(tmp_path, thermal_extra=thermal_extra, sync_extra=sync_extra)
    with pytest.raises(ConfigError, match=fragment):
        run(load_config(path), quiet=True)


def test_unmixing_needs_palm(tmp_path):
    with pytest.raises(ConfigError, match="palm"):
        run(load_config(tiny(tmp_path), ['solver.name="fista"', "solver.options={}"]), quiet=True)


def test_unmixing_writes_error_maps(tmp_path):
    result = run(load_config(tiny(tmp_path, max_iter=3)), quiet=True)
    assert set(result.map_errors) == set(result.maps)
    assert np.all(np.isfinite(result.map_errors["thermal.kT"])) and np.all(result.map_errors["thermal.kT"] > 0)
    with fits.open(tmp_path / "out" / "maps.fits") as hdul:
        assert "THERMAL_KT_ERR" in hdul and hdul["THERMAL_KT_ERR"].header["BUNIT"] == "keV"
