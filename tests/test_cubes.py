"""FITS cubes: layout (primary (n_chan, ny, nx) + celestial WCS + EBOUNDS), round trips,
atomic writes and clear errors."""
from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from xhsi.errors import DataError, ShapeError
from xhsi.io import celestial_wcs, read_cube, write_cube


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_keeps_data_energies_wcs_and_header(tmp_path, dtype):
    rng = np.random.default_rng(0)
    data = rng.random((4, 5, 6)).astype(dtype)
    edges = np.array([1.0, 1.5, 2.5, 4.0, 8.0])
    path = write_cube(tmp_path / "c.fits", data, edges, pixel_arcsec=4.1, center_deg=(83.6, 22.0),
                      exposure_s=2.5e4, instrument="xmm_epic_pn", bunit="photon / (s cm2)", header={"OBJECT": "Crab"})
    cube = read_cube(path)
    np.testing.assert_array_equal(cube.data, data)
    assert cube.data.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(cube.energy_edges_kev, edges)
    np.testing.assert_allclose(cube.energies_kev, 0.5 * (edges[:-1] + edges[1:]))
    assert cube.exposure_s == 2.5e4 and cube.instrument == "xmm_epic_pn" and cube.bunit == "photon / (s cm2)"
    assert cube.header["OBJECT"] == "Crab"
    assert cube.pixel_arcsec == pytest.approx(4.1, rel=1e-9)
    np.testing.assert_array_equal(cube.channels, [1, 2, 3, 4])
    # The centre of the image is the requested sky position (RA increasing to the left).
    ra, dec = cube.wcs.wcs_pix2world([[2.5, 2.0]], 0)[0]
    assert (ra, dec) == pytest.approx((83.6, 22.0), abs=1e-9)
    assert cube.wcs.wcs.cdelt[0] < 0 < cube.wcs.wcs.cdelt[1]


def test_file_layout_is_what_fits_readers_expect(tmp_path):
    write_cube(tmp_path / "c.fits", np.zeros((3, 4, 7)), [1, 2, 3, 4], pixel_arcsec=1.0, exposure_s=10.0, instrument="x")
    with fits.open(tmp_path / "c.fits") as hdul:
        h = hdul[0].header
        assert (h["NAXIS1"], h["NAXIS2"], h["NAXIS3"]) == (7, 4, 3)
        assert h["CTYPE1"] == "RA---TAN" and h["CTYPE2"] == "DEC--TAN"
        assert h["CDELT2"] == pytest.approx(1.0 / 3600)
        assert h["EXPOSURE"] == 10.0 and h["INSTRUME"] == "x"
        eb = hdul["EBOUNDS"]
        assert eb.columns.names == ["CHANNEL", "E_MIN", "E_MAX"] and eb.columns["E_MIN"].unit == "keV"
        w = WCS(h)  # the full 3-axis header parses too
        assert w.naxis == 3 and w.celestial.naxis == 2


def test_backend_arrays_and_an_explicit_wcs(tmp_path, xp):
    data = xp.asarray(np.arange(24.0).reshape(2, 3, 4))
    wcs = celestial_wcs((3, 4), 2.0, (10.0, -5.0))
    cube = read_cube(write_cube(tmp_path / "c.fits", data, np.array([[1.0, 2.0], [2.5, 3.0]]), wcs=wcs))
    np.testing.assert_array_equal(cube.data, np.arange(24.0).reshape(2, 3, 4))
    np.testing.assert_array_equal(cube.e_min, [1.0, 2.5])
    with pytest.raises(DataError, match="not contiguous"):
        cube.energy_edges_kev
    assert cube.wcs.wcs.crval[0] == pytest.approx(10.0)


def test_gzip_and_atomic_overwrite(tmp_path):
    path = write_cube(tmp_path / "c.fits.gz", np.ones((1, 2, 2)), [1.0, 2.0], pixel_arcsec=1.0)
    assert read_cube(path).data.sum() == 4
    with pytest.raises(DataError, match="exists"):
        write_cube(path, np.ones((1, 2, 2)), [1.0, 2.0], pixel_arcsec=1.0, overwrite=False)
    write_cube(path, np.full((1, 2, 2), 2.0), [1.0, 2.0], pixel_arcsec=1.0)
    assert read_cube(path).data.sum() == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.fits.gz"]


def test_errors(tmp_path):
    with pytest.raises(DataError, match="no such cube"):
        read_cube(tmp_path / "missing.fits")
    with pytest.raises(ShapeError, match="3-D"):
        write_cube(tmp_path / "x.fits", np.zeros((3, 4)), [1, 2, 3, 4], pixel_arcsec=1.0)
    with pytest.raises(ShapeError, match="n \\+ 1 = 3 edges"):
        write_cube(tmp_path / "x.fits", np.zeros((2, 3, 4)), [1, 2], pixel_arcsec=1.0)
    with pytest.raises(DataError, match="either `wcs` or `pixel_arcsec`"):
        write_cube(tmp_path / "x.fits", np.zeros((1, 3, 4)), [1, 2])
    with pytest.raises(DataError, match="increasing"):
        write_cube(tmp_path / "x.fits", np.zeros((1, 3, 4)), [2, 1], pixel_arcsec=1.0)
    fits.PrimaryHDU(np.zeros((3, 4))).writeto(tmp_path / "flat.fits")
    with pytest.raises(DataError, match="3-D cube"):
        read_cube(tmp_path / "flat.fits")
    fits.PrimaryHDU(np.zeros((2, 3, 4))).writeto(tmp_path / "noeb.fits")
    with pytest.raises(DataError, match="no EBOUNDS"):
        read_cube(tmp_path / "noeb.fits")
    write_cube(tmp_path / "c.fits", np.zeros((2, 3, 4)), [1, 2, 3], pixel_arcsec=1.0)
    with fits.open(tmp_path / "c.fits") as hdul:
        short = fits.BinTableHDU.from_columns(hdul["EBOUNDS"].columns, nrows=1, name="EBOUNDS")
        fits.HDUList([hdul[0].copy(), short]).writeto(tmp_path / "short.fits")
    with pytest.raises(DataError, match="1 rows but the cube has 2 planes"):
        read_cube(tmp_path / "short.fits")
