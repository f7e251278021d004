"""Where the scene suite's fusions lose spectral angle: ASAM (°) by class of true flux for
the default runs and both baselines, read from the run folders ``bench/fusion_suite.py``
leaves under ``--out`` (``metrics.json`` → ``asam_by_flux``; classes as
``xhsi.metrics.FLUX_CLASS_EDGES``, fractions of the brightest pixel's true flux).

    .venv/bin/python bench/suite_asam_classes.py [--out runs/fusion_suite] [--configs lowrank,none]

Prints a markdown table: per scene and config, each class's pixel count and the default's
ASAM against the imager's and the spectrometer's (✗ where the default is worse than either).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _label(c: dict) -> str:
    hi = c["max_fraction"]
    return f"≥ {100 * c['min_fraction']:g} %" if hi is None else f"{100 * c['min_fraction']:g}–{100 * hi:g} %"


def rows(out: Path, configs: list[str]) -> list[str]:
    lines = []
    for scene in sorted(p for p in out.iterdir() if p.is_dir()):
        for kind in configs:
            path = scene / f"default_{kind}" / "metrics.json"
            if not path.exists():
                continue
            by = json.loads(path.read_text()).get("asam_by_flux")
            if not by:
                continue
            cells = []
            for res, ima, spe in zip(by["result"], by["baselines"]["imager"], by["baselines"]["spectrometer"]):
                if res["pixels"] == 0 or math.isnan(res["asam_deg"]):
                    cells.append("–")
                    continue
                worse = res["asam_deg"] > min(ima["asam_deg"], spe["asam_deg"])
                cells.append(f"{res['pixels']} px: {res['asam_deg']:.1f} ({ima['asam_deg']:.1f} / "
                             f"{spe['asam_deg']:.1f}){' ✗' if worse else ''}")
            if not lines:
                head = " | ".join(_label(c) for c in by["result"])
                lines += [f"| scene | config | {head} |", "|---|---|" + "---|" * len(by["result"])]
            lines.append(f"| {scene.name} | {kind} | " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "fusion_suite")
    ap.add_argument("--configs", default="lowrank,none")
    args = ap.parse_args(argv)
    print("\n".join(rows(args.out, args.configs.split(","))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
