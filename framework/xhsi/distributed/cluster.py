"""Dask clients for the distributed engine: by default a ``LocalCluster`` sized to this
machine (one single-threaded worker process per core), else an existing scheduler named by
its address (``--scheduler``) or by the JSON file it wrote (``--scheduler-file``).

Dask (``dask.distributed``) is an optional dependency, ``pip install 'xhsi[distributed]'``:
nothing here imports it before a client is asked for, and its absence is a user error that
names the install command. Every way a connection can fail (no such file, an address that
does not parse, a scheduler that does not answer within the timeout, one with no workers)
is an XhsiError raised before any task is submitted.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import XhsiError

INSTALL = "pip install 'xhsi[distributed]'"


def require_dask():
    """The ``distributed`` module, or an XhsiError that says how to install it."""
    try:
        import distributed
    except ImportError as exc:
        raise XhsiError(f"this command runs on Dask (dask.distributed), which is not installed here ({exc}). "
                        f"Install it with: {INSTALL}") from None
    return distributed


def machine_workers() -> int:
    """The cores this process may use (its CPU affinity where the system says, else all)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def scheduler_address(scheduler_file: str | Path) -> str:
    """The address a scheduler wrote into ``scheduler_file`` (``dask scheduler
    --scheduler-file FILE``)."""
    path = Path(scheduler_file)
    if not path.is_file():
        raise XhsiError(f"--scheduler-file {path}: no such file. Start a scheduler that writes it (`dask scheduler "
                        f"--scheduler-file {path}`, then `dask worker --scheduler-file {path}` on each machine), "
                        "or leave the option out to run on this machine.")
    try:
        address = json.loads(path.read_text(encoding="utf-8"))["address"]
        if not isinstance(address, str):
            raise TypeError("`address` is not a string")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise XhsiError(f"--scheduler-file {path} is not a Dask scheduler file (JSON with an `address`: "
                        f"{type(exc).__name__}: {exc}).") from None
    return address


#: Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in the worker processes it starts, which
#: turns off glibc's adaptive mmap threshold: every array over 128 KiB is then mapped and
#: unmapped afresh, and a run of configs/fusion_xmm_xrism_small.toml took 1.7-1.8x as long
#: (docs/scaling.md). The LocalCluster's workers are started without it.
UNSET_IN_WORKERS = ("MALLOC_TRIM_THRESHOLD_",)


@contextmanager
def _worker_environment() -> Iterator[None]:
    """Start worker processes without :data:`UNSET_IN_WORKERS`. The nanny writes the
    variables it sets (and multiprocessing's PYTHONHASHSEED, __DASK_PARENT_PID) into this
    process's environment: the whole environment is restored on exit."""
    import dask

    saved = dict(os.environ)
    try:
        with dask.config.set({f"distributed.nanny.pre-spawn-environ.{key}": None for key in UNSET_IN_WORKERS}):
            yield
    finally:
        for key in set(os.environ) - set(saved):
            del os.environ[key]
        os.environ.update(saved)


@contextmanager
def connect(scheduler: str | None = None, scheduler_file: str | Path | None = None, workers: int | None = None,
            timeout_s: float = 10.0, processes: bool = True, tasks: int | None = None) -> Iterator:
    """A ``distributed.Client``, closed (with its LocalCluster) when the block ends.

    ``scheduler`` (an address such as ``tcp://host:8786``) or ``scheduler_file``: an existing
    cluster, which must answer and have at least one worker within ``timeout_s`` seconds.
    Neither: a LocalCluster of ``workers`` worker processes (default: one per core, and no
    more than the ``tasks`` to run), one
    thread each, as a run's arrays are numpy's and Dask sets each worker's BLAS/OpenMP
    threads to one. ``processes=False`` runs the workers as threads of this process (tests)."""
    if scheduler and scheduler_file:
        raise XhsiError("--scheduler and --scheduler-file name the same thing: give one of them.")
    if workers is not None and workers < 1:
        raise XhsiError(f"--workers must be at least 1, got {workers}.")
    if (scheduler or scheduler_file) and workers is not None:
        raise XhsiError("--workers sizes the cluster started on this machine; with --scheduler or --scheduler-file "
                        "the cluster's workers are those started there (`dask worker`).")
    distributed = require_dask()
    if scheduler_file is not None:
        address = scheduler_address(scheduler_file)
        where = f"the Dask scheduler at {address} (from {scheduler_file})"
    else:
        address, where = scheduler, f"the Dask scheduler at {scheduler}"
    if address is None:
        n_workers = workers or max(1, min(machine_workers(), tasks or machine_workers()))
        with _worker_environment():
            cluster = distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1,
                                               processes=processes, dashboard_address=":0")
            client = distributed.Client(cluster)
            try:
                yield client
            finally:
                client.close()
                cluster.close()
        return
    try:
        client = distributed.Client(address, timeout=timeout_s)
    except ValueError as exc:
        raise XhsiError(f"--scheduler {address}: not a Dask address ({exc}); e.g. tcp://HOST:8786.") from None
    except (OSError, TimeoutError) as exc:
        raise XhsiError(f"cannot reach {where} within {timeout_s:g} s ({exc}). Check that `dask scheduler` runs "
                        "there and that this machine can reach it (firewall, address), raise --timeout, or leave "
                        "out --scheduler/--scheduler-file to run on this machine.") from None
    try:
        try:
            client.wait_for_workers(1, timeout=timeout_s)
        except (OSError, TimeoutError):
            raise XhsiError(f"{where} has no worker after {timeout_s:g} s: start some (`dask worker {address} "
                            "--nthreads 1`) or raise --timeout.") from None
        yield client
    finally:
        client.close()
