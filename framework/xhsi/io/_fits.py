"""Small FITS helpers shared by the readers and writers of ``xhsi.io``: opening a file with
errors a user can act on, and atomic writes."""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path

from astropy.io import fits

from ..atomic import atomic_target
from ..errors import DataError


@contextmanager
def open_fits(path: str | Path, what: str):
    """``fits.open`` with a DataError naming the file for a missing or unreadable one.
    ``what`` says what the file should be ("RMF", "counts cube", ...)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such {what} file.")
    try:
        with warnings.catch_warnings():  # astropy's truncation warning: check_complete says it better
            warnings.filterwarnings("ignore", message="File may have been truncated")
            hdul = fits.open(path, memmap=False)
            check_complete(hdul, path, what)
    except DataError:
        raise
    except (OSError, ValueError, TypeError, EOFError) as exc:
        raise DataError(f"{path}: cannot be read as a FITS {what} ({type(exc).__name__}: {exc}).") from None
    try:
        yield hdul
    finally:
        hdul.close()


def data_bytes(header) -> int:
    """Bytes of an HDU's data as its header states them (FITS standard §4.4.1.1, without the
    padding to 2880-byte blocks): |BITPIX|/8 · GCOUNT · (PCOUNT + NAXIS1 · … · NAXISn), NAXIS1
    left out of the product for random groups (NAXIS1 = 0)."""
    naxis = int(header.get("NAXIS", 0))
    if naxis == 0:
        return 0
    dims = [int(header.get(f"NAXIS{k}", 0)) for k in range(1, naxis + 1)]
    if header.get("GROUPS") and dims[0] == 0:
        dims = dims[1:]
    product = 1
    for n in dims:
        product *= n
    return abs(int(header.get("BITPIX", 8))) // 8 * int(header.get("GCOUNT", 1)) * (int(header.get("PCOUNT", 0))
                                                                                  + product)


def check_stream_complete(hdul, path, what: str) -> None:
    """DataError when a compressed (gzip, bzip2) FITS file ends before its compressed stream
    does: astropy then reads the HDUs before the cut and silently drops the rest. Reads the
    whole stream (in 1 MiB chunks), so it runs only once something is found missing."""
    import bz2
    import gzip

    compression = getattr(getattr(hdul, "_file", None), "compression", None)
    opener = {"gzip": gzip.open, "bzip2": bz2.open}.get(compression)
    if opener is None:
        return
    try:
        with opener(path, "rb") as fh:
            while fh.read(1 << 20):
                pass
    except (EOFError, OSError) as exc:
        raise DataError(f"{path}: the file is truncated or damaged: its {compression} stream ends early "
                        f"({type(exc).__name__}: {exc}), so it was cut short (an interrupted copy, download or "
                        f"write?). Copy or produce the {what} file again.") from None


def check_complete(hdul, path, what: str) -> None:
    """DataError when the file ends before the data its headers announce: a file cut short
    (an interrupted copy or download), found from the headers alone, before any data are read
    (astropy would fail later with ``cannot reshape``). Compressed files (.gz) are read
    through their decompressor, whose own end-of-file error open_fits turns into a
    DataError, so they are not measured here."""
    path = Path(path)
    if getattr(getattr(hdul, "_file", None), "compression", None):
        return
    size = path.stat().st_size
    for k, hdu in enumerate(hdul):  # iterating reads every header (and stops at the end of the file)
        info = hdu.fileinfo()
        if info is None:
            continue
        end = int(info["datLoc"]) + data_bytes(hdu.header)
        if end > size:
            name = hdu.name or "PRIMARY"
            raise DataError(f"{path}: the file is truncated: HDU {k} ({name}) announces data up to byte {end} but the "
                            f"file has only {size} bytes, so it was cut short (an interrupted copy, download or "
                            f"write?). Copy or produce the {what} file again.")


def find_hdu(hdul, names: tuple[str, ...], path, what: str):
    """The first HDU whose EXTNAME is one of ``names`` (case-insensitive), else DataError."""
    wanted = {n.upper() for n in names}
    for hdu in hdul:
        if hdu.name.upper() in wanted:
            return hdu
    check_stream_complete(hdul, path, what)  # a compressed file cut short loses its last extensions silently
    found = ", ".join(h.name or "PRIMARY" for h in hdul)
    raise DataError(f"{path}: no {' or '.join(names)} extension, so it is not a valid {what} "
                    f"(extensions found: {found}).")


def column(hdu, name: str, path):
    """A table column by name, with a DataError listing the columns when it is missing."""
    names = [c.upper() for c in hdu.columns.names]
    if name.upper() not in names:
        raise DataError(f"{path}: extension {hdu.name} has no {name} column (columns: {', '.join(hdu.columns.names)}).")
    return hdu.data.field(name)


def write_atomic(hdul: fits.HDUList, path: str | Path, overwrite: bool = True) -> Path:
    """Write ``hdul`` to a temporary file in the target folder, then ``os.replace`` it onto
    ``path``: a reader never sees a half-written file, and a crash leaves the old one."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise DataError(f"{path} exists; pass overwrite=True to replace it.")
    # astropy compresses by the file name's ending, so the temporary name keeps ".gz".
    with atomic_target(path, suffix=".tmp.gz" if path.name.endswith(".gz") else ".tmp") as tmp:
        hdul.writeto(tmp, overwrite=True, checksum=True)
    return path
