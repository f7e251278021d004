"""The selection's candidate fits (``xhsi.selection.driver``) as Dask tasks: ``xhsi run
CONFIG --workers N`` (or ``--scheduler``, ``--scheduler-file``; docs/selection.md "On a
Dask cluster").

**The task.** :func:`fit_candidate` is given plain values only: the config's path, the
``--set`` strings, the candidate's overrides, the fold's index and a token naming the
selection. In the worker it loads and checks the config and prepares the data as
``xhsi run`` does (``runner.check_config``, ``runner.prepare``: the run's seed, so the
same simulated or read counts), thins the fold from its own seeded stream
(``driver.make_folds``: the same thinning), fits the candidate (``driver.fit_task``) and
returns the scored path as lists. It also returns SHA-256 digests of the config it
loaded and of the fold's counts, which :class:`DaskFits` compares with this process's:
a worker that sees another config or other data (another file at the same path on
another host) stops the selection with an XhsiError instead of choosing from other data.

**Reuse.** A worker thread keeps the prepared data and folds of the latest selection
(by its token), so its next fit of the same selection skips the preparation; the next
selection replaces them.

**Failures.** A fit that raises is a failed candidate, reported as the sequential path
reports it (``driver.failure_message``); a task whose worker died is rerun by the Dask
scheduler (up to ``distributed.scheduler.allowed-failures`` times), after which it is a
failed fit too.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..errors import XhsiError

_latest = threading.local()  # .token, .cfg, .prep, .folds ({index: Fold}) of the latest selection


def config_digest(cfg) -> str:
    """SHA-256 of ``cfg`` resolved (after ``check_config``): the same on every worker that
    loads the same file with the same overrides."""
    return hashlib.sha256(cfg.to_toml().encode()).hexdigest()


def fold_digest(fold) -> str:
    """SHA-256 of a fold's counts: those fitted and those held out (holdout) or scored
    (discrepancy), as float64, observation by observation."""
    from ..backend import to_numpy

    scorer = fold.scorer
    scored = getattr(scorer, "heldout", None) or getattr(scorer, "counts", None) or []
    h = hashlib.sha256()
    for counts in [o.counts for o in fold.observations] + list(scored):
        h.update(np.ascontiguousarray(to_numpy(counts), dtype=np.float64).tobytes())
    return h.hexdigest()


def _prepared(config: str, overrides: Sequence[str], token: str, fold: int):
    """(config, prepared data, fold) of the selection ``token`` in this worker thread."""
    from ..config import load_config
    from ..runner import check_config, prepare
    from ..selection.driver import make_folds

    if getattr(_latest, "token", None) != token:
        _latest.token = None  # a failed preparation leaves nothing half-made behind
        cfg = load_config(config, list(overrides))
        check_config(cfg)
        _latest.cfg, _latest.prep, _latest.folds, _latest.token = cfg, prepare(cfg), {}, token
    cfg = _latest.cfg
    if fold not in _latest.folds:
        rule = cfg.selection.rule if cfg.selection is not None else "holdout"
        _latest.folds[fold] = make_folds(cfg, _latest.prep, rule, only=fold if rule == "holdout" else None)[0]
    return cfg, _latest.prep, _latest.folds[fold]


def fit_candidate(config: str, overrides: list[str], candidate: dict[str, Any], fold: int, token: str,
                  disabled_plugins: Sequence[str] = ()) -> dict:
    """One candidate fitted on one fold in a Dask worker (see the module's docstring).
    Returns {"path": {"iterations", "by_observation", "expected"} or None, "error": the
    failure's message or None, "seconds", "config": digest, "counts": digest, "worker"}."""
    from ..config import SelectionSection
    from ..plugins import disabling
    from ..selection import driver
    from ..selection.candidates import budget, candidate_config

    start = time.perf_counter()
    out = {"path": None, "error": None, "config": None, "counts": None,
           "worker": f"{socket.gethostname()}:{os.getpid()}"}
    with disabling(disabled_plugins):
        try:
            cfg, prep, data = _prepared(config, overrides, token, fold)
            out["config"], out["counts"] = config_digest(cfg), fold_digest(data)
            sel = cfg.selection if cfg.selection is not None else SelectionSection()
            path = driver.fit_task(candidate_config(cfg, candidate), prep, data, budget(cfg), sel.every,
                                   sel.patience)
            out["path"] = dataclasses.asdict(path)
        except Exception as exc:  # noqa: BLE001 — a failed candidate, as in the sequential selection
            out["error"] = driver.failure_message(exc)
    out["seconds"] = time.perf_counter() - start
    return out


@dataclasses.dataclass
class DaskFits:
    """Runs a selection's fits (``run_selection``'s ``fits``) as :func:`fit_candidate`
    tasks on ``client``: ``config`` (a path every worker reads) with ``overrides``
    (``--set`` strings), the config the calling process loaded and checked."""

    client: Any
    config: str
    overrides: list[str]
    disabled_plugins: list[str] = dataclasses.field(default_factory=list)

    def __call__(self, cfg, folds, cands, jobs) -> Iterator:
        from distributed import as_completed

        from ..selection.driver import FitRecord
        from ..selection.rules import Path as ScoredPath
        from .sweep import _task_error

        token = uuid.uuid4().hex
        want_config, want_counts = config_digest(cfg), [fold_digest(f) for f in folds]
        futures = {self.client.submit(fit_candidate, self.config, list(self.overrides), dict(cands[c].overrides), f,
                                      token, list(self.disabled_plugins), key=f"xhsi-select-{c}-{f}-{token[:12]}",
                                      pure=False): (c, f) for c, f in jobs}
        try:
            for future in as_completed(list(futures)):
                c, f = futures[future]
                try:
                    out = future.result()
                except Exception as exc:  # noqa: BLE001 — its workers died (KilledWorker) or it could not run
                    yield FitRecord(c, f, None, 0.0, _task_error(exc))
                    continue
                where = f"worker {out['worker']}"
                if out["config"] is not None and out["config"] != want_config:
                    raise XhsiError(f"{where} loaded {self.config} with other contents than this process: every "
                                    "worker must see the same config file and the same xhsi and plugins.")
                if out["counts"] is not None and out["counts"] != want_counts[f]:
                    raise XhsiError(f"{where} prepared other counts for selection fold {f + 1} than this process "
                                    f"from {self.config}: every worker must read the same data files at the same "
                                    "paths (a shared filesystem).")
                path = ScoredPath.from_dict(out["path"]) if out["path"] is not None else None
                yield FitRecord(c, f, path, out["seconds"], out["error"])
        finally:
            self.client.cancel([fut for fut in futures if not fut.done()])
