"""OGIP response files: redistribution matrices (RMF) and ancillary responses (ARF).

Formats: OGIP memo CAL/GEN/92-002 and 92-002a (George et al. 1992, 1998), "The
Calibration Requirements for Spectral Analysis".

- RMF: a ``MATRIX`` (or ``SPECRESP MATRIX``) table with ``ENERG_LO``, ``ENERG_HI`` (keV),
  ``N_GRP``, ``F_CHAN``, ``N_CHAN``, ``MATRIX``; and an ``EBOUNDS`` table with ``CHANNEL``,
  ``E_MIN``, ``E_MAX`` (keV). Row i holds ``N_GRP[i]`` groups; group g covers channels
  ``F_CHAN[i][g] … F_CHAN[i][g] + N_CHAN[i][g] − 1`` and its values are packed one after
  another in ``MATRIX[i]``. ``F_CHAN``/``N_CHAN`` may be scalars, fixed-width vectors or
  variable-length arrays; ``MATRIX`` fixed-width (padded) or variable-length. Channel
  numbers start at ``TLMIN`` of the ``F_CHAN`` column.
- ARF: a ``SPECRESP`` table with ``ENERG_LO``, ``ENERG_HI`` (keV) and ``SPECRESP`` (cm²).

The decoder is vectorised: it flattens every group of every row with numpy index
arithmetic (no Python loop over rows or groups), so the 2067 × 4096 XMM-Newton EPIC-pn
matrix reads in a few tens of milliseconds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from astropy.io import fits

from ..errors import DataError
from ._fits import column, find_hdu, open_fits, write_atomic

__all__ = ["ResponseMatrix", "AncillaryResponse", "read_rmf", "read_arf", "write_rmf", "write_arf"]

_KEV_UNITS = {"", "kev"}
_AREA_UNITS = {"", "cm2", "cm**2", "cm^2", "cm 2"}


@dataclass
class ResponseMatrix:
    """A redistribution matrix: probability that a photon of true energy bin i
    (``energ_lo[i]``–``energ_hi[i]`` keV) is recorded in channel j (``e_min[j]``–``e_max[j]``
    keV, channel number ``channels[j]``). ``matrix`` is a ``scipy.sparse.csr_matrix`` of
    shape (n_energies, n_channels); for an RMF without the effective area folded in, each
    row sums to at most 1."""

    energ_lo: np.ndarray
    energ_hi: np.ndarray
    e_min: np.ndarray
    e_max: np.ndarray
    matrix: sp.csr_matrix
    channels: np.ndarray | None = None
    path: Path | None = None
    header: dict = field(default_factory=dict)

    def __post_init__(self):
        self.energ_lo = np.asarray(self.energ_lo, dtype=np.float64)
        self.energ_hi = np.asarray(self.energ_hi, dtype=np.float64)
        self.e_min = np.asarray(self.e_min, dtype=np.float64)
        self.e_max = np.asarray(self.e_max, dtype=np.float64)
        self.matrix = sp.csr_matrix(self.matrix)
        if self.channels is None:
            self.channels = np.arange(1, self.e_min.size + 1)
        self.channels = np.asarray(self.channels, dtype=np.int64)
        n_e, n_c = self.matrix.shape
        assert self.energ_lo.shape == self.energ_hi.shape == (n_e,), "energy grid does not fit the matrix"
        assert self.e_min.shape == self.e_max.shape == self.channels.shape == (n_c,), "channels do not fit the matrix"

    @property
    def n_energies(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def n_channels(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def first_channel(self) -> int:
        return int(self.channels[0]) if self.channels.size else 1

    @property
    def energy_edges(self) -> np.ndarray:
        """True-energy bin edges in keV (n_energies + 1), assuming contiguous bins."""
        return np.append(self.energ_lo, self.energ_hi[-1])

    @property
    def channel_edges(self) -> np.ndarray:
        """Channel energy edges in keV (n_channels + 1), assuming contiguous channels."""
        return np.append(self.e_min, self.e_max[-1])

    def dense(self) -> np.ndarray:
        return self.matrix.toarray()


@dataclass
class AncillaryResponse:
    """An effective-area curve: ``specresp[i]`` cm² for true energies ``energ_lo[i]``–``energ_hi[i]`` keV."""

    energ_lo: np.ndarray
    energ_hi: np.ndarray
    specresp: np.ndarray
    path: Path | None = None
    header: dict = field(default_factory=dict)

    def __post_init__(self):
        self.energ_lo = np.asarray(self.energ_lo, dtype=np.float64)
        self.energ_hi = np.asarray(self.energ_hi, dtype=np.float64)
        self.specresp = np.asarray(self.specresp, dtype=np.float64)

    @property
    def energy_edges(self) -> np.ndarray:
        return np.append(self.energ_lo, self.energ_hi[-1])


# --------------------------------------------------------------------------- reading helpers
def _unit(hdu, name: str) -> str:
    idx = [c.upper() for c in hdu.columns.names].index(name.upper())
    return (hdu.columns[idx].unit or "").strip().lower()


def _energy_column(hdu, name: str, path) -> np.ndarray:
    values = np.asarray(column(hdu, name, path), dtype=np.float64).reshape(-1)
    unit = _unit(hdu, name)
    if unit == "ev":  # seen in a few hand-made files; OGIP says keV
        values = values / 1000.0
    elif unit not in _KEV_UNITS:
        raise DataError(f"{path}: column {name} of {hdu.name} is in `{unit}`; expected keV.")
    if not np.all(np.isfinite(values)):
        raise DataError(f"{path}: column {name} of {hdu.name} holds non-finite values.")
    return values


def _is_variable(col) -> bool:
    return col.dtype == object or type(col).__name__ == "_VLF"


def _cells_2d(col, n_rows: int) -> np.ndarray:
    """Integer cells (scalar, fixed vector or variable length) as an (n_rows, width) array,
    padded with zeros."""
    if _is_variable(col):
        lengths = np.fromiter((len(c) for c in col), dtype=np.int64, count=n_rows)
        width = int(lengths.max()) if n_rows else 0
        out = np.zeros((n_rows, max(width, 1)), dtype=np.int64)
        if lengths.sum():
            flat = np.concatenate([np.asarray(c, dtype=np.int64).reshape(-1) for c in col])
            rows = np.repeat(np.arange(n_rows), lengths)
            pos = np.arange(flat.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            out[rows, pos] = flat
        return out
    arr = np.asarray(col, dtype=np.int64)
    return arr.reshape(n_rows, -1)


def _flat_values(col, n_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MATRIX cells flattened: (values, start of each row in values, length of each row)."""
    if _is_variable(col):
        lengths = np.fromiter((len(c) for c in col), dtype=np.int64, count=n_rows)
        flat = (np.concatenate([np.asarray(c, dtype=np.float64).reshape(-1) for c in col])
                if lengths.sum() else np.zeros(0))
    else:
        arr = np.asarray(col, dtype=np.float64).reshape(n_rows, -1)
        lengths = np.full(n_rows, arr.shape[1], dtype=np.int64)
        flat = arr.reshape(-1)
    starts = np.cumsum(lengths) - lengths
    return flat, starts, lengths


def _tlmin(hdu, name: str) -> int | None:
    idx = [c.upper() for c in hdu.columns.names].index(name.upper()) + 1
    value = hdu.header.get(f"TLMIN{idx}")
    return None if value is None else int(value)


def _read_ebounds(hdul, path):
    eb = find_hdu(hdul, ("EBOUNDS",), path, "RMF")
    channels = np.asarray(column(eb, "CHANNEL", path), dtype=np.int64).reshape(-1)
    e_min = _energy_column(eb, "E_MIN", path)
    e_max = _energy_column(eb, "E_MAX", path)
    order = np.argsort(channels, kind="stable")
    channels, e_min, e_max = channels[order], e_min[order], e_max[order]
    if channels.size and np.any(np.diff(channels) != 1):
        raise DataError(f"{path}: EBOUNDS channels are not consecutive integers.")
    if np.any(e_max < e_min):
        raise DataError(f"{path}: EBOUNDS has channels with E_MAX < E_MIN.")
    return channels, e_min, e_max


def read_rmf(path: str | Path) -> ResponseMatrix:
    """Read an OGIP RMF (plain or ``.gz``) into a :class:`ResponseMatrix`.

    Handles every layout OGIP 92-002a allows: ``F_CHAN``/``N_CHAN`` scalar, fixed-width or
    variable-length; ``MATRIX`` fixed-width or variable-length; rows with ``N_GRP = 0``;
    ``EBOUNDS`` before or after the matrix; extension ``MATRIX`` or ``SPECRESP MATRIX``.
    The first channel number is ``TLMIN`` of the ``F_CHAN`` column; when that keyword is
    absent, the first ``CHANNEL`` of ``EBOUNDS`` (OGIP's default, 1, when that is absent too).
    Raises DataError naming the file for anything malformed."""
    path = Path(path)
    with open_fits(path, "RMF") as hdul:
        hdu = find_hdu(hdul, ("MATRIX", "SPECRESP MATRIX"), path, "RMF")
        channels, e_min, e_max = _read_ebounds(hdul, path)
        energ_lo = _energy_column(hdu, "ENERG_LO", path)
        energ_hi = _energy_column(hdu, "ENERG_HI", path)
        n_rows = energ_lo.size
        n_grp = np.asarray(column(hdu, "N_GRP", path), dtype=np.int64).reshape(-1)
        f_chan = _cells_2d(column(hdu, "F_CHAN", path), n_rows)
        n_chan = _cells_2d(column(hdu, "N_CHAN", path), n_rows)
        flat, starts, lengths = _flat_values(column(hdu, "MATRIX", path), n_rows)
        tlmin = _tlmin(hdu, "F_CHAN")
        header = {k: hdu.header.get(k) for k in ("TELESCOP", "INSTRUME", "DETNAM", "FILTER", "HDUCLAS3", "CHANTYPE", "DETCHANS")}
    first = tlmin if tlmin is not None else (int(channels[0]) if channels.size else 1)
    n_channels = channels.size
    if header.get("DETCHANS") is not None and int(header["DETCHANS"]) != n_channels:
        raise DataError(f"{path}: DETCHANS = {header['DETCHANS']} but EBOUNDS has {n_channels} channels.")
    if channels.size and channels[0] != first:
        raise DataError(f"{path}: F_CHAN numbering starts at {first} (TLMIN) but EBOUNDS starts at channel {channels[0]}.")
    if np.any(n_grp < 0) or np.any(n_grp > f_chan.shape[1]) or np.any(n_grp > n_chan.shape[1]):
        raise DataError(f"{path}: N_GRP exceeds the number of F_CHAN/N_CHAN cells in some rows.")

    # Every used group, in row-major order: (row, first column, length).
    used = np.arange(f_chan.shape[1])[None, :] < n_grp[:, None]
    group_row = np.nonzero(used)[0]
    group_first = f_chan[used] - first
    group_len = n_chan[used]
    if np.any(group_len < 0):
        raise DataError(f"{path}: negative N_CHAN values.")
    row_total = np.bincount(group_row, weights=group_len, minlength=n_rows).astype(np.int64)
    short = np.nonzero(row_total > lengths)[0]
    if short.size:
        i = int(short[0])
        raise DataError(f"{path}: MATRIX row {i} holds {lengths[i]} values but its N_CHAN add up to {row_total[i]}.")
    total = int(row_total.sum())
    # Position of each value inside its group and inside its row.
    in_group = np.arange(total) - np.repeat(np.cumsum(group_len) - group_len, group_len)
    cols = np.repeat(group_first, group_len) + in_group
    rows = np.repeat(group_row, group_len)
    in_row = np.arange(total) - np.repeat(np.cumsum(row_total) - row_total, row_total)
    values = flat[np.repeat(starts, row_total) + in_row]
    if total and (cols.min() < 0 or cols.max() >= n_channels):
        bad = int(cols.min() if cols.min() < 0 else cols.max()) + first
        raise DataError(f"{path}: the matrix refers to channel {bad}, outside the {n_channels} channels "
                        f"{first}–{first + n_channels - 1} of EBOUNDS.")
    if not np.all(np.isfinite(values)):
        raise DataError(f"{path}: MATRIX holds non-finite values.")
    matrix = sp.csr_matrix((values, (rows, cols)), shape=(n_rows, n_channels))
    matrix.sum_duplicates()
    return ResponseMatrix(energ_lo, energ_hi, e_min, e_max, matrix, channels=channels, path=path, header=header)


def read_arf(path: str | Path) -> AncillaryResponse:
    """Read an OGIP ARF (``SPECRESP`` extension) into an :class:`AncillaryResponse`.
    Negative or non-finite areas raise DataError naming the file."""
    path = Path(path)
    with open_fits(path, "ARF") as hdul:
        hdu = find_hdu(hdul, ("SPECRESP",), path, "ARF")
        energ_lo = _energy_column(hdu, "ENERG_LO", path)
        energ_hi = _energy_column(hdu, "ENERG_HI", path)
        area = np.asarray(column(hdu, "SPECRESP", path), dtype=np.float64).reshape(-1)
        unit = _unit(hdu, "SPECRESP")
        header = {k: hdu.header.get(k) for k in ("TELESCOP", "INSTRUME", "DETNAM", "FILTER")}
    if unit not in _AREA_UNITS:
        raise DataError(f"{path}: SPECRESP is in `{unit}`; expected cm2.")
    if not np.all(np.isfinite(area)):
        raise DataError(f"{path}: SPECRESP holds non-finite values.")
    if np.any(area < 0):
        i = int(np.nonzero(area < 0)[0][0])
        raise DataError(f"{path}: SPECRESP is negative ({area[i]:.4g} cm² at {energ_lo[i]:.4g} keV); "
                        "an effective area must be >= 0.")
    return AncillaryResponse(energ_lo, energ_hi, area, path=path, header=header)


# --------------------------------------------------------------------------- writing
def _header_cards(hdr: fits.Header, extra: dict | None) -> None:
    for key, value in (extra or {}).items():
        if value is not None and key not in hdr:
            hdr[key] = value


def write_rmf(path: str | Path, rmf: ResponseMatrix, overwrite: bool = True) -> Path:
    """Write ``rmf`` as an OGIP RMF: a ``MATRIX`` extension in the compressed
    variable-length layout (one group per run of consecutive non-zero channels) followed by
    ``EBOUNDS``. Written atomically. Float32 matrices are stored as ``E``, others as ``D``."""
    m = sp.csr_matrix(rmf.matrix, copy=True)
    m.eliminate_zeros()
    m.sort_indices()
    n_e, _ = m.shape
    first = rmf.first_channel
    nnz = m.indices.size
    row_of = np.repeat(np.arange(n_e), np.diff(m.indptr))
    # A group starts at each row's first non-zero and wherever the channel jumps.
    new_group = np.ones(nnz, dtype=bool)
    if nnz > 1:
        new_group[1:] = (m.indices[1:] != m.indices[:-1] + 1) | (row_of[1:] != row_of[:-1])
    starts = np.nonzero(new_group)[0]
    g_len = np.diff(np.append(starts, nnz))
    g_row = row_of[starts]
    n_grp = np.bincount(g_row, minlength=n_e)
    split_groups = np.cumsum(n_grp)[:-1]
    f_chan = np.split((m.indices[starts] + first).astype(np.int32), split_groups)
    n_chan = np.split(g_len.astype(np.int32), split_groups)
    dtype, code = (np.float32, "E") if m.dtype == np.float32 else (np.float64, "D")
    values = np.split(m.data.astype(dtype), m.indptr[1:-1])

    def vla(arrays, dt):
        out = np.empty(n_e, dtype=object)
        out[:] = [np.asarray(a, dtype=dt) for a in arrays]
        return out

    cols = [
        fits.Column("ENERG_LO", "E" if code == "E" else "D", unit="keV", array=rmf.energ_lo),
        fits.Column("ENERG_HI", "E" if code == "E" else "D", unit="keV", array=rmf.energ_hi),
        fits.Column("N_GRP", "J", array=n_grp.astype(np.int32)),
        fits.Column("F_CHAN", "PJ()", array=vla(f_chan, np.int32)),
        fits.Column("N_CHAN", "PJ()", array=vla(n_chan, np.int32)),
        fits.Column("MATRIX", f"P{code}()", array=vla(values, dtype)),
    ]
    matrix_hdu = fits.BinTableHDU.from_columns(cols, name="MATRIX")
    hdr = matrix_hdu.header
    hdr["TLMIN4"] = (first, "first channel number")
    hdr["TLMAX4"] = first + rmf.n_channels - 1
    hdr.update({"HDUCLASS": "OGIP", "HDUCLAS1": "RESPONSE", "HDUCLAS2": "RSP_MATRIX", "HDUVERS": "1.3.0",
                "CHANTYPE": rmf.header.get("CHANTYPE") or "PI", "DETCHANS": rmf.n_channels})
    hdr["HDUCLAS3"] = rmf.header.get("HDUCLAS3") or "REDIST"
    _header_cards(hdr, {k: rmf.header.get(k) for k in ("TELESCOP", "INSTRUME", "DETNAM", "FILTER")})
    eb = fits.BinTableHDU.from_columns([
        fits.Column("CHANNEL", "J", array=rmf.channels.astype(np.int32)),
        fits.Column("E_MIN", "D", unit="keV", array=rmf.e_min),
        fits.Column("E_MAX", "D", unit="keV", array=rmf.e_max),
    ], name="EBOUNDS")
    eb.header.update({"HDUCLASS": "OGIP", "HDUCLAS1": "RESPONSE", "HDUCLAS2": "EBOUNDS", "HDUVERS": "1.2.0",
                      "CHANTYPE": rmf.header.get("CHANTYPE") or "PI", "DETCHANS": rmf.n_channels})
    _header_cards(eb.header, {k: rmf.header.get(k) for k in ("TELESCOP", "INSTRUME", "DETNAM", "FILTER")})
    return write_atomic(fits.HDUList([fits.PrimaryHDU(), matrix_hdu, eb]), path, overwrite)


def write_arf(path: str | Path, arf: AncillaryResponse, overwrite: bool = True) -> Path:
    """Write ``arf`` as an OGIP ARF (``SPECRESP`` extension, areas in cm²), atomically."""
    if np.any(np.asarray(arf.specresp) < 0):
        raise DataError(f"{path}: refusing to write negative effective areas.")
    hdu = fits.BinTableHDU.from_columns([
        fits.Column("ENERG_LO", "D", unit="keV", array=arf.energ_lo),
        fits.Column("ENERG_HI", "D", unit="keV", array=arf.energ_hi),
        fits.Column("SPECRESP", "D", unit="cm**2", array=arf.specresp),
    ], name="SPECRESP")
    hdu.header.update({"HDUCLASS": "OGIP", "HDUCLAS1": "RESPONSE", "HDUCLAS2": "SPECRESP", "HDUVERS": "1.1.0"})
    _header_cards(hdu.header, {k: arf.header.get(k) for k in ("TELESCOP", "INSTRUME", "DETNAM", "FILTER")})
    return write_atomic(fits.HDUList([fits.PrimaryHDU(), hdu]), path, overwrite)
