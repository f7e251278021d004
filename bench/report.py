"""Turn bench/results/latest.json into the README table (markdown, stdout) and the
cost / PSNR vs wall-time plot (bench/results/cost_vs_time.png).

    .venv/bin/python bench/report.py            # after: pytest bench/ --benchmark-only
    .venv/bin/python bench/report.py results/gpu_h100.json   # another results file
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchlib import PUBLISHED_S, RESULTS  # noqa: E402

SIZE = "2400×45×45 → pn 60×45×45, Resolve 2400×15×15"
LABELS = {
    "none": "no regulariser",
    "lowrank_sobolev": "low rank (3) + Sobolev",
    "lowrank_starlet2d": "low rank (3) + 2D starlet",
    "starlet2d1d": "2D-1D starlet",
    "lowrank_sobolev_nmf24": "low rank (24, NMF) + Sobolev",
    "lowrank_starlet2d_nmf24": "low rank (24, NMF) + 2D starlet",
}


def _fmt(x, digits=0, unit=""):
    if x is None:
        return "—"
    return f"{x:.{digits}f}{unit}"


def iteration_table(results: dict, cpus: int) -> str:
    rows = ["| set-up | size | backend | ms / iteration | FFT floor (ms) | × floor | speed-up vs published "
            "| applications / iteration (fwd, adj) | peak memory of the run (MiB) | GPU (cupy) ms |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
    order = ["none", "lowrank_sobolev", "lowrank_starlet2d", "lowrank_sobolev_nmf24", "lowrank_starlet2d_nmf24",
             "starlet2d1d"]
    for key in order:
        r = results.get(f"iter/{key}")
        if r is None:
            continue
        setup = r["setup"]
        name = LABELS[setup] + (" — rank maps (proposed)" if r["collapse"] else "")
        lo, hi = PUBLISHED_S[setup]
        ms = r["ms_per_iteration"]
        apps = r["applications_per_iteration"]
        app = ", ".join(f"{k} {v[0]:.1f}/{v[1]:.1f}" for k, v in apps.items())
        mem = results.get(f"memory/{key}")
        gpu = results.get(f"backend/{key}/cupy")  # test_backend_bench.py, when a GPU was there
        rows.append(f"| {name} | {SIZE} | numpy float32, {cpus} cores | {ms:.0f} | {_fmt(r['fft_floor_ms'])} "
                    f"| {_fmt(r['over_floor'], 1)} | {lo / ms * 1e3:.0f}–{hi / ms * 1e3:.0f}× "
                    f"| {app} | {_fmt(mem and mem['peak_run_mib'])} | {_fmt(gpu and gpu['ms_per_iteration'], 1)} |")
    return "\n".join(rows)


def operator_table(results: dict) -> str:
    rows = ["| observation | direction | before (plain chain) ms | now ms | FFT floor ms | on 3 rank maps ms | GPU (cupy) |",
            "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for name in ("xmm", "xrism"):
        for direction in ("apply", "adjoint"):
            get = lambda kind: (results.get(f"op/{name}/{direction}/{kind}") or {}).get("ms")  # noqa: E731
            rows.append(f"| {name} | {direction} | {_fmt(get('plain'))} | {_fmt(get('numpy'))} | {_fmt(get('fft_floor'))} "
                        f"| {_fmt(get('rank_maps'), 1)} | {_fmt(get('cupy'), 1)} |")
    return "\n".join(rows)


def backend_table(results: dict) -> str:
    rows = ["| set-up | numpy ms / iteration | cupy ms / iteration | numpy / cupy |",
            "| --- | ---: | ---: | ---: |"]
    for setup, label in LABELS.items():
        cpu, gpu = (results.get(f"backend/{setup}/{b}") for b in ("numpy", "cupy"))
        if cpu is None:
            continue
        ratio = gpu and cpu["ms_per_iteration"] / gpu["ms_per_iteration"]
        rows.append(f"| {label} | {cpu['ms_per_iteration']:.1f} ({cpu['cpus']} cores) "
                    f"| {_fmt(gpu and gpu['ms_per_iteration'], 1)} | {_fmt(ratio, 1, '×')} |")
    return "\n".join(rows)


def memory_table(results: dict) -> str:
    rows = ["| set-up | imports MiB | after prepare MiB | peak of build+iterations MiB | full cubes added (build) "
            "| full cubes during iterations | (peak − imports) / (inputs + output) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for key, r in sorted((k[7:], v) for k, v in results.items() if k.startswith("memory/")):
        rows.append(f"| {key} | {r['rss_imports_mib']:.0f} | {r['rss_prepared_mib']:.0f} | {r['peak_run_mib']:.0f} "
                    f"| {r['full_cubes_added']:.1f} | {r.get('full_cubes_during_iterations', float('nan')):.1f} "
                    f"| {r['ratio_to_io']:.1f} |")
    return "\n".join(rows)


def quality_text(results: dict) -> str:
    r = results.get("time_to_quality")
    if not r:
        return "(time-to-quality not run)"
    return (f"Fixed-step ISTA (step {r['ista_fixed_step']:.3g}) best cost in {r['ista_iterations']} iterations: "
            f"{r['target_cost']:.6g} after {r['ista_seconds']:.0f} s; default FISTA reaches it in "
            f"{r['fista_iterations_to_target']} iterations ({_fmt(r['fista_seconds_to_target'], 1)} s): "
            f"{_fmt(r['iteration_ratio'], 0)}× fewer iterations. Grid: {r['grid']}.")


def plot(results: dict, path: Path) -> bool:
    r = results.get("time_to_quality")
    if not r:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_cost, ax_psnr) = plt.subplots(1, 2, figsize=(10, 4))
    for label, curve, style in (("ISTA, fixed step", r["ista_curve"], "-"), ("FISTA (default)", r["fista_curve"], "-o")):
        curve = [row for row in curve if row[1] > 0]  # log time axis: the reports after the start
        t = [row[1] for row in curve]
        ax_cost.plot(t, [row[2] for row in curve], style, ms=3, label=label)
        ax_psnr.plot(t, [row[3] for row in curve], style, ms=3, label=label)
    ax_cost.axhline(r["target_cost"], color="grey", lw=0.8, ls="--", label="best ISTA cost (5000 it.)")
    ax_cost.set_yscale("log")
    ax_cost.set_xscale("log")
    ax_psnr.set_xscale("log")
    ax_cost.set_xlabel("wall time (s, solver steps only)")
    ax_psnr.set_xlabel("wall time (s, solver steps only)")
    ax_cost.set_ylabel("cost (½ Poisson deviance)")
    ax_psnr.set_ylabel("PSNR vs truth (dB)")
    ax_cost.legend(fontsize=8)
    ax_psnr.legend(fontsize=8)
    fig.suptitle("Time to quality, " + r["grid"], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else RESULTS
    data = json.loads(path.read_text())
    results, meta = data["results"], data["meta"]
    print(f"Machine: {meta['cpus']} cores, numpy {meta['numpy']}, scipy {meta.get('scipy')}, "
          f"Python {meta['python']}, GPU {meta.get('gpu') or 'none'}; load average at the end {meta['load_average_at_end']}; {meta['date']}.\n")
    print(iteration_table(results, meta["cpus"]), "\n")
    print(operator_table(results), "\n")
    print(backend_table(results), "\n")
    print(memory_table(results), "\n")
    print(quality_text(results))
    if plot(results, path.parent / "cost_vs_time.png"):
        print(f"\nplot: {path.parent / 'cost_vs_time.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
