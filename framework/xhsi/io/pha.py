"""OGIP spectra (PHA files): type I (one spectrum) and type II (one spectrum per row).

Format: OGIP memo OGIP/92-007 (Arnaud, George & Tennant 1992), "The OGIP Spectral File
Format", and its addendum 92-007a. A ``SPECTRUM`` extension holds ``CHANNEL`` and either
``COUNTS`` or ``RATE`` (counts / s), optionally ``STAT_ERR``/``SYS_ERR``, ``QUALITY``
(0 good, anything else bad), ``GROUPING`` (1 starts a group, −1 continues it, 0 none),
``BACKSCAL`` and ``AREASCAL`` (as columns or keywords). Keywords: ``EXPOSURE`` (s),
``POISSERR``, ``DETCHANS``, ``RESPFILE``, ``ANCRFILE``, ``BACKFILE`` (``none`` or empty
when absent). In a type II file every column is a vector per row (``SPEC_NUM`` numbers
the rows) and the keywords may be columns too.

File names in RESPFILE/ANCRFILE/BACKFILE are resolved relative to the PHA's folder (the
convention of XSPEC and Sherpa). A type II file name with a row, ``file.pha{3}``, is read by
:func:`read_pha` with ``row`` (1-based, the ``SPEC_NUM`` when present).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..errors import DataError
from ._fits import find_hdu, open_fits, write_atomic

__all__ = ["Spectrum", "read_pha", "write_pha", "related_file"]

_NONE = {"", "NONE", "NULL"}


@dataclass
class Spectrum:
    """One OGIP spectrum: ``counts`` per channel (number ``channels``), accumulated in
    ``exposure`` s; ``backscal`` and ``areascal`` per channel (scalars broadcast);
    ``quality`` (0 good) and ``grouping`` (1 group start, −1 continuation) per channel;
    ``response``/``ancillary``/``background`` the files the header names, resolved against
    the PHA's folder (None when absent)."""

    channels: np.ndarray
    counts: np.ndarray
    exposure: float
    backscal: np.ndarray
    areascal: np.ndarray
    quality: np.ndarray
    grouping: np.ndarray
    poisserr: bool = True
    detchans: int | None = None
    response: Path | None = None
    ancillary: Path | None = None
    background: Path | None = None
    path: Path | None = None
    header: dict = field(default_factory=dict)

    @property
    def n_channels(self) -> int:
        return int(self.channels.size)

    def group_starts(self) -> np.ndarray:
        """Index of the first channel of each group (every channel its own group when the
        file has no GROUPING, or where GROUPING is 0)."""
        starts = self.grouping != -1
        starts[0] = True
        return np.nonzero(starts)[0]


def related_file(value, base: Path) -> Path | None:
    """A RESPFILE/ANCRFILE/BACKFILE value as a path (relative to ``base``, the PHA's folder),
    or None for ``none``/empty; a trailing ``{row}`` of a type II file is kept off the path."""
    text = str(value or "").strip()
    if text.upper() in _NONE:
        return None
    if text.endswith("}") and "{" in text:
        text = text[: text.rindex("{")]
    path = Path(text).expanduser()
    return path if path.is_absolute() else base / path


def _cell(hdu, name: str, row: int | None, n: int, default=None, path=None) -> np.ndarray | None:
    """Column ``name`` (this row's cell for a type II file) or the keyword of that name,
    as an array of n values; ``default`` when neither exists."""
    names = [c.upper() for c in hdu.columns.names]
    if name in names:
        data = hdu.data[hdu.columns.names[names.index(name)]]
        value = np.asarray(data[row] if row is not None else data)
        if row is None and value.ndim > 1:
            raise DataError(f"{path}: column {name} holds one vector per row (a type II file): give the row "
                            f"(spectrum_row).")
        return np.broadcast_to(value.reshape(-1) if value.ndim else value, (n,)).astype(np.float64).copy()
    if name in hdu.header:
        return np.full(n, float(hdu.header[name]))
    return None if default is None else np.full(n, default, dtype=np.float64)


def read_pha(path: str | Path, row: int | None = None) -> Spectrum:
    """Read an OGIP PHA spectrum (type I; type II with ``row``, 1-based: its ``SPEC_NUM``
    when the file has that column, else the table row). ``RATE`` is turned into counts
    with ``EXPOSURE``. DataError naming the file for anything malformed."""
    path = Path(path)
    with open_fits(path, "PHA") as hdul:
        hdu = find_hdu(hdul, ("SPECTRUM",), path, "PHA")
        hdr = hdu.header
        names = [c.upper() for c in hdu.columns.names]
        index = None
        n_rows = len(hdu.data) if hdu.data is not None else 0
        typeii = str(hdr.get("HDUCLAS4", "")).upper() == "TYPE:II" or (
            "CHANNEL" in names and np.asarray(hdu.data["CHANNEL"]).ndim > 1)
        if typeii:
            if row is None:
                raise DataError(f"{path}: a type II PHA file ({n_rows} spectra): say which with `spectrum_row`.")
            if "SPEC_NUM" in names:
                found = np.nonzero(np.asarray(hdu.data["SPEC_NUM"]) == row)[0]
                if not found.size:
                    raise DataError(f"{path}: no row with SPEC_NUM = {row}.")
                index = int(found[0])
            elif 1 <= row <= n_rows:
                index = row - 1
            else:
                raise DataError(f"{path}: spectrum_row = {row} but the file has {n_rows} rows.")
        elif row is not None and row != 1:
            raise DataError(f"{path}: spectrum_row = {row} but the file is a type I PHA (one spectrum).")
        if "CHANNEL" not in names:
            raise DataError(f"{path}: the SPECTRUM extension has no CHANNEL column.")
        channels = np.asarray(hdu.data["CHANNEL"][index] if typeii else hdu.data["CHANNEL"], dtype=np.int64).reshape(-1)
        n = channels.size

        def keyword(name, default=None):
            value = _cell(hdu, name, index, 1) if typeii and name in names else None
            return float(value[0]) if value is not None else hdr.get(name, default)

        exposure = keyword("EXPOSURE")
        if exposure is None or not float(exposure) > 0:
            raise DataError(f"{path}: EXPOSURE is {exposure!r}; a spectrum needs its exposure time (> 0 s).")
        exposure = float(exposure)
        if "COUNTS" in names:
            counts = _cell(hdu, "COUNTS", index, n, path=path)
        elif "RATE" in names:
            counts = _cell(hdu, "RATE", index, n, path=path) * exposure
        else:
            raise DataError(f"{path}: the SPECTRUM extension has neither COUNTS nor RATE.")
        if not np.all(np.isfinite(counts)) or np.any(counts < 0):
            raise DataError(f"{path}: the spectrum holds negative or non-finite counts.")
        quality = _cell(hdu, "QUALITY", index, n, 0.0).astype(np.int64)
        grouping = _cell(hdu, "GROUPING", index, n, 1.0).astype(np.int64)
        backscal = _cell(hdu, "BACKSCAL", index, n, 1.0)
        areascal = _cell(hdu, "AREASCAL", index, n, 1.0)
        poisserr = hdr.get("POISSERR", True)
        detchans = hdr.get("DETCHANS")
        base = path.resolve().parent
        files = {}
        for key in ("RESPFILE", "ANCRFILE", "BACKFILE"):
            value = hdu.data[hdu.columns.names[names.index(key)]][index] if typeii and key in names else hdr.get(key)
            files[key] = related_file(value, base)
        header = {k: hdr.get(k) for k in ("TELESCOP", "INSTRUME", "FILTER", "OBJECT", "CHANTYPE", "HDUCLAS2")}
    if np.any(np.diff(channels) != 1):
        raise DataError(f"{path}: CHANNEL is not a run of consecutive channel numbers.")
    if detchans is not None and int(detchans) != n:
        raise DataError(f"{path}: DETCHANS = {detchans} but the spectrum has {n} channels.")
    if np.any(backscal <= 0) or np.any(areascal <= 0):
        raise DataError(f"{path}: BACKSCAL and AREASCAL must be > 0.")
    if not bool(poisserr) and not np.allclose(counts, np.round(counts)):
        raise DataError(f"{path}: POISSERR = F and non-integer counts: xhsi fits Poisson counts only.")
    return Spectrum(channels, counts, exposure, backscal, areascal, quality, grouping, bool(poisserr),
                    None if detchans is None else int(detchans), files["RESPFILE"], files["ANCRFILE"],
                    files["BACKFILE"], path, header)


def write_pha(path: str | Path, counts, exposure: float, *, first_channel: int = 1, backscal: float = 1.0,
              areascal: float = 1.0, quality=None, grouping=None, respfile: str = "none", ancrfile: str = "none",
              backfile: str = "none", overwrite: bool = True) -> Path:
    """Write a type I OGIP PHA file of integer ``counts`` (one per channel, from
    ``first_channel``) accumulated in ``exposure`` s, atomically. ``respfile`` etc. are
    written as given (relative names are read relative to the PHA's folder)."""
    counts = np.asarray(counts)
    n = counts.size
    cols = [fits.Column("CHANNEL", "J", array=np.arange(first_channel, first_channel + n, dtype=np.int32)),
            fits.Column("COUNTS", "J", unit="count", array=np.asarray(counts, dtype=np.int32))]
    if quality is not None:
        cols.append(fits.Column("QUALITY", "I", array=np.asarray(quality, dtype=np.int16)))
    if grouping is not None:
        cols.append(fits.Column("GROUPING", "I", array=np.asarray(grouping, dtype=np.int16)))
    hdu = fits.BinTableHDU.from_columns(cols, name="SPECTRUM")
    hdu.header.update({"HDUCLASS": "OGIP", "HDUCLAS1": "SPECTRUM", "HDUCLAS2": "TOTAL", "HDUCLAS3": "COUNT",
                       "HDUCLAS4": "TYPE:I", "HDUVERS": "1.2.1", "EXPOSURE": float(exposure), "POISSERR": True,
                       "DETCHANS": n, "CHANTYPE": "PI", "BACKSCAL": float(backscal), "AREASCAL": float(areascal),
                       "CORRSCAL": 0.0, "RESPFILE": respfile, "ANCRFILE": ancrfile, "BACKFILE": backfile,
                       "CORRFILE": "none", "TLMIN1": first_channel, "TLMAX1": first_channel + n - 1})
    return write_atomic(fits.HDUList([fits.PrimaryHDU(), hdu]), path, overwrite)
