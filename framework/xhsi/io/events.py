"""Binning an X-ray event list into a counts cube (n_chan, ny, nx).

An event list is a FITS table (extension ``EVENTS``, else the first table) with one row per
detected photon: a position (``X``/``Y`` sky pixels, with the column WCS keywords
``TCTYPn``/``TCRPXn``/``TCRVLn``/``TCDLTn`` of OGIP/HEASARC event files, or ``RA``/``DEC`` in
degrees) and an energy (``PI`` or ``PHA`` channel numbers, or ``ENERGY`` in eV unless its
``TUNIT`` says keV).

Energy axis:
- channel columns (PI/PHA) with an instrument that has an RMF: the RMF's channels in the
  instrument's band, matched by channel number;
- an ENERGY column: the instrument's channel edges (``Instrument.channel_edges()``) or the
  ``energy_edges_kev`` given;
then ``energy_bin`` consecutive channels are summed (a remainder at the top is dropped).

Spatial axis: ``crop = (x_min, x_max, y_min, y_max)`` in event pixel coordinates (the X/Y
columns, or the tangent-plane pixels of the RA/DEC projection, 1-based) keeps events with
``x_min <= x < x_max`` and ``y_min <= y < y_max``; ``spatial_bin`` event pixels make one cube
pixel (a remainder at the top is dropped). The cube's WCS follows from the event WCS.

Or a sky grid (:mod:`xhsi.io.event_sky`): a size in arcsec and/or a DS9/CRTF include region,
a centre (RA, Dec) and an output pixel in arcsec give a TAN WCS centred there; each event's
RA/Dec is projected onto it, and exclude regions drop events. Events are screened first
(grades, status, patterns, flags, chips: :mod:`xhsi.io.event_filters`), and the exposure comes
from the GTIs of the chips whose events are binned.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from ..errors import DataError
from .cubes import Cube, write_cube
from .event_filters import chip_column, chip_gtis, gti_exposure, screen_events
from ._fits import open_fits

__all__ = ["bin_events"]

_POSITION_COLUMNS = (("X", "Y"), ("RA", "DEC"))
_CHANNEL_COLUMNS = ("PI", "PHA")


def _events_hdu(hdul, path):
    for hdu in hdul:
        if hdu.name.upper() == "EVENTS":
            return hdu
    for hdu in hdul:
        if isinstance(hdu, fits.BinTableHDU):
            return hdu
    raise DataError(f"{path}: no EVENTS table (and no other binary table) in this file.")


def _column_wcs(hdu, name: str) -> dict | None:
    """The WCS keywords of one table column (TCTYP, TCRPX, TCRVL, TCDLT), or None."""
    idx = [c.upper() for c in hdu.columns.names].index(name) + 1
    h = hdu.header
    keys = {k: h.get(f"{k}{idx}") for k in ("TCTYP", "TCRPX", "TCRVL", "TCDLT", "TCUNI")}
    if keys["TCDLT"] is None or keys["TCRPX"] is None or keys["TCRVL"] is None:
        return None
    return keys


def _base_wcs(ctype, crpix, crval, cdelt) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = list(ctype)
    w.wcs.crpix = list(crpix)
    w.wcs.crval = list(crval)
    w.wcs.cdelt = list(cdelt)
    w.wcs.cunit = ["deg", "deg"]
    return w


def bin_events(events_path: str | Path, instrument=None, out: str | Path | None = None, *,
               crop: tuple[float, float, float, float] | None = None, spatial_bin: int = 1, energy_bin: int = 1,
               energy_range_kev: tuple[float, float] | None = None, energy_edges_kev=None,
               pixel_arcsec: float | None = None, center_deg: tuple[float, float] | None = None,
               position_columns: tuple[str, str] | None = None, energy_column: str | None = None,
               exposure_s: float | None = None, overwrite: bool = True, memory_limit_bytes: int | None = None,
               size_arcsec=None, region: str | Path | None = None, exclude: str | Path | None = None,
               ccds=None, event_filter: bool = True, option_names: dict[str, str | None] | None = None) -> Cube:
    """Bin the event list ``events_path`` into a counts cube; write it to ``out`` if given.

    Parameters
    ----------
    instrument : an :class:`xhsi.instruments.Instrument` (``xhsi.instruments.load_instrument``
        turns a name or TOML path into one): channel grid, pixel size, name in the header;
        optional when ``energy_edges_kev`` is given and the positions carry a WCS (or
        ``pixel_arcsec`` is given). This module reads file formats only and never imports
        the instrument model.
    crop : (x_min, x_max, y_min, y_max) in event pixel coordinates; default: all events.
    spatial_bin : event pixels per cube pixel along each axis (>= 1).
    energy_bin : channels per cube plane (>= 1).
    energy_range_kev : (lo, hi) keV: keep only the channels lying inside.
    energy_edges_kev : explicit energy bin edges (keV), for an ENERGY column.
    pixel_arcsec : event pixel size (arcsec) when X/Y have no TCDLT keywords, or the
        projection pixel for RA/DEC (default: the instrument's pixel).
    center_deg : (RA, Dec) of the RA/DEC projection (default: median event position).
    position_columns, energy_column : override the column choice (default: X/Y then RA/DEC;
        PI then PHA for an RMF instrument, ENERGY otherwise).
    exposure_s : default: from the GTIs of the chips whose events are binned
        (:func:`xhsi.io.event_filters.gti_exposure`), else the event header's EXPOSURE (or
        LIVETIME, ONTIME).
    size_arcsec, region, exclude : a sky grid (:mod:`xhsi.io.event_sky`): ``size_arcsec``
        (one size, or width and height) and/or an include ``region`` file (DS9/CRTF) define a
        TAN grid centred on ``center_deg`` (else the region's centre) with pixels of
        ``pixel_arcsec`` (default: the event pixel times ``spatial_bin``); ``exclude`` drops
        the events inside its shapes. Needs sky positions (X/Y with a column WCS, or RA/DEC).
    ccds : chip numbers to keep (CCD_ID or CCDNR column); default: all.
    event_filter : apply the standard Chandra / XMM-Newton screening
        (:func:`xhsi.io.event_filters.screen_events`).
    overwrite : replace an existing ``out`` (never the event file itself, whatever its name).
    memory_limit_bytes : refuse (DataError, before the cube is allocated) a binning whose
        estimated peak memory exceeds it (``xhsi bin`` passes the available memory); None:
        no limit.
    option_names : how the caller spells these parameters in messages ({"pixel_arcsec":
        "--pixel-arcsec", ...}; None for one it does not offer); default: their names.

    Returns the :class:`~xhsi.io.cubes.Cube` (data int64 counts, ``e_min``/``e_max`` keV)."""
    path = Path(events_path)
    opt = _Spelling(option_names)
    inst = instrument
    if inst is not None and not hasattr(inst, "channel_edges"):
        raise TypeError(f"bin_events takes an xhsi.instruments.Instrument, got {type(inst).__name__} "
                        "(load one with xhsi.instruments.load_instrument(name_or_path)).")
    for name, value in (("spatial_bin", spatial_bin), ("energy_bin", energy_bin)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise DataError(f"{opt(name)} must be a positive integer, got {value!r}.")
    spatial_bin, energy_bin = int(spatial_bin), int(energy_bin)
    if out is not None:
        _check_out(path, Path(out), overwrite, opt)
    with open_fits(path, "event list") as hdul:
        hdu = _events_hdu(hdul, path)
        names = [c.upper() for c in hdu.columns.names]
        pos_cols = _pick_positions(position_columns, names, path, opt)
        e_col = _pick_energy(energy_column, names, inst, energy_edges_kev, path, opt)
        x = np.asarray(hdu.data.field(pos_cols[0]), dtype=np.float64)
        y = np.asarray(hdu.data.field(pos_cols[1]), dtype=np.float64)
        energy_raw = np.asarray(hdu.data.field(e_col)).reshape(-1)
        e_unit = (hdu.columns[names.index(e_col)].unit or "").strip().lower()
        wcs_x = _column_wcs(hdu, pos_cols[0]) if pos_cols == ("X", "Y") else None
        wcs_y = _column_wcs(hdu, pos_cols[1]) if pos_cols == ("X", "Y") else None
        header = hdu.header
        chip_col = chip_column(names)
        chips = np.asarray(hdu.data.field(chip_col), dtype=np.int64) if chip_col else None
        selected, screening = screen_events(hdu.data, names, header) if event_filter else (None, "")
        gtis = chip_gtis(hdul)
    if x.size == 0:
        raise DataError(f"{path}: the event list is empty.")
    if ccds is not None:
        wanted = np.asarray(list(ccds), dtype=np.int64)
        if chips is None:
            raise DataError(f"{path}: {opt('ccds')} selects chips, but the event list has no CCD_ID or CCDNR column.")
        on_chips = np.isin(chips, wanted)
        if not on_chips.any():
            raise DataError(f"{path}: no event on chip(s) {', '.join(map(str, wanted))} ({opt('ccds')}); the events "
                            f"lie on chips {', '.join(map(str, np.unique(chips)))}.")
        selected = on_chips if selected is None else selected & on_chips
    sky = size_arcsec is not None or region is not None or exclude is not None
    if sky and pos_cols == ("X", "Y") and (wcs_x is None or wcs_y is None):
        raise DataError(f"{path}: a sky grid ({opt.either('size_arcsec', 'region')}) needs sky positions, and this "
                        "event file has none: its X/Y columns have no TCTYP/TCRPX/TCRVL/TCDLT keywords and there are "
                        "no RA/DEC columns. Bin it in event pixels (without a sky grid), or add the sky columns.")
    ra_dec = (x.copy(), y.copy()) if pos_cols == ("RA", "DEC") else None

    # -- positions → event pixel coordinates and their WCS
    pix = pixel_arcsec if pixel_arcsec is not None else (inst.pixel_arcsec if inst is not None else None)
    if pos_cols == ("RA", "DEC"):
        if pix is None:
            raise DataError(f"{path}: RA/DEC events need a pixel size: pass {opt.either('pixel_arcsec', 'instrument')}.")
        center = center_deg if center_deg is not None else (float(np.median(x)), float(np.median(y)))
        base = _base_wcs(("RA---TAN", "DEC--TAN"), (0.0, 0.0), center, (-pix / 3600.0, pix / 3600.0))
        x, y = base.wcs_world2pix(x, y, 1)
    elif wcs_x is not None and wcs_y is not None:
        ctype = (wcs_x["TCTYP"] or "RA---TAN", wcs_y["TCTYP"] or "DEC--TAN")
        base = _base_wcs(ctype, (wcs_x["TCRPX"], wcs_y["TCRPX"]), (wcs_x["TCRVL"], wcs_y["TCRVL"]),
                         (wcs_x["TCDLT"], wcs_y["TCDLT"]))
    else:
        if pix is None:
            raise DataError(f"{path}: the X/Y columns have no TCRPX/TCRVL/TCDLT keywords; pass "
                            f"{opt.either('pixel_arcsec', 'instrument')} to give the events a sky grid.")
        center = center_deg if center_deg is not None else (0.0, 0.0)
        base = _base_wcs(("RA---TAN", "DEC--TAN"), (0.0, 0.0), center, (-pix / 3600.0, pix / 3600.0))

    if sky:
        from .event_sky import sky_grid

        if crop is not None:
            raise DataError(f"give {opt('crop')} (event pixels) or a sky grid ({opt.either('size_arcsec', 'region')}), "
                            "not both.")

        if pixel_arcsec is not None and spatial_bin != 1:
            raise DataError(f"give {opt('pixel_arcsec')} or {opt('spatial_bin')} for a sky grid, not both.")
        ra, dec = ra_dec if ra_dec is not None else base.wcs_pix2world(x, y, 1)
        out_pix = pixel_arcsec if pixel_arcsec is not None else abs(base.wcs.cdelt[0]) * 3600.0 * spatial_bin
        wcs, nx, ny, ix, iy, extra = sky_grid(ra, dec, path, opt, pixel_arcsec=out_pix, center_deg=center_deg,
                                              size_arcsec=size_arcsec, region=region, exclude=exclude)
    else:
        wcs, nx, ny, ix, iy, extra = _pixel_grid(x, y, base, crop, spatial_bin, opt)
    if selected is not None:
        ix = np.where(selected, ix, -1)

    # -- energies → plane index. XMM-Newton EPIC PI values are energies in eV (1 eV channels, SAS
    # evselect documentation), so without an RMF they are binned as energies.
    if e_col == "PI" and str(header.get("TELESCOP", "")).strip().upper() == "XMM" and (inst is None or inst.rmf is None):
        e_col, e_unit = "ENERGY", "ev"
    channels_out, e_min, e_max, ie = _energy_index(energy_raw, e_col, e_unit, inst, energy_edges_kev,
                                                   energy_range_kev, energy_bin, path, opt)
    n_e = e_min.size
    _check_memory(path, (n_e, ny, nx), x.size, memory_limit_bytes, opt)
    keep = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny) & (ie >= 0) & (ie < n_e)
    flat = (ie[keep] * ny + iy[keep]) * nx + ix[keep]
    counts = np.bincount(flat, minlength=n_e * ny * nx).reshape(n_e, ny, nx)

    if exposure_s is None:
        exposure_s, cards = gti_exposure(gtis, header, chips[keep] if chips is not None else None, path,
                                         opt("exposure_s"), opt("ccds"))
        extra.update(cards)
    extra.update({"EVTFILE": path.name[:68], "SPATBIN": spatial_bin, "ENERBIN": energy_bin})
    if screening:
        extra["XHSISCRN"] = screening[:68]
    # Provenance: the event file's own keywords, else the instrument TOML's mission and detector.
    extra.update({"TELESCOP": getattr(inst, "mission", None) or None,
                  "INSTRUME": getattr(inst, "detector", None) or None})
    extra.update({k: header[k] for k in _PROVENANCE_KEYS if header.get(k) not in (None, "")})
    cube = Cube(data=counts, e_min=e_min, e_max=e_max, wcs=wcs, channels=channels_out, exposure_s=exposure_s,
                instrument=inst.name if inst is not None else None, bunit="count", path=Path(out) if out else None,
                extra=extra)
    if out is not None:
        write_cube(out, counts.astype(np.int32), np.stack([e_min, e_max], axis=1), wcs=wcs, exposure_s=exposure_s,
                   instrument=cube.instrument, bunit="count", channels=channels_out, header=extra, overwrite=overwrite)
    return cube


def _pixel_grid(x, y, base, crop, spatial_bin, opt):
    """(wcs, nx, ny, ix, iy, cards) of a grid in event pixel coordinates: ``crop`` (default:
    every event), ``spatial_bin`` event pixels per cube pixel."""
    if crop is None:
        x0, x1 = math.floor(np.min(x)), math.floor(np.max(x)) + 1
        y0, y1 = math.floor(np.min(y)), math.floor(np.max(y)) + 1
    else:
        if len(crop) != 4 or not (crop[1] > crop[0] and crop[3] > crop[2]):
            raise DataError(f"{opt('crop')} must be (x_min, x_max, y_min, y_max) with x_max > x_min and y_max > y_min; "
                            f"got {crop!r}.")
        x0, x1, y0, y1 = (float(c) for c in crop)
    nx = int((x1 - x0) // spatial_bin)
    ny = int((y1 - y0) // spatial_bin)
    if nx < 1 or ny < 1:
        raise DataError(f"the crop box {x1 - x0:g} x {y1 - y0:g} pixels is smaller than {opt('spatial_bin')} = "
                        f"{spatial_bin}.")
    ix = np.floor((x - x0) / spatial_bin).astype(np.int64)
    iy = np.floor((y - y0) / spatial_bin).astype(np.int64)
    # Cube pixel (i, j) covers event pixels x0 + j·b … x0 + (j+1)·b: its FITS pixel p = j + 1 is
    # centred on event coordinate x0 + (p − 0.5)·b, so event coordinate c sits at p = (c − x0)/b + 0.5.
    wcs = base.deepcopy()
    wcs.wcs.crpix = [(base.wcs.crpix[0] - x0) / spatial_bin + 0.5, (base.wcs.crpix[1] - y0) / spatial_bin + 0.5]
    wcs.wcs.cdelt = [base.wcs.cdelt[0] * spatial_bin, base.wcs.cdelt[1] * spatial_bin]
    return wcs, nx, ny, ix, iy, {"XHSICROP": f"{x0:g} {x1:g} {y0:g} {y1:g}"[:68]}


#: Event-file keywords a binned cube keeps (OGIP/HEASARC provenance).
_PROVENANCE_KEYS = ("TELESCOP", "INSTRUME", "DETNAM", "FILTER", "OBJECT", "OBS_ID", "DATE-OBS", "DATE-END")


#: The default spelling of the parameters whose bare names read badly in a sentence.
_PYTHON_SPELLING = {"instrument": "an instrument", "out": "output path", "overwrite": "overwrite=True",
                    "memory_limit_bytes": "memory_limit_bytes=None"}


class _Spelling:
    """How the caller of :func:`bin_events` names its parameters in messages: their own
    names by default; ``xhsi bin`` maps them to its options, None for one it lacks."""

    def __init__(self, names: dict[str, str | None] | None):
        self.names = names

    def has(self, key: str) -> bool:
        return self.names is None or self.names.get(key) is not None

    def __call__(self, key: str) -> str:
        if self.names is None:
            return _PYTHON_SPELLING.get(key, key)
        return str(self.names.get(key) or key)

    def either(self, *keys: str) -> str:
        """"a or b" of the ``keys`` the caller offers."""
        return " or ".join(self(k) for k in keys if self.has(k)) or "more information"


def _check_out(events: Path, out: Path, overwrite: bool, opt: _Spelling) -> None:
    """Before any work: ``out`` is not the event file (by inode: a hard or symbolic link to
    it, or the same file by another name), exists only with ``overwrite``, and can be
    written (its folder, or the first existing parent, is a writable folder)."""
    import os

    from ..atomic import check_writable

    if out.exists():
        try:
            same = os.path.samefile(out, events)
        except OSError:
            same = False
        if same:
            raise DataError(f"{out} is the event file being binned ({events}): writing the cube there would destroy "
                            f"it, with or without {opt('overwrite')}. Choose another {opt('out')}.")
        if out.is_dir():
            raise DataError(f"{out} is a folder; {opt('out')} names the cube FITS file to write, e.g. {out / 'cube.fits'}.")
        if not overwrite:
            raise DataError(f"{out} exists: pass {opt('overwrite')} to replace it, or choose another {opt('out')}.")
    check_writable(out.parent, f"the folder of {opt('out')}")


#: Bytes per cube voxel at the peak of a binning: the int64 histogram, its int32 copy
#: written to FITS and the big-endian copy astropy writes from.
_BYTES_PER_VOXEL = 16
#: Bytes per event: positions (float64), pixel and plane indices (int64), flat indices, mask.
_BYTES_PER_EVENT = 48


def _check_memory(path, shape, n_events: int, limit: int | None, opt: _Spelling) -> None:
    """DataError, before the cube is allocated, when the binning's estimated peak memory
    exceeds ``limit`` bytes (None: no check)."""
    if limit is None:
        return
    n_e, ny, nx = shape
    estimate = _BYTES_PER_VOXEL * n_e * ny * nx + _BYTES_PER_EVENT * n_events
    if estimate <= limit:
        return
    fixes = [opt(k) for k in ("crop", "size_arcsec", "pixel_arcsec", "spatial_bin", "energy_bin", "energy_range_kev")
             if opt.has(k)]
    override = f", or pass {opt('memory_limit_bytes')} to try anyway" if opt.has("memory_limit_bytes") else ""
    raise DataError(f"{path}: binning into {n_e} planes x {ny} x {nx} pixels needs about {_size(estimate)} of memory, "
                    f"more than the {_size(limit)} available now. Bin a smaller cube ({', '.join(fixes)}){override}.")


def _size(nbytes: float) -> str:
    gib = 1024.0 ** 3
    return f"{nbytes / gib:.3g} GiB" if nbytes >= 0.1 * gib else f"{nbytes / 1024.0 ** 2:.3g} MiB"


def _pick_positions(position_columns, names, path, opt: _Spelling) -> tuple[str, str]:
    if position_columns is not None:
        cols = tuple(c.upper() for c in position_columns)
        missing = [c for c in cols if c not in names]
        if len(cols) != 2 or missing:
            raise DataError(f"{path}: position columns {position_columns!r} not found; columns: {', '.join(names)}.")
        return cols
    for pair in _POSITION_COLUMNS:
        if all(c in names for c in pair):
            return pair
    hint = f" Pass {opt('position_columns')} to name them." if opt.has("position_columns") else ""
    raise DataError(f"{path}: no X/Y or RA/DEC columns; columns: {', '.join(names)}.{hint}")


def _pick_energy(energy_column, names, inst, energy_edges_kev, path, opt: _Spelling) -> str:
    if energy_column is not None:
        col = energy_column.upper()
        if col not in names:
            raise DataError(f"{path}: no column {energy_column} for {opt('energy_column')}; columns: "
                            f"{', '.join(names)}.")
        return col
    has_rmf = inst is not None and inst.rmf is not None and energy_edges_kev is None
    order = _CHANNEL_COLUMNS + ("ENERGY",) if has_rmf else ("ENERGY",) + _CHANNEL_COLUMNS
    for col in order:
        if col in names:
            return col
    hint = f" Pass {opt('energy_column')} to name it." if opt.has("energy_column") else ""
    raise DataError(f"{path}: no PI, PHA or ENERGY column; columns: {', '.join(names)}.{hint}")


def _group(lo: np.ndarray, hi: np.ndarray, numbers: np.ndarray, k: int, path, opt: _Spelling):
    n = lo.size // k
    if n < 1:
        raise DataError(f"{path}: {opt('energy_bin')} = {k} is larger than the {lo.size} channels selected.")
    lo, hi = lo[: n * k].reshape(n, k), hi[: n * k].reshape(n, k)
    return numbers[: n * k: k].copy(), lo[:, 0].copy(), hi[:, -1].copy()


def _energy_index(raw, column, unit, inst, energy_edges_kev, energy_range_kev, k, path, opt: _Spelling):
    """(channel numbers of the planes, E_MIN keV, E_MAX keV, plane index of each event)."""
    if column in _CHANNEL_COLUMNS:
        if inst is None or inst.rmf is None:
            which = "no instrument was given" if inst is None else f"`{inst.name}` has a Gaussian response, no RMF"
            energy = (f"an ENERGY column ({opt('energy_column')}) with "
                      f"{opt.either('energy_edges_kev', 'instrument')}" if opt.has("energy_column") else
                      "an ENERGY column")
            raise DataError(f"{path}: binning the {column} column (channel numbers) needs an instrument with an RMF, "
                            f"whose channel energies they index, and {which}: pass {opt('instrument')} with an RMF "
                            f"instrument, or bin {energy}.")
        numbers, lo, hi = inst.channel_table()
        if energy_range_kev is not None:
            sel = (lo >= energy_range_kev[0] - 1e-9) & (hi <= energy_range_kev[1] + 1e-9)
            numbers, lo, hi = numbers[sel], lo[sel], hi[sel]
        if numbers.size == 0:
            raise DataError(f"{path}: no channel of {inst.name} lies in {opt('energy_range_kev')} "
                            f"{energy_range_kev} keV; its channels span {lo[0]:.4g}-{hi[-1]:.4g} keV.")
        first, (plane_numbers, e_min, e_max) = int(numbers[0]), _group(lo, hi, numbers, k, path, opt)
        idx = np.asarray(raw, dtype=np.int64) - first
        # Channels are consecutive, so grouping k of them is an integer division.
        plane = np.where((idx >= 0) & (idx < numbers.size), idx // k, -1)
        return plane_numbers, e_min, e_max, plane
    energy_kev = np.asarray(raw, dtype=np.float64) / (1.0 if unit == "kev" else 1000.0)
    if energy_edges_kev is not None:
        edges = np.asarray(energy_edges_kev, dtype=np.float64)
    elif inst is not None:
        edges = inst.channel_edges()
    else:
        raise DataError(f"{path}: give {opt.either('energy_edges_kev', 'instrument')} to bin the ENERGY column (the "
                        "energy bins are the instrument's channels).")
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise DataError(f"energy_edges_kev must be at least two increasing energies (keV); got {edges!r:.120}.")
    lo, hi = edges[:-1], edges[1:]
    if energy_range_kev is not None:
        sel = (lo >= energy_range_kev[0] - 1e-9) & (hi <= energy_range_kev[1] + 1e-9)
        if not sel.any():
            raise DataError(f"{path}: no energy bin lies in {opt('energy_range_kev')} {energy_range_kev} keV; the bins "
                            f"span {lo[0]:.4g}-{hi[-1]:.4g} keV.")
        lo, hi = lo[sel], hi[sel]
    numbers, e_min, e_max = _group(lo, hi, np.arange(1, lo.size + 1), k, path, opt)
    plane_edges = np.append(e_min, e_max[-1])
    plane = np.searchsorted(plane_edges, energy_kev, side="right") - 1
    plane = np.where((energy_kev >= plane_edges[0]) & (energy_kev < plane_edges[-1]), plane, -1)
    return numbers, e_min, e_max, plane
