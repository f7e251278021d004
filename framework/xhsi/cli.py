"""The ``xhsi`` command line. Each sub-command is a small function; user errors
(``XhsiError``, and an ``OSError`` on a file the user named: a folder that cannot be
written, a disk that is full) print one paragraph and exit 2, without a traceback unless
``--debug``. Output cut short by its reader (``xhsi plugins --json | head``) ends the command
quietly with exit 141, as a command killed by SIGPIPE does in a shell."""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shlex
import signal
import sys
import textwrap
from pathlib import Path

from . import __version__
from .errors import Interrupted, XhsiError
from .interrupts import signal_number

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE


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
    _add_cluster(p, "a candidate fit", selection=True)
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
    p.add_argument("--overwrite", action="store_true",
                   help="replace those files if they exist (never a file the config reads)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("bin", help="bin an event list (FITS) into a counts cube")
    p.add_argument("events", type=Path)
    p.add_argument("--instrument", help="instrument name or TOML path (channel grid, pixel size)")
    p.add_argument("--out", type=Path, required=True, help="counts cube FITS to write")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists (never the event file)")
    p.add_argument("--crop", type=float, nargs=4, metavar=("XMIN", "XMAX", "YMIN", "YMAX"),
                   help="region to keep, in event pixel coordinates")
    p.add_argument("--spatial-bin", type=int, default=1, help="event pixels per cube pixel (default 1)")
    p.add_argument("--energy-bin", type=int, default=1, help="channels per cube plane (default 1)")
    p.add_argument("--energy-range", type=float, nargs=2, metavar=("LO_KEV", "HI_KEV"), help="keep channels inside")
    p.add_argument("--energy-step", type=float, metavar="KEV",
                   help="with --energy-range: planes of this width in keV, binning an ENERGY column without an "
                   "instrument")
    p.add_argument("--exposure", type=float, help="exposure in s (default: the event file's EXPOSURE)")
    p.add_argument("--pixel-arcsec", type=float, help="cube pixel in arcsec on a sky grid (default: the event pixel "
                   "times --spatial-bin) or for RA/DEC events; the event pixel when X/Y have no TCDLT keywords "
                   "(default: the instrument's pixel)")
    p.add_argument("--center", type=float, nargs=2, metavar=("RA", "DEC"),
                   help="sky grid centre in degrees (default: the centre of --region)")
    p.add_argument("--size", type=float, nargs="+", metavar="ARCSEC",
                   help="sky grid size in arcsec: one (square) or two (width height); default: --region's extent")
    p.add_argument("--region", type=Path, help="DS9 (.reg) or CRTF (.crtf) file in sky coordinates: keep the events "
                   "inside its shapes (and, without --center/--size, centre and size the grid on them)")
    p.add_argument("--exclude", type=Path, help="DS9 or CRTF file in sky coordinates: drop the events inside its "
                   "shapes (e.g. a point source)")
    p.add_argument("--ccd", type=_int_list, metavar="N,N,...", help="keep the events of these chips (CCD_ID or CCDNR)")
    p.add_argument("--no-event-filter", action="store_true",
                   help="keep every event (default: Chandra GRADE 0,2,3,4,6 and STATUS=0; XMM pn PATTERN<=4, MOS "
                   "PATTERN<=12, FLAG=0)")
    p.add_argument("--position-columns", nargs=2, metavar=("XCOL", "YCOL"),
                   help="event position columns (default: X Y, else RA DEC)")
    p.add_argument("--energy-column", metavar="NAME",
                   help="event energy column (default: PI, then PHA, for an RMF instrument; ENERGY otherwise)")
    p.add_argument("--ignore-memory-check", action="store_true",
                   help="bin even when the cube's memory estimate exceeds the available memory")
    p.set_defaults(func=cmd_bin)

    p = sub.add_parser("train-model", help="train a learnt spectral model: a surrogate (PCA + small network) or an "
                       "interpolatory auto-encoder (IAE) of a spectral model or a spectral library")
    p.add_argument("config", type=Path, help="training TOML ([model.energy], [surrogate] or [iae], optional [response])")
    p.add_argument("--out", type=Path, required=True, help="model NAME.npz to write (NAME.json is written beside it)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_train_model)

    p = sub.add_parser("sweep", help="run a config at every point of a grid of overrides, on a Dask cluster "
                       "(pip install 'xhsi[distributed]'); exit 1 when a point failed")
    p.add_argument("config", type=Path)
    p.add_argument("--grid", action="append", default=[], metavar="KEY=[V1, V2, ...]",
                   help="a key and its values (TOML); points: every combination; repeatable; adds to, or "
                   "replaces a key of, the config's [sweep] grid")
    _add_set(p)
    p.add_argument("--out", type=Path, help="sweep folder: points/NAME (one run each), sweep.csv, sweep.json, "
                   "sweep.png (default: [run] output + _sweep)")
    p.add_argument("--metric", dest="metrics", action="append", default=[], metavar="NAME",
                   help="metric to plot, e.g. result.psnr_db or psnr_db; repeatable (default: [sweep] metrics, "
                   "else every number of metrics.json's result table)")
    _add_cluster(p, "a point")
    p.add_argument("--overwrite", action="store_true", help="replace point folders that hold another config's run")
    p.add_argument("--dry-run", action="store_true", help="check every point and list them; run nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bar or log lines")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("tiles", help="run a config's field as overlapping tiles on a Dask cluster and blend them "
                       "into one cube (pip install 'xhsi[distributed]'); exit 1 when a tile failed")
    p.add_argument("config", type=Path)
    p.add_argument("--tile", type=int, required=True, metavar="PIXELS",
                   help="core size of a tile in model pixels (each tile adds the overlap on every side)")
    p.add_argument("--overlap", type=int, metavar="PIXELS", help="pixels each tile extends past its core "
                   "(default: the reach of edge effects, 99 %% PSF radius + regulariser support, and a quarter)")
    _add_set(p)
    p.add_argument("--out", type=Path, help="tiles folder: tiles/NNN (inputs and run of each tile), mosaic/ (the "
                   "blended result) (default: [run] output + _tiles)")
    _add_cluster(p, "a tile")
    p.add_argument("--dry-run", action="store_true", help="check the config and list the tiles; run nothing")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_tiles)
    return parser


def _add_cluster(p, task: str, selection: bool = False) -> None:
    """The options saying where a command's Dask tasks run; ``selection``: those of ``xhsi
    run``, whose tasks are the selection's fits and the bootstrap's replicates (no --retries:
    a fit that fails is a failed candidate, as without Dask; no cluster unless an option is given)."""
    which = "the selection's candidate fits and the bootstrap's replicates on " if selection else ""
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help=f"run {which}this Dask scheduler (tcp://HOST:PORT)")
    where.add_argument("--scheduler-file", type=Path, metavar="FILE",
                       help=f"run {which}the Dask scheduler that wrote FILE (dask scheduler --scheduler-file FILE)")
    p.add_argument("--workers", type=int, help=f"run {which}a Dask cluster of this many worker processes on this "
                   "machine (default: " + ("no Dask, the fits one by one)" if selection else "one per core)"))
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="how long to wait for the scheduler and a first worker (default 10)")
    if not selection:
        p.add_argument("--retries", type=int, default=1, help=f"reruns of {task} after an unexpected error (default "
                       f"1; {task} whose worker died is rerun by the scheduler)")


def cmd_validate(args) -> int:
    from .config import load_config
    from .runner import check_config
    from .selection.candidates import selection_reason
    from .spectral.iae_data import training_config_summary

    summary = training_config_summary(args.config)  # a train-model config: checked up to its training set
    if summary is not None:
        print(f"{args.config}: {summary}")
        return 0
    cfg = load_config(args.config, args.overrides)
    check_config(cfg)
    reason = selection_reason(cfg)
    if args.show_defaults:
        if reason is not None:  # every default written: a run of this table chooses nothing
            print("# The given config selects its options from the data; this table, with every default\n"
                  "# written, would not: run the given config, or its run's config.selected.toml.")
        print(cfg.to_toml(), end="")
        return 0
    n_obs, n_reg = len(cfg.observations), len(cfg.regularizers)
    print(f"{args.config}: valid ({cfg.run.problem}; {n_obs} observation{'s' * (n_obs != 1)}, "
          f"{n_reg} regulariser{'s' * (n_reg != 1)}, solver {cfg.solver.name}).")
    if reason is not None:  # what the run will choose before its fit
        print(f"  the run selects its options from the data first: {reason}.")
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
    try:
        with _run_cluster(args, cfg) as (fits, replicates):
            result = run(cfg, out=args.out, resume=args.resume, overwrite=args.overwrite, quiet=args.quiet,
                         selection_fits=fits, bootstrap_tasks=replicates)
    except Interrupted as exc:
        if exc.checkpoint is None:
            raise
        # The command on a line of its own, unwrapped, to be copied as it is.
        print(f"xhsi run: {_paragraph(f'{exc} Continue with:')}\n    {resume_command(args)}", file=sys.stderr)
        return exc.exit_code
    return 0 if result is not None else 1


def _run_cluster(args, cfg):
    """Where ``xhsi run``'s selection fits and bootstrap replicates run: a Dask cluster when
    --workers, --scheduler or --scheduler-file is given (``xhsi.distributed.run_tasks``), else
    here ((None, None); Dask is not imported)."""
    if args.workers is None and not args.scheduler and not args.scheduler_file:
        return contextlib.nullcontext((None, None))
    from .distributed.run_tasks import run_tasks

    return run_tasks(cfg, args.config, args.overrides, args.scheduler, args.scheduler_file, args.workers,
                     args.timeout)


def resume_command(args) -> str:
    """The ``xhsi run`` command line that resumes the run ``args`` describe: the same config,
    ``--set`` options, output folder and plugins, and ``--resume``, quoted for a POSIX shell."""
    words = ["xhsi", "run", str(args.config)]
    for override in args.overrides:
        words += ["--set", override]
    if args.out is not None:
        words += ["--out", str(args.out)]
    for option in ("workers", "scheduler", "scheduler_file"):  # where the selection and bootstrap ran
        if getattr(args, option, None) is not None:
            words += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    for name in [*args.disable_plugins, *getattr(args, "disable_plugins_after", [])]:
        words += ["--disable-plugin", name]
    if args.quiet:
        words.append("--quiet")
    words.append("--resume")
    return " ".join(shlex.quote(word) for word in words)


def cmd_simulate(args) -> int:
    from .config import load_config
    from .runner import simulate

    cfg = load_config(args.config, args.overrides)
    for path in simulate(cfg, args.out, overwrite=args.overwrite):
        print(path)
    return 0


#: How ``xhsi bin`` spells the parameters of ``bin_events`` in its messages (None: no option).
BIN_OPTIONS = {"instrument": "--instrument", "out": "--out", "overwrite": "--overwrite",
               "crop": "--crop XMIN XMAX YMIN YMAX", "spatial_bin": "--spatial-bin", "energy_bin": "--energy-bin",
               "energy_range_kev": "--energy-range", "exposure_s": "--exposure", "pixel_arcsec": "--pixel-arcsec",
               "position_columns": "--position-columns", "energy_column": "--energy-column",
               "memory_limit_bytes": "--ignore-memory-check", "energy_edges_kev": "--energy-range with --energy-step", "center_deg": "--center",
               "size_arcsec": "--size", "region": "--region", "exclude": "--exclude", "ccds": "--ccd",
               "event_filter": "--no-event-filter"}


def _int_list(text: str) -> list[int]:
    """``--ccd 0,1,2,3`` → [0, 1, 2, 3]."""
    try:
        return [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected chip numbers separated by commas, e.g. 0,1,2,3; got {text!r}")


def cmd_bin(args) -> int:
    import numpy as np

    from .errors import DataError
    from .instruments import load_instrument
    from .io.events import bin_events
    from .problems.checks import available_memory_bytes

    instrument = load_instrument(args.instrument) if args.instrument else None
    edges = None
    if args.energy_step is not None:
        if args.energy_range is None or not (args.energy_step > 0 and args.energy_range[1] > args.energy_range[0]):
            raise DataError("--energy-step needs --energy-range LO_KEV HI_KEV with HI_KEV > LO_KEV and a positive "
                            f"step; got --energy-step {args.energy_step!r}, --energy-range {args.energy_range!r}.")
        lo, hi = args.energy_range
        n = max(1, int(round((hi - lo) / args.energy_step)))
        edges = np.linspace(lo, hi, n + 1)
    limit = None if args.ignore_memory_check else available_memory_bytes("numpy")
    cube = bin_events(args.events, instrument, args.out, crop=tuple(args.crop) if args.crop else None,
                      spatial_bin=args.spatial_bin, energy_bin=args.energy_bin, energy_edges_kev=edges,
                      energy_range_kev=tuple(args.energy_range) if args.energy_range else None,
                      exposure_s=args.exposure, pixel_arcsec=args.pixel_arcsec,
                      position_columns=tuple(args.position_columns) if args.position_columns else None,
                      energy_column=args.energy_column, overwrite=args.overwrite, memory_limit_bytes=limit,
                      center_deg=tuple(args.center) if args.center else None, size_arcsec=args.size,
                      region=args.region, exclude=args.exclude, ccds=args.ccd,
                      event_filter=not args.no_event_filter, option_names=BIN_OPTIONS)
    n, ny, nx = cube.data.shape
    print(f"{args.out}: {int(cube.data.sum())} counts in {n} planes x {ny} x {nx} pixels "
          f"({cube.e_min[0]:.4g}-{cube.e_max[-1]:.4g} keV)")
    return 0


def cmd_train_model(args) -> int:
    from .spectral.training import train_from_config

    from .spectral.iae_data import is_iae_config
    from .spectral.iae_training import summary_lines, train_iae_from_config

    log = None if args.quiet else (lambda line: print(line, file=sys.stderr))
    if is_iae_config(args.config):
        print("\n".join(summary_lines(train_iae_from_config(args.config, args.out, log=log), args.out)))
        return 0
    surrogate = train_from_config(args.config, args.out, log=log)
    meta, net, pca = surrogate.metadata, surrogate.validation["network"], surrogate.validation["pca_only"]
    print(f"{args.out}: surrogate of {meta['emulated_model']} ({', '.join(p['name'] for p in meta['parameters'])}; "
          f"{meta['n_out']} output bins; trained in {meta['training']['seconds']:.3g} s)")
    print(f"validation relative L2 error per spectrum: median {net['median']:.3g}, 95% {net['p95']:.3g}, "
          f"max {net['max']:.3g} (PCA truncation alone: median {pca['median']:.3g}, max {pca['max']:.3g})")
    return 0


def cmd_sweep(args) -> int:
    from .distributed import plan_sweep, run_sweep

    sweep = plan_sweep(args.config, args.grid, args.overrides, out=args.out, metrics=args.metrics,
                       overwrite=args.overwrite)
    if args.dry_run:
        print(sweep.describe())
        return 0
    report = _on_cluster(args, len(sweep.pending), sweep.out, "points",
                         lambda client: run_sweep(sweep, client, quiet=args.quiet, retries=args.retries))
    print(report.summary(), file=sys.stderr)
    if report.unknown_metrics:
        raise XhsiError(f"no point has the metric{'s' * (len(report.unknown_metrics) > 1)} "
                        f"{', '.join(report.unknown_metrics)} (--metric or [sweep] metrics); "
                        f"{sweep.out / 'sweep.csv'} lists the columns there are.")
    return report.exit_code


def cmd_tiles(args) -> int:
    from .distributed.tiles import plan_tiles
    from .distributed.tiles_run import run_tiles

    plan = plan_tiles(args.config, args.tile, args.overlap, args.overrides, out=args.out)
    print(plan.describe(), file=sys.stderr)
    if args.dry_run:
        return 0
    report = _on_cluster(args, len(plan.tiles), plan.out, "tiles",
                         lambda client: run_tiles(plan, client, quiet=args.quiet, retries=args.retries))
    print(report.summary(), file=sys.stderr)
    return 1 if report.failed else 0


def _on_cluster(args, tasks: int, out, what: str, work):
    """``work(client)`` on the Dask cluster the options name (None when no ``tasks``); on Ctrl-C,
    SIGTERM or SIGHUP the cluster is closed and Interrupted says ``out`` keeps what completed."""
    from .distributed import connect
    from .interrupts import stop_signals

    with connect(args.scheduler, args.scheduler_file, workers=args.workers, timeout_s=args.timeout,
                 tasks=tasks) if tasks else contextlib.nullcontext() as client:
        try:
            with stop_signals():
                return work(client)
        except KeyboardInterrupt as exc:
            raise Interrupted(f"interrupted: {out} keeps the {what} that completed. Run the same command again to "
                              f"continue: complete {what} are skipped, interrupted ones resumed.",
                              signal_number(exc)) from None


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
            code = args.func(args)
            sys.stdout.flush()  # a closed pipe shows here, not at exit
            return code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except Interrupted as exc:
        print(f"xhsi {args.command}: {_paragraph(exc)}", file=sys.stderr)
        return exc.exit_code
    except XhsiError as exc:
        if args.debug:
            raise
        print(f"xhsi {args.command}: error: {_paragraph(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP within a run (xhsi.interrupts)
        print(f"xhsi {args.command}: interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED - signal.SIGINT + signal_number(exc)
    except OSError as exc:  # the system refused a file operation: permissions, a full disk, a path under a file
        if args.debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"xhsi {args.command}: error: {_paragraph(f'{where}{exc.strerror or exc}.')}", file=sys.stderr)
        return EXIT_USER_ERROR


def _silence_stdout() -> None:
    """Point the standard output at /dev/null once its reader has gone, so that Python's own
    flush at exit does not fail again (the recipe of the Python docs, "Note on SIGPIPE")."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's capture)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
