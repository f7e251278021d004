"""OGIP RMF/ARF reading and writing: every layout of 92-002a, the real files of
../shared/research/responses checked against a slow direct decode, round trips, bad input."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from astropy.io import fits

from xhsi.errors import DataError
from xhsi.io import AncillaryResponse, ResponseMatrix, read_arf, read_rmf, write_arf, write_rmf

ROW_SUM_TOL = 1e-3  # float32 matrices in real files: the Chandra rows reach 1.0003


def slow_decode(path: Path) -> tuple[np.ndarray, int]:
    """Reference decode, row by row and group by group, as the memo describes it."""
    with fits.open(path) as hdul:
        hdu = next(h for h in hdul if h.name in ("MATRIX", "SPECRESP MATRIX"))
        eb = hdul["EBOUNDS"]
        n_chan = len(eb.data)
        idx = [c.upper() for c in hdu.columns.names].index("F_CHAN") + 1
        first = hdu.header.get(f"TLMIN{idx}", int(np.min(eb.data["CHANNEL"])))
        dense = np.zeros((len(hdu.data), n_chan))
        for i, row in enumerate(hdu.data):
            f_chan = np.atleast_1d(row["F_CHAN"])
            n_chan_row = np.atleast_1d(row["N_CHAN"])
            values = np.atleast_1d(row["MATRIX"])
            k = 0
            for g in range(int(row["N_GRP"])):
                start, n = int(f_chan[g]) - first, int(n_chan_row[g])
                dense[i, start: start + n] += values[k: k + n]
                k += n
    return dense, first


def rmf_files(responses_dir):
    return sorted(p for p in responses_dir.iterdir() if "rmf" in p.name.lower())


def arf_files(responses_dir):
    return sorted(p for p in responses_dir.iterdir() if "arf" in p.name.lower())


@pytest.mark.slow  # a whole run or many fits: `pytest -m slow` (CI runs both)
@pytest.mark.needs_shared
def test_every_shared_rmf_matches_the_direct_decode(responses_dir):
    files = rmf_files(responses_dir)
    assert len(files) >= 3
    for path in files:
        rmf = read_rmf(path)
        dense, first = slow_decode(path)
        assert rmf.matrix.shape == dense.shape, path.name
        np.testing.assert_allclose(rmf.dense(), dense, rtol=0, atol=0, err_msg=path.name)
        assert rmf.first_channel == first
        sums = np.asarray(rmf.matrix.sum(axis=1)).ravel()
        assert np.all(sums <= 1.0 + ROW_SUM_TOL), (path.name, sums.max())
        assert np.all(rmf.energ_hi > rmf.energ_lo) and np.all(rmf.e_max >= rmf.e_min)


@pytest.mark.needs_shared
def test_every_shared_arf_reads(responses_dir):
    files = arf_files(responses_dir)
    assert len(files) >= 4
    for path in files:
        arf = read_arf(path)
        assert arf.specresp.shape == arf.energ_lo.shape and np.all(arf.specresp >= 0), path.name
        assert arf.specresp.max() > 100.0, path.name  # every shipped mirror has > 100 cm² somewhere


@pytest.mark.needs_shared
def test_layouts_and_first_channels_of_the_shared_rmfs(responses_dir):
    pn = read_rmf(responses_dir / "PN.rmf")  # fixed-width F_CHAN vectors, VLA MATRIX, TLMIN 0
    assert pn.matrix.shape == (2067, 4096) and pn.first_channel == 0
    acis = read_rmf(responses_dir / "acisf04487_001N022_r0009_rmf3.fits.gz")  # all VLA, TLMIN 1
    assert acis.matrix.shape == (900, 1024) and acis.first_channel == 1
    wfi = read_rmf(responses_dir / "athena_wfi_rmf_v20150326.rmf")  # scalar cells, EBOUNDS first
    assert wfi.matrix.shape == (1490, 1490) and wfi.first_channel == 1


@pytest.mark.needs_shared
def test_pn_rmf_reads_fast(responses_dir):
    read_rmf(responses_dir / "PN.rmf")  # warm the file cache
    start = time.perf_counter()
    read_rmf(responses_dir / "PN.rmf")
    assert time.perf_counter() - start < 1.5


@pytest.mark.needs_shared
def test_shared_rmf_and_arf_grids_pair_up(responses_dir):
    pairs = [("PN.rmf", "PN.arf"), ("acisf04487_001N022_r0009_rmf3.fits.gz", "acisf04487_001N022_r0009_arf3.fits.gz")]
    for rmf_name, arf_name in pairs:
        rmf, arf = read_rmf(responses_dir / rmf_name), read_arf(responses_dir / arf_name)
        np.testing.assert_allclose(rmf.energ_lo, arf.energ_lo, rtol=1e-6)


# ----------------------------------------------------------------------------- synthetic files
def _random_rmf(rng, n_e=12, n_chan=9, first=1, dtype=np.float64) -> ResponseMatrix:
    dense = rng.random((n_e, n_chan))
    dense[dense < 0.55] = 0.0  # gaps → several groups per row
    dense[3] = 0.0  # an empty row (N_GRP = 0)
    dense = dense / np.maximum(dense.sum(axis=1, keepdims=True), 1e-30) * 0.9
    edges = np.linspace(0.5, 3.0, n_e + 1)
    ch = np.linspace(0.4, 3.2, n_chan + 1)
    return ResponseMatrix(edges[:-1], edges[1:], ch[:-1], ch[1:], sp.csr_matrix(dense.astype(dtype)),
                          channels=np.arange(first, first + n_chan), header={"TELESCOP": "TEST"})


@pytest.mark.parametrize("first", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rmf_round_trip(tmp_path, first, dtype):
    rmf = _random_rmf(np.random.default_rng(1), first=first, dtype=dtype)
    path = write_rmf(tmp_path / "r.rmf", rmf)
    back = read_rmf(path)
    np.testing.assert_array_equal(back.dense(), rmf.dense())
    np.testing.assert_array_equal(back.channels, rmf.channels)
    np.testing.assert_allclose(back.energ_lo, rmf.energ_lo, rtol=1e-7 if dtype == np.float32 else 0)
    dense, f = slow_decode(path)
    np.testing.assert_array_equal(dense, rmf.dense())
    assert f == first
    with fits.open(path) as hdul:
        assert hdul["MATRIX"].header["HDUCLAS3"] == "REDIST"
        assert int(hdul["MATRIX"].data["N_GRP"][3]) == 0


def test_rmf_round_trip_gz(tmp_path):
    rmf = _random_rmf(np.random.default_rng(2))
    path = write_rmf(tmp_path / "r.rmf.gz", rmf)
    with open(path, "rb") as fh:
        assert fh.read(2) == b"\x1f\x8b"  # really gzip
    np.testing.assert_array_equal(read_rmf(path).dense(), rmf.dense())


def _write_fixed_layout(path: Path, dense: np.ndarray, *, extname="SPECRESP MATRIX", tlmin=True, ebounds_first=True):
    """An RMF with scalar F_CHAN/N_CHAN and a fixed-width MATRIX (one group per row)."""
    n_e, n_chan = dense.shape
    width = n_chan
    f_chan, n_chan_col, n_grp, mat = [], [], [], np.zeros((n_e, width))
    for i in range(n_e):
        nz = np.nonzero(dense[i])[0]
        if nz.size == 0:
            f_chan.append(1)
            n_chan_col.append(0)
            n_grp.append(0)
            continue
        lo, hi = nz[0], nz[-1] + 1
        f_chan.append(lo + 1)
        n_chan_col.append(hi - lo)
        n_grp.append(1)
        mat[i, : hi - lo] = dense[i, lo:hi]
    edges = np.linspace(1.0, 2.0, n_e + 1)
    matrix = fits.BinTableHDU.from_columns([
        fits.Column("ENERG_LO", "E", unit="keV", array=edges[:-1]),
        fits.Column("ENERG_HI", "E", unit="keV", array=edges[1:]),
        fits.Column("N_GRP", "J", array=n_grp),
        fits.Column("F_CHAN", "J", array=f_chan),
        fits.Column("N_CHAN", "J", array=n_chan_col),
        fits.Column("MATRIX", f"{width}D", array=mat),
    ], name=extname)
    if tlmin:
        matrix.header["TLMIN4"] = 1
    ch = np.linspace(0.9, 2.1, n_chan + 1)
    eb = fits.BinTableHDU.from_columns([
        fits.Column("CHANNEL", "J", array=np.arange(1, n_chan + 1)),
        fits.Column("E_MIN", "E", unit="keV", array=ch[:-1]),
        fits.Column("E_MAX", "E", unit="keV", array=ch[1:]),
    ], name="EBOUNDS")
    hdus = [fits.PrimaryHDU()] + ([eb, matrix] if ebounds_first else [matrix, eb])
    fits.HDUList(hdus).writeto(path)


@pytest.mark.parametrize("tlmin", [True, False])
def test_fixed_width_scalar_layout(tmp_path, tlmin):
    rng = np.random.default_rng(3)
    dense = np.zeros((7, 10))
    for i in range(7):
        lo = rng.integers(0, 6)
        dense[i, lo: lo + 4] = rng.random(4) / 4
    dense[2] = 0.0
    path = tmp_path / "fixed.rmf"
    _write_fixed_layout(path, dense, tlmin=tlmin)
    rmf = read_rmf(path)
    np.testing.assert_array_equal(rmf.dense(), dense)
    assert rmf.first_channel == 1


def test_missing_and_malformed_rmf(tmp_path):
    with pytest.raises(DataError, match="no such RMF"):
        read_rmf(tmp_path / "nope.rmf")
    (tmp_path / "junk.rmf").write_text("not fits")
    with pytest.raises(DataError, match="junk.rmf"):
        read_rmf(tmp_path / "junk.rmf")
    write_arf(tmp_path / "a.arf", AncillaryResponse([1.0], [2.0], [3.0]))
    with pytest.raises(DataError, match="no MATRIX or SPECRESP MATRIX"):
        read_rmf(tmp_path / "a.arf")


def test_channel_outside_ebounds_is_an_error(tmp_path):
    dense = np.zeros((3, 5))
    dense[:, 3:] = 0.5
    path = tmp_path / "bad.rmf"
    _write_fixed_layout(path, dense)
    with fits.open(path, mode="update") as hdul:
        hdul["SPECRESP MATRIX"].data["F_CHAN"][1] = 5  # channels 5, 6: EBOUNDS has 1-5
    with pytest.raises(DataError, match="outside the 5 channels"):
        read_rmf(path)


def test_arf_round_trip_and_negative_area(tmp_path):
    arf = AncillaryResponse(np.array([1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.0]), np.array([10.0, 20.0, 5.0]))
    back = read_arf(write_arf(tmp_path / "x.arf", arf))
    np.testing.assert_array_equal(back.specresp, arf.specresp)
    np.testing.assert_array_equal(back.energy_edges, [1.0, 2.0, 3.0, 4.0])
    with fits.open(tmp_path / "x.arf", mode="update") as hdul:
        hdul["SPECRESP"].data["SPECRESP"][1] = -1.0
    with pytest.raises(DataError, match="negative"):
        read_arf(tmp_path / "x.arf")
    with pytest.raises(DataError, match="negative"):
        write_arf(tmp_path / "y.arf", AncillaryResponse([1.0], [2.0], [-3.0]))
    with pytest.raises(DataError, match="no such ARF"):
        read_arf(tmp_path / "missing.arf")


def test_write_is_atomic_and_respects_overwrite(tmp_path):
    arf = AncillaryResponse([1.0], [2.0], [3.0])
    path = write_arf(tmp_path / "x.arf", arf)
    with pytest.raises(DataError, match="exists"):
        write_arf(path, arf, overwrite=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.arf"]  # no temporary file left behind
