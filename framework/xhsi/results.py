"""Run outputs: atomic writes, the history table and the Result object a problem returns
(the output folder's rules are ``xhsi.runfolder``). Nothing here is pickled: FITS for
science arrays, CSV/JSON/TOML otherwise."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write_bytes


@dataclass
class Result:
    """What a problem returns: named numpy arrays, the solver history, metadata, metrics.

    ``arrays["cube"]`` is the sky cube (n_e, ny, nx) in photons / s / cm² per energy bin
    per pixel; other problems add their own arrays (maps, components)."""

    arrays: dict[str, np.ndarray]
    history: list[dict] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    #: unmixing: parameter and amplitude maps (ny, nx) by "component.parameter", their
    #: units, optional 1-σ error maps, and each component's cube.
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    map_units: dict[str, str] = field(default_factory=dict)
    map_errors: dict[str, np.ndarray] = field(default_factory=dict)
    components: dict[str, np.ndarray] = field(default_factory=dict)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


HISTORY_COLUMNS = ("iteration", "cost", "step", "time_s")


def write_history(path: Path, history: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: row.get(k) for k in HISTORY_COLUMNS})
    atomic_write_text(path, buf.getvalue())


def read_history(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return [{k: (int(v) if k == "iteration" else float(v)) for k, v in row.items()} for row in csv.DictReader(fh)]
