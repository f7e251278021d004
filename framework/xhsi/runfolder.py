"""Run folders: what an output folder holds, and how a run changes it all at once.

An output folder ``OUT`` is always in one of three states:

* **no run**: absent, empty, or holding only what a run stopped before its first checkpoint
  leaves (hidden temporaries ``.NAME.*.tmp``; a lone ``config.resolved.toml`` or
  ``history.csv``, as older versions left them). A plain run uses it; ``--resume`` refuses.
* **interrupted**: ``checkpoint.npz`` and no ``run.json``: a run stopped by Ctrl-C,
  SIGTERM, SIGHUP, a kill or an error after its first checkpoint. ``--resume`` continues it;
  a plain run refuses it; ``--overwrite`` starts afresh.
* **complete**: ``run.json`` beside every other output (``result.fits``, ``history.csv``,
  ``config.resolved.toml``, metrics, PNGs, and the last iterate's ``checkpoint.npz``,
  which ``--resume`` with a larger ``max_iter`` extends). A plain run refuses it.

A run writes its outputs into a staging folder ``.NAME.staging-PID@HOST`` beside ``OUT``
(the same filesystem) and, once every one is written, swaps it with ``OUT`` in one step
(``renameat2(RENAME_EXCHANGE)`` on Linux; elsewhere two renames, which the next run
completes if a crash falls between them), so that a reader sees the previous folder or the
new one, never a mix. Where the run's periodic checkpoints go decides what a kill -9
leaves: into ``OUT`` when it holds no complete run (no run, or the interrupted run that
``--resume`` continues), so that the killed run can be resumed; into the staging folder
otherwise (``--overwrite`` or ``--resume`` of a complete run, ``--overwrite`` of an
interrupted one), so that the previous folder stays whole until the new run is complete,
and the new run's progress is lost with the process. Ctrl-C, SIGTERM and SIGHUP make
``OUT`` the interrupted run (its checkpoint alone), replacing what it held.

The staging folder also marks the run as live: a second run on ``OUT`` is refused while the
process named by one exists. Those of dead processes on this host (a kill -9, a power cut)
are removed by the next run that starts, with the temporaries inside ``OUT``; a run refused
by a check touches nothing. One of another host cannot be checked and is refused, except
for a run told it is the folder's only writer (``exclusive``: a Dask task of ``xhsi sweep``
or ``xhsi tiles``, which the scheduler reruns elsewhere only once the worker that ran it
is gone), which treats it as dead. A folder that holds no run but other files (``--out`` pointed
at a data folder) is refused: a completed run replaces its folder as a whole.
"""
from __future__ import annotations

import ctypes
import errno
import functools
import os
import re
import shutil
import socket
import sys
from pathlib import Path

from .atomic import check_writable
from .errors import XhsiError

CHECKPOINT = "checkpoint.npz"
#: Written with every other output of a complete run, and only there.
COMPLETE = "run.json"
#: Files whose presence means a folder holds a run (complete, interrupted or damaged).
RUN_MARKERS = (COMPLETE, "result.fits", CHECKPOINT)
#: What an older xhsi left in a folder when it stopped before its first checkpoint.
LEFTOVERS = ("config.resolved.toml", "history.csv")
_TEMPORARY = re.compile(r"^\..+\.tmp(\.gz)?$")  # atomic writes' temporaries (xhsi.atomic)


def folder_state(out: Path) -> str:
    """"none", "interrupted" or "complete" (see the module's docstring)."""
    if not out.is_dir():
        return "none"
    if (out / COMPLETE).exists():
        return "complete"
    return "interrupted" if any((out / name).exists() for name in RUN_MARKERS) else "none"


def _token() -> str:
    return f"{os.getpid()}@{socket.gethostname()}"


def _alive(token: str) -> bool | None:
    """Whether the process a sibling's name records exists: None when it ran on another host."""
    pid, _, host = token.partition("@")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class RunFolder:
    """The output folder of one run: its state when the run starts, where the run's
    checkpoints go, and the staging folder its outputs are written into.

    Construction only reads (it completes a swap a crashed run left half done): it refuses,
    with an XhsiError, what the flags do not allow (see the module's docstring).
    :meth:`start` then clears what dead runs left and creates the staging folder;
    :meth:`publish` moves the staging folder into place; :meth:`interrupted` leaves the
    folder holding a checkpoint; :meth:`discard` removes the staging folder."""

    def __init__(self, out: Path, resume: bool = False, overwrite: bool = False, exclusive: bool = False):
        if resume and overwrite:
            raise XhsiError("--resume and --overwrite contradict each other: choose one.")
        out = Path(out)
        # A link to a folder: the folder is replaced, the link kept (renames act on links).
        self.out = out.resolve() if out.is_symlink() else out
        if self.out.exists() and not self.out.is_dir():
            raise XhsiError(f"output path {out} exists and is not a folder; choose another [run] output or --out.")
        # The staging folder and the swap live beside OUT: its parent must take new folders.
        check_writable(self.out.parent, f"the folder that holds the output folder {out}")
        self.resume, self.exclusive = resume, exclusive
        self.staging = self._sibling("staging", _token())
        self._stale = self._dead_siblings()
        self.state = folder_state(self.out)
        self._check(overwrite)
        #: Checkpoints into OUT (see the module's docstring), else into the staging folder.
        self.in_place = self.state == "none" or (self.state == "interrupted" and resume)
        self.published = False

    # -- paths ----------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        """Where the run's periodic checkpoints are written."""
        return (self.out if self.in_place else self.staging) / CHECKPOINT

    @property
    def resume_path(self) -> Path | None:
        return self.out / CHECKPOINT if self.resume else None

    def _sibling(self, kind: str, token: str) -> Path:
        return self.out.parent / f".{self.out.name}.{kind}-{token}"

    def _siblings(self) -> list[tuple[Path, str, str]]:
        """(path, kind, token) of every staging or old folder of any run on OUT."""
        prefix = f".{self.out.name}."
        pattern = re.compile(re.escape(prefix) + r"(staging|old)-(.+)$")
        parent = self.out.parent
        found = []
        if parent.is_dir():
            for entry in parent.iterdir():
                match = pattern.match(entry.name)
                if match and entry.is_dir() and not entry.is_symlink():
                    found.append((entry, match.group(1), match.group(2)))
        return found

    # -- the start of a run ---------------------------------------------------------------
    def _dead_siblings(self) -> list[Path]:
        """Refuse when another live run writes OUT; complete a swap a dead one left half
        done (OUT absent, its old folder present); return the dead runs' folders."""
        dead = []
        siblings = self._siblings()
        for path, kind, token in siblings:
            alive = _alive(token)
            if alive is False or path == self.staging or (alive is None and self.exclusive):
                dead.append(path)
                continue
            where = f"pid {token.partition('@')[0]}" + ("" if alive else f" on host {token.partition('@')[2]}")
            raise XhsiError(f"another xhsi run ({where}) is writing {self.out} (its {kind} folder {path} exists): "
                            "wait for it to finish, or choose another output folder. If no such run is going on, "
                            f"delete {path}.")
        if not self.out.exists():
            for path, kind, token in siblings:
                if kind == "old" and path in dead:
                    staged = self._sibling("staging", token)
                    os.rename(staged if staged.is_dir() else path, self.out)  # forward if the new one is whole
                    break
        return [p for p in dead if p.exists()]

    def _check(self, overwrite: bool) -> None:
        out, state = self.out, self.state
        if self.resume:
            if not (out / CHECKPOINT).is_file():
                what = "start afresh with --overwrite" if state != "none" else "run without --resume"
                raise XhsiError(f"--resume: {out} has no {CHECKPOINT} to continue from; {what}.")
            return
        if state == "complete" and not overwrite:
            present = [name for name in RUN_MARKERS if (out / name).exists()]
            raise XhsiError(f"output folder {out} already holds a run ({', '.join(present)}). Use --overwrite to "
                            "replace it, --resume to continue it, or choose another [run] output / --out.")
        if state == "interrupted" and not overwrite:
            has = "checkpoint.npz" if (out / CHECKPOINT).exists() else "no run.json"
            raise XhsiError(f"output folder {out} already holds a run that did not finish ({has}). Use --resume to "
                            "continue it, --overwrite to start afresh, or choose another [run] output / --out.")
        if state == "none" and out.is_dir():
            foreign = sorted(p.name for p in out.iterdir() if not self._leftover(p.name))
            if foreign:
                shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
                raise XhsiError(f"output folder {out} holds files that are not an xhsi run's ({shown}): a run "
                                "replaces its output folder as a whole when it completes. Choose an empty or new "
                                "folder ([run] output or --out).")

    @staticmethod
    def _leftover(name: str) -> bool:
        return name in LEFTOVERS or bool(_TEMPORARY.match(name))

    def start(self) -> None:
        """Remove what dead runs left (their staging and old folders; temporaries in OUT,
        and the leftovers of a folder that holds no run), then create the staging folder.
        Called once the run's checks have passed."""
        for path in self._stale:
            shutil.rmtree(path, ignore_errors=True)
        if self.out.is_dir():
            for entry in self.out.iterdir():
                if _TEMPORARY.match(entry.name) or (self.state == "none" and entry.name in LEFTOVERS):
                    entry.unlink()
        self.staging.mkdir(parents=True)

    # -- the end of a run -----------------------------------------------------------------
    def publish(self) -> None:
        """Move the staging folder into place as OUT, whatever OUT held (see the module's
        docstring: one step where the system allows)."""
        if self.in_place and (self.out / CHECKPOINT).is_file() and not (self.staging / CHECKPOINT).exists():
            _link_or_copy(self.out / CHECKPOINT, self.staging / CHECKPOINT)
        if not self.out.exists():
            os.rename(self.staging, self.out)
        elif _exchange(self.staging, self.out):
            shutil.rmtree(self.staging)  # it holds the previous folder now
        else:
            old = self._sibling("old", _token())
            os.rename(self.out, old)
            os.rename(self.staging, self.out)  # a crash before this: the next run completes the swap
            shutil.rmtree(old)
        self.published = True

    def interrupted(self, save_checkpoint) -> Path:
        """Leave OUT holding the interrupted run: ``save_checkpoint(path)`` writes the
        checkpoint, into OUT when the run checkpoints there, else into a fresh staging
        folder that then replaces OUT. Returns the checkpoint's final path."""
        if self.in_place:
            self.discard()
            save_checkpoint(self.out / CHECKPOINT)
        else:
            self.discard()
            self.staging.mkdir()
            save_checkpoint(self.staging / CHECKPOINT)
            self.in_place = False
            self.publish()
        return self.out / CHECKPOINT

    def discard(self) -> None:
        """Remove the staging folder (a run that failed or was interrupted)."""
        if not self.published:
            shutil.rmtree(self.staging, ignore_errors=True)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


@functools.lru_cache(maxsize=1)
def _renameat2():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).renameat2  # glibc >= 2.28
    except (OSError, AttributeError):
        return None


def _exchange(a: Path, b: Path) -> bool:
    """Swap the paths ``a`` and ``b`` in one step (Linux ``renameat2`` with
    ``RENAME_EXCHANGE``); False where the system or the filesystem cannot."""
    call = _renameat2()
    if call is None:
        return False
    if call(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))
