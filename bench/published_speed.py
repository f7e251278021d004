"""Fusion speed against the published HIFReD code (issue 25 item 4): time per iteration on
one shared problem, both codes in one process, identical counts.

The problem (477 true-energy bins × 33 × 33 sky pixels, 2–8 keV, 4.1″ pixels): an imager with
a Gaussian spectral response (100 eV FWHM, channels of 9 bins) and no blur, and a
spectrometer with a Gaussian PSF (16.4″ FWHM, 4 sky pixels) rebinned 3 × 3 and no spectral
blur, the layout of the published toy models (Lascar et al. 2025, A&A 694, A34: X the imager
with the 1-D spectral kernel and a spectral rebin, Y the spectrometer with the 2-D PSF and a
spatial rebin). Both are fictional instruments written as TOML here; the sky is the
``casa_like`` scene. xhsi simulates the counts once; the published ``FUSION`` gets the same
counts, its kernels computed here from the same Gaussians (pixel- and bin-integrated, as
xhsi's instrument model does), and exposure × area as its ARFs (``ARF_Z`` = the imager's, so
that its variable is in counts and its default step ``alpha = 1e-2`` is in the units it was
written for). The two forward models differ only at the borders (the published code pads
with mirror copies; xhsi's PSF sees zeros outside the field).

The published code is never copied into the repository (its licence is not stated): pass
``--hifred DIR``, a folder holding ``HIFReD.py`` and ``pyStarlet_master_2D1D.py`` (e.g. from
``git --git-dir=<mirror> show HEAD:code/HIFReD.py``); it needs numba, matplotlib, tqdm and
ipywidgets at import. Without them the published column is skipped with a message.

Timing (wall clock and process CPU time): per xhsi set-up, N ``solver.step()`` after one
warm-up step (mean, backtracking trials included; median too); the set-ups compared A/B
(``--interleave``, by default the exact prox with per-coefficient and with uniform dual
steps) stepped in turn, so that the load of the shared machine falls on both alike. For
the published code, a warm-up call (numba compiles), then ``FUSION`` with ``i_max = 1``
and ``N + 1``: the difference over N, so that its set-up is not counted. ``--profile`` splits an exact-prox
set-up's iteration (proxes, dual iterations, Φ/Φᵀ, data terms). The ratio is the claim.

    nice -n 10 python bench/published_speed.py --hifred /work/tmp/hifred --iterations 15

``--select`` adds the other measurement of the item: ``select = "auto"`` plus the final fit at
the published toy size (2400 × 45 × 45, pn + Resolve) through ``xhsi run``, wall time, under a
cap (``--select-cap-s``; the run is stopped there and the projection reported).
Writes ``bench/results/published_speed.{json,md}``.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

BAND_KEV = (2.0, 8.0)
BINS, PIXELS, PIXEL_ARCSEC = 477, 33, 4.1
SPECTRAL_REBIN, SPATIAL_REBIN = 9, 3           # imager channels of 9 bins; spectrometer pixels of 3 × 3
IMAGER_FWHM_EV = 100.0                         # spectral response of the imager (fictional; CCD-like)
SPECTROMETER_PSF_FWHM_ARCSEC = 4 * PIXEL_ARCSEC  # spectrometer PSF (fictional), 4 sky pixels
DELTA = 1e-3                                   # FWHM (eV, arcsec) standing for "no blur": far below a bin / pixel
IMAGER = {"exposure_s": 1.0e5, "cm2": 400.0}
SPECTROMETER = {"exposure_s": 2.0e5, "cm2": 200.0}
TOTAL_FLUX = 0.1                               # photons / s / cm² over the band: ~4e6 counts per observation


def instruments() -> dict[str, dict]:
    """The two fictional instruments as TOML tables."""
    def table(name, detector, what, channels, fwhm_ev, cm2, pixel_arcsec, psf_fwhm_arcsec):
        return {"instrument": {"name": name, "mission": "fictional", "detector": detector,
                               "description": f"{what} (bench/published_speed.py; fictional)."},
                "channels": {"min_kev": BAND_KEV[0], "max_kev": BAND_KEV[1], "count": channels},
                "spectral_response": {"kind": "gaussian", "fwhm_ev": fwhm_ev},
                "effective_area": {"kind": "constant", "cm2": cm2}, "spatial": {"pixel_arcsec": pixel_arcsec},
                "psf": {"kind": "gaussian", "fwhm_arcsec": psf_fwhm_arcsec}}

    return {"speed_imager": table("speed_imager", "CCD imager", "Imager: Gaussian spectral response, no blur",
                                  BINS // SPECTRAL_REBIN, IMAGER_FWHM_EV, IMAGER["cm2"], PIXEL_ARCSEC, DELTA),
            "speed_spectrometer": table("speed_spectrometer", "calorimeter",
                                        "Spectrometer: Gaussian PSF, no spectral blur", BINS, DELTA,
                                        SPECTROMETER["cm2"], PIXEL_ARCSEC * SPATIAL_REBIN,
                                        SPECTROMETER_PSF_FWHM_ARCSEC)}


#: The xhsi set-ups timed: ([[regularizers]], [problem], solver options). "exact" and
#: "approximate" are the shipped 2D-1D recipe of configs/fusion_xmm_xrism.toml with its two
#: proxes; "published_objective" the published objective (2D-1D ℓ1 alone, k = 3, the
#: approximate prox, absolute); "lowrank" the shipped low-rank recipe of
#: configs/fusion_xmm_xrism_lowrank_sobolev.toml. "starlet2d1d_exact_uniform" is "exact" with
#: the exact prox's former dual step, one for every coefficient (``Starlet2d1dL1.metric_steps``
#: in ``ATTRIBUTES``), for the before/after comparison of the per-coefficient steps.
_STARLET = {"scales_2d": 2, "scales_1d": 3, "k": 1.5, "per_pixel": True}
_SOBOLEV = {"name": "sobolev", "weight": 0.1}
_RELATIVE = {"regularize": "relative", "relative_floor": 0.01}
_STEP = {"step": 1e-3, "grow": 1.5}
SETUPS: dict[str, tuple[list, dict, dict]] = {
    "starlet2d1d_exact": (
        [{"name": "starlet2d1d_l1", "options": {**_STARLET, "prox": "exact", "prox_tol": 1e-3}}, _SOBOLEV],
        {**_RELATIVE, "precondition_max": 25.0}, _STEP),
    "starlet2d1d_exact_uniform": (
        [{"name": "starlet2d1d_l1", "options": {**_STARLET, "prox": "exact", "prox_tol": 1e-3}}, _SOBOLEV],
        {**_RELATIVE, "precondition_max": 25.0}, _STEP),
    "starlet2d1d_exact_euclidean": (
        [{"name": "starlet2d1d_l1", "options": {**_STARLET, "prox": "exact", "prox_tol": 1e-3}}, _SOBOLEV],
        {**_RELATIVE, "precondition": "none"}, _STEP),
    "starlet2d1d_approximate": (
        [{"name": "starlet2d1d_l1", "options": {**_STARLET, "prox": "approximate"}}, _SOBOLEV],
        _RELATIVE, {**_STEP, "monotone": True}),
    "starlet2d1d_published_objective": (
        [{"name": "starlet2d1d_l1", "options": {"scales_2d": 2, "scales_1d": 3, "k": 3.0}}], {}, _STEP),
    "lowrank_sobolev": (
        [{"name": "lowrank_pca", "options": {"rank": 24, "basis": "nmf"}}, {"name": "sobolev", "weight": 0.01}],
        {"regularize": "relative"}, _STEP),
}

#: The same set-ups with FISTA's ``grow_every = 10``: after a failed backtracking trial the
#: step grows again only 10 iterations later, instead of at every iteration (a failed growth
#: costs one more prox).
for _name in ("starlet2d1d_exact", "starlet2d1d_approximate", "starlet2d1d_published_objective"):
    _regs, _problem, _opts = SETUPS[_name]
    SETUPS[_name + "_grow10"] = (_regs, _problem, {**_opts, "grow_every": 10})


#: The Euclidean set-ups with FISTA's ``shrink = "accelerating"`` (the n-th failed trial of an
#: iteration shrinks the step by eta^n): their bursts of 10–35 halvings take 5–8 trials.
for _name in ("starlet2d1d_approximate", "starlet2d1d_published_objective"):
    _regs, _problem, _opts = SETUPS[_name]
    SETUPS[_name + "_accelerating"] = (_regs, _problem, {**_opts, "shrink": "accelerating"})


#: Attributes set on the built regularisers of a set-up (by name), before its first step.
ATTRIBUTES: dict[str, dict[str, dict]] = {"starlet2d1d_exact_uniform": {"starlet2d1d_l1": {"metric_steps": "uniform"}}}


def write_instruments(folder: Path) -> dict[str, Path]:
    from xhsi.tomlio import dumps_toml

    paths = {}
    for name, table in instruments().items():
        paths[name] = folder / f"{name}.toml"
        paths[name].write_text(dumps_toml(table))
    return paths


def config(paths: dict[str, Path], regularizers: list, problem: dict, solver_options: dict, iterations: int,
           output: Path):
    from xhsi.config import config_from_dict

    data = {
        "run": {"problem": "fusion", "output": str(output), "backend": "numpy", "dtype": "float32", "seed": 0},
        "model": {"energy": {"min_kev": BAND_KEV[0], "max_kev": BAND_KEV[1], "bins": BINS},
                  "pixels": [PIXELS, PIXELS], "pixel_arcsec": PIXEL_ARCSEC},
        "observations": [
            {"name": "imager", "instrument": str(paths["speed_imager"]), "exposure_s": IMAGER["exposure_s"],
             "spectral_rebin": SPECTRAL_REBIN},
            {"name": "spectrometer", "instrument": str(paths["speed_spectrometer"]),
             "exposure_s": SPECTROMETER["exposure_s"], "spatial_rebin": SPATIAL_REBIN},
        ],
        "regularizers": regularizers,
        "solver": {"name": "fista", "max_iter": iterations, "tol": 0.0, "report_every": 10,
                   "options": solver_options},
        "simulate": {"scene": "casa_like", "options": {"total_flux": TOTAL_FLUX}},
    }
    if problem:
        data["problem"] = problem
    return config_from_dict(data)


# -- xhsi ------------------------------------------------------------------------------------
def build(prep, cfg, wrap=None, attributes=None):
    """(problem, solver after setup, variable → cube) as ``xhsi run`` builds them, on the shared
    observations; ``wrap`` may replace the data terms' operators first; ``attributes``:
    {regulariser name: {attribute: value}} set on the regularisers (``ATTRIBUTES``)."""
    from xhsi import plugins
    from xhsi.runner import make_regularizers

    problem = plugins.get("problem", "fusion")(cfg, prep.backend, prep.grid, prep.observations, make_regularizers(cfg),
                                               plugins.get("likelihood", "poisson"), options=cfg.problem)
    for reg in problem.regularizers:
        for key, value in (attributes or {}).get(reg.name, {}).items():
            setattr(reg, key, value)
    x0, smooth, prox, to_cube = problem.build()
    for term in smooth.terms if wrap else ():
        if hasattr(term, "operator"):
            term.operator = wrap(term.operator)
    solver = plugins.get("solver", "fista").from_config(cfg.solver)
    solver.setup(x0, smooth, prox)
    return problem, solver, to_cube


def time_xhsi(prep, cfgs: dict, iterations: int, interleave: tuple = ()) -> dict:
    """s / iteration of each set-up ({name: config}; median and mean of ``solver.step()``
    after one warm-up step), its set-up time and PSNR after the warm-up + timed iterations.
    Each set-up runs its steps in a row, except those named in ``interleave``: built
    together and stepped in turn (A/B interleaved, so that a change of the shared machine's
    load falls on all of them alike; only for set-ups of one size: a small set-up stepped
    between large ones starts every step with cold caches)."""
    groups = [[n for n in cfgs if n in interleave]] + [[n] for n in cfgs if n not in interleave]
    out = {}
    for group in [g for g in groups if g]:
        out.update(_time_group(prep, {name: cfgs[name] for name in group}, iterations))
    return {name: out[name] for name in cfgs}


def _time_group(prep, cfgs: dict, iterations: int) -> dict:
    from xhsi.metrics import asam, psnr

    runs = {}
    for name, cfg in cfgs.items():
        t0 = time.perf_counter()
        problem, solver, to_cube = build(prep, cfg, attributes=ATTRIBUTES.get(name))
        runs[name] = {"problem": problem, "solver": solver, "to_cube": to_cube, "setup_s": time.perf_counter() - t0,
                      "times": [], "cpu": 0.0}
        solver.step()
    for _ in range(iterations):
        for r in runs.values():
            t, c = time.perf_counter(), time.process_time()
            r["solver"].step()
            r["times"].append(time.perf_counter() - t)
            r["cpu"] += time.process_time() - c
    out = {}
    for name, r in runs.items():
        cube = np.asarray(r["to_cube"].apply(r["solver"].state.x), dtype=np.float64)
        out[name] = {"s_per_iteration": statistics.fmean(r["times"]), "median_s_per_iteration": statistics.median(r["times"]),
                     "cpu_s_per_iteration": r["cpu"] / iterations, "setup_s": r["setup_s"], "iterations": iterations + 1,
                     "psnr_db": psnr(cube, prep.truth), "asam_deg": asam(cube, prep.truth),
                     "metric": r["problem"].metric_mode or "euclidean", "interleaved": len(cfgs) > 1}
    return out


def profile_exact(prep, cfg, iterations: int, name: str = "") -> dict:
    """Where one iteration of an exact-prox set-up spends its time: the solver steps, the
    exact proxes (calls, dual iterations each, Φ and Φᵀ time, the dual step: the bound
    1/step, uniform or per coefficient, its mean and max over the coefficients) and the data
    terms' forward and adjoint applications."""
    import xhsi_builtin.regularizers.starlet as starlet_module
    from xhsi.operators import LinearOperator

    stats = {"prox_calls": 0, "dual_iterations": [], "prox_s": 0.0, "frame_s": 0.0, "norm_sq": [], "analyses": 0,
             "forward_calls": 0, "adjoint_calls": 0, "data_operator_s": 0.0}
    inner = starlet_module.analysis_l1_prox_nonnegative
    bounds: dict = {}

    def timed(f, key, count=None):
        def g(a):
            stats[count or "_"] = stats.get(count or "_", 0) + 1
            t = time.perf_counter()
            r = f(a)
            stats[key] += time.perf_counter() - t
            return r
        return g

    def prox(z, analysis, adjoint, tau, norm_sq, dual=None, max_iter=50, tol=1e-4, step=None):
        t, before = time.perf_counter(), stats["analyses"]
        out = inner(z, timed(analysis, "frame_s", "analyses"), timed(adjoint, "frame_s"), tau, norm_sq, dual=dual,
                    max_iter=max_iter, tol=tol, step=step)
        stats["prox_s"] += time.perf_counter() - t
        stats["prox_calls"] += 1
        stats["dual_iterations"].append(stats["analyses"] - before - 1)   # the first Φ is the penalty at z
        if step is None:
            stats["norm_sq"].append((float(norm_sq), float(norm_sq)))
        else:  # the same steps every call: summarised once
            if bounds.get("id") != id(step):
                bound = 1.0 / np.asarray(step, dtype=np.float64)
                bounds.update(id=id(step), value=(float(bound.mean()), float(bound.max())))
            stats["norm_sq"].append(bounds["value"])
        return out

    class _Timed(LinearOperator):
        def __init__(self, op):
            super().__init__(op.shape_in, op.shape_out)
            self._apply = timed(op.apply, "data_operator_s", "forward_calls")
            self._adjoint = timed(op.adjoint, "data_operator_s", "adjoint_calls")

    problem, solver, _ = build(prep, cfg, _Timed, attributes=ATTRIBUTES.get(name))
    solver.step()
    stats.update({key: [] if isinstance(value, list) else 0 * value for key, value in stats.items()})
    starlet_module.analysis_l1_prox_nonnegative = prox
    try:
        t = time.perf_counter()
        for _ in range(iterations):
            solver.step()
        step_s = time.perf_counter() - t
    finally:
        starlet_module.analysis_l1_prox_nonnegative = inner
    n = iterations
    return {"iterations": n, "s_per_iteration": step_s / n, "prox_s_per_iteration": stats["prox_s"] / n,
            "frame_s_per_iteration": stats["frame_s"] / n, "data_operator_s_per_iteration": stats["data_operator_s"] / n,
            "proxes_per_iteration": stats["prox_calls"] / n,
            "dual_iterations_per_prox": statistics.fmean(stats["dual_iterations"] or [0]),
            "dual_iterations": stats["dual_iterations"],
            "forward_per_iteration": stats["forward_calls"] / n, "adjoint_per_iteration": stats["adjoint_calls"] / n,
            "dual_step_bound_mean": statistics.fmean([b[0] for b in stats["norm_sq"]] or [0.0]),
            "dual_step_bound_max": max([b[1] for b in stats["norm_sq"]] or [0.0]), "metric": problem.metric_mode or "euclidean"}


# -- the published code ----------------------------------------------------------------------
def _gauss_cells(sigma: float, half: int, sub: int = 64) -> np.ndarray:
    """∫ over cell k (k = −half … half) of a unit Gaussian of σ (in cells) whose source is
    spread evenly over cell 0 (bin-averaged, cell-integrated: xhsi's Gaussian response and
    pixel-integrated PSF)."""
    from scipy.special import ndtr

    u = (np.arange(sub) + 0.5) / sub - 0.5
    k = np.arange(-half, half + 1)[:, None]
    g = (ndtr((k + 0.5 - u) / sigma) - ndtr((k - 0.5 - u) / sigma)).mean(axis=1)
    return g / g.sum()


def published_inputs(prep) -> dict:
    """The published FUSION's arguments from xhsi's counts: X the imager (l, M, N), Y the
    spectrometer (L, m, n), its kernels and ARFs."""
    fwhm = 2.0 * math.sqrt(2.0 * math.log(2.0))
    bin_ev = (BAND_KEV[1] - BAND_KEV[0]) * 1e3 / BINS
    s1 = IMAGER_FWHM_EV / fwhm / bin_ev
    s2 = SPECTROMETER_PSF_FWHM_ARCSEC / fwhm / PIXEL_ARCSEC
    g2 = _gauss_cells(s2, math.ceil(3 * fwhm * s2))      # xhsi's default PSF radius: 3 FWHM
    counts = {o.name: np.asarray(o.counts, dtype=np.float64) for o in prep.observations}
    arf_x = np.full(BINS, IMAGER["exposure_s"] * IMAGER["cm2"])
    return {"X_im": counts["imager"], "Y_im": counts["spectrometer"], "kernel2D": np.outer(g2, g2),
            "kernel1D": _gauss_cells(s1, math.ceil(3 * fwhm * s1)), "ARF_X": arf_x, "ARF_Z": arf_x,
            "ARF_Y": np.full(BINS, SPECTROMETER["exposure_s"] * SPECTROMETER["cm2"]),
            "z_to_flux": 1.0 / arf_x[:, None, None]}


def import_published(folder: Path):
    """The published module, imported from ``folder``; None and a reason when it cannot be."""
    if folder is None:
        return None, "no --hifred folder given"
    missing = [f for f in ("HIFReD.py", "pyStarlet_master_2D1D.py") if not (folder / f).is_file()]
    if missing:
        return None, f"{folder} lacks {', '.join(missing)}"
    try:
        import numba  # noqa: F401  (without it the published starlet runs as plain Python: not its speed)
    except ImportError:
        return None, "numba is not installed (pip install numba ipywidgets, for this measurement only)"
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.path.insert(0, str(folder))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import HIFReD  # type: ignore[import-not-found]
    except ImportError as exc:
        return None, f"the published code does not import: {exc}"
    finally:
        sys.path.remove(str(folder))
    return HIFReD, ""


def time_published(module, inputs: dict, truth: np.ndarray, spat_reg: str, iterations: int, alpha: float,
                   rank: int | None) -> dict:
    from xhsi.metrics import asam, psnr

    kwargs = {key: inputs[key] for key in ("ARF_X", "ARF_Y", "ARF_Z")}
    kwargs.update(alpha=alpha, spat_reg=spat_reg, rank=rank, keep_track=False, vocal=False, fname=None, para_workers=2)

    def call(n):
        t, c = time.perf_counter(), time.process_time()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            z, _ = module.FUSION(inputs["X_im"], inputs["Y_im"], inputs["kernel2D"], inputs["kernel1D"],
                                 i_max=n, **kwargs)
        return time.perf_counter() - t, time.process_time() - c, z

    call(1)                                  # numba compiles here
    t1, c1, _ = call(1)
    tn, cn, z = call(iterations + 1)
    cube = np.real(np.asarray(z)) * inputs["z_to_flux"]
    return {"s_per_iteration": (tn - t1) / iterations, "cpu_s_per_iteration": (cn - c1) / iterations,
            "call_1_s": t1, "call_n_s": tn, "iterations": iterations + 1, "alpha": alpha, "rank": rank, "psnr_db": psnr(cube, truth), "asam_deg": asam(cube, truth)}


# -- select = "auto" at the published toy size -------------------------------------------------
def run_select(cap_s: float, out: Path) -> dict:
    """``xhsi run configs/fusion_xmm_xrism_default.toml`` at the published toy size (2400 ×
    45 × 45, pn channels of 40 bins, the paper's 29 × 29 PSF kernels), selecting, under a
    wall-time cap; its stdout lines are kept for where the time went."""
    sets = ["model.energy.bins=2400", "model.pixels=[45, 45]", "observations[0].spectral_rebin=40",
            "observations[0].psf_size=29", "observations[1].psf_size=29"]
    cmd = [sys.executable, "-m", "xhsi.cli", "run", str(ROOT / "configs" / "fusion_xmm_xrism_default.toml"),
           "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    timer = threading.Timer(cap_s, proc.terminate)   # SIGTERM: xhsi stops as on Ctrl-C
    timer.start()
    lines: list[tuple[float, str]] = []
    try:
        for line in proc.stdout:
            lines.append((round(time.perf_counter() - t0, 1), line.rstrip()))
        proc.wait(timeout=120)
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
    wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)   # CPU time: the figure the other sessions' load does not inflate
    found = {}
    for name in ("run.json", "metrics.json"):
        if (out / name).is_file():
            found[name] = json.loads((out / name).read_text())
    return {"command": " ".join(cmd), "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "projection": project(lines),
            "finished": proc.returncode == 0,
            "returncode": proc.returncode, "capped": wall >= cap_s, "cap_s": cap_s, "log": lines[-120:],
            "run": found.get("run.json"), "selection": (found.get("metrics.json") or {}).get("selection"),
            "metrics": {k: v for k, v in (found.get("metrics.json") or {}).items() if k != "selection"}}


def project(lines: list[tuple[float, str]]) -> dict | None:
    """From the ``selection [k/N] ...`` progress lines (time since start, text): fits done,
    their mean wall time, and the projected total (set-up + N fits + a final fit taken as one
    more fit of the same budget)."""
    import re

    fits = [(t, re.search(r"\[(\d+)/(\d+)\]", text)) for t, text in lines if text.startswith("selection [")]
    fits = [(t, int(m[1]), int(m[2])) for t, m in fits if m]
    if not fits:
        return None
    start = next((t for t, text in lines if text.startswith("selection (")), 0.0)
    t_last, done, total = fits[-1]
    per_fit = (t_last - start) / done
    return {"setup_s": start, "fits_done": done, "fits": total, "s_per_fit": per_fit,
            "projected_total_s": start + (total + 1) * per_fit}


# -- report ----------------------------------------------------------------------------------
def _bound(r: dict) -> str:
    """The dual-step bound of a profile: one number, or mean and max over the coefficients."""
    if "dual_step_bound_norm_sq" in r:  # a profile written before the per-coefficient steps
        return f"{r['dual_step_bound_norm_sq']:.3g}"
    mean, top = r["dual_step_bound_mean"], r["dual_step_bound_max"]
    return f"{mean:.3g}" if math.isclose(mean, top, rel_tol=1e-6) else f"{mean:.3g} on average, {top:.3g} at most"


def markdown(res: dict) -> str:
    lines = [f"# Fusion speed against the published HIFReD code ({res['date']})", "",
             f"Problem: {res['problem']}. Machine: {res['machine']}. Command: `{res['command']}`.", "",
             ("s / iteration: wall-clock mean (xhsi: median in brackets); CPU: process time per iteration (all "
              "threads; also inflated by the other sessions' load). Ratios against the published Wavelet_2D_1D."), "",
             ("| code | set-up | s / iteration | CPU s / iteration | xhsi / published (wall) | (CPU) | PSNR (dB) | "
              "ASAM (°) | iterations |"),
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    pub = res.get("published", {}).get("Wavelet_2D_1D", {})
    ref, ref_cpu = pub.get("s_per_iteration"), pub.get("cpu_s_per_iteration")
    for name, r in res.get("published", {}).items():
        if "s_per_iteration" in r:
            lines.append(f"| published | {name} | {r['s_per_iteration']:.3f} | {r['cpu_s_per_iteration']:.3f} | | | "
                         f"{r['psnr_db']:.2f} | {r['asam_deg']:.1f} | {r['iterations']} |")
    for name, r in res["xhsi"].items():
        ratio = f"{r['s_per_iteration'] / ref:.3f}" if ref else "—"
        ratio_cpu = f"{r['cpu_s_per_iteration'] / ref_cpu:.3f}" if ref_cpu else "—"
        ab = ", A/B interleaved" if r.get("interleaved") else ""
        lines.append(f"| xhsi | {name} ({r['metric']}{ab}) | {r['s_per_iteration']:.3f} ({r['median_s_per_iteration']:.3f}) | "
                     f"{r['cpu_s_per_iteration']:.3f} | {ratio} | {ratio_cpu} | {r['psnr_db']:.2f} | "
                     f"{r['asam_deg']:.1f} | {r['iterations']} |")
    if res.get("published_skipped"):
        lines += ["", f"Published code skipped: {res['published_skipped']}."]
    for name, r in res.get("profile", {}).items():
        lines += ["", (f"Profile of `{name}` ({r['metric']}, {r['iterations']} iterations): "
                       f"{r['s_per_iteration']:.3f} s / iteration, of which exact prox {r['prox_s_per_iteration']:.3f} s "
                       f"({r['proxes_per_iteration']:.1f} proxes, {r['dual_iterations_per_prox']:.1f} dual iterations "
                       f"each; Φ and Φᵀ {r['frame_s_per_iteration']:.3f} s; dual step 1/bound, bound "
                       f"{_bound(r)}), data-term operators "
                       f"{r['data_operator_s_per_iteration']:.3f} s ({r['forward_per_iteration']:.1f} forward, "
                       f"{r['adjoint_per_iteration']:.1f} adjoint).")]
    if "select" in res:
        s = res["select"]
        cpu = f", {s['cpu_s']:.0f} s CPU" if s.get("cpu_s") else ""
        lines += ["", (f"`select = \"auto\"` + final fit at 2400 × 45 × 45 ({s.get('date', '')}): "
                       f"{s['wall_s']:.0f} s wall{cpu}, finished: {s['finished']} (cap {s['cap_s']:.0f} s).")]
        proj = s.get("projection")
        if proj:
            lines.append(f"{proj['fits_done']} of {proj['fits']} selection fits done, {proj['s_per_fit']:.0f} s each "
                         f"after {proj['setup_s']:.0f} s of set-up: projected {proj['projected_total_s']:.0f} s with "
                         "the final fit (counted as one more fit).")
        sel = s.get("selection") or {}
        if sel:
            lines.append(f"Selection: {sel['cost']['fits']} fits in {sel['cost']['seconds']:.0f} s; chosen "
                         f"`{sel['chosen'].get('name')}` at iteration {sel['chosen'].get('iteration')}.")
            for c in sel.get("candidates", []):
                lines.append(f"- `{c['name']}`: {c['seconds']:.1f} s, last scored iteration "
                             f"{max(c['path']['iteration']) if c.get('path') else '—'}")
        if s.get("run"):
            r = s["run"]
            lines.append(f"Final fit: {r.get('n_iter')} iterations ({r.get('stop_reason')}) in {r.get('solve_wall_s', 0):.0f} s; "
                         f"the whole run {r.get('wall_s', 0):.0f} s (run.json).")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hifred", type=Path, default=None, help="folder with HIFReD.py and pyStarlet_master_2D1D.py")
    ap.add_argument("--iterations", type=int, default=15)
    ap.add_argument("--alpha", type=float, default=1e-2, help="the published code's gradient step (its default)")
    ap.add_argument("--setups", default=",".join(SETUPS), help="xhsi set-ups, comma-separated")
    ap.add_argument("--published", default="Wavelet_2D_1D,Low_rank_Sobolev", help="published spat_reg values")
    ap.add_argument("--profile", default="", help="exact-prox set-ups to profile, comma-separated")
    ap.add_argument("--interleave", default="starlet2d1d_exact,starlet2d1d_exact_uniform",
                    help="set-ups timed step by step in turn (A/B), comma-separated; the others run their steps in a row")
    ap.add_argument("--prox-iter", type=int, default=None,
                    help="prox_iter of the exact-prox set-ups (default: the shipped 20), e.g. to count the dual "
                         "iterations a prox needs to meet prox_tol when the cap does not stop it first")
    ap.add_argument("--select", action="store_true", help="also time select = \"auto\" + final fit at 2400 × 45 × 45")
    ap.add_argument("--select-cap-s", type=float, default=720.0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "published_speed")
    args = ap.parse_args(argv)

    from xhsi.runner import prepare

    if args.prox_iter is not None:
        for name, (regs, problem, opts) in list(SETUPS.items()):
            regs = [dict(r, options={**r["options"], "prox_iter": args.prox_iter})
                    if r.get("options", {}).get("prox") == "exact" else r for r in regs]
            SETUPS[name] = (regs, problem, opts)

    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "machine": f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at start",
           "command": "python bench/published_speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "problem": (f"{BINS} bins × {PIXELS} × {PIXELS} ({BAND_KEV[0]}–{BAND_KEV[1]} keV, {PIXEL_ARCSEC}″), "
                       f"imager Gaussian {IMAGER_FWHM_EV:.0f} eV FWHM, channels of {SPECTRAL_REBIN} bins; "
                       f"spectrometer Gaussian PSF {SPECTROMETER_PSF_FWHM_ARCSEC:.1f}″ FWHM, {SPATIAL_REBIN}×"
                       f"{SPATIAL_REBIN} rebin; casa_like, total flux {TOTAL_FLUX} ph/s/cm²; xhsi float32, "
                       "published float64"),
           "xhsi": {}, "published": {}}
    names = [s for s in args.setups.split(",") if s]
    if names:
        with tempfile.TemporaryDirectory() as tmp:
            paths = write_instruments(Path(tmp))
            regs, problem, opts = SETUPS[names[0]]
            prep = prepare(config(paths, regs, problem, opts, args.iterations, Path(tmp) / "run"))
            res["counts"] = {o.name: float(np.sum(o.counts)) for o in prep.observations}
            module, why = import_published(args.hifred)
            if module is None:
                print(f"published code skipped: {why}")
                res["published_skipped"] = why
            else:
                inputs = published_inputs(prep)
                for spat_reg in [s for s in args.published.split(",") if s]:
                    rank = 4 if spat_reg.startswith("Low_rank") else None
                    res["published"][spat_reg] = time_published(module, inputs, prep.truth, spat_reg, args.iterations,
                                                                args.alpha, rank)
                    print("published", spat_reg, json.dumps(res["published"][spat_reg]), flush=True)
            cfgs = {name: config(paths, *SETUPS[name], args.iterations, Path(tmp) / "run") for name in names}
            res["xhsi"] = time_xhsi(prep, cfgs, args.iterations, tuple(s for s in args.interleave.split(",") if s))
            for name in names:
                print("xhsi", name, json.dumps(res["xhsi"][name]), flush=True)
            for name in [s for s in args.profile.split(",") if s]:
                regs, problem, opts = SETUPS[name]
                res.setdefault("profile", {})[name] = profile_exact(
                    prep, config(paths, regs, problem, opts, args.iterations, Path(tmp) / "run"), args.iterations, name)
                print("profile", name, json.dumps(res["profile"][name]), flush=True)
    if args.select:
        with tempfile.TemporaryDirectory() as tmp:
            res["select"] = run_select(args.select_cap_s, Path(tmp) / "select")
        res["select"]["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        print("select", res["select"]["wall_s"], res["select"]["finished"], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = args.out.with_suffix(".json")
    if previous.is_file():  # a run of one part (timings or --select) keeps the other part's figures
        old = json.loads(previous.read_text())
        keep = [k for k in ("select", "profile") if k not in res and k in old]
        if not names:
            keep += [k for k in ("date", "machine", "command", "problem", "xhsi", "published", "counts",
                                 "published_skipped") if k in old]
        res.update({k: old[k] for k in keep})
    previous.write_text(json.dumps(res, indent=1))
    args.out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
