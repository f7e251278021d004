"""Binning event lists into counts cubes: X/Y with column WCS, RA/DEC, PI channels through an
RMF instrument, ENERGY through a Gaussian instrument, crop and binning."""
from __future__ import annotations


import numpy as np
import pytest
from astropy.io import fits

from fakes import TOY_INSTRUMENT
from xhsi.errors import DataError
from xhsi.instruments import load_instrument
from xhsi.io import bin_events, read_cube

PIXEL_DEG = 0.492 / 3600.0


def write_events(path, columns: dict, units: dict | None = None, xy_wcs=True, exposure=1000.0):
    formats = {"X": "E", "Y": "E", "RA": "D", "DEC": "D", "PI": "J", "PHA": "J", "ENERGY": "E"}
    cols = [fits.Column(name, formats[name], unit=(units or {}).get(name), array=np.asarray(values))
            for name, values in columns.items()]
    hdu = fits.BinTableHDU.from_columns(cols, name="EVENTS")
    if xy_wcs and "X" in columns:
        names = list(columns)
        ix, iy = names.index("X") + 1, names.index("Y") + 1
        for i, ctype, crval, cdelt in ((ix, "RA---TAN", 83.6, -PIXEL_DEG), (iy, "DEC--TAN", 22.0, PIXEL_DEG)):
            hdu.header[f"TCTYP{i}"] = ctype
            hdu.header[f"TCRPX{i}"] = 4096.5
            hdu.header[f"TCRVL{i}"] = crval
            hdu.header[f"TCDLT{i}"] = cdelt
    hdu.header["EXPOSURE"] = exposure
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    return path


@pytest.fixture
def gaussian_instrument(tmp_path):
    path = tmp_path / "toy.toml"
    path.write_text(TOY_INSTRUMENT)
    return load_instrument(path)


def test_energy_column_through_a_gaussian_instrument(tmp_path, gaussian_instrument):
    # Channels of 0.5 keV from 1 keV. Events (x, y, eV): planes 0, 0, 3, 7 and one out of band.
    x = np.array([10.2, 10.7, 12.5, 13.9, 11.0])
    y = np.array([20.1, 20.9, 21.5, 22.2, 20.0])
    energy = np.array([1100.0, 1400.0, 2600.0, 4999.0, 6000.0])
    events = write_events(tmp_path / "ev.fits", {"X": x, "Y": y, "ENERGY": energy}, units={"ENERGY": "eV"})
    cube = bin_events(events, gaussian_instrument, tmp_path / "cube.fits")
    assert cube.data.shape == (8, 3, 4)  # x 10..14, y 20..23 (floor of min to floor of max + 1)
    assert cube.data.sum() == 4  # the 6 keV event is outside the 1-5 keV channels
    assert cube.data[0, 0, 0] == 2 and cube.data[3, 1, 2] == 1 and cube.data[7, 2, 3] == 1
    np.testing.assert_allclose(cube.e_min, np.linspace(1.0, 4.5, 8))
    back = read_cube(tmp_path / "cube.fits")
    np.testing.assert_array_equal(back.data, cube.data)
    assert back.instrument == "toy" and back.exposure_s == 1000.0


def test_crop_and_binning(tmp_path, gaussian_instrument):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 40, 2000)
    y = rng.uniform(0, 40, 2000)
    energy = rng.uniform(1.0, 5.0, 2000)
    events = write_events(tmp_path / "ev.fits", {"X": x, "Y": y, "ENERGY": energy}, units={"ENERGY": "keV"})
    cube = bin_events(events, gaussian_instrument, crop=(10, 30, 5, 25), spatial_bin=4, energy_bin=2)
    assert cube.data.shape == (4, 5, 5)
    inside = (x >= 10) & (x < 30) & (y >= 5) & (y < 25)
    assert cube.data.sum() == inside.sum()
    # Pixel (iy, ix) of the cube counts events in x ∈ [10 + 4 ix, 14 + 4 ix), y ∈ [5 + 4 iy, 9 + 4 iy).
    sel = (x >= 18) & (x < 22) & (y >= 13) & (y < 17) & (energy >= 2.0) & (energy < 3.0)
    assert cube.data[1, 2, 2] == sel.sum()
    np.testing.assert_allclose(cube.e_max, [2.0, 3.0, 4.0, 5.0])
    assert cube.pixel_arcsec == pytest.approx(4 * 0.492)


def test_wcs_of_the_binned_cube_follows_the_event_wcs(tmp_path, gaussian_instrument):
    x, y = np.array([4096.5, 4100.2]), np.array([4096.5, 4090.7])
    events = write_events(tmp_path / "ev.fits", {"X": x, "Y": y, "ENERGY": np.array([2.0, 2.0])},
                          units={"ENERGY": "keV"})
    cube = bin_events(events, gaussian_instrument, crop=(4080, 4112, 4080, 4112), spatial_bin=2)
    # The event at the reference pixel must fall in the cube pixel whose centre is closest to 83.6, 22.0.
    px, py = cube.wcs.wcs_world2pix([[83.6, 22.0]], 0)[0]
    j, i = int(np.floor(px + 0.5)), int(np.floor(py + 0.5))
    assert cube.data[:, i, j].sum() == 1
    assert (px, py) == pytest.approx(((4096.5 - 4080) / 2 - 0.5, (4096.5 - 4080) / 2 - 0.5))


def test_pi_channels_through_an_rmf_instrument(tmp_path):
    from xhsi.instruments import load_instrument

    inst = load_instrument("chandra_acis_s")
    numbers, lo, hi = inst.channel_table()
    pi = np.array([numbers[0], numbers[0], numbers[10], numbers[-1], 1, 1024])
    x = np.full(pi.size, 3.5)
    y = np.full(pi.size, 7.5)
    events = write_events(tmp_path / "ev.fits", {"X": x, "Y": y, "PI": pi})
    assert numbers.size % 7 != 0
    cube = bin_events(events, inst, energy_bin=7)
    assert cube.data.shape[0] == numbers.size // 7
    assert cube.data[0].sum() == 2 and cube.data[1].sum() == 1
    assert cube.data.sum() == 3  # the last channel is in the dropped remainder; 1 and 1024 are out of band
    assert cube.e_min[0] == pytest.approx(lo[0]) and cube.e_max[0] == pytest.approx(hi[6])
    np.testing.assert_array_equal(cube.channels[:2], [numbers[0], numbers[7]])
    cube = bin_events(events, inst, energy_range_kev=(0.3, 9.3))
    assert cube.data.sum() == 4


def test_ra_dec_events(tmp_path, gaussian_instrument):
    ra = np.array([150.0, 150.0 + 2.0 / 3600, 150.0])
    dec = np.array([2.0, 2.0, 2.0 + 4.0 / 3600])
    events = write_events(tmp_path / "ev.fits", {"RA": ra, "DEC": dec, "ENERGY": np.full(3, 2.2)},
                          units={"ENERGY": "keV"})
    cube = bin_events(events, gaussian_instrument, center_deg=(150.0, 2.0))
    assert cube.data.sum() == 3
    assert cube.pixel_arcsec == pytest.approx(2.0)
    for r, d in zip(ra, dec):
        px, py = cube.wcs.wcs_world2pix([[r, d]], 0)[0]
        assert cube.data[2, int(np.floor(py + 0.5)), int(np.floor(px + 0.5))] >= 1


def test_bad_inputs(tmp_path, gaussian_instrument):
    with pytest.raises(DataError, match="no such event list"):
        bin_events(tmp_path / "missing.fits", gaussian_instrument)
    ev = write_events(tmp_path / "ev.fits", {"X": [1.0], "Y": [1.0], "PI": [3]})
    with pytest.raises(DataError, match="needs an instrument with an RMF"):
        bin_events(ev, gaussian_instrument)
    ev2 = write_events(tmp_path / "ev2.fits", {"X": [1.0], "Y": [1.0], "ENERGY": [1.0]}, xy_wcs=False)
    with pytest.raises(DataError, match="energy_edges_kev or an instrument"):
        bin_events(ev2, None, pixel_arcsec=1.0)
    with pytest.raises(DataError, match="no TCRPX"):
        bin_events(ev2, None, energy_edges_kev=[0.5, 2.0])
    # An ENERGY column without TUNIT is in eV (the OGIP/Chandra convention): 1 eV is below 0.5 keV.
    assert bin_events(ev2, None, energy_edges_kev=[0.5, 2.0], pixel_arcsec=1.0).data.sum() == 0
    assert bin_events(ev2, None, energy_edges_kev=[0.0005, 0.002], pixel_arcsec=1.0).data.sum() == 1
    with pytest.raises(DataError, match="positive integer"):
        bin_events(ev2, None, energy_edges_kev=[0.5, 2.0], pixel_arcsec=1.0, spatial_bin=0)
    with pytest.raises(DataError, match="crop must be"):
        bin_events(ev2, None, energy_edges_kev=[0.5, 2.0], pixel_arcsec=1.0, crop=(5, 1, 0, 2))
