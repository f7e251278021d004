"""The ``xhsi`` command line. Each sub-command is a small function; user errors
(``XhsiError``) print one paragraph and exit 2, without a traceback unless ``--debug``."""
from __future__ import annotations

import argparse
import functools
import json
import sys
import textwrap
from pathlib import Path

from . import __version__
from .errors import Interrupted, XhsiError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, value as TOML (e.g. --set solver.max_iter=50); repeatable")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xhsi", description="X-ray hyperspectral imaging: deconvolution, fusion "
                                     "and unmixing of photon-count cubes, driven by TOML configs.")
    parser.add_argument("--version", action="version", version=f"xhsi {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of user errors")
    disable_help = ("do not import the plugin with this entry-point name (as XHSI_DISABLE_PLUGINS=NAME does), "
                    "e.g. a broken third-party one; repeatable")
    parser.add_argument("--disable-plugin", dest="disable_plugins", action="append", default=[], metavar="NAME",
                        help=disable_help)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of user errors")
    # Its own dest: a sub-command's values would otherwise replace those given before it.
    common.add_argument("--disable-plugin", dest="disable_plugins_after", action="append", default=argparse.SUPPRESS,
                        metavar="NAME", help=disable_help)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser = functools.partial(sub.add_parser, parents=[common])

    p = sub.add_parser("run", help="run the problem a config describes and write its outputs")
    p.add_argument("config", type=Path)
    _add_set(p)
    p.add_argument("--out", type=Path, help="output folder (default: [run] output of the config)")
    p.add_argument("--resume", action="store_true", help="continue from the output folder's checkpoint.npz")
    p.add_argument("--overwrite", action="store_true", help="replace the results of another run in the output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar or log lines")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("validate", help="check a config (keys, plugins, instruments, data files, scene, solver, "
                       "memory estimate) as `xhsi run` does before it starts, and print it resolved")
    p.add_argument("config", type=Path)
    _add_set(p)
    p.add_argument("--show-defaults", action="store_true", help="print the full config with every default filled in")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("plugins", help="list installed plugins (disabled ones too), the hooks each implements "
                       "and what each registers")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("instruments", help="list instruments, or describe one")
    p.add_argument("name", nargs="?")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_instruments)

    p = sub.add_parser("simulate", help="write the true sky cube and simulated counts of every observation")
    p.add_argument("config", type=Path)
    _add_set(p)
    p.add_argument("--out", type=Path, required=True, help="folder for truth.fits and <observation>_counts.fits")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("bin", help="bin an event list (FITS) into a counts cube")
    p.add_argument("events", type=Path)
    p.add_argument("--instrument", help="instrument name or TOML path (channel grid, pixel size)")
    p.add_argument("--out", type=Path, required=True, help="counts cube FITS to write")
    p.add_argument("--crop", type=float, nargs=4, metavar=("XMIN", "XMAX", "YMIN", "YMAX"),
                   help="region to keep, in event pixel coordinates")
    p.add_argument("--spatial-bin", type=int, default=1, help="event pixels per cube pixel (default 1)")
    p.add_argument("--energy-bin", type=int, default=1, help="channels per cube plane (default 1)")
    p.add_argument("--energy-range", type=float, nargs=2, metavar=("LO_KEV", "HI_KEV"), help="keep channels inside")
    p.add_argument("--exposure", type=float, help="exposure in s (default: the event file's EXPOSURE)")
    p.set_defaults(func=cmd_bin)

    p = sub.add_parser("train-model", help="train a surrogate (PCA + small network) of a spectral model")
    p.add_argument("config", type=Path, help="training TOML ([model.energy], [surrogate], optional [response])")
    p.add_argument("--out", type=Path, required=True, help="surrogate NAME.npz to write (NAME.json is written beside it)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_train_model)
    return parser


def cmd_validate(args) -> int:
    from .config import load_config
    from .runner import check_config
    from .tomlio import load_toml

    if Path(args.config).is_file() and "surrogate" in load_toml(args.config):  # a train-model config
        from .spectral.training import load_training_config

        training = load_training_config(args.config)
        print(f"{args.config}: valid training config for `xhsi train-model` (surrogate of "
              f"{training.surrogate.model}).")
        return 0
    cfg = load_config(args.config, args.overrides)
    check_config(cfg)
    if args.show_defaults:
        print(cfg.to_toml(), end="")
    else:
        n_obs, n_reg = len(cfg.observations), len(cfg.regularizers)
        print(f"{args.config}: valid ({cfg.run.problem}; {n_obs} observation{'s' * (n_obs != 1)}, "
              f"{n_reg} regulariser{'s' * (n_reg != 1)}, solver {cfg.solver.name}).")
    return 0


def cmd_plugins(args) -> int:
    from .plugins import registries

    reg = registries()
    plugins = reg.plugins
    if args.json:
        print(json.dumps([dict(p, options=_options_of(reg, p)) for p in plugins], indent=2, default=str))
        return 0
    for p in plugins:
        origin = f"{p.get('distribution') or '?'} {p.get('version') or ''}".strip()
        print(f"{p['name']}  ({origin}; {p.get('module', '')})" + ("  (disabled)" if p.get("disabled") else ""))
        if p.get("hooks"):
            print(f"    hooks: {', '.join(p['hooks'])}")
        for kind, names in sorted(p["registers"].items()):
            print(f"    {kind}: {', '.join(names)}")
    return 0


def _options_of(reg, plugin: dict) -> dict:
    """{kind: {name: [option fields]}} for what a plugin registers (instruments have none)."""
    from .config import options_schema
    from .schema import describe_fields

    return {kind: {name: describe_fields(options_schema(reg.by_kind[kind][name])) for name in names}
            for kind, names in plugin["registers"].items() if kind in reg.by_kind}


def cmd_instruments(args) -> int:
    from . import instruments

    if args.name:
        if args.json:
            print(json.dumps(instruments.load_instrument(args.name).to_dict(), indent=2, default=str))
        else:
            print(instruments.describe(args.name))
        return 0
    rows = instruments.summary_rows()
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    print(_table(rows))
    return 0


def _table(rows: list[dict]) -> str:
    if not rows:
        return "(none)"
    keys = list(rows[0])
    cells = [[str(r.get(k, "")) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def cmd_run(args) -> int:
    from .config import load_config
    from .runner import run

    cfg = load_config(args.config, args.overrides)
    result = run(cfg, out=args.out, resume=args.resume, overwrite=args.overwrite, quiet=args.quiet)
    return 0 if result is not None else 1


def cmd_simulate(args) -> int:
    from .config import load_config
    from .runner import simulate

    cfg = load_config(args.config, args.overrides)
    for path in simulate(cfg, args.out):
        print(path)
    return 0


def cmd_bin(args) -> int:
    from .instruments import load_instrument
    from .io.events import bin_events

    instrument = load_instrument(args.instrument) if args.instrument else None
    cube = bin_events(args.events, instrument, args.out, crop=tuple(args.crop) if args.crop else None,
                      spatial_bin=args.spatial_bin, energy_bin=args.energy_bin,
                      energy_range_kev=tuple(args.energy_range) if args.energy_range else None,
                      exposure_s=args.exposure)
    n, ny, nx = cube.data.shape
    print(f"{args.out}: {int(cube.data.sum())} counts in {n} planes x {ny} x {nx} pixels "
          f"({cube.e_min[0]:.4g}-{cube.e_max[-1]:.4g} keV)")
    return 0


def cmd_train_model(args) -> int:
    from .spectral.training import train_from_config

    log = None if args.quiet else (lambda line: print(line, file=sys.stderr))
    surrogate = train_from_config(args.config, args.out, log=log)
    meta, net, pca = surrogate.metadata, surrogate.validation["network"], surrogate.validation["pca_only"]
    print(f"{args.out}: surrogate of {meta['emulated_model']} ({', '.join(p['name'] for p in meta['parameters'])}; "
          f"{meta['n_out']} output bins; trained in {meta['training']['seconds']:.3g} s)")
    print(f"validation relative L2 error per spectrum: median {net['median']:.3g}, 95% {net['p95']:.3g}, "
          f"max {net['max']:.3g} (PCA truncation alone: median {pca['median']:.3g}, max {pca['max']:.3g})")
    return 0


def _paragraph(message: str) -> str:
    return "\n".join(textwrap.fill(part, width=100, break_long_words=False, break_on_hyphens=False)
                     for part in str(message).split("\n"))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USER_ERROR
    from .plugins import disabling

    try:
        with disabling([*args.disable_plugins, *getattr(args, "disable_plugins_after", [])]):
            return args.func(args)
    except Interrupted as exc:
        print(f"xhsi {args.command}: {_paragraph(exc)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except XhsiError as exc:
        if args.debug:
            raise
        print(f"xhsi {args.command}: error: {_paragraph(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"xhsi {args.command}: interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
