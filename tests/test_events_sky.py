"""Event lists binned onto a sky grid (issue 24): synthetic Chandra-like and XMM-like files
with a column WCS, GTIs per chip, grades / status / patterns / flags; DS9 regions; the real
Chandra ACIS-I list of MSH 15-52 when ../shared is present."""
from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from conftest import SHARED, unwrapped
from xhsi.cli import main
from xhsi.io import bin_events

RA0, DEC0 = 228.4753, -59.1401  # tangent point of the event files (MSH 15-52's)
CHANDRA_PIX = 0.492  # arcsec
XMM_PIX = 0.05
COS = np.cos(np.radians(DEC0))


def offset(dx_arcsec, dy_arcsec, ra=RA0, dec=DEC0):
    """RA, Dec of a point dx arcsec east (towards +RA), dy arcsec north of (ra, dec)."""
    return ra + np.asarray(dx_arcsec) / 3600.0 / np.cos(np.radians(dec)), dec + np.asarray(dy_arcsec) / 3600.0


def event_wcs(pix_arcsec: float) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crpix = [4096.5, 4096.5]
    w.wcs.crval = [RA0, DEC0]
    w.wcs.cdelt = [-pix_arcsec / 3600.0, pix_arcsec / 3600.0]
    return w


def write_chandra(path, ra, dec, *, ccd=None, grade=None, status=None, energy_ev=None, gtis=None, sky_wcs=True,
                  dtcor=0.98):
    """A Chandra ACIS-like level-2 list: x/y with the column WCS, energy (eV), ccd_id, grade,
    status (32X bits); ``gtis``: {ccd: [(start, stop), ...]}, one GTI HDU per CCD."""
    n = np.size(ra)
    x, y = event_wcs(CHANDRA_PIX).wcs_world2pix(np.asarray(ra, float), np.asarray(dec, float), 1)
    bits = np.zeros((n, 32), dtype=bool)
    if status is not None:
        bits[np.asarray(status, bool), 5] = True
    cols = [fits.Column("time", "D", array=np.linspace(10.0, 900.0, n)),
            fits.Column("ccd_id", "I", array=np.zeros(n, int) if ccd is None else np.asarray(ccd)),
            fits.Column("x", "E", unit="pixel", array=x), fits.Column("y", "E", unit="pixel", array=y),
            fits.Column("energy", "E", unit="eV", array=np.full(n, 3000.0) if energy_ev is None else energy_ev),
            fits.Column("grade", "I", array=np.zeros(n, int) if grade is None else np.asarray(grade)),
            fits.Column("status", "32X", array=bits)]
    hdu = fits.BinTableHDU.from_columns(cols, name="EVENTS")
    if sky_wcs:
        for i, ctype, crval, cdelt in ((3, "RA---TAN", RA0, -CHANDRA_PIX / 3600), (4, "DEC--TAN", DEC0,
                                                                                   CHANDRA_PIX / 3600)):
            hdu.header.update({f"TCTYP{i}": ctype, f"TCRPX{i}": 4096.5, f"TCRVL{i}": crval, f"TCDLT{i}": cdelt})
    hdu.header.update({"TELESCOP": "CHANDRA", "INSTRUME": "ACIS", "EXPOSURE": 777.0, "DTCOR": dtcor})
    hdus = [fits.PrimaryHDU(), hdu]
    for chip, intervals in (gtis if gtis is not None else {0: [(0.0, 1000.0)]}).items():
        start, stop = np.array(intervals, dtype=float).T
        gti = fits.BinTableHDU.from_columns([fits.Column("START", "D", array=start),
                                             fits.Column("STOP", "D", array=stop)], name="GTI")
        gti.header["CCD_ID"] = chip
        hdus.append(gti)
    fits.HDUList(hdus).writeto(path)
    return path


def write_xmm(path, ra, dec, pattern, flag, instrument="EPN"):
    """An XMM-Newton EPIC-like list: integer X/Y (0.05 arcsec), PI (eV), PATTERN, FLAG, CCDNR;
    one STDGTI01 for CCD 1."""
    n = np.size(ra)
    x, y = event_wcs(XMM_PIX).wcs_world2pix(np.asarray(ra, float), np.asarray(dec, float), 1)
    cols = [fits.Column("X", "J", array=np.round(x).astype(int)), fits.Column("Y", "J", array=np.round(y).astype(int)),
            fits.Column("PI", "J", array=np.full(n, 2000)), fits.Column("PATTERN", "B", array=np.asarray(pattern)),
            fits.Column("FLAG", "J", array=np.asarray(flag)), fits.Column("CCDNR", "B", array=np.ones(n, int))]
    hdu = fits.BinTableHDU.from_columns(cols, name="EVENTS")
    for i, ctype, crval, cdelt in ((1, "RA---TAN", RA0, -XMM_PIX / 3600), (2, "DEC--TAN", DEC0, XMM_PIX / 3600)):
        hdu.header.update({f"TCTYP{i}": ctype, f"TCRPX{i}": 4096.5, f"TCRVL{i}": crval, f"TCDLT{i}": cdelt})
    hdu.header.update({"TELESCOP": "XMM", "INSTRUME": instrument, "EXPOSURE": 500.0})
    gti = fits.BinTableHDU.from_columns([fits.Column("START", "D", array=[0.0]), fits.Column("STOP", "D", array=[400.0])],
                                        name="STDGTI01")
    gti.header["CCDNR"] = 1
    fits.HDUList([fits.PrimaryHDU(), hdu, gti]).writeto(path)
    return path


def circle_reg(path, ra, dec, radius_arcsec):
    path.write_text(f"# Region file format: DS9 version 4.1\nfk5\ncircle({ra:.8f},{dec:.8f},{radius_arcsec}\")\n")
    return path


def grid(path, **kw):
    return bin_events(path, None, energy_edges_kev=[0.5, 8.0], **kw)


def test_grid_centre_pixel_scale_and_event_pixels(tmp_path):
    # A 40" x 30" grid of 2" pixels centred 100" east, 50" south of the event tangent point:
    # events at the centres of cube pixels (column j, row i) must land there.
    center = offset(100.0, -50.0)
    cells = [(0, 0), (3, 7), (14, 19), (5, 10)]
    dx = np.array([(9.5 - j) * 2.0 for i, j in cells])  # pixel centres, 0-based, 20 columns; east is -x
    dy = np.array([(i - 7.0) * 2.0 for i, j in cells])  # 15 rows: row 7 is the centre row
    ra, dec = offset(dx, dy, *center)
    events = write_chandra(tmp_path / "ev.fits", ra, dec)
    cube = grid(events, center_deg=center, size_arcsec=(40.0, 30.0), pixel_arcsec=2.0)
    assert cube.data.shape == (1, 15, 20)
    assert list(cube.wcs.wcs.ctype) == ["RA---TAN", "DEC--TAN"]
    np.testing.assert_allclose(cube.wcs.wcs.crval, center)
    np.testing.assert_allclose(cube.wcs.wcs.cdelt, [-2.0 / 3600, 2.0 / 3600])
    np.testing.assert_allclose(cube.wcs.wcs_world2pix([center], 0)[0], [9.5, 7.0])
    assert cube.pixel_arcsec == pytest.approx(2.0)
    for i, j in cells:
        assert cube.data[0, i, j] == 1, (i, j)
    assert cube.data.sum() == len(cells)


def test_default_pixel_is_the_event_pixel_times_spatial_bin(tmp_path):
    events = write_chandra(tmp_path / "ev.fits", *offset([0.0], [0.0]))
    cube = grid(events, center_deg=(RA0, DEC0), size_arcsec=19.68, spatial_bin=4)
    assert cube.pixel_arcsec == pytest.approx(4 * CHANDRA_PIX) and cube.data.shape[1:] == (10, 10)


def test_include_and_exclude_circles_remove_exactly_the_events_inside(tmp_path):
    from astropy.coordinates import SkyCoord

    rng = np.random.default_rng(1)
    ra, dec = offset(rng.uniform(-30, 30, 3000), rng.uniform(-30, 30, 3000))
    events = write_chandra(tmp_path / "ev.fits", ra, dec)
    src = offset(8.0, -5.0)
    sep = SkyCoord(ra, dec, unit="deg").separation(SkyCoord(*src, unit="deg")).arcsec
    cut = circle_reg(tmp_path / "src.reg", *src, 6.0)
    whole = grid(events, center_deg=(RA0, DEC0), size_arcsec=60.0, pixel_arcsec=1.0)
    assert whole.data.sum() == 3000
    assert grid(events, center_deg=(RA0, DEC0), size_arcsec=60.0, pixel_arcsec=1.0,
                exclude=cut).data.sum() == (sep >= 6.0).sum()
    inside = grid(events, region=cut, pixel_arcsec=1.0)
    assert inside.data.sum() == (sep < 6.0).sum() > 0
    # The grid takes the region's centre and extent: 12" across in 1" pixels.
    assert inside.data.shape[1:] == (12, 12)
    np.testing.assert_allclose(inside.wcs.wcs.crval, src, atol=0.1 / 3600)


def test_chandra_grades_status_and_chips(tmp_path):
    n = 16
    grade = np.arange(n) % 8
    status = np.arange(n) % 5 == 0
    ccd = np.arange(n) % 2
    ra, dec = offset(np.zeros(n), np.zeros(n))
    gtis = {0: [(0.0, 1000.0)], 1: [(0.0, 1000.0)]}
    events = write_chandra(tmp_path / "ev.fits", ra, dec, grade=grade, status=status, ccd=ccd, gtis=gtis)
    good = np.isin(grade, [0, 2, 3, 4, 6]) & ~status
    kw = {"center_deg": (RA0, DEC0), "size_arcsec": 10.0, "pixel_arcsec": 2.0}
    assert grid(events, **kw).data.sum() == good.sum()
    assert grid(events, event_filter=False, **kw).data.sum() == n
    assert grid(events, ccds=[1], **kw).data.sum() == (good & (ccd == 1)).sum()


@pytest.mark.parametrize("instrument, max_pattern", [("EPN", 4), ("EMOS1", 12)])
def test_xmm_patterns_and_flags(tmp_path, instrument, max_pattern):
    pattern = np.arange(26) % 26
    flag = np.where(np.arange(26) % 3 == 0, 0, 65536)
    ra, dec = offset(np.linspace(-5, 5, 26), np.zeros(26))
    events = write_xmm(tmp_path / "ev.fits", ra, dec, pattern, flag, instrument)
    # X/Y are 0.05" integers: 20 of them make the 1" grid pixel by default. PI is in eV.
    kw = {"center_deg": (RA0, DEC0), "size_arcsec": 12.0, "spatial_bin": 20}
    cube = grid(events, **kw)
    assert cube.pixel_arcsec == pytest.approx(1.0) and cube.exposure_s == pytest.approx(400.0)
    assert cube.data.sum() == ((pattern <= max_pattern) & (flag == 0)).sum()
    assert grid(events, event_filter=False, **kw).data.sum() == 26
    assert bin_events(events, None, energy_edges_kev=[2.5, 8.0], **kw).data.sum() == 0  # 2 keV events


def test_exposure_from_the_gtis_of_the_chips_binned(tmp_path):
    # CCD 0: 1500 s of GTI, CCD 1: 1505 s (within 1 %): the chip with most events sets the
    # exposure, times DTCOR; both are in the header.
    ccd = np.array([0, 1, 1, 1])
    ra, dec = offset(np.zeros(4), np.zeros(4))
    gtis = {0: [(0.0, 1000.0), (1500.0, 2000.0)], 1: [(0.0, 1505.0)], 2: [(0.0, 700.0)]}
    events = write_chandra(tmp_path / "ev.fits", ra, dec, ccd=ccd, gtis=gtis, dtcor=0.98)
    kw = {"center_deg": (RA0, DEC0), "size_arcsec": 10.0, "pixel_arcsec": 2.0}
    cube = grid(events, **kw)
    assert cube.exposure_s == pytest.approx(1505.0 * 0.98)
    assert cube.extra["EXPOSUR0"] == pytest.approx(1470.0) and "EXPOSUR2" not in cube.extra
    assert grid(events, ccds=[0], **kw).exposure_s == pytest.approx(1500.0 * 0.98)
    assert grid(events, exposure_s=123.0, **kw).exposure_s == 123.0
    # Without per-chip GTIs: the header's EXPOSURE.
    nogti = write_chandra(tmp_path / "nogti.fits", ra, dec, ccd=ccd, gtis={})
    assert grid(nogti, **kw).exposure_s == 777.0


def _refused(tmp_path, capsys, argv, *words):
    out = tmp_path / "cube.fits"
    assert main(["bin", *map(str, argv), "--out", str(out)]) == 2
    message = unwrapped(capsys.readouterr().err)
    assert message.startswith("xhsi bin: error: ") and "Traceback" not in message, message
    for word in words:
        assert word in message, (word, message)
    assert not out.exists()
    return message


def test_bad_inputs_exit_2_with_a_clear_message_and_no_cube(tmp_path, capsys):
    ra, dec = offset(np.zeros(3), np.zeros(3))
    grid_args = ["--energy-range", "0.5", "8", "--energy-step", "0.5", "--size", "20", "--pixel-arcsec", "2"]
    flat = write_chandra(tmp_path / "flat.fits", ra, dec, sky_wcs=False)
    _refused(tmp_path, capsys, [flat, *grid_args, "--center", RA0, DEC0], "needs sky positions",
             "no TCTYP/TCRPX/TCRVL/TCDLT keywords")
    events = write_chandra(tmp_path / "ev.fits", ra, dec, ccd=[0, 0, 3], gtis={0: [(0.0, 1000.0)]})
    far = circle_reg(tmp_path / "far.reg", *offset(0.0, 3600.0), 10.0)
    _refused(tmp_path, capsys, [events, *grid_args, "--region", far], "holds no event", "outside the event list's field")
    _refused(tmp_path, capsys, [events, *grid_args, "--center", RA0, DEC0, "--exclude", far],
             "--exclude shapes hold no event", "outside the event list's field")
    _refused(tmp_path, capsys, [events, *grid_args, "--center", RA0 + 1.0, DEC0], "holds no event",
             "outside the event list's field")
    text = tmp_path / "src.txt"
    text.write_text("this is not a region file\n")
    _refused(tmp_path, capsys, [events, *grid_args, "--region", text], "is not a region file xhsi can read", "DS9")
    image = tmp_path / "image.reg"
    image.write_text("image\ncircle(10,10,3)\n")
    _refused(tmp_path, capsys, [events, *grid_args, "--region", image], "pixel coordinates", "fk5")
    _refused(tmp_path, capsys, [events, *grid_args, "--center", RA0, DEC0], "mismatched GTIs",
             "no GTI extension for chip(s) 3", "--ccd", "--exposure")
    uneven = write_chandra(tmp_path / "uneven.fits", ra, dec, ccd=[0, 0, 1],
                           gtis={0: [(0.0, 1000.0)], 1: [(0.0, 600.0)]})
    _refused(tmp_path, capsys, [uneven, *grid_args, "--center", RA0, DEC0], "mismatched GTIs", "differing by more")
    _refused(tmp_path, capsys, [events, *grid_args, "--center", RA0, DEC0, "--ccd", "5"], "no event on chip(s) 5")
    _refused(tmp_path, capsys, [events, "--energy-range", "0.5", "8", "--energy-step", "0.01", "--center", RA0, DEC0,
                                "--size", "36000", "--pixel-arcsec", "0.5"],
             "needs about", "Bin a smaller cube", "--size", "--pixel-arcsec")
    # What a user can do about them: select the chips, or give the exposure.
    assert main(["bin", str(uneven), *grid_args, "--center", str(RA0), str(DEC0), "--ccd", "0",
                 "--out", str(tmp_path / "ok.fits")]) == 0
    assert fits.getheader(tmp_path / "ok.fits")["EXPOSURE"] == pytest.approx(980.0)


EVT2 = SHARED / "research" / "data" / "msh1552_acis_evt2_filtered.fits.gz"
PSR = (15.0 * (15.0 + 13.0 / 60.0 + 55.6 / 3600.0), -(59.0 + 8.0 / 60.0 + 9.0 / 3600.0))  # PSR B1509-58: 15h13m55.6s, -59°08'09"


@pytest.mark.needs_shared
def test_real_chandra_acis_i_list_of_msh_15_52(tmp_path, capsys):
    if not EVT2.is_file():
        pytest.skip(f"{EVT2} is not present")
    pulsar = circle_reg(tmp_path / "psr.reg", *PSR, 3.0)
    out = tmp_path / "msh.fits"
    # 2-8 keV, 4" pixels, a 244" field (61 pixels: the pulsar at the middle pixel).
    args = ["bin", str(EVT2), "--center", str(PSR[0]), str(PSR[1]), "--size", "244", "--pixel-arcsec", "4",
            "--energy-range", "2", "8", "--energy-step", "6", "--out", str(out)]
    assert main(args) == 0
    with fits.open(out) as hdul:
        counts, header = hdul[0].data.astype(np.int64), hdul[0].header
    assert counts.shape == (1, 61, 61)
    px, py = WCS(header).celestial.wcs_world2pix([PSR], 0)[0]
    assert (px, py) == pytest.approx((30.0, 30.0), abs=1e-6)
    image = counts[0]
    assert np.unravel_index(image.argmax(), image.shape) == (30, 30)  # the pulsar is the brightest pixel
    total = int(image.sum())
    assert 25_000 < total < 35_000, total  # 29,417 counts at the time of writing
    assert header["EXPOSURE"] == pytest.approx(18940.29, abs=0.1)  # CCD 3's GTI x DTCOR = the file's EXPOSURE
    assert header["OBS_ID"].strip() == "754"
    assert main(args + ["--exclude", str(pulsar), "--overwrite"]) == 0
    without = fits.getdata(out).astype(np.int64)[0]
    assert without[30, 30] == 0 and 1_000 < total - without.sum() < 3_000  # 2,109 within 3" of the pulsar
    capsys.readouterr()
