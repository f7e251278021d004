"""Atomic file replacement: write to a temporary file in the target's folder, then
``os.replace`` it onto the target, so that a reader (or a crash) never sees a half-written
file and an interrupted write leaves the previous file intact."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_target(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path to write; on normal exit it replaces ``path``, on an
    exception it is removed. ``suffix`` lets writers that choose a format by the file name
    (astropy's ``.gz``) see the right ending."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (and durably: fsync before the rename)."""
    with atomic_target(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
