"""Before/after check for refactors that must change no numerical result (issue 22).

Runs every shipped config in ``configs/`` through the ``xhsi`` command, in fresh
subprocesses, and records a SHA-256 of every data array it writes (``result.fits``,
``maps.fits``, the surrogate's ``.npz``), headers excluded (they hold dates and versions).
Run configs are stopped after ``--iterations`` solver iterations, training configs are cut
to a few samples and epochs: every build path (instruments, operators, regularisers,
problems, solvers, outputs) is exercised, and iterations are the same arithmetic repeated.
The small configs, which CI runs whole, are also run to their own ``max_iter``.

    python bench/identity.py record bench/results/identity.json   # before the change
    python bench/identity.py check  bench/results/identity.json   # after: exit 1 on any difference
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from astropy.io import fits

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
FULL = ("fusion_xmm_xrism_small.toml", "unmixing_casa_chandra_small.toml")  # run whole in CI
TRAINING_CUT = {"n_samples": 200, "epochs": 3}
# Configs that read a surrogate trained by another config: (component index, training config).
SURROGATE_OF = {"unmixing_casa_chandra_surrogate.toml": (0, "train_surrogate_thermal_casa.toml")}


def _digest(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array)
    h = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    h.update(array.tobytes())
    return h.hexdigest()


def digests(folder: Path) -> dict[str, str]:
    """{file:hdu or file:array: sha256} of every data array xhsi wrote into ``folder``."""
    out = {}
    for path in sorted(folder.glob("*.fits")):
        with fits.open(path) as hdul:
            for i, hdu in enumerate(hdul):
                if hdu.data is not None:
                    out[f"{path.name}:{hdu.name or i}"] = _digest(np.asarray(hdu.data))
    for path in sorted(folder.glob("*.npz")):
        if path.name == "checkpoint.npz":
            continue
        with np.load(path, allow_pickle=False) as z:
            for key in sorted(z.files):
                out[f"{path.name}:{key}"] = _digest(z[key])
    return out


def _xhsi(*args: str) -> None:
    cmd = [sys.executable, "-m", "xhsi", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def _training_copy(config: Path, tmp: Path) -> Path:
    sys.path.insert(0, str(ROOT / "framework"))
    from xhsi.tomlio import dumps_toml, load_toml

    data = load_toml(config)
    data["iae" if "iae" in data else "surrogate"].update(TRAINING_CUT)
    copy = tmp / config.name
    copy.write_text(dumps_toml(data))
    return copy


def cases(iterations: int) -> list[tuple[str, Path, list[str]]]:
    """(case name, config, extra arguments) for every shipped config."""
    out = []
    for config in sorted(CONFIGS.glob("*.toml")):
        if config.name.startswith("train_"):
            out.append((config.stem, config, []))
            continue
        out.append((f"{config.stem}@{iterations}", config, ["--set", f"solver.max_iter={iterations}"]))
        if config.name in FULL:
            out.append((config.stem, config, []))
    return out


def record(iterations: int, only: str | None, save=None) -> dict[str, dict[str, str]]:
    """Digests of every case (``save(table)`` after each one, so a long record keeps its progress)."""
    table = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, config, extra in cases(iterations):
            if only and only not in name:
                continue
            out = tmp / name.replace("@", "_")
            if config.name.startswith("train_"):
                out.mkdir()
                _xhsi("train-model", str(_training_copy(config, tmp)), "--out", str(out / "model.npz"), "--quiet")
            else:
                if config.name in SURROGATE_OF:
                    index, training = SURROGATE_OF[config.name]
                    model = tmp / f"{name}_surrogate.npz"
                    _xhsi("train-model", str(_training_copy(CONFIGS / training, tmp)), "--out", str(model), "--quiet")
                    extra = [*extra, "--set", f'components[{index}].options.file="{model}"']
                _xhsi("run", str(config), "--out", str(out), "--quiet", *extra)
            table[name] = digests(out)
            print(f"{name}: {len(table[name])} arrays", flush=True)
            if save:
                save(table)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["record", "check"])
    parser.add_argument("table", type=Path, help="JSON of digests (written by record, read by check)")
    parser.add_argument("--iterations", type=int, default=3, help="solver iterations of each run config (default 3)")
    parser.add_argument("--only", help="run only the cases whose name contains this")
    args = parser.parse_args(argv)
    if args.mode == "record":
        earlier = json.loads(args.table.read_text()) if args.only and args.table.exists() else {}

        def save(table):  # add to, or replace cases of, an earlier record when --only is given
            args.table.write_text(json.dumps({**earlier, **table}, indent=1, sort_keys=True) + "\n")

        record(args.iterations, args.only, save)
        return 0
    table = record(args.iterations, args.only)
    before = json.loads(args.table.read_text())
    bad = [f"{case}: {key}" for case, arrays in table.items()
           for key in sorted(set(arrays) | set(before.get(case, {})))
           if arrays.get(key) != before.get(case, {}).get(key)]
    for line in bad:
        print(f"DIFFERS {line}")
    print(f"{len(table)} cases, {sum(map(len, table.values()))} arrays: "
          f"{'all bit-identical' if not bad else f'{len(bad)} differ'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
