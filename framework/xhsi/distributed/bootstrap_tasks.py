"""The replicates of a run's bootstrap error maps (``[problem] errors = "bootstrap"``,
``xhsi.problems.bootstrap``) as Dask tasks: ``xhsi run CONFIG --workers N`` (or
``--scheduler``, ``--scheduler-file``; docs/unmixing.md "Error maps").

**The task.** Unlike the selection's tasks (``selection_tasks``), which prepare their data
from the config in each worker, a replicate needs the run's solution: its task is given
the ``ReplicateFit`` itself (the problem at the solution: operators, expected counts,
solver settings). It is scattered once to every worker (``Client.scatter(broadcast=True)``):
a threaded cluster shares it in memory, worker processes receive one copy each over the
network, never through disk; measured sizes, serialised: 7 MB for
configs/unmixing_casa_chandra_small.toml, 107 MB for
configs/fusion_unmixing_casa_xmm_xrism_small.toml. Each task then fits one replicate from
its own seeded stream (``replicate_rng``): replicate b is the same on any worker as here.

**Order and progress.** :class:`DaskReplicates` yields each replicate as its task finishes
(``distributed.as_completed``), for the bootstrap's progress lines; the bootstrap puts them
back in replicate order.

**Failures.** A replicate that raises stops the run as it would without Dask (the same
exception); a task whose workers all died (``KilledWorker``, after the scheduler's
``allowed-failures`` reruns) is an XhsiError that says so. Unfinished tasks are cancelled.
"""
from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

from ..errors import XhsiError


@dataclasses.dataclass
class DaskReplicates:
    """Runs a bootstrap's replicates (``xhsi.problems.bootstrap.fit_replicates``'s
    ``tasks``) as ``timed_fit`` tasks on ``client``."""

    client: Any

    def where(self) -> dict[str, Any]:
        """For run.json: the scheduler's address and its number of workers now."""
        workers = self.client.scheduler_info().get("workers", {})
        return {"where": str(self.client.scheduler.address), "workers": len(workers)}

    def __call__(self, fit, indices: list[int], seed: int) -> Iterator[tuple[int, dict, float]]:
        from distributed import as_completed

        from ..problems.bootstrap import timed_fit
        from .sweep import _task_error

        token = uuid.uuid4().hex[:12]
        shared = self.client.scatter(fit, broadcast=True, hash=False)
        futures = {self.client.submit(timed_fit, shared, b, seed, key=f"xhsi-bootstrap-{b}-{token}", pure=False): b
                   for b in indices}
        try:
            for future in as_completed(list(futures)):
                b = futures[future]
                try:
                    maps, seconds = future.result()
                except Exception as exc:
                    if type(exc).__name__ != "KilledWorker":
                        raise  # the replicate's own failure, as without Dask
                    raise XhsiError(f"bootstrap replicate {b + 1}: {_task_error(exc)}") from None
                yield b, maps, seconds
        finally:
            self.client.cancel([f for f in futures if not f.done()])
            self.client.cancel([shared])
