"""The checks of a run config that every problem shares (``Problem.check_config``): the model
grid, the number of observations, the solver, a memory estimate, the instruments, the
counts, background and truth files, and the ``[simulate]`` scene. Each raises an XhsiError
whose message says what to change; none computes anything the size of the sky cube: files
are read for their headers, instruments for their channels and energy ranges.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, XhsiError

__all__ = ["model_grid", "check_observation_count", "check_solver", "check_memory", "available_memory_bytes",
           "check_observations", "check_cube_file", "check_cube_grid", "check_simulate", "check_truth",
           "check_components"]

GIB = 1024.0 ** 3
MIB = 1024.0 ** 2
#: What a run holds besides its arrays: the libraries (numpy, scipy, astropy, xhsi and its
#: plugins: ~60 MiB after imports, bench/memory.py) and the small arrays of a run.
BASE_BYTES = 256 * 1024 ** 2


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
    if config.model is None:
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
        f"solver and {len(config.observations)} observation(s).) Reduce [model] energy.bins or pixels{single}, or "
        "run on a machine with more memory.")


def _size(nbytes: float) -> str:
    value, unit = (nbytes / GIB, "GiB") if nbytes >= 0.1 * GIB else (nbytes / MIB, "MiB")
    return f"{value:.0f} {unit}" if value >= 100 else f"{value:.3g} {unit}"


# -- observations and files ------------------------------------------------------------------
def check_observations(config, grid) -> None:
    """Per [[observations]] table: the instrument (name or file) loads, its rebin factors fit
    the grid, the grid lies inside its responses, and its counts and background files exist
    and hold cubes on its channels and detector pixels; without a counts file, a [simulate]
    table must say how to make them."""
    from ..instruments import load_instrument

    for i, obs in enumerate(config.observations):
        where = f"{config.source}: observations[{i}] (`{obs.name}`)"
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
            check_cube_file(path, shape, channels, obs.name, what)
        if obs.counts is None and config.simulate is None:
            raise ConfigError(f"{where} has no `counts` file and the config has no [simulate] table to simulate them: "
                              "give counts = \"file.fits\" or add [simulate] scene = \"...\".")


def check_cube_file(path, shape, channel_edges_kev, name: str, what: str) -> None:
    """The cube file ``path`` (read for its header and EBOUNDS only) has ``shape`` and
    channels ``channel_edges_kev``: see :func:`check_cube_grid`."""
    from ..io.cubes import read_cube_grid

    file_shape, file_edges = read_cube_grid(path)
    check_cube_grid(path, file_shape, file_edges, shape, channel_edges_kev, name, what)


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
