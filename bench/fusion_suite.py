"""The fusion scene suite (issue 25 item 3): on scenes the project was never tuned on, what
the default ``xhsi run`` gives against both data-only baselines and against the oracle.

Not a unit test: a script that runs real fusions (2–4 minutes per scene and config set on 2
shared cores: the 9 scenes with the `none` and `lowrank` configs took 22 minutes).
The scenes (``bench/suite_scenes.py``) differ in morphology, spectra, counts (1e5–1e8) and
instrument pair (pn + Resolve, ACIS-S + Resolve, pn + X-IFU, two fictional instruments
written as TOML). For each scene the suite writes the truth, the instruments and the
untuned config (no ``[[regularizers]]``, no ``[solver]``) under ``--out``, then reports

- both **baselines**: each observation alone (``metrics.json`` → ``baselines``);
- the **default** run: ``xhsi run config.toml`` as written, nothing tuned;
- the **oracle**: every candidate of the set the selection chooses among
  (``xhsi.selection.default_candidates``, or the shipped recipes until that exists), run
  with the selection off, every reported iterate scored on the truth; the best
  (candidate, iteration) by PSNR. ``regret`` = oracle PSNR − default PSNR.

Metrics: PSNR (dB), ASAM (°), relative error per voxel Σ|ẑ − z| / Σ|z|, wall time (s).

    .venv/bin/python bench/fusion_suite.py                     # every scene, ~25 min
    .venv/bin/python bench/fusion_suite.py --scenes shell,knots
    .venv/bin/python bench/fusion_suite.py --quick             # smoke run: 20 iterations per fit

Output: a markdown table on stdout and in ``bench/results/fusion_suite.md``, everything
(paths of every candidate included) in ``bench/results/fusion_suite.json``; ``--quick``
writes them under ``--out`` only. Scenes built from the real Chandra images of
``../shared/research/data`` are skipped, with a message, when that folder is absent.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import suite_oracle
import suite_scenes

ROOT = HERE.parent
KEYS = ("psnr_db", "asam_deg", "rel_error_voxel")
#: --quick: iterations of the default run and cap on every candidate's
QUICK_ITER = 20


def run_default(config: Path, out: Path, quick: bool) -> dict:
    """``xhsi run`` of the untuned config as written (``quick``: the selection's fits, or the
    run when there is no [selection], cut to QUICK_ITER iterations)."""
    from xhsi.config import load_config
    from xhsi.errors import ConfigError
    from xhsi.runner import run

    if not quick:
        cfg = load_config(config)
    else:
        try:
            cfg = load_config(config, [f"selection.max_iter={QUICK_ITER}"])
        except ConfigError:  # no [selection] in this xhsi
            cfg = load_config(config, [f"solver.max_iter={QUICK_ITER}"])
    result = run(cfg, out=out, overwrite=True, quiet=True)
    entry = {"wall_s": result.metadata["wall_s"], "n_iter": result.metadata["n_iter"],
             "stop_reason": result.metadata["stop_reason"],
             "result": {k: result.metrics["result"][k] for k in KEYS},
             "baselines": {n: {k: b[k] for k in KEYS} for n, b in result.metrics["baselines"].items()}}
    if "selection" in result.metrics:
        entry["selection"] = result.metrics["selection"]
    return entry


def run_kind(kind: str, folder: Path, truth, quick: bool) -> dict:
    """The default run of one untuned config of a scene, and the oracle over the candidates
    the selection chooses among for that config."""
    from xhsi.config import load_config

    config = folder / suite_scenes.config_name(kind)
    default = run_default(config, folder / f"default_{kind}", quick)
    print(f"  [{kind}] default: {_fmt(default['result'])} ({default['n_iter']} it., {default['wall_s']:.0f} s)"
          + (f", selected {_short(default['selection'].get('chosen'))}" if "selection" in default else ""),
          file=sys.stderr, flush=True)
    cfg = load_config(config)
    cands, source = suite_oracle.candidates(cfg)
    iters = QUICK_ITER if quick else suite_oracle.oracle_iterations(cfg, default["n_iter"])
    return {"kind": kind, "default": default, **oracle_over(cands, config, folder / f"oracle_{kind}", truth, iters,
                                                            default["baselines"], default["result"]),
            "candidates_from": source, "oracle_iterations": iters}


def oracle_over(cands, config: Path, folder: Path, truth, iters: int, bases: dict, reference: dict) -> dict:
    entries = []
    for i, cand in enumerate(cands):
        cand = suite_oracle.Candidate(cand.name, {"solver.max_iter": iters, **cand.overrides})
        e = suite_oracle.run_candidate(config, cand, truth, folder / f"{i:02d}_{_slug(cand.name)}", [])
        entries.append(e)
        msg = e.get("error") or (f"best {_fmt(e['best'])} at {e['best']['iteration']}, final {_fmt(e['final'])} "
                                 f"({e['n_iter']} it., {e['wall_s']:.0f} s)")
        print(f"    {cand.name}: {msg}", file=sys.stderr, flush=True)
    best = suite_oracle.oracle(entries)
    return {"candidates": entries, "oracle": best,
            "regret_db": None if best is None else best["psnr_db"] - reference["psnr_db"],
            "default_beats_both": suite_oracle.beats(reference, bases),
            "beating_both": suite_oracle.beating_both(entries, bases)}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:60] or "candidate"


def run_scene(spec, out: Path, kinds: list[str], quick: bool, recipes: bool) -> dict:
    import numpy as np

    t0 = time.perf_counter()
    folder = out / spec.name
    config, truth = suite_scenes.write_scene(spec, folder)
    counts = suite_scenes.expected_counts(np.asarray(truth, dtype=np.float64), spec, folder)
    row = {"name": spec.name, "what": spec.what, "pair": f"{spec.pair.imager} + {spec.pair.spectrometer}",
           "spectral_rebin": spec.pair.spectral_rebin, "spatial_rebin": spec.pair.spatial_rebin,
           "shape": [spec.bins, spec.pixels, spec.pixels], "pixel_arcsec": spec.pixel_arcsec,
           "band_kev": list(spec.band_kev), "expected_counts": counts,
           "kinds": [run_kind(kind, folder, truth, quick) for kind in kinds]}
    if recipes:
        print("  [recipes] the shipped recipes, selection off:", file=sys.stderr, flush=True)
        first = row["kinds"][0]["default"]
        cands = [suite_oracle.Candidate(c.name, {**c.overrides, **({"solver.max_iter": QUICK_ITER} if quick else {})})
                 for c in suite_oracle.FALLBACK]
        row["recipes"] = oracle_over(cands, config, folder / "recipes", truth, 500, first["baselines"],
                                     first["result"])
    row["wall_s"] = time.perf_counter() - t0
    return row


def _fmt(m: dict) -> str:
    return f"{m['psnr_db']:.2f} / {m['asam_deg']:.1f} / {m['rel_error_voxel']:.3f}"


def _yes(b: dict) -> str:
    return "/".join("✓" if b[k] else "✗" for k in KEYS)


def table(rows: list[dict], skipped: list[str], header: str) -> str:
    lines = [header, "",
             ("Cells: PSNR (dB) / ASAM (°) / relative error per voxel. *config*: the untuned config "
              "(`none`: no [[regularizers]], no [solver]; `stop`: `regularizers = []`, no [solver]; "
              "`lowrank`, `starlet`: regularisers named without options). "
              "*default*: `xhsi run` of it (iterations, wall s; the selection's choice when it selected). "
              "*beats*: the default beats both baselines in PSNR/ASAM/error. *oracle*: the best "
              "candidate@iteration by PSNR on the truth, over the candidates the selection chooses among, "
              "each scored at every iteration up to the selection's budget (or the default's iterations, if "
              "more). *regret*: oracle − default PSNR. *beating both*: how many candidates have an "
              "iterate that beats both baselines in all three at once, and the first such iterate (@0: the start)."),
             "",
             ("| scene | counts | instruments (spectral / spatial rebin) | imager alone | spectrometer alone "
              "| config | default | beats | oracle | regret (dB) | beating both |"),
             "| --- | ---: | --- | --- | --- | --- | --- | --- | --- | ---: | --- |"]
    for r in rows:
        for i, k in enumerate(r["kinds"]):
            d, b, o, short = k["default"], k["default"]["baselines"], k["oracle"], _names(k["candidates"])
            names = list(b)
            oc = "–" if o is None else f"{_fmt(o)} ({short.get(o['candidate'], o['candidate'])}@{o['iteration']})"
            chosen = d.get("selection", {}).get("chosen") if isinstance(d.get("selection"), dict) else None
            dc = f"{_fmt(d['result'])} ({d['n_iter']}, {d['wall_s']:.0f}{'; ' + _short(chosen, short) if chosen else ''})"
            head = (f"| {r['name']} | {sum(r['expected_counts'].values()):.1e} | {r['pair']} ({r['spectral_rebin']} / "
                    f"{r['spatial_rebin']}) | {_fmt(b[names[0]])} | {_fmt(b[names[1]])} ") if i == 0 else "| | | | | "
            lines.append(f"{head}| {k['kind']} | {dc} | {_yes(k['default_beats_both'])} | {oc} | "
                         f"{k['regret_db']:+.2f} | {_both(k)} |")
        if "recipes" in r:
            o = r["recipes"]["oracle"]
            oc = "–" if o is None else f"{_fmt(o)} ({o['candidate']}@{o['iteration']})"
            lines.append(f"| | | | | | shipped recipes (reference) | – | – | {oc} | – | "
                         f"{_both(r['recipes'])} |")
    lines.append("")
    lines += [f"- {s}" for s in skipped]
    lines += ["", "Per candidate (best point of its path by PSNR; final iterate):", "",
              "| scene | config | candidate | best @ iteration | final (iterations, wall s) |",
              "| --- | --- | --- | --- | --- |"]
    for r in rows:
        groups = [(k["kind"], k["candidates"]) for k in r["kinds"]]
        if "recipes" in r:
            groups.append(("recipes", r["recipes"]["candidates"]))
        for kind, entries in groups:
            short = _names(entries)
            for e in entries:
                if "error" in e:
                    lines.append(f"| {r['name']} | {kind} | {short[e['name']]} | failed: {e['error']} | |")
                    continue
                lines.append(f"| {r['name']} | {kind} | {short[e['name']]} | {_fmt(e['best'])} @ {e['best']['iteration']} "
                             f"| {_fmt(e['final'])} ({e['n_iter']}, {e['wall_s']:.0f}) |")
    return "\n".join(lines) + "\n"


def _both(group: dict) -> str:
    """How many candidates have an iterate beating both baselines in all three metrics."""
    hits, n = group["beating_both"], len(group["candidates"])
    if not hits:
        return f"**none** of {n}"
    first = hits[0].rsplit("@", 1)
    return f"{len(hits)} of {n} (first: {_names(group['candidates']).get(first[0], first[0])}@{first[1]})"


def _names(entries: list[dict]) -> dict[str, str]:
    """Candidate name → the name without the parts every candidate shares (e.g. a basis)."""
    parts = {e["name"]: e["name"].split(", ") for e in entries}
    common = set.intersection(*(set(p) for p in parts.values())) if len(parts) > 1 else set()
    return {n: ", ".join(x for x in p if x not in common) or n for n, p in parts.items()}


def _short(chosen, short: dict[str, str] | None = None) -> str:
    """The selection's choice (metrics.json ``selection.chosen``) as ``name @ iteration``,
    marked when the iteration is the selection's last (its budget)."""
    if isinstance(chosen, dict) and "name" in chosen:
        name = (short or {}).get(chosen["name"], chosen["name"])
        at = f" @ {chosen['iteration']}" if "iteration" in chosen else ""
        return name + at + (" (at budget)" if chosen.get("at_budget") else "")
    return json.dumps(chosen, default=str)[:80]


def compact(rows: list[dict]) -> list[dict]:
    """The rows with every candidate's path as columns ({"iteration": [...], "psnr_db": [...],
    ...}, metrics rounded to 1e-4), thinned to iterations ≤ 20, every 10th after, the best and
    the last (``best`` and ``final`` keep their exact values): the JSON stays small."""
    def one(entry: dict) -> dict:
        path = entry.get("path")
        if not isinstance(path, list):
            return entry
        keep = {path[-1]["iteration"], entry.get("best", {}).get("iteration")}
        path = [p for p in path if p["iteration"] <= 20 or p["iteration"] % 10 == 0 or p["iteration"] in keep]
        cols = {"iteration": [p["iteration"] for p in path]}
        cols.update({k: [round(p[k], 4) for p in path] for k in KEYS})
        return {**entry, "path": cols}

    out = []
    for r in rows:
        r = {**r, "kinds": [{**k, "candidates": [one(e) for e in k["candidates"]]} for k in r["kinds"]]}
        if "recipes" in r:
            r["recipes"] = {**r["recipes"], "candidates": [one(e) for e in r["recipes"]["candidates"]]}
        out.append(r)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", default="", help=f"comma-separated subset of {', '.join(suite_scenes.SCENES)} "
                                                     f"(default: all), or the held-out "
                                                     f"{', '.join(suite_scenes.HELD_OUT)}")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK_ITER} iterations per fit")
    parser.add_argument("--configs", default="none,lowrank",
                        help=f"untuned configs to run, of {', '.join(suite_scenes.UNTUNED)} (default none,lowrank)")
    parser.add_argument("--recipes", action="store_true",
                        help="also run the shipped recipes (docs/fusion.md), selection off, as a reference")
    parser.add_argument("--tag", default="", help="results go to results/fusion_suite_TAG.{md,json}")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "fusion_suite",
                        help="scene folders and runs (default runs/fusion_suite, git ignored)")
    parser.add_argument("--from-json", type=Path, default=None, metavar="JSON",
                        help="only print the tables of an earlier run's fusion_suite.json")
    args = parser.parse_args(argv)
    if args.from_json is not None:
        saved = json.loads(args.from_json.read_text())
        print(table(saved["scenes"], saved["skipped"], saved.get("header", f"## Fusion suite, {saved['when']}")))
        return 0
    names = [n.strip() for n in args.scenes.split(",") if n.strip()] or list(suite_scenes.SCENES)
    unknown = [n for n in names if n not in suite_scenes.ALL_SCENES]
    if unknown:
        parser.error(f"unknown scene(s) {', '.join(unknown)}; choose from {', '.join(suite_scenes.ALL_SCENES)}")
    kinds = [k.strip() for k in args.configs.split(",") if k.strip()]
    if not kinds or any(k not in suite_scenes.UNTUNED for k in kinds):
        parser.error(f"--configs {args.configs}: choose from {', '.join(suite_scenes.UNTUNED)}")
    rows, skipped = [], []
    for name in names:
        spec = suite_scenes.ALL_SCENES[name]
        why = suite_scenes.missing_data(spec)
        if why is not None:
            print(why, file=sys.stderr)
            skipped.append(why)
            continue
        print(f"{name}: {spec.what}", file=sys.stderr, flush=True)
        rows.append(run_scene(spec, args.out, kinds, args.quick, args.recipes))
    import numpy
    import xhsi

    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    source = rows[0]["kinds"][0]["candidates_from"] if rows else "–"
    header = (f"## Fusion suite{' (--quick smoke run)' if args.quick else ''}, {when}\n\n"
              f"xhsi {xhsi.__version__}, numpy {numpy.__version__}, {platform.machine()}, float32; candidates: "
              f"{source}.")
    text = table(rows, skipped, header)
    dest = args.out if args.quick else HERE / "results"
    dest.mkdir(parents=True, exist_ok=True)
    stem = f"fusion_suite_{args.tag}" if args.tag else "fusion_suite"
    (dest / f"{stem}.md").write_text(text)
    saved = {"when": when, "header": header, "quick": args.quick, "scenes": compact(rows), "skipped": skipped}
    (dest / f"{stem}.json").write_text(json.dumps(saved, separators=(",", ":"), default=str) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
