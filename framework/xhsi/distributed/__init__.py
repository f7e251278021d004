"""The distributed engine: sweeps of a run config over a grid of overrides on a Dask cluster
(``xhsi sweep``; docs/sweeps.md), each point a normal run in its own folder.

``plan_sweep`` expands and checks a sweep (nothing submitted, nothing written);
``connect`` gives a Dask client (a LocalCluster sized to this machine, or an existing
scheduler); ``run_sweep`` runs the pending points on it and writes the results table and
plot. Dask is an optional dependency (``pip install 'xhsi[distributed]'``) that these
modules import only when a client is asked for.
"""
from .cluster import connect, machine_workers, require_dask
from .report import point_values
from .sweep import (Sweep, SweepPoint, SweepReport, expand_points, parse_grid_option, plan_sweep, point_name,
                    run_point, run_sweep)

__all__ = ["plan_sweep", "run_sweep", "connect", "Sweep", "SweepPoint", "SweepReport", "expand_points",
           "parse_grid_option", "point_name", "run_point", "point_values", "machine_workers", "require_dask"]
