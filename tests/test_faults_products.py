"""Faults of the products a run writes (issue 23, items 6 and 7), grouped by kind:

- FITS products that do not say where, what or by whom: every FITS file of a small run
  (result.fits, maps.fits, components.fits, residuals, simulated counts and truth, an
  ``xhsi bin`` cube) must pass ``verify("exception")``, carry a celestial and a spectral
  WCS, a parsable BUNIT, DATE, CREATOR, TELESCOP/INSTRUME/OBJECT where known, and put the
  result on the sky where the data are;
- file modes that ignore the umask;
- quicklooks that misread: clipped or overlapping labels, no axes, band or unit, a cost plot
  that fakes convergence (checked on the matplotlib figures, before they are saved).
"""
from __future__ import annotations

import os
import stat
from datetime import datetime

import numpy as np
import pytest
from astropy import units
from astropy.io import fits
from astropy.wcs import WCS

from xhsi import quicklook
from xhsi.cli import main
from xhsi.config import load_config
from xhsi.errors import ConfigError
from test_faults_inputs import SIMULATE, config_text
from xhsi.io import read_cube
from xhsi.runner import run, simulate



def fusion_config(model_extra: str = "", xmm_counts: str = "", xrism_counts: str = "") -> str:
    """The tiny simulated fusion config of test_faults_inputs with known exposures."""
    return config_text(xmm=f"exposure_s = 5.0e4\n{xmm_counts}", xrism=f"exposure_s = 1.0e5\n{xrism_counts}",
                       extra=SIMULATE, model=model_extra)


UNMIXING = """\
[run]
problem = "unmixing"
output = "out"
dtype = "float64"
quicklook = true

[problem]
init_iter = 3

[model]
energy = { min_kev = 3.0, max_kev = 8.0, bins = 20 }
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
options = { fit_abundance = false, sigma_v_kms = 1000.0 }
init = { kT = 2.0, z = 0.0 }
bounds = { kT = [0.5, 8.0], z = [-0.02, 0.02] }

[[components]]
name = "synchrotron"
model = "powerlaw"
init = { index = 2.5 }

[solver]
name = "palm"
max_iter = 2
report_every = 1
options = { backtracking = true }

[simulate]
scene = "casa_like"
options = { sigma_v_kms = 1000.0 }
"""

CENTER = (350.85, 58.815)  # Cas A, ICRS degrees


def _write_events(path):
    """A Chandra-like event list: X/Y with a sky WCS, PI channels, provenance keywords."""
    rng = np.random.default_rng(0)
    n = 500
    cols = [fits.Column("X", "E", array=rng.uniform(4080, 4096, n)),
            fits.Column("Y", "E", array=rng.uniform(4080, 4096, n)),
            fits.Column("PI", "J", array=rng.integers(200, 500, n))]
    hdu = fits.BinTableHDU.from_columns(cols, name="EVENTS")
    for i, ctype, crval, cdelt in ((1, "RA---TAN", CENTER[0], -0.492 / 3600), (2, "DEC--TAN", CENTER[1], 0.492 / 3600)):
        hdu.header[f"TCTYP{i}"], hdu.header[f"TCRPX{i}"] = ctype, 4096.5
        hdu.header[f"TCRVL{i}"], hdu.header[f"TCDLT{i}"] = crval, cdelt
    hdu.header.update({"EXPOSURE": 1000.0, "TELESCOP": "CHANDRA", "INSTRUME": "ACIS", "OBJECT": "Cas A",
                       "DATE-OBS": "2000-01-30T00:00:00"})
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    return path


@pytest.fixture(scope="module")
def products(tmp_path_factory):
    """One small set of every FITS product, written under umask 022: simulated counts with a
    [model] centre, a fusion run from them, an unmixing run with no sky position (its
    quicklook figures captured), an ``xhsi bin`` cube."""
    root = tmp_path_factory.mktemp("products")
    old_mask = os.umask(0o022)
    figures: dict = {}
    try:
        sim_cfg = root / "sim.toml"
        sim_cfg.write_text(fusion_config(model_extra=f'center_deg = [{CENTER[0]}, {CENTER[1]}]\nobject = "Cas A"',
                                         xmm_counts="", xrism_counts=""))
        simulate(load_config(sim_cfg), root / "sim")
        run_cfg = root / "run.toml"
        # only XRISM's counts from a file: its 3 x 3 detector pixels give the result's WCS
        run_cfg.write_text(fusion_config(model_extra="", xmm_counts="", xrism_counts='counts = "sim/xrism_counts.fits"'))
        fusion = run(load_config(run_cfg), out=root / "fusion", quiet=True)
        unmix_cfg = root / "unmix.toml"
        unmix_cfg.write_text(UNMIXING)
        with pytest.MonkeyPatch.context() as mp:
            def capture(fig, path):
                figures[path.name] = fig
                return path
            mp.setattr(quicklook, "save_figure", capture)
            unmixing = run(load_config(unmix_cfg), out=root / "unmix", quiet=True)
        events = _write_events(root / "events.fits")
        assert main(["bin", str(events), "--instrument", "chandra_acis_s", "--out", str(root / "binned.fits"),
                     "--energy-bin", "16"]) == 0
    finally:
        os.umask(old_mask)
    return {"root": root, "fusion": fusion, "unmixing": unmixing, "figures": figures}


FITS_FILES = ["sim/truth.fits", "sim/xmm_counts.fits", "sim/xrism_counts.fits", "fusion/result.fits",
              "fusion/residuals_xmm.fits", "fusion/residuals_xrism.fits", "unmix/result.fits", "unmix/maps.fits",
              "unmix/components.fits", "unmix/residuals_acis.fits", "binned.fits"]


# -- FITS products ----------------------------------------------------------------------

@pytest.mark.parametrize("name", FITS_FILES)
def test_every_fits_product_verifies_and_describes_itself(products, name):
    """verify("exception"); each image HDU: a celestial WCS (and a spectral one for cubes)
    that astropy reads, a BUNIT astropy.units parses, DATE (ISO UTC) and CREATOR."""
    with fits.open(products["root"] / name) as hdul:
        hdul.verify("exception")
        images = [h for h in hdul if h.is_image and h.header.get("NAXIS", 0) >= 2]
        assert images, f"{name} has no image"
        for hdu in images:
            h = hdu.header
            wcs = WCS(h, hdul)
            assert wcs.has_celestial, f"{name}[{hdu.name}]: no celestial WCS"
            if h["NAXIS"] == 3:
                assert wcs.wcs.spec == 2 and wcs.world_axis_physical_types[2] == "em.energy"
                assert h["CUNIT3"] == "keV"
            units.Unit(h["BUNIT"])  # raises for a unit astropy cannot read
            datetime.fromisoformat(h["DATE"])
            assert h["CREATOR"].startswith("xhsi ")


def test_fusion_result_is_on_the_sky_of_its_counts(products):
    """result.fits inherits the counts' WCS, carried from the XRISM 3x3 detector pixels to
    the model pixels: detector pixel (0, 0) is the centre of model pixels (0..2, 0..2)."""
    root = products["root"]
    with fits.open(root / "sim/xrism_counts.fits") as hdul:
        detector = WCS(hdul[0].header, hdul).celestial
    with fits.open(root / "fusion/result.fits") as hdul:
        h = hdul[0].header
        model = WCS(h, hdul).celestial
        assert "POSKNOWN" not in h
        assert (h["TELESCOP"], h["INSTRUME"], h["OBJECT"]) == ("XMM-Newton+XRISM", "EPIC-pn+Resolve", "Cas A")
        history = "\n".join(str(v) for v in h["HISTORY"])
        assert "input xmm: XMM-Newton EPIC-pn (xmm_epic_pn), 50000 s, simulated counts" in history
        assert "input xrism: XRISM Resolve (xrism_resolve), 100000 s, xrism_counts.fits" in history
        assert "sky position: sky WCS of observations[1] counts xrism_counts.fits" in history
    np.testing.assert_allclose(model.pixel_to_world_values(1, 1), detector.pixel_to_world_values(0, 0),
                               rtol=0, atol=1e-9)
    np.testing.assert_allclose(model.pixel_to_world_values(5.5, 5.5), CENTER, rtol=0, atol=1e-9)  # grid centre
    assert abs(model.wcs.cdelt[0]) * 3600 == pytest.approx(4.1)


def test_simulated_counts_carry_the_model_centre_and_their_instrument(products):
    with fits.open(products["root"] / "sim/xmm_counts.fits") as hdul:
        h = hdul[0].header
        assert (h["TELESCOP"], h["INSTRUME"], h["XHSIINST"], h["OBJECT"]) == ("XMM-Newton", "EPIC-pn",
                                                                              "xmm_epic_pn", "Cas A")
        assert h["EXPOSURE"] == 5.0e4
        np.testing.assert_allclose(WCS(h, hdul).celestial.pixel_to_world_values(5.5, 5.5), CENTER, atol=1e-9)
    assert read_cube(products["root"] / "sim/xmm_counts.fits").instrument == "xmm_epic_pn"


def test_energy_axis_matches_ebounds(products):
    """Linear model grid: CTYPE3 = 'ENER' at the bin centres; detector channels snapped to
    the RMF (unequal widths): 'ENER-TAB', tabulated centres. Both equal the EBOUNDS centres,
    and read_cube still reads both."""
    root = products["root"]
    for name, ctype in (("fusion/result.fits", "ENER"), ("sim/xmm_counts.fits", "ENER-TAB")):
        with fits.open(root / name) as hdul:
            assert hdul[0].header["CTYPE3"] == ctype
            wcs = WCS(hdul[0].header, hdul)
            n = hdul[0].header["NAXIS3"]
            energies = wcs.pixel_to_world_values(np.zeros(n), np.zeros(n), np.arange(n))[2]
            kev = units.Quantity(energies, wcs.world_axis_units[2]).to_value(units.keV)
        cube = read_cube(root / name)
        # wcslib's eV-to-J constant differs from astropy's by 1e-7; half a bin off would be 4e-3
        np.testing.assert_allclose(kev, 0.5 * (cube.e_min + cube.e_max), rtol=1e-6)


def test_headers_changed_not_the_data(products):
    root = products["root"]
    with fits.open(root / "fusion/result.fits") as hdul:
        assert np.array_equal(hdul[0].data, products["fusion"].arrays["cube"])
    with fits.open(root / "unmix/maps.fits") as hdul:
        for name, image in products["unmixing"].maps.items():
            assert np.array_equal(hdul[name.upper().replace(".", "_")].data, image)


def test_a_product_with_no_known_position_says_so(products):
    with fits.open(products["root"] / "unmix/result.fits") as hdul:
        h = hdul[0].header
        assert h["POSKNOWN"] is False and (h["CRVAL1"], h["CRVAL2"]) == (0.0, 0.0)
        assert "arbitrary" in " ".join(str(c) for c in h["COMMENT"])
        assert (h["TELESCOP"], h["INSTRUME"]) == ("Chandra", "ACIS-S3")
    with fits.open(products["root"] / "unmix/maps.fits") as hdul:
        assert hdul[0].header["POSKNOWN"] is False and hdul["THERMAL_KT"].header["BUNIT"] == "keV"
        assert hdul["THERMAL_Z"].header["BUNIT"] == ""  # dimensionless


def test_binned_events_keep_their_provenance(products):
    with fits.open(products["root"] / "binned.fits") as hdul:
        h = hdul[0].header
        assert (h["TELESCOP"], h["INSTRUME"], h["OBJECT"], h["DATE-OBS"]) == ("CHANDRA", "ACIS", "Cas A",
                                                                               "2000-01-30T00:00:00")
        assert h["XHSIINST"] == "chandra_acis_s"


def test_model_center_deg_is_checked(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(fusion_config(model_extra="center_deg = [360.0, 0.0]", xmm_counts="", xrism_counts=""))
    with pytest.raises(ConfigError, match=r"center_deg.*RA must be in \[0, 360\)"):
        load_config(path)


# -- file modes -------------------------------------------------------------------------

def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_run_outputs_follow_the_umask(products):
    """Every file of the runs (written under umask 022) is 0644, not mkstemp's 0600."""
    files = [p for p in products["root"].rglob("*") if p.is_file() and p.suffix != ".toml"]
    assert files and {p.name: _mode(p) for p in files} == {p.name: 0o644 for p in files}


@pytest.mark.parametrize("mask", [0o027, 0o002])
def test_atomic_writes_follow_the_umask(tmp_path, mask):
    from xhsi.atomic import atomic_write_bytes
    from xhsi.io import write_cube

    old = os.umask(mask)
    try:
        atomic_write_bytes(tmp_path / "a.txt", b"x")
        write_cube(tmp_path / "c.fits", np.zeros((2, 3, 3)), [1.0, 2.0, 3.0], pixel_arcsec=1.0)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.txt") == _mode(tmp_path / "c.fits") == 0o666 & ~mask


def test_umask_read_without_proc(monkeypatch):
    """Where /proc/self/status cannot be read, the umask is read by setting it back at once."""
    from xhsi import atomic

    def no_proc(*args, **kwargs):
        raise OSError("no /proc")

    old = os.umask(0o037)
    try:
        assert atomic.current_umask() == 0o037
        monkeypatch.setattr("builtins.open", no_proc)
        assert atomic.current_umask() == 0o037
        monkeypatch.undo()
        assert os.umask(0o037) == 0o037  # left as it was
    finally:
        os.umask(old)


# -- quicklooks -------------------------------------------------------------------------

def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _drawn(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def test_image_panels_have_arcsec_axes_band_unit_and_readable_colour_bars():
    """A colour bar of counts up to 414,553 (the issue's example) reads ×10⁵, is labelled with
    its unit, and neither it nor its labels overlap the next panel."""
    big = np.linspace(0.0, 414553.0, 24 * 24).reshape(24, 24)
    panels = [quicklook.Panel("data: xmm", big, "count / pix", 4.1, (2.0, 8.0)),
              quicklook.Panel("result", big * 1e-8, "photon / (s cm2 pix)", 4.1, (2.0, 8.0))]
    fig = quicklook.images_figure(panels)
    renderer = _drawn(fig)
    images = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(images) == len(bars) == 2
    for ax, bar, panel in zip(images, bars, panels):
        assert "arcsec" in ax.get_xlabel() and "arcsec" in ax.get_ylabel()
        assert ax.images[0].get_extent() == pytest.approx([-49.2, 49.2, -49.2, 49.2])
        assert ax.images[0].origin == "lower"
        assert "2–8 keV" in ax.get_title() and quicklook.pretty_unit(panel.unit) in ax.get_title()
        assert bar.get_ylabel() == quicklook.pretty_unit(panel.unit)
        box = bar.get_tightbbox(renderer)
        assert fig.bbox.contains(box.x0, box.y0) and fig.bbox.contains(box.x1, box.y1)  # not clipped
    assert bars[0].get_ylabel() == "count pix⁻¹"
    assert bars[1].get_ylabel() == "photon s⁻¹ cm⁻² pix⁻¹"
    assert "10^{5}" in bars[0].yaxis.get_offset_text().get_text()
    assert "10^{−3}" in bars[1].yaxis.get_offset_text().get_text()
    assert not _overlap(bars[0].get_tightbbox(renderer), images[1].get_tightbbox(renderer))


def test_spectra_panels_do_not_overlap():
    energies = np.linspace(2.0125, 7.9875, 240)
    scale = np.ones((6, 6))
    scale[0, 0], scale[3, 3], scale[5, 5] = 2.5e-3, 2.3e-4, 6.7e-5  # the three panels
    cube = np.random.default_rng(0).uniform(size=(240, 6, 6)) * scale
    fig = quicklook.spectra_figure(energies, {"result": cube}, [(0, 0), (3, 3), (5, 5)], "photon / (s cm2 pix)",
                                   pixel_arcsec=4.1, bin_ev=25.0, band_kev=(2.0, 8.0))
    renderer = _drawn(fig)
    axes = fig.axes
    for ax in axes:
        assert ax.get_ylabel() == "photon s⁻¹ cm⁻² pix⁻¹ per 25 eV bin" and ax.get_xlabel() == "energy [keV]"
        assert "2–8 keV" in ax.get_title() and "″" in ax.get_title()
    for left, right in zip(axes, axes[1:]):
        assert not _overlap(left.get_tightbbox(renderer), right.get_tightbbox(renderer))


def test_cost_plot_shows_the_cost_and_its_relative_change():
    """The cost itself, not cost − min(cost) (whose last point always plunges); the relative
    change is the solvers' stopping quantity, with tol drawn."""
    history = [{"iteration": i, "cost": c} for i, c in ((0, 6.2e6), (10, 4.9e6), (20, 4.09e6), (30, 4.0899e6))]
    fig = quicklook.history_figure(history, tol=1e-7, stop_reason="max_iter")
    cost_ax, change_ax = fig.axes
    np.testing.assert_array_equal(cost_ax.lines[0].get_ydata(), [6.2e6, 4.9e6, 4.09e6, 4.0899e6])
    assert cost_ax.get_yscale() == "linear" and change_ax.get_yscale() == "log"
    np.testing.assert_allclose(change_ax.lines[0].get_ydata(), [1.3e6 / 4.9e6, 0.81e6 / 4.09e6, 100 / 4.0899e6])
    assert any(np.all(np.asarray(line.get_ydata()) == 1e-7) for line in change_ax.lines[1:])
    assert "max_iter" in fig.get_suptitle()


def test_run_quicklooks_label_every_panel(products):
    """The figures of an unmixing run: every map and image panel says its band and unit
    and has a labelled colour bar; the cost plot holds the run's cost history."""
    figures = products["figures"]
    assert set(figures) == {"images.png", "maps.png", "spectra.png", "cost.png"}
    for name in ("images.png", "maps.png"):
        fig = figures[name]
        panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
        bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
        assert len(panels) == len(bars)
        for ax, bar in zip(panels, bars):
            assert "keV" in ax.get_title() and "arcsec" in ax.get_xlabel()
            assert bar.get_ylabel() and bar.get_ylabel() in ax.get_title()
    maps = {ax.get_title().splitlines()[0]: ax for ax in figures["maps.png"].axes if ax.get_title()}
    assert "keV" in maps["thermal.kT"].get_title().splitlines()[1]
    assert "dimensionless" in maps["thermal.z"].get_title()
    cost = [row["cost"] for row in products["unmixing"].history]
    np.testing.assert_array_equal(figures["cost.png"].axes[0].lines[0].get_ydata(), cost)
