"""The results of a sweep: one row per point (its overrides, its status, and every number
its run wrote: ``metrics.json`` as dotted keys such as ``result.psnr_db``, ``run.json`` as
``run.n_iter``, ``run.wall_s``, ...), written as ``OUT/sweep.csv`` and ``OUT/sweep.json``,
and ``OUT/sweep.png``: the chosen metrics over the grid, one panel each.

A chosen metric is a column name, or a name of ``metrics.json``'s ``result`` table
(``psnr_db`` for ``result.psnr_db``); the default is every number of that table (the
run's final cost when no run wrote metrics, as happens without a truth)."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes
from ..results import atomic_write_text, write_json

TABLE_CSV, TABLE_JSON, PLOT = "sweep.csv", "sweep.json", "sweep.png"


def flat_numbers(table: Any, prefix: str) -> dict[str, Any]:
    """The scalars (numbers, strings, booleans) of a JSON table by dotted key; arrays are left out."""
    out = {}
    if isinstance(table, dict):
        for key, value in table.items():
            out.update(flat_numbers(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(table, (int, float, str, bool)) or table is None:
        out[prefix] = table
    return out


def point_values(folder: Path) -> dict[str, Any]:
    """Every scalar a point's run wrote: metrics.json's by their dotted keys, run.json's
    under ``run.``; empty for a point with no complete run."""
    values = {}
    for name, prefix in (("metrics.json", ""), ("run.json", "run")):
        path = Path(folder) / name
        if path.is_file():
            try:
                values.update(flat_numbers(json.loads(path.read_text(encoding="utf-8")), prefix))
            except (OSError, ValueError):
                pass
    return values


def rows(sweep, outcomes: dict[str, dict]) -> list[dict[str, Any]]:
    """One row per point, in grid order: point, name, status, its overrides, its values, error."""
    out = []
    for p in sweep.points:
        outcome = outcomes[p.name]
        row = {"point": p.index, "name": p.name, "status": outcome["status"]}
        row.update(p.overrides)
        if outcome["status"] != "failed":
            row.update(point_values(p.folder))
        row["error"] = outcome.get("error")
        out.append(row)
    return out


def resolve_metric(name: str, columns: list[str]) -> str | None:
    """The column ``name`` means: itself, else ``result.NAME``; None when neither exists."""
    for candidate in (name, f"result.{name}"):
        if candidate in columns:
            return candidate
    return None


def default_metrics(columns: list[str], table: list[dict]) -> list[str]:
    numeric = [c for c in columns if any(_number(r.get(c)) is not None for r in table)]
    chosen = [c for c in numeric if c.startswith("result.")]
    return chosen or [c for c in ("run.final_cost",) if c in numeric]


def write_report(sweep, outcomes: dict[str, dict]) -> tuple[list[Path], list[str], list[str]]:
    """Write the table (CSV and JSON) and the plot into ``sweep.out``. Returns the files,
    the metrics plotted and the requested metrics that no point has."""
    table = rows(sweep, outcomes)
    keys = sweep.keys()
    fixed = ["point", "name", "status", *keys]
    values = list(dict.fromkeys(c for r in table for c in r if c not in fixed and c != "error"))
    values.sort(key=lambda c: (not c.startswith("result."), c.startswith("run."), 0))
    columns = [*fixed, *values, "error"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({c: _csv(row.get(c)) for c in columns})
    out = Path(sweep.out)
    atomic_write_text(out / TABLE_CSV, buf.getvalue())
    write_json(out / TABLE_JSON, {"config": str(sweep.config), "set": sweep.overrides, "grid": sweep.grid,
                                  "points": sweep.point_sets, "columns": columns, "rows": table})
    files = [out / TABLE_CSV, out / TABLE_JSON]
    if sweep.metrics:
        resolved = [(m, resolve_metric(m, values)) for m in sweep.metrics]
        unknown = [m for m, c in resolved if c is None]
        chosen = [c for _, c in resolved if c is not None]
    else:
        unknown, chosen = [], default_metrics(values, table)
    if chosen:
        files.append(plot_metrics(out / PLOT, table, keys, chosen))
    return files, chosen, unknown


def _csv(value):
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return "" if value is None else value


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def plot_metrics(path: Path, table: list[dict], keys: list[str], metrics: list[str]) -> Path:
    """One panel per metric over the points: along the first key whose values vary (a
    numeric axis when they are numbers, log-scaled when they span two decades or more),
    one line per combination of the other keys; failed points are gaps."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    varying = [k for k in keys if len({json.dumps(r.get(k), sort_keys=True, default=str) for r in table}) > 1]
    x_key = varying[0] if varying else None
    others = varying[1:]
    xs = [r.get(x_key) if x_key else r["point"] for r in table]
    numeric = all(_number(x) is not None for x in xs)
    positions = xs if numeric else list(range(len(xs)))
    if not numeric:  # categorical: one position per distinct value, in order of appearance
        labels = list(dict.fromkeys(json.dumps(x, default=str) for x in xs))
        positions = [labels.index(json.dumps(x, default=str)) for x in xs]
    series: dict[str, list[int]] = {}
    for i, row in enumerate(table):
        label = ", ".join(f"{k}={json.dumps(row.get(k), default=str)}" for k in others)
        series.setdefault(label, []).append(i)
    cols = min(3, len(metrics))
    n_rows = -(-len(metrics) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * n_rows))
    for m, metric in enumerate(metrics):
        ax = fig.add_subplot(n_rows, cols, m + 1)
        for label, members in series.items():
            members = sorted(members, key=lambda i: positions[i])
            ys = [_number(table[i].get(metric)) for i in members]
            ax.plot([positions[i] for i in members], [math.nan if y is None else y for y in ys], "o-",
                    label=label or None)
        if numeric and x_key and min(positions) > 0 and max(positions) >= 100 * min(positions):
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
        ax.set_xlabel(x_key or "point")
        ax.set_title(metric, fontsize=9)
        ax.grid(alpha=0.3)
        if any(series) and m == 0:
            ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(path, buf.getvalue())
    return path
