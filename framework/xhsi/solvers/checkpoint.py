"""Checkpoints: a solver state and its metadata in one ``.npz`` file, written atomically.

Layout of the file (numpy's zip of ``.npy`` arrays; no pickle anywhere):

* ``state.<field>``: an array field of the state (copied to the host with ``to_numpy``,
  dtype kept, 0-d arrays included);
* ``state.<field>.<i>``: item i of a field holding a list of arrays (PALM blocks);
* ``meta``: a 0-d unicode array holding JSON: ``{"format": 1, "meta": {...},
  "scalars": {field: value}, "lists": {field: length}}``. ``meta`` carries the config
  digest, solver name, iteration and history, and from a run (``xhsi.runner``) the xhsi
  version and the SHA-256 of each input file (``inputs``: {what: {"path", "sha256"}}),
  which :meth:`Checkpoint.check_compatible` compares; ``scalars`` the non-array fields
  (Python floats round-trip exactly through JSON's repr, so a resume is bit-for-bit).

``save_checkpoint`` writes to a temporary file in the target folder and ``os.replace``s it,
so a crash never leaves a half-written checkpoint and the previous one stays until the new
one is complete.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_target
from ..backend import to_numpy
from ..errors import ConfigError, DataError

__all__ = ["save_checkpoint", "load_checkpoint", "Checkpoint", "FORMAT_VERSION", "file_digests"]

FORMAT_VERSION = 1


def _is_array(v) -> bool:
    return hasattr(v, "shape") and hasattr(v, "dtype") and not isinstance(v, (bool, int, float))


def save_checkpoint(path: str | Path, state: dict, meta: dict) -> Path:
    """Write ``state`` ({field: array | list of arrays | JSON scalar}) and ``meta`` (JSON
    values) to ``path`` atomically. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    scalars: dict[str, Any] = {}
    lists: dict[str, int] = {}
    for name, value in state.items():
        if _is_array(value):
            arrays[f"state.{name}"] = np.asarray(to_numpy(value))
        elif isinstance(value, (list, tuple)) and value and all(_is_array(v) for v in value):
            lists[name] = len(value)
            for i, v in enumerate(value):
                arrays[f"state.{name}.{i}"] = np.asarray(to_numpy(v))
        else:
            scalars[name] = value
    header = {"format": FORMAT_VERSION, "meta": meta, "scalars": scalars, "lists": lists}
    arrays["meta"] = np.asarray(json.dumps(header))
    with atomic_target(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
    return path


@dataclass
class Checkpoint:
    """A loaded checkpoint: ``state`` ({field: numpy array | list of arrays | scalar}) and
    ``meta`` (solver, config_digest, iteration, history, ...)."""

    state: dict
    meta: dict
    path: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def iteration(self) -> int:
        return int(self.meta.get("iteration", self.state.get("iteration", 0)))

    def check_compatible(self, solver: str | None = None, config_digest: str | None = None,
                         version: str | None = None, inputs: dict | None = None) -> None:
        """Raise ConfigError when the checkpoint was written by another solver, config or
        xhsi ``version``, DataError when one of the ``inputs`` ({what: {"path", "sha256"}},
        as :func:`file_digests` gives) differs from the file the checkpoint recorded. What
        the checkpoint does not record (an older one) is not compared."""
        where = f" {self.path}" if self.path else ""
        saved_version = self.meta.get("xhsi_version")
        if version and saved_version and saved_version != version:
            raise ConfigError(f"the checkpoint{where} was written by xhsi {saved_version}, this is xhsi {version}: a "
                              "resume repeats an uninterrupted run only with the same code. Finish it with xhsi "
                              f"{saved_version}, or start afresh with --overwrite.")
        saved_inputs = self.meta.get("inputs")
        if inputs is not None and saved_inputs is not None:
            changed = [f"{what} ({inputs.get(what, saved_inputs.get(what))['path']})"
                       for what in sorted(set(inputs) | set(saved_inputs))
                       if (inputs.get(what) or {}).get("sha256") != (saved_inputs.get(what) or {}).get("sha256")]
            if changed:
                raise DataError(f"the input files changed since the run that wrote the checkpoint{where} began: "
                                f"{'; '.join(changed)}. Resume with the files it was started with, or start "
                                "afresh with --overwrite.")
        saved_solver = self.meta.get("solver")
        if solver and saved_solver and saved_solver != solver:
            raise ConfigError(f"the checkpoint{where} was written by solver `{saved_solver}` but this run uses "
                              f"`{solver}`: resume with the original config, or start afresh with --overwrite.")
        saved = self.meta.get("config_digest")
        if config_digest and saved and saved != config_digest:
            raise ConfigError(
                f"the checkpoint{where} was written by a run with another config (digest {saved}, this one "
                f"{config_digest}): resume with the original config (see config.resolved.toml next to the "
                "checkpoint), or start afresh with --overwrite."
            )


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint`` (``np.load(allow_pickle=False)``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no checkpoint at {path}: run without --resume, or give the run folder that holds it.")
    try:
        with np.load(path, allow_pickle=False) as npz:
            header = json.loads(str(npz["meta"][()]))
            arrays = {k: npz[k] for k in npz.files if k != "meta"}
        if not isinstance(header, dict):
            raise ValueError("its header is not a JSON object")
    except Exception as exc:
        # A truncated or bit-flipped file raises what its damage reaches: BadZipFile (a CRC or
        # a zip header), ValueError, EOFError, KeyError, OSError, NotImplementedError (a zip
        # method), tokenize.TokenError (an .npy header), ...: all of them one user error here.
        raise DataError(f"{path} is not a readable xhsi checkpoint ({type(exc).__name__}: {exc}): the file is "
                        "damaged or not a checkpoint. Start afresh with --overwrite.") from None
    if header.get("format") != FORMAT_VERSION:
        raise DataError(f"{path} has checkpoint format {header.get('format')}, this xhsi reads "
                        f"{FORMAT_VERSION}; start afresh with --overwrite.")
    state: dict[str, Any] = dict(header.get("scalars", {}))
    lists = header.get("lists", {})
    for name, n in lists.items():
        state[name] = [arrays[f"state.{name}.{i}"] for i in range(int(n))]
    for key, value in arrays.items():
        name = key[len("state."):]
        if key.startswith("state.") and "." not in name:
            state[name] = value
    return Checkpoint(state=state, meta=header.get("meta", {}), path=path)


def file_digests(files: dict[str, Path]) -> dict[str, dict[str, str]]:
    """{what: {"path": path, "sha256": hex digest of its bytes}} of ``files`` ({what: path})."""
    out = {}
    for what, path in files.items():
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        out[what] = {"path": str(path), "sha256": digest.hexdigest()}
    return out
