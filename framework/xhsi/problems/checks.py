"""The checks of a run config that every problem shares (``Problem.check_config``): the model
grid, the number of observations, the solver, a memory estimate, the instruments, the
counts, background and truth files, and the ``[simulate]`` scene. Each raises an XhsiError
whose message says what to change; none computes anything the size of the sky cube: files
are read for their headers, instruments for their channels and energy ranges.

The counts and background files are cross-checked against what the config says of them:
their grid (shape, energy channels), their pixel size (WCS) against the observation's
detector pixels, their ``INSTRUME``/``TELESCOP`` keys against the instrument, the counts
file's ``EXPOSURE`` against ``exposure_s`` (and ``exposure_s`` taken from it when the config
leaves it out), and the sky positions of several observations against each other.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, XhsiError

__all__ = ["model_grid", "check_observation_count", "check_solver", "check_memory", "available_memory_bytes",
           "check_observations", "check_cube_file", "check_cube_grid", "check_cube_pixels", "check_cube_instrument",
           "check_exposure", "check_field_centres", "resolve_exposures", "check_simulate", "check_truth",
           "check_components", "check_spectrum"]

GIB = 1024.0 ** 3
MIB = 1024.0 ** 2
#: What a run holds besides its arrays: the libraries (numpy, scipy, astropy, xhsi and its
#: plugins: ~60 MiB after imports, bench/memory.py) and the small arrays of a run.
BASE_BYTES = 256 * 1024 ** 2
#: ``exposure_s`` may differ from the counts file's EXPOSURE by this fraction (rounding, a
#: livetime correction well below the ~5 % calibration uncertainty of effective areas).
EXPOSURE_RTOL = 0.01
#: A cube's pixel size (its WCS) may differ from the observation's detector pixels by this fraction.
PIXEL_RTOL = 0.01
#: Observations whose field centres lie further apart than this fraction of the [model]
#: field (and than one model pixel) are refused: fusion takes them as one field.
FIELD_OFFSET_FRACTION = 0.05


def model_grid(config):
    """The run's sky grid (``xhsi.grid.ModelGrid``) from ``[model]``."""
    from ..grid import ModelGrid

    if config.model is None:
        raise ConfigError(f"{config.source}: the config has no [model] table (the sky grid: energy, pixels, "
                          "pixel_arcsec).")
    return ModelGrid.from_config(config.model)


def check_observation_count(problem_cls, config) -> None:
    """The config has as many [[observations]] as the problem takes (``observations_allowed``)."""
    n = len(config.observations)
    if n == 0:
        raise ConfigError(f"{config.source}: the config has no [[observations]].")
    lo, hi = problem_cls.observations_allowed
    if n < lo or (hi is not None and n > hi):
        want = f"exactly {lo}" if lo == hi else f"at least {lo}" if hi is None else f"{lo} to {hi}"
        hint = ": use problem = \"fusion\" for several." if problem_cls.name == "deconvolution" and n > 1 else "."
        raise ConfigError(f"{config.source}: problem `{problem_cls.name}` takes {want} observation(s), the config "
                          f"has {n}{hint}")


def check_solver(problem_cls, config) -> None:
    """The [solver] takes the unknowns the problem hands over (``Problem.solver_unknowns``
    against ``Solver.unknowns``)."""
    from .. import plugins

    want = problem_cls.solver_unknowns
    if want is None:
        return
    name = config.solver.name
    have = getattr(plugins.get("solver", name), "unknowns", "one")
    if have == want:
        return
    fitting = [n for n in plugins.available("solver") if getattr(plugins.get("solver", n), "unknowns", "one") == want]
    kinds = {"one": "one unknown", "blocks": "one unknown per map (blocks)"}
    what = kinds.get(want, f"unknowns of kind `{want}`") + (" (the sky cube, or its low-rank maps)" if want == "one"
                                                            else "")
    raise ConfigError(f"{config.source}: `solver.name`: problem `{problem_cls.name}` has {what} but solver `{name}` "
                      f"takes {kinds.get(have, f'unknowns of kind `{have}`')}; use [solver] name = "
                      f"{' or '.join(f'{n!r}' for n in fitting) or '(none installed)'}.")


# -- memory --------------------------------------------------------------------------------
def available_memory_bytes(backend_name: str) -> int | None:
    """Memory a run on ``backend_name`` can still take, in bytes: the GPU's free memory for
    cupy; else the host's ``MemAvailable`` (/proc/meminfo), lowered to what the process's
    cgroup (v2) still allows; else the free physical pages (``os.sysconf``); None when
    unknown (the memory check is then skipped)."""
    if backend_name == "cupy":
        try:
            import cupy

            return int(cupy.cuda.runtime.memGetInfo()[0])
        except Exception:  # no cupy, no GPU: the run itself will say so
            return None
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        try:
            available = int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (AttributeError, ValueError, OSError):
            return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
            available = min(available, max(int(limit) - used, 0))
    except (OSError, ValueError):
        pass
    return available


def check_memory(problem_cls, config) -> None:
    """Refuse a run whose memory estimate (``Problem.memory_estimate``) exceeds the
    available memory. Works from the [model] numbers alone, before any grid is built (no
    [model]: ``model_grid`` says so)."""
    if config.model is None or not config.run.memory_check:
        return
    estimate = problem_cls.memory_estimate(config)
    available = available_memory_bytes(config.run.backend)
    if available is None or estimate <= available:
        return
    n_e, (ny, nx) = config.model.energy.bins, config.model.pixels
    cube = n_e * ny * nx * np.dtype(config.run.dtype).itemsize
    cubes = (estimate - BASE_BYTES) / cube
    where = "GPU memory" if config.run.backend == "cupy" else "memory"
    single = ' or use dtype = "float32"' if config.run.dtype == "float64" else ""
    raise XhsiError(
        f"{config.source}: this run needs about {_size(estimate)} of {where}, more than the {_size(available)} "
        f"available now. (A rough estimate: ~{cubes:.0f} arrays the size of the sky cube, {n_e} energy bins × {ny} "
        f"× {nx} pixels in {config.run.dtype} = {_size(cube)} each, held by problem `{problem_cls.name}`, its "
        f"solver and {len(config.observations)} observation(s).) Reduce [model] energy.bins or pixels{single}, "
        "run on a machine with more memory, or, if the estimate is wrong for this run, set [run] memory_check = "
        "false (--set run.memory_check=false) to run anyway.")


def _size(nbytes: float) -> str:
    value, unit = (nbytes / GIB, "GiB") if nbytes >= 0.1 * GIB else (nbytes / MIB, "MiB")
    return f"{value:.0f} {unit}" if value >= 100 else f"{value:.3g} {unit}"


# -- observations and files ------------------------------------------------------------------
def check_observations(config, grid) -> None:
    """Per [[observations]] table: the instrument (name or file) loads, its rebin factors fit
    the grid, the grid lies inside its responses, and its counts and background files exist
    and hold cubes on its channels and detector pixels, of its instrument
    (:func:`check_cube_pixels`, :func:`check_cube_instrument`); ``exposure_s`` agrees with
    the counts file's EXPOSURE or, when left out, is taken from it (:func:`check_exposure`:
    the config is completed in place, so config.resolved.toml records the value); without a
    counts file, a [simulate] table must say how to make them and ``exposure_s`` is
    required. Then the observations' fields must coincide (:func:`check_field_centres`)."""
    from ..instruments import load_instrument

    centres = []
    for i, obs in enumerate(config.observations):
        where = f"{config.source}: observations[{i}] (`{obs.name}`)"
        if obs.spectrum is not None:
            if obs.background_model == "wstat" and config.run.problem != "pixelfit":
                raise ConfigError(f"{where}.background_model: \"wstat\" is fitted by problem = \"pixelfit\" only; "
                                  f"use \"scaled\" with `{config.run.problem}`.")
            check_spectrum(obs, grid, where)
            continue
        try:
            instrument = load_instrument(obs.instrument)
        except XhsiError as exc:
            raise type(exc)(f"{where}.instrument: {exc}") from None
        r = obs.spatial_rebin
        if grid.ny % r or grid.nx % r:
            raise ConfigError(f"{where}.spatial_rebin: {r} does not divide the [model] pixels {grid.ny} x {grid.nx}; "
                              "choose pixels that are a multiple of it.")
        try:
            channels = instrument.check_model_grid(grid.energy_edges_kev, obs.spectral_rebin)
        except XhsiError as exc:
            raise type(exc)(f"{where}: {exc}") from None
        shape = (channels.size - 1, grid.ny // r, grid.nx // r)
        for what in ("counts", "background"):
            path = getattr(obs, what)
            if path is None:
                continue
            if not Path(path).is_file():
                raise DataError(f"{where}: {what} file {path} does not exist.")
            info = check_cube_file(path, shape, channels, obs.name, what)
            check_cube_pixels(path, info.header, grid.pixel_arcsec, r, obs.name, what)
            check_cube_instrument(path, info.header, instrument, obs.name, what)
            if what == "counts":
                check_exposure(obs, path, info.header, where)
                centre = _field_centre(path, info)
                if centre is not None:
                    centres.append((obs.name, path, centre))
        if obs.counts is None and config.simulate is None:
            raise ConfigError(f"{where} has no `counts` file and the config has no [simulate] table to simulate them: "
                              "give counts = \"file.fits\" or add [simulate] scene = \"...\".")
        if obs.exposure_s is None:
            raise ConfigError(_no_exposure(where))
    check_field_centres(config, grid, centres)


def check_spectrum(obs, grid, where: str) -> None:
    """An observation given as an OGIP spectrum (``spectrum``): the PHA, its RESPFILE,
    ANCRFILE and BACKFILE exist and match (channels, energies), the notice ranges lie in the
    response's band, the [model] grid is one pixel inside the responses' energies;
    ``exposure_s`` is taken from the PHA's EXPOSURE when left out, else checked against it."""
    from ..instruments.spectrum import spectrum_observation

    if not Path(obs.spectrum).is_file():
        raise DataError(f"{where}.spectrum: the file {obs.spectrum} does not exist.")
    if grid is not None and (grid.ny, grid.nx) != (1, 1):
        raise ConfigError(f"{where}.spectrum: a spectrum is one pixel; the [model] grid has {grid.ny} x {grid.nx} "
                          "pixels: set [model] pixels = [1, 1] (a spectrum inside a larger model is not supported yet).")
    spec = spectrum_observation(obs, 1.0 if grid is None else grid.pixel_arcsec, where)
    if grid is not None:
        try:
            spec.instrument.check_model_grid(grid.energy_edges_kev, None)
        except XhsiError as exc:
            raise type(exc)(f"{where}: the spectrum's responses: {exc}") from None
    exposure = spec.spectrum.exposure
    if obs.exposure_s is None:
        obs.exposure_s = exposure
    elif abs(obs.exposure_s - exposure) > EXPOSURE_RTOL * exposure:
        raise ConfigError(f"{where}.exposure_s: {obs.exposure_s} s, but the spectrum {obs.spectrum} has EXPOSURE = "
                          f"{exposure} s; leave exposure_s out to use the file's.")


def _no_exposure(where: str) -> str:
    return (f"{where}.exposure_s: is required when the counts are simulated (no `counts` file to read EXPOSURE "
            "from): give exposure_s = ... in s.")


def check_cube_file(path, shape, channel_edges_kev, name: str, what: str):
    """The cube file ``path`` (read for its headers and EBOUNDS only) has ``shape`` and
    channels ``channel_edges_kev`` (see :func:`check_cube_grid`); returns what it read
    (``xhsi.io.cubes.CubeInfo``)."""
    from ..io.cubes import read_cube_info

    info = read_cube_info(path)
    check_cube_grid(path, info.shape, info.energy_edges_kev, shape, channel_edges_kev, name, what)
    return info


def _sky_wcs(path, header, position: bool):
    """The celestial WCS of a cube header's axes 1-2, or None when it has none (no RA/Dec or
    other sky CTYPE) or, for ``position``, when the file says its position is arbitrary
    (``POSKNOWN = F``: its pixel sizes still hold). The sky checks skip a cube without one."""
    from ..io.cubes import header_celestial_wcs

    if not position and "POSKNOWN" in header:
        header = header.copy()
        del header["POSKNOWN"]
    return header_celestial_wcs(header, path)


def check_cube_pixels(path, header, model_pixel_arcsec: float, spatial_rebin: int, name: str, what: str) -> None:
    """The pixel size of a cube's celestial WCS (CDELT1/CDELT2 or the CD matrix) equals the
    observation's detector pixel, ``model_pixel_arcsec`` × ``spatial_rebin`` (to
    ``PIXEL_RTOL``); a cube without a celestial WCS is not checked."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    wcs = _sky_wcs(path, header, position=False)
    if wcs is None:
        return
    sx, sy = (float(v) * 3600.0 for v in proj_plane_pixel_scales(wcs))
    expected = model_pixel_arcsec * spatial_rebin
    if max(abs(sx - expected), abs(sy - expected)) <= PIXEL_RTOL * expected:
        return
    size = f"{sx:.4g} arcsec" if np.isclose(sx, sy, rtol=PIXEL_RTOL) else f"{sx:.4g} x {sy:.4g} arcsec"
    raise DataError(
        f"{path}: the {what} cube of observation `{name}` has pixels of {size} (its WCS: CDELT1/CDELT2) but the "
        f"observation's detector pixels are {expected:.4g} arcsec ([model] pixel_arcsec = {model_pixel_arcsec:g} × "
        f"spatial_rebin = {spatial_rebin}): set [model] pixel_arcsec and spatial_rebin to match the file, or bin "
        "the events again (xhsi bin --spatial-bin).")


def _norm(text) -> str:
    return re.sub(r"[^a-z0-9]", "", str(text).lower())


def _names(value, candidates, inside: bool = False) -> bool:
    """``value`` (a header key's) names one of ``candidates`` (normalised: lower case,
    letters and digits): equal, or one a prefix of the other when both have 3+ characters
    ("ACIS" and "ACIS-S3", "XMM" and "XMM-Newton"), or with ``inside`` anywhere in the other
    ("NewAthena" and "Athena")."""
    v = _norm(value)
    for c in (_norm(c) for c in candidates):
        if not v or not c:
            continue
        if v == c or (min(len(v), len(c)) >= 3 and (c.startswith(v) or v.startswith(c)
                                                      or (inside and (v in c or c in v)))):
            return True
    return False


def _known_instruments() -> list[dict]:
    """The [instrument] tables (name, mission, detector) of every registered instrument,
    read from their TOML files without loading their responses."""
    from .. import plugins
    from ..tomlio import load_toml

    out = []
    for name in plugins.available("instrument"):
        try:
            table = load_toml(plugins.get("instrument", name)).get("instrument", {})
        except XhsiError:
            continue
        out.append({"name": table.get("name", name), "mission": table.get("mission", ""),
                    "detector": table.get("detector", "")})
    return out


def check_cube_instrument(path, header, instrument, name: str, what: str) -> None:
    """A cube's ``TELESCOP``, ``INSTRUME`` and ``XHSIINST`` keys do not contradict the
    observation's instrument: TELESCOP must name its [instrument] mission ("XMM" for
    "XMM-Newton"); an INSTRUME or XHSIINST that names another registered instrument (its
    xhsi name or detector) on another detector is refused. Values that name nothing known
    ("EPN" for EPIC-pn), or an instrument on the same detector (a copy of a shipped TOML),
    pass."""
    fix = ("check that the file belongs to this observation; if it does, correct the file's key or the "
           "instrument TOML's [instrument] table.")
    telescope = str(header.get("TELESCOP") or "").strip()
    if telescope and instrument.mission and not _names(telescope, [instrument.mission], inside=True):
        raise DataError(f"{path}: the {what} cube of observation `{name}` says TELESCOP = '{telescope}' but its "
                        f"instrument `{instrument.name}` is on {instrument.mission}: {fix}")
    own = [instrument.name, instrument.detector]
    for key in ("XHSIINST", "INSTRUME"):
        value = str(header.get(key) or "").strip()
        if not value or _names(value, own):
            continue
        for other in _known_instruments():
            if _names(value, [other["name"], other["detector"]]) and not _names(other["name"], [instrument.name]) \
                    and not _names(other["detector"] or other["name"], [instrument.detector or instrument.name]):
                raise DataError(
                    f"{path}: the {what} cube of observation `{name}` says {key} = '{value}', which is "
                    f"`{other['name']}` ({other['mission']} {other['detector']}), but the observation's instrument "
                    f"is `{instrument.name}` ({instrument.mission} {instrument.detector}): {fix}")


def _file_exposure(path, header) -> float | None:
    """The EXPOSURE key of a counts header in s (None when absent); DataError when it is not
    a positive number."""
    value = header.get("EXPOSURE")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not (np.isfinite(seconds) and seconds > 0):
        raise DataError(f"{path}: EXPOSURE = {value!r} is not a positive number of seconds; correct the file's "
                        "EXPOSURE key.")
    return seconds


def check_exposure(obs, path, header, where: str) -> None:
    """``obs.exposure_s`` against the counts file's EXPOSURE: DataError when they differ by
    more than ``EXPOSURE_RTOL`` (the flux would be off by their ratio); when the config
    leaves exposure_s out, it is set from EXPOSURE (ConfigError when the file has none)."""
    file_s = _file_exposure(path, header)
    if obs.exposure_s is None:
        if file_s is None:
            raise ConfigError(f"{where}.exposure_s: not given, and the counts file {path} has no EXPOSURE key to take "
                              "it from: give exposure_s = ... in s.")
        obs.exposure_s = file_s
        return
    if file_s is not None and abs(obs.exposure_s - file_s) > EXPOSURE_RTOL * file_s:
        raise DataError(f"{where}.exposure_s = {obs.exposure_s:g} s but its counts file {path} says EXPOSURE = "
                        f"{file_s:g} s (ratio {obs.exposure_s / file_s:.3g}): the fluxes would be off by that "
                        f"factor. Leave exposure_s out to use the file's, or correct the one that is wrong "
                        f"(differences up to {EXPOSURE_RTOL:.0%} are accepted).")


def resolve_exposures(config) -> None:
    """Set each [[observations]] ``exposure_s`` left out from its counts file's EXPOSURE (what
    :func:`check_observations` does, for a config that did not pass through it); ConfigError
    when there is neither."""
    from ..io.cubes import read_cube_info

    for i, obs in enumerate(config.observations):
        if obs.exposure_s is not None:
            continue
        where = f"{config.source}: observations[{i}] (`{obs.name}`)"
        if obs.spectrum is not None:
            check_spectrum(obs, None, where)
            continue
        if obs.counts is None:
            raise ConfigError(_no_exposure(where))
        if not Path(obs.counts).is_file():
            raise ConfigError(f"{where}.exposure_s: not given, and the counts file {obs.counts} to take it from does "
                              "not exist: give exposure_s = ... in s.")
        check_exposure(obs, obs.counts, read_cube_info(obs.counts).header, where)


def _field_centre(path, info):
    """The sky position (astropy SkyCoord) of the centre of a cube's field, or None when
    its header has no celestial WCS."""
    wcs = _sky_wcs(path, info.header, position=True)
    if wcs is None:
        return None
    from astropy.wcs.utils import pixel_to_skycoord

    _, ny, nx = info.shape
    try:
        return pixel_to_skycoord((nx - 1) / 2.0, (ny - 1) / 2.0, wcs, origin=0)
    except Exception as exc:  # an unknown frame or projection: not comparable
        raise DataError(f"{path}: cannot place the cube's centre on the sky from its WCS ({exc}).") from None


def check_field_centres(config, grid, centres) -> None:
    """The counts cubes of several observations (``centres``: (name, path, SkyCoord of the
    field centre)) cover one field: their centres lie within ``FIELD_OFFSET_FRACTION`` of
    the [model] field (at least one model pixel) of the first one's. xhsi does not
    reproject, so a larger offset is refused, saying by how much."""
    if len(centres) < 2:
        return
    field = min(grid.ny, grid.nx) * grid.pixel_arcsec
    limit = max(FIELD_OFFSET_FRACTION * field, grid.pixel_arcsec)
    name0, path0, c0 = centres[0]
    for name, path, c in centres[1:]:
        try:
            offset = float(c0.separation(c).arcsec)
        except Exception as exc:  # frames astropy cannot transform between
            raise DataError(f"{config.source}: cannot compare the sky positions of observations `{name0}` and "
                            f"`{name}` ({exc}).") from None
        if offset <= limit:
            continue
        raise DataError(
            f"{config.source}: observations `{name0}` ({path0}) and `{name}` ({path}) point at different sky positions: "
            f"their field centres are {offset:.4g} arcsec apart ({offset / grid.pixel_arcsec:.3g} model pixels, "
            f"{offset / field:.0%} of the {field:.4g} arcsec [model] field; at most {limit:.3g} arcsec is accepted). "
            "The observations of one run must cover the same field: xhsi does not reproject cubes, so bin the "
            "events of each on the same sky region (xhsi bin --crop).")


def check_cube_grid(path, shape, edges, expected_shape, expected_edges, name: str, what: str) -> None:
    """DataError when the ``what`` cube of observation ``name`` (``shape``, plane ``edges``
    keV) is not on the observation's channels and detector pixels."""
    if tuple(shape) != tuple(expected_shape):
        raise DataError(
            f"{path}: the {what} cube of observation `{name}` has shape {tuple(shape)} but its instrument and "
            f"rebin factors give {tuple(expected_shape)} (channels, ny, nx): check spatial_rebin, "
            "spectral_rebin and the [model] grid.")
    if expected_edges is not None and not np.allclose(edges, expected_edges, rtol=1e-5, atol=1e-6):
        raise DataError(f"{path}: the {what} cube's energy channels (EBOUNDS, {edges[0]:.4g}–{edges[-1]:.4g} keV) "
                        f"differ from those of observation `{name}` ({expected_edges[0]:.4g}–"
                        f"{expected_edges[-1]:.4g} keV).")


def check_simulate(config, grid) -> None:
    """The [simulate] scene's own checks against the grid (``Scene.check``: e.g. the
    ``fits`` scene's file exists and maps onto the grid); nothing is drawn."""
    from .. import plugins

    if config.simulate is None:
        return
    scene = plugins.get("scene", config.simulate.scene)(config.simulate.options)
    try:
        scene.check(grid)
    except XhsiError as exc:
        raise type(exc)(f"{config.source}: [simulate]: {exc}") from None


def check_truth(config, grid) -> None:
    """The [metrics] truth cube exists and is on the model grid."""
    from ..io.cubes import read_cube_grid

    path = config.metrics.truth if config.metrics is not None else None
    if path is None:
        return
    if not Path(path).is_file():
        raise DataError(f"{config.source}: metrics.truth {path} does not exist.")
    shape, _ = read_cube_grid(path)
    if tuple(shape) != tuple(grid.shape):
        raise DataError(f"{config.source}: metrics.truth {path} has shape {shape}, the [model] grid is "
                        f"{grid.shape} (energy bins, ny, nx).")


def check_components(config, grid) -> None:
    """The dry run of [[components]]: each spectral model built and set up on the grid's
    energies (in numpy), its parameters, init values, bounds and links resolved, so that a
    misspelt model or parameter is refused before any data is read."""
    from ..backend import Backend
    from .components import config_dir, resolve_components

    try:
        resolve_components(config.components, grid, Backend("numpy", config.run.dtype), str(config.source),
                           config_dir(config))
    except DataError as exc:  # a model's file (a surrogate's): the ConfigErrors name their key already
        raise DataError(f"{config.source}: [[components]]: {exc}") from None
