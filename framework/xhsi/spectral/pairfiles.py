"""The files of a learnt spectral model: ``NAME.npz`` (float64 arrays, read with
``allow_pickle=False``) and ``NAME.json`` (metadata, with the SHA-256 of the npz so that a
mismatched or altered pair is refused), each written atomically. Used by the PCA + MLP
surrogate (``surrogate.py``) and the IAE (``iae.py``). No pickle anywhere."""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_bytes
from ..errors import ConfigError, DataError

__all__ = ["LearntFile", "pair_paths", "write_pair", "read_pair", "check_trained_grid"]


class LearntFile:
    """What the metadata of a learnt model's JSON says about it (a mixin of the dataclasses
    that hold one, each with a ``metadata`` dict)."""

    @property
    def response(self) -> dict | None:
        return self.metadata.get("response")

    @property
    def validation(self) -> dict:
        return self.metadata.get("validation", {})


def pair_paths(path: str | Path, noun: str) -> tuple[Path, Path]:
    """(NAME.npz, NAME.json) of either file; ConfigError for another suffix. ``noun``
    names the kind of model in messages (e.g. "a surrogate")."""
    path = Path(path)
    if path.suffix not in (".npz", ".json"):
        raise ConfigError(f"{path}: {noun} is a pair NAME.npz + NAME.json; give the .npz path.")
    return path.with_suffix(".npz"), path.with_suffix(".json")


def write_pair(path: str | Path, arrays: dict, metadata: dict, noun: str) -> Path:
    """Write ``arrays`` (as float64) and ``metadata`` plus ``npz_sha256``; the .npz path."""
    npz_path, json_path = pair_paths(path, noun)
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(a, dtype=np.float64) for k, a in arrays.items()})
    data = buffer.getvalue()
    meta = dict(metadata, npz_sha256=hashlib.sha256(data).hexdigest())
    atomic_write_bytes(npz_path, data)
    atomic_write_bytes(json_path, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
    return npz_path


def read_pair(path: str | Path, noun: str, kind: str, file_format: str, version: int) -> tuple[dict, dict, Path, Path]:
    """(arrays, metadata, npz path, json path) of a pair; DataError for a missing file,
    invalid JSON, another ``file_format``, a newer ``version`` or a SHA-256 mismatch.
    ``kind`` names the format in messages (e.g. "surrogate")."""
    npz_path, json_path = pair_paths(path, noun)
    for p in (npz_path, json_path):
        if not p.is_file():
            raise DataError(f"{p}: no such file; {noun} is the pair {npz_path.name} + {json_path.name} "
                            "written by `xhsi train-model`.")
    try:
        meta = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{json_path}: not valid JSON ({exc}).") from None
    if not isinstance(meta, dict) or meta.get("format") != file_format:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise DataError(f"{json_path}: not an xhsi {kind} (format {found!r}).")
    if int(meta.get("format_version", -1)) > version:
        raise DataError(f"{json_path}: {kind} format {meta.get('format_version')} is newer than this xhsi reads "
                        f"({version}); upgrade xhsi.")
    data = npz_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta.get("npz_sha256"):
        raise DataError(f"{npz_path} does not match {json_path.name} (SHA-256 differs): the pair was mixed up or one "
                        "file was changed. Retrain or restore both files.")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError) as exc:
        raise DataError(f"{npz_path}: not a readable npz file ({exc}).") from None
    return arrays, meta, npz_path, json_path


def check_trained_grid(metadata: dict, energy_edges_kev, source) -> None:
    """Refuse (DataError) a model grid other than the one a learnt model was trained on
    (``metadata["energy_grid"]``: its SHA-256 and, for the message, its bins)."""
    from .models import edges_digest

    grid = metadata.get("energy_grid", {})
    if edges_digest(energy_edges_kev) != grid.get("sha256"):
        e = np.asarray(energy_edges_kev)
        raise DataError(
            f"{source} was trained on {grid.get('n_e')} bins {grid.get('min_kev')}–{grid.get('max_kev')} keV, "
            f"but the model grid has {e.size - 1} bins {e[0]:.6g}–{e[-1]:.6g} keV (or other edges). Retrain it on "
            "this grid with `xhsi train-model` ([model.energy] of its config).")
