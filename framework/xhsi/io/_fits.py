"""Small FITS helpers shared by the readers and writers of ``xhsi.io``: opening a file with
errors a user can act on, and atomic writes."""
from __future__ import annotations

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
        hdul = fits.open(path, memmap=False)
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: cannot be read as a FITS {what} ({type(exc).__name__}: {exc}).") from None
    try:
        yield hdul
    finally:
        hdul.close()


def find_hdu(hdul, names: tuple[str, ...], path, what: str):
    """The first HDU whose EXTNAME is one of ``names`` (case-insensitive), else DataError."""
    wanted = {n.upper() for n in names}
    for hdu in hdul:
        if hdu.name.upper() in wanted:
            return hdu
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
