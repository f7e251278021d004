"""Atomic file replacement: write to a temporary file in the target's folder, then
``os.replace`` it onto the target, so that a reader (or a crash) never sees a half-written
file and an interrupted write leaves the previous file intact.

``tempfile.mkstemp`` creates its file with mode 0600 whatever the umask; the finished file
is given the mode an ordinary ``open(path, "w")`` would have had (0666 less the umask)
before it is renamed onto the target."""
from __future__ import annotations

import os
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's file-creation mask. Read from ``/proc/self/status`` where the kernel
    reports it (Linux >= 4.7), which changes nothing; elsewhere ``os.umask`` has to set it
    to read it, so it is set back at once, under a lock shared by every caller here."""
    try:
        with open("/proc/self/status", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode of a new regular file: 0666 less the umask (0644 under the usual 022)."""
    return 0o666 & ~current_umask()


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
        os.chmod(tmp, file_mode())
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


def check_writable(folder: str | Path, what: str) -> None:
    """Refuse (XhsiError) a ``folder`` that cannot hold new files: it, or the first of its
    parents that exists, is not a folder (a path under a regular file) or is not writable.
    Run before the work whose results go there, so that a wrong output location costs
    nothing. ``what`` names the folder in the message (e.g. "the --out folder")."""
    from .errors import XhsiError

    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # a dangling link: mkdir would fail on it
            raise XhsiError(f"{what} {folder}: {existing} is a broken symbolic link.")
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == folder else f"lies under {existing}, which is a file"
        raise XhsiError(f"{what} {folder} {where}, not a folder: choose another location.")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "is not writable" if existing == folder else f"cannot be created: the folder {existing} is not writable"
        raise XhsiError(f"{what} {folder} {where}; choose another location, or change the permissions.")
