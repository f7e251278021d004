"""The ``boundary`` and ``image_components`` scenes (xhsi_builtin.mixture_scenes)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xhsi
from astropy.io import fits
from xhsi.backend import Backend
from xhsi.errors import DataError
from xhsi.grid import ModelGrid
from xhsi.spectral import spectra
from xhsi.testing import rtol_for

GRID = ModelGrid(np.linspace(3.0, 8.0, 21), 12, 14, 2.0)
SHARED = Path(__file__).resolve().parents[2] / "shared" / "research" / "data"


def _images(tmp_path, shape=(48, 56)):
    """Two synthetic band images: a ring (thermal) and an off-centre blob (hard)."""
    y, x = np.mgrid[: shape[0], : shape[1]]
    r = np.hypot(y - shape[0] / 2, x - shape[1] / 2)
    ring = np.exp(-0.5 * ((r - 12.0) / 3.0) ** 2)
    blob = np.exp(-0.5 * (np.hypot(y - 30.0, x - 34.0) / 5.0) ** 2)
    paths = []
    for name, img in (("soft.fits", ring), ("hard.fits", blob)):
        fits.PrimaryHDU(img).writeto(tmp_path / name)
        paths.append(str(tmp_path / name))
    return paths, ring, blob


def _check_truth(truth, flux, dtype):
    cube = truth.cube
    assert cube.shape == GRID.shape and cube.dtype == np.dtype(dtype) and np.all(cube > 0)
    assert float(cube.sum(dtype=np.float64)) == pytest.approx(flux, rel=10 * rtol_for(cube.dtype))
    np.testing.assert_allclose(sum(c.cube.astype(np.float64) for c in truth.components), cube, rtol=rtol_for(cube.dtype))
    for comp in truth.components:
        np.testing.assert_allclose(comp.cube.sum(axis=0), comp.amplitude, rtol=10 * rtol_for(cube.dtype))


def test_boundary_jumps_across_the_line_only(backend):
    opts = {"total_flux": 2.0, "boundary_angle_deg": 0.0, "boundary_offset": 0.0, "gradient": 0.0,
            "kT_a_keV": 1.5, "kT_b_keV": 3.0, "velocity_a_kms": -1000.0, "velocity_b_kms": 1000.0}
    truth = xhsi.get("scene", "boundary")(opts).generate_components(GRID, backend)
    _check_truth(truth, 2.0, backend.dtype_name)
    thermal = truth.component("thermal")
    kT, z = thermal.parameters["kT"], thermal.parameters["z"]
    # normal along +x through the centre: columns 0..6 are side a, 7..13 side b
    assert np.all(kT[:, :7] == 1.5) and np.all(kT[:, 7:] == 3.0)
    np.testing.assert_allclose(z[:, :7], spectra.redshift_from_velocity(-1000.0))
    np.testing.assert_allclose(z[:, 7:], spectra.redshift_from_velocity(1000.0))
    assert truth.component("synchrotron").amplitude.sum() == pytest.approx(0.5, rel=1e-6)  # 25 % of 2


def test_boundary_gradient_varies_along_the_line():
    m = xhsi.get("scene", "boundary")({"boundary_angle_deg": 0.0, "gradient": 0.2}).maps(GRID)
    side_b = m["kT_keV"][:, -1]  # one column beyond the line: varies along y (the line) by ±20 %
    assert side_b.max() / side_b.min() == pytest.approx(1.2 / 0.8, rel=0.05)
    assert m["index"].min() >= 2.3 - 1e-12 and m["index"].max() <= 3.1 + 1e-12


def test_image_components_follow_the_templates(tmp_path, backend):
    (soft, hard), ring, _ = _images(tmp_path)
    opts = {"thermal_image": soft, "synchrotron_image": hard, "floor": 0.0, "synchrotron_fraction": 0.4}
    scene = xhsi.get("scene", "image_components")(opts)
    scene.check(GRID)
    truth = scene.generate_components(GRID, backend)
    _check_truth(truth, 1.0, backend.dtype_name)
    # 48 x 56 image: largest centred square 48, blocks of 48 // 14 = 3, the centred 36 x 42 pixels
    sub = ring[6:42, 7:49].reshape(12, 3, 14, 3).sum(axis=(1, 3))
    np.testing.assert_allclose(truth.component("thermal").amplitude, 0.6 * sub / sub.sum(), rtol=1e-6)
    sync = truth.component("synchrotron").amplitude
    assert sync.sum() == pytest.approx(0.4) and np.unravel_index(np.argmax(sync), sync.shape) == (8, 9)
    # the hardest pixel (the blob) is the hottest and has the flattest synchrotron
    m = scene.maps(GRID)
    hard_px = np.unravel_index(np.argmax(m["synchrotron_amplitude"] / m["thermal_amplitude"]), sub.shape)
    assert m["kT_keV"][hard_px] > np.median(m["kT_keV"]) and m["index"][hard_px] < np.median(m["index"])
    assert m["kT_keV"].min() == pytest.approx(1.0) and m["kT_keV"].max() == pytest.approx(3.0)


def test_image_components_refuse_bad_templates(tmp_path):
    (soft, hard), _, _ = _images(tmp_path)
    fits.PrimaryHDU(np.zeros((4, 5, 6))).writeto(tmp_path / "cube.fits")
    cases = [({"thermal_image": str(tmp_path / "nope.fits")}, "does not exist"),
             ({"thermal_image": str(tmp_path / "cube.fits")}, "not a 2-D image"),
             ({"crop": 100}, "cannot give a centred"),
             ({"hdu": 3}, "does not exist")]
    for extra, message in cases:
        scene = xhsi.get("scene", "image_components")({"thermal_image": soft, "synchrotron_image": hard, **extra})
        with pytest.raises(DataError, match=message):
            scene.check(GRID)


@pytest.mark.skipif(not (SHARED / "casa_1p5_3p0_keV.fits.gz").is_file(), reason="needs ../shared/research/data")
def test_image_components_from_the_real_cas_a_images():
    opts = {"thermal_image": str(SHARED / "casa_1p5_3p0_keV.fits.gz"),
            "synchrotron_image": str(SHARED / "casa_4p0_6p0_keV.fits.gz"), "crop": 960}
    truth = xhsi.get("scene", "image_components")(opts).generate_components(GRID, Backend("numpy", "float64"))
    _check_truth(truth, 1.0, "float64")
    amp = truth.component("thermal").amplitude
    assert amp[4:8, 5:9].sum() < amp.sum() / 2  # a shell: the centre is not where the flux is
