"""The candidate set and the oracle of the fusion suite (``bench/fusion_suite.py``).

The oracle is the best of the candidates the selection chooses among, judged on the truth:
each candidate runs once (selection off, to its max_iter) and every iterate along its path
is scored against the true cube, so its best stopping iteration counts too. Iterates are read
through the run-event hooks (``xhsi_run_start`` to catch the problem's variable → cube map,
``xhsi_iteration`` for the state), so the runs are the ordinary ``runner.run`` path.

The candidates come from ``xhsi.selection.default_candidates(cfg)`` when that module exists
(issue 25 items 1–2); until then from :data:`FALLBACK`, the shipped recipes of
docs/fusion.md, and the suite's output says which.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from xhsi.hookspecs import hookimpl


@dataclass
class Candidate:
    name: str
    overrides: dict[str, Any] = field(default_factory=dict)


_STARLET = {"name": "starlet2d1d_l1", "weight": 1.0,
            "options": {"scales_2d": 2, "scales_1d": 3, "per_pixel": True, "prox": "exact", "prox_tol": 1e-3}}
_RELATIVE_2D1D = {"problem.regularize": "relative", "problem.relative_floor": 0.01, "problem.precondition_max": 25.0,
                  "solver.max_iter": 50}


def _starlet(k: float) -> Candidate:
    reg = dict(_STARLET, options=dict(_STARLET["options"], k=k))
    return Candidate(f"2d1d_k{k:g}", {"regularizers": [reg, {"name": "sobolev", "weight": 0.1}], **_RELATIVE_2D1D})


#: The shipped recipes of docs/fusion.md, as the selection's stand-in: the 2D-1D set-up of
#: configs/fusion_xmm_xrism.toml at k ∈ {1.5, 3, 5} (50 iterations, as shipped), the low-rank
#: one of configs/fusion_xmm_xrism_lowrank_sobolev.toml (NMF rank 24 + relative Sobolev 0.01;
#: up to 2000 iterations, tol 1e-8) and no regulariser (500 iterations, today's default), each
#: stopped early where its path is best.
FALLBACK = [
    _starlet(1.5), _starlet(3.0), _starlet(5.0),
    Candidate("lowrank24_sobolev", {"regularizers": [{"name": "lowrank_pca", "options": {"rank": 24, "basis": "nmf"}},
                                                     {"name": "sobolev", "weight": 0.01}],
                                    "problem.regularize": "relative", "solver.max_iter": 2000, "solver.tol": 1e-8}),
    Candidate("none", {"solver.max_iter": 500}),
]


def candidates(cfg) -> tuple[list[Candidate], str]:
    """(the candidates the selection would choose among for ``cfg``, where they come from)."""
    try:
        from xhsi.selection import default_candidates
    except ImportError:
        return list(FALLBACK), "fallback: the shipped recipes (xhsi.selection is not importable yet)"
    return [Candidate(c.name, dict(c.overrides)) for c in default_candidates(cfg)], "xhsi.selection.default_candidates"


def oracle_iterations(cfg, default_n_iter: int) -> int:
    """How far the oracle follows each candidate's path: as far as the selection's fits
    (``xhsi.selection.candidates.budget``) and the default run's final fit went; the
    solver's ``max_iter`` (500 unless given) without xhsi.selection."""
    try:
        from xhsi.selection.candidates import budget
    except ImportError:
        return int(cfg.solver.max_iter)
    return max(int(budget(cfg)), int(default_n_iter))


def as_set(overrides: dict[str, Any]) -> list[str]:
    """Dotted-key overrides as ``--set`` strings."""
    from xhsi.tomlio import format_value

    return [f"{k}={format_value(v)}" for k, v in overrides.items()]


def score(cube: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """PSNR (dB), ASAM (°) and relative error per voxel of ``cube`` against ``truth``."""
    from xhsi.metrics import asam, psnr, relative_error_per_voxel

    cube = np.asarray(cube, dtype=np.float64)
    return {"psnr_db": psnr(cube, truth), "asam_deg": asam(cube, truth),
            "rel_error_voxel": relative_error_per_voxel(cube, truth)}


class PathScorer:
    """A plugin object: scores the start and every reported iterate of a run on the truth."""

    def __init__(self, truth: np.ndarray):
        self.truth = np.asarray(truth, dtype=np.float64)
        self.path: list[dict] = []
        self.to_cube = None

    def _record(self, iteration: int, x) -> None:
        from xhsi.backend import to_numpy

        self.path.append({"iteration": int(iteration), **score(to_numpy(self.to_cube.apply(x)), self.truth)})

    @hookimpl
    def xhsi_run_start(self, config, problem):
        build = problem.build

        def scored_build():
            x0, smooth, prox, to_cube = build()
            self.to_cube = to_cube
            self._record(0, x0)
            return x0, smooth, prox, to_cube

        problem.build = scored_build

    @hookimpl
    def xhsi_iteration(self, iteration, cost, step, state):
        if self.to_cube is not None and state is not None and getattr(state, "x", None) is not None:
            self._record(iteration, state.x)


def selection_off(path: Path, overrides: list[str]):
    """The config with the selection switched off when the schema has one (so a candidate
    runs as given), else as it is."""
    from xhsi.config import load_config
    from xhsi.errors import ConfigError

    try:
        return load_config(path, overrides + ['selection.select="off"'])
    except ConfigError:
        return load_config(path, overrides)


#: Oracle runs report (and so are scored) at every iteration, and run to their max_iter: the
#: tolerance is measured between reports, so it would stop them at another point otherwise.
EVERY_ITERATION = ["solver.report_every=1", "solver.tol=0"]


def run_candidate(path: Path, cand: Candidate, truth: np.ndarray, out: Path, extra: list[str]) -> dict:
    """Run one candidate on the scene config at ``path`` (scored at every iteration); its
    final metrics, its path and the best point of the path by PSNR."""
    from xhsi import plugins
    from xhsi.runner import run

    cfg = selection_off(path, as_set(cand.overrides) + EVERY_ITERATION + extra)
    scorer = PathScorer(truth)
    pm = plugins.plugin_manager()
    pm.register(scorer)
    t0 = time.perf_counter()
    try:
        result = run(cfg, out=out, overwrite=True, quiet=True)
    except Exception as exc:  # noqa: BLE001 -- a failing candidate is reported, never replaced
        return {"name": cand.name, "overrides": cand.overrides, "error": f"{type(exc).__name__}: {exc}",
                "wall_s": time.perf_counter() - t0, "path": scorer.path}
    finally:
        pm.unregister(scorer)
    entry = {"name": cand.name, "overrides": cand.overrides, "wall_s": result.metadata["wall_s"],
             "n_iter": result.metadata["n_iter"], "stop_reason": result.metadata["stop_reason"],
             "final": {k: result.metrics["result"][k] for k in ("psnr_db", "asam_deg", "rel_error_voxel")},
             "path": scorer.path}
    if "selection" in result.metrics:
        entry["note"] = "the run still ran a selection: the suite could not switch it off"
    if scorer.path:
        entry["best"] = max(scorer.path, key=lambda p: p["psnr_db"])
    return entry


def beats(m: dict, baselines: dict) -> dict[str, bool]:
    """Whether metrics ``m`` beat every baseline, per metric."""
    return {"psnr_db": all(m["psnr_db"] > b["psnr_db"] for b in baselines.values()),
            "asam_deg": all(m["asam_deg"] < b["asam_deg"] for b in baselines.values()),
            "rel_error_voxel": all(m["rel_error_voxel"] < b["rel_error_voxel"] for b in baselines.values())}


def oracle(entries: list[dict]) -> dict | None:
    """The best (candidate, iteration) by PSNR over every candidate's path."""
    best = None
    for e in entries:
        b = e.get("best")
        if b is not None and (best is None or b["psnr_db"] > best["psnr_db"]):
            best = {"candidate": e["name"], **b}
    return best


def beating_both(entries: list[dict], baselines: dict) -> list[str]:
    """``name@iteration`` of the first point of each candidate's path that beats both
    baselines in PSNR, ASAM and relative error at once."""
    out = []
    for e in entries:
        for p in e.get("path", []):
            if all(beats(p, baselines).values()):
                out.append(f"{e['name']}@{p['iteration']}")
                break
    return out
