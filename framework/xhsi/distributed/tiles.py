"""``xhsi tiles``: a field too large for one run, solved as overlapping tiles on Dask and
blended into one cube (docs/scaling.md).

**Tiles.** The model grid's pixels are cut into *cores* of ``tile`` × ``tile`` pixels (the
last row and column of cores take what is left); each tile is its core grown by
``overlap`` pixels on every side, clipped to the field. Core edges, tile edges and the
overlap are multiples of every observation's ``spatial_rebin`` (their least common
multiple), so that each tile cuts whole detector pixels out of every observation.

**Overlap.** A problem that solves each pixel alone (``Problem.pixel_local``: ``pixelfit``)
is cut with no overlap, along whole ``[problem] bin`` blocks. Otherwise a tile's solution is wrong near its edges, where the sky outside the tile
still sends counts in through the PSF and the regulariser's filters see a border. The
reach of that error is the largest radius holding 99 % of a PSF's
flux (model pixels) plus the spatial half-support of the regularisers (2·(2^J − 1) for J starlet scales, 1
for a gradient penalty). An overlap below it is refused. The default overlap is the reach plus a blending band of a quarter of it (at
least 2 pixels). Blending weights are 1 inside a tile's core, 0 within the reach of its edges,
and a raised-cosine ramp in between (half-width ``overlap − reach``, centred on the core
edge), so the weights of neighbouring tiles sum to 1 and no pixel within the reach of a
tile's edge counts.

**Selection.** A config that leaves its options to the data (``selection_reason``: no
[[regularizers]], regularisers named without options, ``select = "auto"``) chooses once for
the whole field: its tiles' configs select as it does (``untuned_table``), the tile with the
most counts runs the selection (its candidate fits as tasks on the cluster) and its final
fit first, and every other tile then runs that
choice (the candidate, the stopping iteration, the final fit's settings: run.json
``selection`` ``run_overrides``), recorded in the mosaic's ``tiles.json``. Tiles that each
chose would blend estimates made with different options; tiles that did not select at all
would run the unregularised defaults. The overlap covers the largest reach among the
candidates' regularisers.

**Data.** Counts (simulated once for the whole field when the config has no counts files,
``xhsi.runner.simulate``), backgrounds and the truth are cut to each tile's footprint with
their sky WCS; each tile is a normal run (``xhsi.runner.run``: all-or-nothing folder,
checkpoints) of a config written next to its inputs, run as one Dask task by the task of
``xhsi sweep`` (:func:`xhsi.distributed.sweep.run_point`): completed tiles are skipped on
a re-run, a lost worker's tile is resumed. Observations with an OGIP ``spectrum`` (no sky)
cannot be tiled. Layout of ``OUT``: ``tiles/NNN/`` (``config.toml``, ``inputs/``,
``run/``) and ``mosaic/`` (the blended ``result.fits``, ``maps.fits`` when the problem
makes maps, ``tiles.json``, ``metrics.json`` when the truth is known), published at once.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import ConfigError

TILES, MOSAIC = "tiles", "mosaic"


@dataclass(frozen=True)
class Tile:
    """Tile ``index``: fine-pixel rows ``y`` and columns ``x`` ([start, stop)) of the field,
    and its core ``core_y``/``core_x`` (the pixels it owns)."""

    index: int
    y: tuple[int, int]
    x: tuple[int, int]
    core_y: tuple[int, int]
    core_x: tuple[int, int]

    @property
    def name(self) -> str:
        return f"{self.index:03d}"

    @property
    def shape(self) -> tuple[int, int]:
        return (self.y[1] - self.y[0], self.x[1] - self.x[0])


@dataclass
class TilePlan:
    config: Path
    overrides: list[str]
    out: Path
    field: tuple[int, int]
    tile: int
    overlap: int
    reach: int
    unit: int
    psf_reach: int = 0
    tiles: list[Tile] = field(default_factory=list)
    #: (counts, backgrounds, truth) of the whole field, once :func:`prepare_tiles` found them
    inputs: tuple | None = None
    #: Why the config selects (``selection_reason``), or None: then one tile runs the
    #: selection and every other tile the choice (``tiles_run.run_tiles``)
    selects: str | None = None
    #: What ``tiles_run.run_tiles`` chose: {"tile", "chosen", "run_overrides"} (tiles.json)
    selection: dict | None = None

    @property
    def ramp(self) -> int:
        """Half-width (pixels) of the blending ramp around each core edge."""
        return self.overlap - self.reach

    def folder(self, tile: Tile) -> Path:
        return self.out / TILES / tile.name

    def describe(self) -> str:
        ny, nx = self.field
        sizes = sorted({t.shape for t in self.tiles})
        return (f"xhsi tiles: {len(self.tiles)} tiles over {ny} x {nx} pixels: cores of {self.tile} px, overlap "
                f"{self.overlap} px (edge reach {self.reach} px: PSF {self.psf_reach} + regulariser {self.reach - self.psf_reach}; blending ramp ±{self.ramp} px), "
                f"tile sizes {', '.join(f'{a}x{b}' for a, b in sizes)}; outputs in {self.out / MOSAIC}"
                + (f"\n  the config selects ({self.selects}): the tile with the most counts chooses, once, for "
                   "every tile" if self.selects else ""))


# -- the plan ------------------------------------------------------------------------------
def regulariser_reach(regularizers, where: str = "the config") -> int:
    """The largest spatial reach (model pixels) the regularisers declare
    (``Regularizer.spatial_reach``: 2·(2^J − 1) for J starlet scales, 1 for a gradient
    penalty); ConfigError for one that declares none, since its edge effects are unknown."""
    reach = 0
    for i, reg in enumerate(regularizers):
        mine = reg.spatial_reach()
        if mine is None:
            raise ConfigError(f"{where}: regularizers[{i}] (`{reg.name}`) does not say how far it couples "
                              "neighbouring pixels (Regularizer.spatial_reach), so the tiles' overlap cannot be "
                              "computed: give --overlap in model pixels (at least its filters' half-width).")
        reach = max(reach, int(mine))
    return reach


#: The share of a PSF's flux inside the radius a tile's edge effects are taken to reach.
PSF_ENCLOSED = 0.99


def enclosed_radius(kernel: np.ndarray, fraction: float = PSF_ENCLOSED) -> int:
    """The radius (pixels, rounded up) of the disc about a kernel's centre pixel that holds
    ``fraction`` of its flux (the largest over the planes of an energy-dependent kernel)."""
    kernel = np.asarray(kernel, dtype=np.float64)
    planes = kernel.reshape((-1,) + kernel.shape[-2:])
    hy, hx = (planes.shape[1] - 1) // 2, (planes.shape[2] - 1) // 2
    yy, xx = np.mgrid[-hy:hy + 1, -hx:hx + 1]
    r = np.hypot(yy, xx).ravel()
    order = np.argsort(r, kind="stable")
    radius = 0.0
    for plane in planes:
        cum = np.cumsum(np.abs(plane).ravel()[order])
        radius = max(radius, r[order][min(r.size - 1, int(np.searchsorted(cum, fraction * cum[-1])))])
    return int(math.ceil(radius))


def psf_reach(cfg, grid) -> int:
    """The largest radius holding 99 % of a PSF's flux, in model pixels, over the config's
    observations (their ``psf_size`` crops included)."""
    from ..instruments import load_instrument

    reach = 0
    for obs in cfg.observations:
        instrument = load_instrument(obs.instrument)
        half = None if obs.psf_size is None else (obs.psf_size // 2, obs.psf_size // 2)
        energies = grid.energy_mid_kev[:: max(1, grid.n_e // 8)] if instrument.psf_energy_dependent else None
        reach = max(reach, enclosed_radius(instrument.psf_image(grid.pixel_arcsec, energies, max_half=half)))
    return reach


def _round_up(value: int, unit: int) -> int:
    return unit * math.ceil(value / unit)


def _spans(n: int, core: int, overlap: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    spans = []
    for start in range(0, n, core):
        stop = min(n, start + core)
        spans.append(((max(0, start - overlap), min(n, stop + overlap)), (start, stop)))
    return spans


def plan_tiles(config: str | Path, tile: int, overlap: int | None = None, overrides: Iterable[str] = (),
               out: str | Path | None = None) -> TilePlan:
    """Check ``config`` as ``xhsi validate`` does and cut its field into tiles; every
    refusal (a spectrum observation, a tile not larger than the overlap, an overlap below
    the edge reach, a field that fits one tile) is an XhsiError raised before anything runs."""
    from .. import plugins
    from ..config import load_config
    from ..problems.checks import model_grid
    from ..runner import check_config
    from ..selection.candidates import candidate_config, candidates, selection_reason

    overrides = list(overrides)
    cfg = load_config(config, overrides)
    regularizers = check_config(cfg)
    selects = selection_reason(cfg)
    if selects is not None:  # the overlap must hold whichever candidate the selection chooses
        regularizers = regularizers + [reg for cand in candidates(cfg)
                                       for reg in check_config(candidate_config(cfg, cand.overrides))]
    for i, obs in enumerate(cfg.observations):
        if obs.spectrum is not None:
            raise ConfigError(f"{config}: observations[{i}] (`{obs.name}`) is an OGIP spectrum, which has no sky "
                              "pixels to cut into tiles: tile only observations with counts cubes.")
    grid = model_grid(cfg)
    unit = math.lcm(*[obs.spatial_rebin for obs in cfg.observations]) if cfg.observations else 1
    local = plugins.get("problem", cfg.run.problem).pixel_local
    if local:  # blocks of [problem] bin detector pixels are fitted alone: never cut one
        options = cfg.problem or {}  # the validated options of the problem, or its table
        unit *= int(options.get("bin", 1) if isinstance(options, dict) else getattr(options, "bin", 1))
    for what, n in (("rows", grid.ny), ("columns", grid.nx)):
        if n % unit:
            raise ConfigError(f"{config}: the model grid's {n} {what} are not a multiple of {unit}, the least common "
                              "multiple of the observations' spatial_rebin: they cannot be cut into whole detector "
                              "pixels.")
    psf = 0 if local else psf_reach(cfg, grid)
    if local:
        reach = 0
    elif overlap is not None and any(r.spatial_reach() is None for r in regularizers):
        reach = psf  # a regulariser of unknown reach: the user's --overlap is taken as it is
    else:
        reach = psf + regulariser_reach(regularizers, str(config))
    if tile < 1:
        raise ConfigError(f"--tile must be at least 1 pixel, got {tile}.")
    if overlap is None:
        overlap = 0 if local else _round_up(reach + max(2, reach // 4), unit)
    elif overlap < reach:
        raise ConfigError(f"--overlap {overlap} is below the reach of a tile's edge effects, {reach} model pixels "
                          "(the PSF's half-width plus the regularisers' spatial support): give at least that, or "
                          "leave --overlap out (default: the reach and a quarter).")
    elif overlap % unit:
        raise ConfigError(f"--overlap {overlap} must be a multiple of {unit} pixels (the observations' "
                          "spatial_rebin), e.g. {_round_up(overlap, unit)}.")
    if tile % unit:
        raise ConfigError(f"--tile {tile} must be a multiple of {unit} pixels (the observations' spatial_rebin), "
                          f"e.g. {_round_up(tile, unit)}.")
    if tile <= overlap:
        raise ConfigError(f"--tile {tile} is not larger than the overlap ({overlap} px): each tile would be mostly "
                          "overlap. Use larger tiles, or a smaller --overlap (at least the edge reach, "
                          f"{reach} px).")
    if tile >= grid.ny and tile >= grid.nx:
        raise ConfigError(f"the {grid.ny} x {grid.nx} pixel field fits in one tile of {tile} px: run it with "
                          "`xhsi run` instead, or give a smaller --tile.")
    out = Path(out) if out is not None else Path(str(cfg.run.output) + "_tiles")
    plan = TilePlan(Path(config), overrides, out, (grid.ny, grid.nx), tile, overlap, reach, unit, psf,
                    selects=selects)
    for (y, cy) in _spans(grid.ny, tile, overlap):
        for (x, cx) in _spans(grid.nx, tile, overlap):
            plan.tiles.append(Tile(len(plan.tiles), y, x, cy, cx))
    return plan


# -- weights -------------------------------------------------------------------------------
def axis_weights(span: tuple[int, int], core: tuple[int, int], n: int, ramp: int) -> np.ndarray:
    """1-D blending weights over ``span`` for the tile that owns ``core``: 1 in the core
    away from its edges, a raised cosine from 1 to 0 over ``[edge − ramp, edge + ramp)``
    at each core edge inside the field (none at the field's border), 0 beyond."""
    pos = np.arange(span[0], span[1]) + 0.5  # pixel centres
    w = np.ones(pos.size)
    for edge, sign in ((core[0], -1.0), (core[1], 1.0)):
        if edge in (0, n):
            continue
        d = sign * (pos - edge)  # > 0 outside the core
        if ramp == 0:
            w = np.where(d > 0, 0.0, w)
        else:
            t = np.clip((d + ramp) / (2 * ramp), 0.0, 1.0)
            w = w * np.where(t < 1.0, np.cos(0.5 * np.pi * t) ** 2, 0.0)
    return w


def tile_weights(plan: TilePlan, tile: Tile) -> np.ndarray:
    ny, nx = plan.field
    return np.outer(axis_weights(tile.y, tile.core_y, ny, plan.ramp), axis_weights(tile.x, tile.core_x, nx, plan.ramp))


def blend(plan: TilePlan, images: dict[int, np.ndarray]) -> np.ndarray:
    """Σ_t w_t·image_t / Σ_t w_t over the field; ``images`` {tile index: (..., ty, tx)}."""
    first = next(iter(images.values()))
    num = np.zeros(first.shape[:-2] + plan.field)
    den = np.zeros(plan.field)
    for tile in plan.tiles:
        w = tile_weights(plan, tile)
        ys, xs = slice(*tile.y), slice(*tile.x)
        num[..., ys, xs] += w * np.asarray(images[tile.index], dtype=np.float64)
        den[ys, xs] += w
    return num / den


# -- inputs --------------------------------------------------------------------------------
def _cut(path: Path, tile: Tile, rebin: int, target: Path) -> Path:
    from ..io.cubes import read_cube, write_cube

    cube = read_cube(path)
    ys = slice(tile.y[0] // rebin, tile.y[1] // rebin)
    xs = slice(tile.x[0] // rebin, tile.x[1] // rebin)
    wcs = None
    if cube.wcs is not None:  # the same sky, its reference pixel shifted by the cut
        wcs = cube.wcs.deepcopy()
        wcs.wcs.crpix = [wcs.wcs.crpix[0] - xs.start, wcs.wcs.crpix[1] - ys.start]
    pixel = float(cube.header.get("PIXARCS", 0.0) or 0.0) if cube.header is not None else 0.0
    write_cube(target, cube.data[:, ys, xs], cube.energy_edges_kev, wcs=wcs, pixel_arcsec=pixel or None,
               exposure_s=cube.exposure_s, instrument=cube.instrument, bunit=cube.bunit or "count",
               channels=cube.channels)
    return target


def full_field_inputs(plan: TilePlan, cfg) -> tuple[dict[str, Path], dict[str, Path], Path | None]:
    """The whole field's counts and backgrounds per observation, and its truth if known:
    the config's files, or simulated once into ``OUT/tiles/field`` (kept for re-runs)."""
    from ..runner import simulate

    counts = {o.name: o.counts for o in cfg.observations}
    background = {o.name: o.background for o in cfg.observations if o.background is not None}
    truth = cfg.metrics.truth if cfg.metrics is not None else None
    if any(path is None for path in counts.values()):
        folder = plan.out / TILES / "field"
        files = [folder / "truth.fits"] + [folder / f"{name}_counts.fits" for name in counts]
        if not all(f.is_file() for f in files):
            simulate(cfg, folder, overwrite=True)
        counts = {name: folder / f"{name}_counts.fits" for name in counts}
        truth = folder / "truth.fits"
    return counts, background, truth


def write_tile_inputs(plan: TilePlan, cfg, tile: Tile, counts, background, truth) -> Path:
    """Cut the field's files to ``tile`` and write its config; returns the config's path."""
    from ..results import atomic_write_text
    from ..selection.candidates import untuned_table
    from ..tomlio import dumps_toml

    folder = plan.folder(tile)
    inputs = folder / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    data = copy.deepcopy(untuned_table(cfg))  # a config that selects writes tiles that select
    data["model"]["pixels"] = list(tile.shape)
    data["model"].pop("center_deg", None)  # the cut counts carry the sky position
    data.pop("simulate", None)
    data.pop("sweep", None)
    data["run"].update(output=str((folder / "run").resolve()), quicklook=False)
    for obs, table in zip(cfg.observations, data["observations"]):
        table["counts"] = str(_cut(Path(counts[obs.name]), tile, obs.spatial_rebin,
                                   inputs / f"{obs.name}_counts.fits").resolve())
        if obs.name in background:
            table["background"] = str(_cut(Path(background[obs.name]), tile, obs.spatial_rebin,
                                           inputs / f"{obs.name}_background.fits").resolve())
    _cut_start_file(cfg, data, tile, inputs)
    data.pop("metrics", None)
    if truth is not None:
        data["metrics"] = {"truth": str(_cut(Path(truth), tile, 1, inputs / "truth.fits").resolve())}
    path = folder / "config.toml"
    atomic_write_text(path, dumps_toml(data))
    return path


def _cut_start_file(cfg, data: dict, tile: Tile, inputs: Path) -> None:
    start = (data.get("problem") or {}).get("start_file")
    if start:
        data["problem"]["start_file"] = str(_cut(Path(start), tile, 1, inputs / "start.fits").resolve())


def prepare_tiles(plan: TilePlan) -> list[Path]:
    """Cut the inputs of every tile and write its config (idempotent: a re-run rewrites the
    same files); returns the tiles' config paths."""
    from ..config import load_config

    cfg = load_config(plan.config, plan.overrides)
    plan.inputs = full_field_inputs(plan, cfg)
    counts, background, truth = plan.inputs
    return [write_tile_inputs(plan, cfg, tile, counts, background, truth) for tile in plan.tiles]
