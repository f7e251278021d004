"""The MSH 15-52 walkthrough (docs/real_data.md) reduced for CI: the real Chandra ACIS-I event
list (ObsID 754, ../shared/research/data, skipped when absent) binned onto a 31 x 31 grid of
16" pixels, an absorbed power law fitted per pixel by configs/msh1552_chandra_small.toml.
Checks the literature's softening away from the pulsar (An et al. 2014, ApJ 793, 90;
Gaensler et al. 2002, ApJ 569, 878) and that the products sit at PSR B1509-58."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from conftest import ROOT, SHARED

EVT2 = SHARED / "research" / "data" / "msh1552_acis_evt2_filtered.fits.gz"
PULSAR = SkyCoord("15h13m55.6s", "-59d08m09s", frame="icrs")  # PSR B1509-58
CONFIG = ROOT / "configs" / "msh1552_chandra_small.toml"


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    if not EVT2.is_file():
        pytest.skip(f"{EVT2} is not present")
    from xhsi.config import load_config
    from xhsi.instruments import load_instrument
    from xhsi.io.events import bin_events
    from xhsi.runner import run

    root = tmp_path_factory.mktemp("msh1552")
    (root / "configs").mkdir()
    shutil.copy(CONFIG, root / "configs" / CONFIG.name)  # its relative paths now resolve inside root
    (root / "psr.reg").write_text('# Region file format: DS9 version 4.1\nfk5\ncircle(15:13:55.6,-59:08:09,3")\n')
    cube = root / "runs" / "msh1552_small" / "msh1552_cube_small.fits"
    cube.parent.mkdir(parents=True)
    # The `xhsi bin` command in the config's header.
    bin_events(EVT2, load_instrument("chandra_acis_i"), cube, center_deg=(228.481667, -59.135833),
               size_arcsec=496.0, pixel_arcsec=16.0, energy_range_kev=(1.0, 8.0), energy_bin=16,
               exclude=root / "psr.reg")
    cfg = load_config(root / "configs" / CONFIG.name)
    cfg.run.quicklook = False  # the PNGs take longer than the fit
    run(cfg, quiet=True)
    return root / "runs" / "msh1552_small" / "pixelfit", cube


@pytest.mark.needs_shared
def test_products_open_at_the_pulsar(small_run):
    out, _ = small_run
    for name, hdu in (("maps.fits", "PWN_INDEX"), ("maps.fits", "PWN_NH_ERR"), ("result.fits", 0)):
        with fits.open(out / name) as hdul:
            header = hdul[hdu].header
        assert header.get("POSKNOWN", True) is not False
        px, py = WCS(header).celestial.world_to_pixel(PULSAR)
        assert (float(px), float(py)) == pytest.approx((15.0, 15.0), abs=1e-3), name  # the middle of 31 x 31
    with fits.open(out / "maps.fits") as hdul:
        assert hdul["PWN_INDEX"].header["OBJECT"].strip() == "MSH 15-52"


@pytest.mark.needs_shared
def test_photon_index_softens_away_from_the_pulsar(small_run):
    out, cube = small_run
    with fits.open(out / "maps.fits") as hdul:
        index, err, nh = hdul["PWN_INDEX"].data, hdul["PWN_INDEX_ERR"].data, hdul["PWN_NH"].data
    counts = fits.getdata(cube).sum(axis=0)
    yy, xx = np.indices(index.shape)
    r = np.hypot(yy - 15, xx - 15) * 16.0  # arcsec from the pulsar
    means, sigmas = [], []
    for lo, hi in ((0, 40), (40, 80), (80, 140)):
        m = (r >= lo) & (r < hi) & (counts >= 100)
        w = 1.0 / err[m] ** 2
        means.append(float((w * index[m]).sum() / w.sum()))
        sigmas.append(float(1.0 / np.sqrt(w.sum())))
    # 1.35 ± 0.04, 1.55 ± 0.04, 1.74 ± 0.03 when written: each ring softer than the one inside.
    for k in range(2):
        assert means[k + 1] - means[k] > 2.0 * np.hypot(sigmas[k], sigmas[k + 1]), (means, sigmas)
    assert 1.1 < means[0] < 1.6 and 1.5 < means[2] < 2.1, means
    inner = (r < 80) & (counts >= 100)
    assert 0.4 < np.median(nh[inner]) < 1.5  # 1e22 cm^-2; ~0.8 from the annulus fits (docs/real_data.md)
    summary = json.loads((out / "run.json").read_text())
    assert summary["pixels"] == 31 * 31
