"""Run configs: the typed schema of a run TOML, loading with overrides, and validation of
each plugin's ``options`` against the schema the plugin declares (its ``Options`` class).

Defaults live here and only here; ``xhsi validate --show-defaults`` prints them.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .errors import ConfigError, PluginError
from .schema import Context, NoOptions, from_dict, option, to_dict
from .tomlio import dumps_toml, load_toml, parse_value

BACKENDS = ("numpy", "cupy", "array_api_strict")
DTYPES = ("float32", "float64")


@dataclass
class RunSection:
    problem: str = option("fusion", doc="problem plugin: deconvolution, fusion, unmixing, ...")
    output: Path = option("runs/xhsi", doc="output folder, relative to the config file")
    backend: str = option("numpy", choices=BACKENDS,
                          doc="array library; array_api_strict is the portability check, not for science")
    dtype: str = option("float32", choices=DTYPES)
    seed: int = option(0, min=0, doc="seed of every random draw (simulation, initialisation)")
    likelihood: str = option("poisson", doc="data term: poisson (counts) or gaussian (chi-square)")
    checkpoint_every: int = option(100, min=0, unit="iterations", doc="0 disables checkpoints")
    quicklook: bool = option(True, doc="write PNG quicklooks")
    memory_check: bool = option(True, doc="refuse a run whose memory estimate exceeds the available memory; "
                                          "false: run anyway")


@dataclass
class EnergyGrid:
    min_kev: float = option(unit="keV", min=0.0, exclusive_min=True)
    max_kev: float = option(unit="keV", min=0.0, exclusive_min=True)
    bins: int = option(unit="bins", min=1)

    def check(self):
        if self.max_kev <= self.min_kev:
            raise ValueError(f"`max_kev` ({self.max_kev}) must be larger than `min_kev` ({self.min_kev}).")


@dataclass
class ModelSection:
    energy: EnergyGrid = option(doc="true-energy grid of the sky cube")
    pixels: tuple[int, int] = option(doc="[ny, nx] sky pixels", min=1)
    pixel_arcsec: float = option(unit="arcsec", min=0.0, exclusive_min=True)
    center_deg: tuple[float, float] | None = option(
        None, unit="deg", doc="[RA, Dec] (ICRS) of the grid's centre in the FITS products, used when no counts "
                              "file has a sky WCS (simulations); omit: RA = Dec = 0, marked arbitrary")
    object: str | None = option(None, doc="name of the source (FITS OBJECT); omit: the counts files' OBJECT")

    def check(self):
        if self.center_deg is not None:
            ra, dec = self.center_deg
            if not (0.0 <= ra < 360.0 and -90.0 <= dec <= 90.0):
                raise ValueError(f"`center_deg` = [{ra}, {dec}]: RA must be in [0, 360) deg and Dec in [-90, 90] deg.")


@dataclass
class ObservationSection:
    name: str = option(doc="label used in outputs and messages")
    instrument: str | None = option(None, doc="a shipped instrument name or a path to an instrument TOML (relative to "
                                              "the config file); with `spectrum`: optional (the PHA's responses)")
    exposure_s: float | None = option(None, unit="s", min=0.0, exclusive_min=True,
                                      doc="exposure time; default: the counts file's EXPOSURE (required when "
                                          "the counts are simulated); checked against it when both are given")
    counts: Path | None = option(None, doc="counts cube FITS; omit to simulate it from [simulate]")
    background: Path | None = option(None, doc="background counts cube FITS (same grid as counts)")
    spatial_rebin: int = option(1, min=1, doc="detector pixel = rebin x model pixel")
    spectral_rebin: int = option(1, min=1, doc="channel = rebin x model energy bin (RMF instruments: edges snapped to RMF channels)")
    psf_size: int | None = option(None, min=1, unit="model pixels",
                                  doc="crop the PSF kernel to psf_size x psf_size model pixels (odd; the part outside "
                                      "is dropped, not renormalised); default: the instrument's [psf] radius_arcsec")
    spectrum: Path | None = option(None, doc="an OGIP PHA spectrum instead of `counts` (its RESPFILE, ANCRFILE and "
                                             "BACKFILE are followed); needs a 1 x 1 pixel [model]")
    spectrum_row: int | None = option(None, min=1, doc="type II PHA: the spectrum's SPEC_NUM (or row, from 1)")
    notice_kev: list[list[float]] | None = option(None, unit="keV", doc="spectrum: [[lo, hi], ...] energy ranges "
                                                  "fitted (by channel-group centre); default: every good channel")
    background_model: str = option("scaled", choices=("scaled", "wstat", "none"),
                                   doc="spectrum: scaled = the BACKFILE spectrum scaled by BACKSCAL, AREASCAL and "
                                       "EXPOSURE, added as fixed counts; wstat = background profiled out (W-stat, "
                                       "pixelfit); none = BACKFILE ignored")

    def check(self):
        if self.instrument is None and self.spectrum is None:
            raise ValueError("`instrument` is required (only an observation with a `spectrum` takes its responses "
                             "from the PHA file).")
        if self.spectrum is not None and (self.counts is not None or self.background is not None):
            raise ValueError("`spectrum` replaces `counts` and `background` (the PHA's BACKFILE); give one or the "
                             "other.")
        for i, pair in enumerate(self.notice_kev or []):
            if len(pair) != 2 or not 0 <= pair[0] < pair[1]:
                raise ValueError(f"`notice_kev[{i}]` = {pair}: each range is [lo, hi] keV with 0 <= lo < hi.")
        if self.psf_size is not None and self.psf_size % 2 == 0:
            raise ValueError(f"`psf_size` must be odd (a kernel centred on a pixel), got {self.psf_size}.")


@dataclass
class PluginSection:
    """A table naming a plugin and its options (regularizers, solver, simulate scene)."""

    name: str = option()
    options: dict = option({}, doc="the plugin's own options; see `xhsi plugins`")


@dataclass
class RegularizerSection(PluginSection):
    weight: float = option(1.0, min=0.0, doc="multiplies the regulariser in the objective")


@dataclass
class SolverSection:
    name: str = option("fista")
    max_iter: int = option(500, min=0, unit="iterations", doc="iterations to run; 0: the start is the result")
    tol: float = option(1e-6, min=0.0, doc="stop when the relative change of cost or iterate is below")
    max_time_s: float | None = option(None, unit="s", min=0.0, exclusive_min=True, doc="wall-time budget")
    report_every: int = option(10, min=1, unit="iterations", doc="cadence of cost records, hooks and progress")
    options: dict = option({})


@dataclass
class SimulateSection:
    scene: str = option(doc="scene plugin generating the true sky cube")
    options: dict = option({})


@dataclass
class ComponentSection:
    """One component of an unmixing problem: Z = Σ_c a_c(y, x) · S_c(E; θ_c(y, x))."""

    name: str = option(doc="label of the component in outputs (maps.fits, metrics)")
    model: str = option(doc="spectral model, or a product such as \"absorption * thermal\"")
    options: dict = option({}, doc="the spectral model's options (for a product: keyed by model name)")
    init: dict = option({}, doc="initial value per parameter, in the parameter's unit (default: its default)")
    bounds: dict = option({}, doc="[lower, upper] per parameter, narrowing the model's own bounds")
    link: dict = option({}, doc="parameter -> \"component.parameter\": share that component's map")
    fixed: list[str] = option([], doc="parameters held at their init value instead of fitted as maps")
    fixed_amplitude: bool = option(False, doc="hold the amplitude map at its initial value (e.g. a background)")
    amplitude_k: float | None = option(None, min=0.0, unit="σ",
                                       doc="starlet sparsity of the amplitude map, threshold k·σ (omit: none)")
    parameter_k: float | None = option(3.0, min=0.0, unit="σ",
                                       doc="starlet sparsity of each parameter map, threshold k·σ (omit: none)")
    scales: int = option(2, min=1, doc="starlet scales of the map regularisers")


@dataclass
class MetricsSection:
    truth: Path | None = option(None, doc="true sky cube FITS; when simulating, the simulated truth is used")
    truth_maps: Path | None = option(None, doc="true parameter maps FITS, one image HDU per `component.parameter` "
                                               "as maps.fits writes them; scores the maps instead of the simulated "
                                               "components")


@dataclass
class SweepSection:
    """The points of ``xhsi sweep`` (``xhsi run`` ignores this table): the cartesian product
    of ``grid``, crossed with the override sets of ``points`` when both are given. Keys are
    dotted keys as for ``--set``; a nested table (``[sweep.grid] solver.max_iter = [...]``)
    reads as its dotted keys."""

    grid: dict | None = option(None, doc="{dotted key: [values]}: every combination of the values is a point")
    points: list[dict] | None = option(None, doc="[{dotted key: value}, ...]: one point per override set")
    metrics: list[str] = option([], doc="metrics.json keys (e.g. result.psnr_db) plotted over the points; "
                                        "default: every number of its `result` table")

    def check(self):
        if self.grid is not None:
            self.grid = dotted_keys(self.grid)
            for key, values in self.grid.items():
                if not isinstance(values, list):
                    raise ValueError(f"`grid.{key}`: expected an array of values, e.g. [1, 2], got {values!r}.")
        if self.points is not None:
            self.points = [dotted_keys(point) for point in self.points]


@dataclass
class SelectionSection:
    """Data-driven choice of the regularisers' hyper-parameters and of the stopping iteration
    (``xhsi.selection``, docs/selection.md): candidate fits, then the final fit."""

    select: str = option("untuned", choices=("untuned", "auto", "off"),
                         doc="untuned: select when the config leaves something to choose (a regulariser with no "
                             "options, or no [[regularizers]] and no [solver] max_iter: then the regularisers too, "
                             "unless regularizers = [] is written); auto: always; off: never")
    rule: str = option("holdout", choices=("holdout", "discrepancy"),
                       doc="holdout: Poisson deviance of thinned counts held out from each fit; discrepancy: "
                           "the full-data deviance against its expected value")
    fraction: float = option(0.5, min=0.0, exclusive_min=True, max=1.0,
                             doc="holdout: share p of each count kept for the fit (the rest is scored)")
    folds: int = option(2, min=1, max=20, doc="holdout: independent thinnings, each fitted and scored")
    candidates: list[dict] | None = option(None, doc="[{dotted key: value}, ...]: one candidate per override set "
                                                     "(at least two); omit: xhsi.selection.default_candidates")
    every: int = option(10, min=1, unit="iterations", doc="score the path every that many iterations")
    patience: int = option(5, min=1, unit="scores", doc="holdout: end a fit once its held-out deviance has not "
                                                         "improved for that many scores (discrepancy: once D <= E)")
    max_iter: int | None = option(None, min=1, unit="iterations",
                                  doc="iterations of each candidate fit; omit: [solver] max_iter when given, else 500")

    def check(self):
        if self.fraction >= 1.0:
            raise ValueError(f"`fraction` = {self.fraction}: the share kept for the fit must be below 1, so that "
                             "some counts are held out to score it (e.g. 0.5).")
        if self.candidates is not None:
            self.candidates = [dotted_keys(c) for c in self.candidates]
            if len(self.candidates) < 2:
                raise ValueError(f"`candidates` has {len(self.candidates)} override set: a selection needs at least "
                                 "two to choose from (or omit `candidates` for the default grid).")


def dotted_keys(table: dict, prefix: str = "") -> dict:
    """A table with its nested tables flattened into dotted keys ({"a": {"b": 1}} -> {"a.b": 1})."""
    flat = {}
    for key, value in table.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(dotted_keys(value, name))
        else:
            flat[name] = value
    return flat


@dataclass
class Config:
    run: RunSection = option(RunSection())
    model: ModelSection | None = option(None)
    observations: list[ObservationSection] = option([])
    problem: dict = option({}, doc="options of the [run] problem plugin (e.g. pixelfit's bin)")
    regularizers: list[RegularizerSection] = option([])
    components: list[ComponentSection] = option([])
    solver: SolverSection = option(SolverSection())
    simulate: SimulateSection | None = option(None)
    metrics: MetricsSection | None = option(None)
    sweep: SweepSection | None = option(None, doc="the points of `xhsi sweep`; ignored by `xhsi run`")
    selection: SelectionSection | None = option(None, doc="data-driven hyper-parameters and stopping "
                                                           "(docs/selection.md); omit: select when untuned")
    # Not part of the TOML: where the config came from, and the table as read (the
    # selection asks which keys were given, and builds its candidates' configs from it).
    _source: Path | None = field(default=None, repr=False, compare=False)
    _raw: dict | None = field(default=None, repr=False, compare=False)
    _base_dir: Path | None = field(default=None, repr=False, compare=False)

    @property
    def source(self) -> Path | None:
        return self._source

    def to_dict(self) -> dict:
        return to_dict(self)

    def to_toml(self) -> str:
        return dumps_toml(self.to_dict())

    def digest(self) -> str:
        """A hash of what defines the problem, stored in checkpoints so that a resume checks
        it. Keys that only say how long or where to run (solver stopping rules, output
        folder, cadences) are left out, so a run can be resumed with a larger max_iter."""
        data = self.to_dict()
        data.pop("sweep", None)  # xhsi sweep's table; a run ignores it
        if data.get("selection") is None:  # digests of configs without the table stay what they were
            data.pop("selection", None)
        if data.get("metrics") is not None and data["metrics"].get("truth_maps") is None:  # likewise
            data["metrics"].pop("truth_maps")
        for key in ("output", "checkpoint_every", "quicklook", "memory_check"):
            data["run"].pop(key, None)
        for key in ("max_iter", "tol", "max_time_s", "report_every"):
            data["solver"].pop(key, None)
        for key in ("center_deg", "object"):  # labels of the products, not of the problem
            (data.get("model") or {}).pop(key, None)
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _plugin_tables(cfg: Config) -> Iterable[tuple[str, str, str, Any]]:
    """Each table that names a plugin: (dotted path, plugin kind, key holding the name, section)."""
    for i, reg in enumerate(cfg.regularizers):
        yield f"regularizers[{i}]", "regularizer", "name", reg
    yield "solver", "solver", "name", cfg.solver
    if cfg.simulate is not None:
        yield "simulate", "scene", "scene", cfg.simulate


def options_schema(cls: type) -> type:
    """The options dataclass a plugin class declares (``NoOptions`` when none)."""
    return getattr(cls, "Options", NoOptions)


def validate_plugins(cfg: Config, ctx: Context) -> None:
    """Check every plugin name against the registries and replace each ``options`` dict by
    an instance of the plugin's ``Options`` schema."""
    from . import plugins

    for key, kind in (("problem", "problem"), ("likelihood", "likelihood")):
        try:
            plugins.get(kind, getattr(cfg.run, key))
        except PluginError as exc:
            raise ctx.error(f"run.{key}", str(exc)) from None
    if isinstance(cfg.problem, dict):
        cfg.problem = from_dict(options_schema(plugins.get("problem", cfg.run.problem)), cfg.problem, ctx, "problem")
    for path, kind, key, section in _plugin_tables(cfg):
        try:
            cls = plugins.get(kind, getattr(section, key))
        except PluginError as exc:
            raise ctx.error(f"{path}.{key}", str(exc)) from None
        if isinstance(section.options, dict):
            section.options = from_dict(options_schema(cls), section.options, ctx, f"{path}.options")


_INDEX = re.compile(r"^(?P<key>[^.\[]+)(?:\[(?P<idx>\d+)\])?$")


def apply_override(data: dict, assignment: str) -> None:
    """Apply ``dotted.key=value`` (value parsed as TOML) to a parsed config dict. Arrays of
    tables are addressed by index (``observations[0].exposure_s`` or
    ``observations.0.exposure_s``) or, where items have a ``name``, by name
    (``observations.xmm.exposure_s``)."""
    if "=" not in assignment:
        raise ConfigError(f"--set `{assignment}`: expected KEY=VALUE, e.g. solver.max_iter=50.")
    key, text = assignment.split("=", 1)
    parts: list[str | int] = []
    for part in key.strip().split("."):
        m = _INDEX.match(part)
        if not m:
            raise ConfigError(f"--set `{assignment}`: `{part}` is not a valid key.")
        parts.append(m.group("key"))
        if m.group("idx") is not None:
            parts.append(int(m.group("idx")))
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = _list_item(node, part, assignment)
            continue
        nxt = parts[i + 1]
        if part not in node:
            node[part] = [] if isinstance(nxt, int) else {}
        node = node[part]
    last = parts[-1]
    value = parse_value(text.strip())
    if isinstance(node, list):
        if isinstance(last, int) or str(last).isdigit():
            idx = int(last)
            if idx >= len(node):
                raise ConfigError(f"--set `{assignment}`: index {idx} is past the end ({len(node)} items).")
            node[idx] = value
            return
        raise ConfigError(f"--set `{assignment}`: `{last}` needs a key after it.")
    if not isinstance(node, dict):
        raise ConfigError(f"--set `{assignment}`: cannot set a key inside a {type(node).__name__}.")
    node[last] = value


def _list_item(node: list, part, assignment: str):
    if isinstance(part, int) or str(part).isdigit():
        idx = int(part)
        if idx >= len(node):
            raise ConfigError(f"--set `{assignment}`: index {idx} is past the end ({len(node)} items).")
        return node[idx]
    for item in node:
        if isinstance(item, dict) and item.get("name") == part:
            return item
    names = [str(item.get("name")) for item in node if isinstance(item, dict)]
    raise ConfigError(f"--set `{assignment}`: no item named `{part}`; names: {', '.join(names) or 'none'}.")


def instrument_reference(value: str, base_dir: Path) -> str:
    """A shipped instrument's name as it is; a path to an instrument TOML (it ends in
    .toml or holds a /) made absolute against the config file's folder, like every other
    path of a run config."""
    text = str(value)
    if not (text.lower().endswith(".toml") or "/" in text or os.sep in text):
        return text
    path = Path(text).expanduser()
    return str(path if path.is_absolute() else base_dir / path)


def config_from_dict(data: dict, file: str = "<config>", base_dir: Path = Path("."), check_plugins: bool = True) -> Config:
    ctx = Context(file=file, base_dir=base_dir)
    cfg = from_dict(Config, data, ctx)
    cfg._raw, cfg._base_dir = copy.deepcopy(data), base_dir
    names = [o.name for o in cfg.observations]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ctx.error("observations", f"observation names must be unique; repeated: {', '.join(sorted(dup))}.")
    output = Path(cfg.run.output)
    cfg.run.output = output if output.is_absolute() else base_dir / output
    for obs in cfg.observations:
        if obs.instrument is not None:
            obs.instrument = instrument_reference(obs.instrument, base_dir)
    if check_plugins:
        validate_plugins(cfg, ctx)
    return cfg


def load_config(path: str | Path, overrides: Iterable[str] = (), check_plugins: bool = True) -> Config:
    """Read, override and validate a run config. Relative paths resolve against the config
    file's folder. Errors raise ConfigError naming the file and the dotted key."""
    path = Path(path)
    data = load_toml(path)
    for assignment in overrides:
        apply_override(data, assignment)
    cfg = config_from_dict(data, str(path), path.resolve().parent, check_plugins)
    cfg._source = path
    return cfg
