"""What ``xhsi run CONFIG --workers N`` (or ``--scheduler``, ``--scheduler-file``) runs on
Dask: the candidate fits of the run's selection (``selection_tasks``; docs/selection.md
"On a Dask cluster") and the replicates of its bootstrap error maps (``bootstrap_tasks``;
docs/unmixing.md "Error maps"), on one cluster from ``cluster.connect``."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import ConfigError


class RunTasks(NamedTuple):
    """``runner.run``'s ``selection_fits`` and ``bootstrap_tasks`` (None: that part runs here)."""

    selection_fits: Any = None
    bootstrap_tasks: Any = None


def bootstrap_samples(cfg) -> int:
    """The replicates of ``cfg``'s bootstrap error maps: 0 unless its problem has ``errors =
    "bootstrap"`` (unmixing, fusion_unmixing)."""
    options = cfg.problem
    if getattr(options, "errors", None) != "bootstrap":
        return 0
    return int(getattr(options, "bootstrap_samples", 0))


@contextmanager
def run_tasks(cfg, config: str | Path, overrides: Sequence[str], scheduler: str | None = None,
              scheduler_file: str | Path | None = None, workers: int | None = None,
              timeout_s: float = 10.0) -> Iterator[RunTasks]:
    """For ``xhsi run --workers/--scheduler/--scheduler-file``: check that ``cfg`` (loaded
    from ``config`` with ``overrides``) selects or bootstraps and passes ``check_config``,
    connect (``cluster.connect``: every refusal an XhsiError, before any task), and give the
    :class:`RunTasks` to pass to ``runner.run``; the client (and a LocalCluster) is closed
    when the block ends."""
    from ..config import SelectionSection
    from ..plugins import disabled_plugins
    from ..runner import check_config
    from ..selection.candidates import candidates, selection_reason
    from .bootstrap_tasks import DaskReplicates
    from .cluster import connect
    from .selection_tasks import DaskFits

    option = "--scheduler" if scheduler else "--scheduler-file" if scheduler_file else "--workers"
    selects, samples = selection_reason(cfg) is not None, bootstrap_samples(cfg)
    if not selects and not samples:
        raise ConfigError(f"{option} runs the candidate fits of a run's selection and the replicates of its bootstrap "
                          f"error maps on Dask, but {config} does not select (docs/selection.md \"When a run "
                          "selects\") and its problem has no errors = \"bootstrap\": leave the option out, or set "
                          "[selection] select = \"auto\" or [problem] errors = \"bootstrap\" (unmixing). To run one "
                          "config at many settings, use `xhsi sweep`.")
    check_config(cfg)
    fits = 0
    if selects:
        sel = cfg.selection if cfg.selection is not None else SelectionSection()
        fits = len(candidates(cfg)) * (1 if sel.rule == "discrepancy" else sel.folds)
    with connect(scheduler, scheduler_file, workers=workers, timeout_s=timeout_s, tasks=max(fits, samples)) as client:
        yield RunTasks(DaskFits(client, str(Path(config).resolve()), list(overrides), sorted(disabled_plugins()))
                       if selects else None, DaskReplicates(client) if samples else None)
