"""Quicklook PNGs of a run: broad-band images and maps, spectra of a few pixels, the cost
curve — each meant to be read at a glance: axes in arcsec (offsets from the image centre,
origin at the bottom), the energy band and the unit in every panel's title, colour bars
labelled with their unit and in scientific notation for large or small values, and a cost
plot that shows the cost itself and its relative change against the stopping tolerance.

Each ``*_figure`` function returns the matplotlib Figure (tests inspect it); each ``plot_*``
function draws one and writes it to a PNG atomically. Plots use the Agg backend (no screen
needed) and constrained layout, so that no label is clipped by its neighbour."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .atomic import atomic_write_bytes

#: Colour-bar tick labels switch to a ×10ⁿ offset outside 10⁻² ≤ |value| < 10⁴.
_POWER_LIMITS = (-2, 4)


@dataclass
class Panel:
    """One image panel: ``image`` (ny, nx), its ``unit`` (colour-bar label), its pixel size
    in arcsec, the energy band (lo, hi) in keV it covers, a colour map."""

    title: str
    image: np.ndarray
    unit: str
    pixel_arcsec: float
    band_kev: tuple[float, float] | None = None
    cmap: str = "magma"


def pretty_unit(text: str | None) -> str:
    """A unit as a reader expects it on a plot: "photon / (s cm2)" → "photon s⁻¹ cm⁻²",
    "" → "dimensionless"; text astropy.units cannot parse ("solar") is kept as it is."""
    text = (text or "").strip()
    if not text:
        return "dimensionless"
    from astropy import units

    try:
        pretty = units.Unit(text).to_string("unicode")
    except ValueError:
        return text
    words = [{"ph": "photon", "ct": "count"}.get(w, w) for w in pretty.split(" ")]
    words.sort(key=lambda w: w.startswith("pix"))  # "per pixel" last, as it is said
    return " ".join(words) or "dimensionless"


def band_label(band_kev: tuple[float, float] | None) -> str:
    return "" if band_kev is None else f"{band_kev[0]:.3g}–{band_kev[1]:.3g} keV"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _new_figure(figsize):
    return _pyplot().figure(figsize=figsize, layout="constrained")


def _sci(axis_or_bar) -> None:
    """Scientific notation (a ×10ⁿ offset) for values outside _POWER_LIMITS."""
    from matplotlib.ticker import ScalarFormatter

    formatter = ScalarFormatter(useMathText=True)
    formatter.set_powerlimits(_POWER_LIMITS)
    axis_or_bar.set_major_formatter(formatter)


def save_figure(fig, path: Path) -> Path:
    """Write ``fig`` to ``path`` (PNG) atomically and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    _pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def images_figure(panels: Sequence[Panel], columns: int | None = None):
    """One panel per :class:`Panel`, each with its own colour bar, in rows of ``columns``
    panels (default: one row)."""
    n = len(panels)
    cols = max(1, min(columns or n, n))
    rows = -(-n // cols)
    fig = _new_figure((3.6 * cols, 3.5 * rows))
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        image = np.asarray(panel.image, dtype=np.float64)
        ny, nx = image.shape
        half_x, half_y = 0.5 * nx * panel.pixel_arcsec, 0.5 * ny * panel.pixel_arcsec
        im = ax.imshow(image, origin="lower", cmap=panel.cmap, extent=(-half_x, half_x, -half_y, half_y),
                       interpolation="nearest")
        unit = pretty_unit(panel.unit)
        ax.set_title("\n".join(t for t in (panel.title, ", ".join(s for s in (band_label(panel.band_kev), unit) if s))
                               if t), fontsize=9)
        ax.set_xlabel(f"x offset [arcsec]  ({panel.pixel_arcsec:.3g}″ pixels)", fontsize=8)
        ax.set_ylabel("y offset [arcsec]", fontsize=8)
        ax.tick_params(labelsize=7)
        bar = fig.colorbar(im, ax=ax, shrink=0.8)
        _sci(bar.ax.yaxis)
        bar.ax.tick_params(labelsize=7)
        bar.ax.yaxis.get_offset_text().set_fontsize(7)
        bar.set_label(unit, fontsize=8)
    return fig


def plot_images(path: Path, panels: Sequence[Panel], columns: int | None = None) -> Path:
    """:func:`images_figure` written to ``path``."""
    return save_figure(images_figure(panels, columns), path)


def pick_pixels(image: np.ndarray, n: int = 3) -> list[tuple[int, int]]:
    """Pixels at the brightest, the median and a faint (20th percentile) level of an image."""
    flat = image.ravel()
    order = np.argsort(flat)
    picks = [order[-1], order[len(order) // 2], order[len(order) // 5]][:n]
    return [tuple(int(v) for v in np.unravel_index(p, image.shape)) for p in picks]


PIXEL_LABELS = ("brightest pixel", "median pixel", "faint pixel (20th percentile)")


def spectra_figure(energies_kev: np.ndarray, curves: dict[str, np.ndarray], pixels: Sequence[tuple[int, int]],
                   unit: str = "", pixel_arcsec: float | None = None, bin_ev: float | None = None,
                   band_kev: tuple[float, float] | None = None, labels: Sequence[str] = PIXEL_LABELS):
    """Spectra at ``pixels`` (y, x) of each named cube (n_e, ny, nx) on one energy grid
    (bin centres, keV), one panel per pixel, each with its own y axis labelled ``unit``
    (and "per <bin_ev> eV bin" when the values are per energy bin); ``band_kev`` (lo, hi) for
    the titles (default: the first and last bin centres)."""
    from matplotlib.ticker import MaxNLocator

    fig = _new_figure((4.2 * len(pixels), 3.6))
    band = band_kev or (float(np.min(energies_kev)), float(np.max(energies_kev)))
    ylabel = pretty_unit(unit) + (f" per {bin_ev:.3g} eV bin" if bin_ev else "")
    shape = next(iter(curves.values())).shape[1:] if curves else (1, 1)
    for i, (y, x) in enumerate(pixels):
        ax = fig.add_subplot(1, len(pixels), i + 1)
        for label, cube in curves.items():
            ax.plot(energies_kev, cube[:, y, x], label=label, lw=0.9)
        where = f"(x={x}, y={y})"
        if pixel_arcsec is not None:
            dx, dy = ((x + 0.5) - 0.5 * shape[1]) * pixel_arcsec, ((y + 0.5) - 0.5 * shape[0]) * pixel_arcsec
            where += f", offset ({dx:+.3g}″, {dy:+.3g}″)"
        kind = labels[i] if i < len(labels) else "pixel"
        ax.set_title(f"{kind} {where}\n{band_label(band)}, {ylabel}", fontsize=8)
        ax.set_xlabel("energy [keV]", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        _sci(ax.yaxis)
        ax.tick_params(labelsize=7)
        ax.yaxis.get_offset_text().set_fontsize(7)
        ax.yaxis.set_major_locator(MaxNLocator(6))
        if i == 0:
            ax.legend(fontsize=7)
    return fig


def plot_spectra(path: Path, energies_kev: np.ndarray, curves: dict[str, np.ndarray],
                 pixels: Sequence[tuple[int, int]], unit: str = "", pixel_arcsec: float | None = None,
                 bin_ev: float | None = None, band_kev: tuple[float, float] | None = None) -> Path:
    """:func:`spectra_figure` written to ``path``."""
    return save_figure(spectra_figure(energies_kev, curves, pixels, unit, pixel_arcsec, bin_ev, band_kev), path)


def relative_changes(history: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(iterations, |cost_k − cost_{k−1}| / |cost_k|) between consecutive history rows: the
    quantity the solvers' stopping rule compares with ``tol`` (xhsi.solvers.base)."""
    it = np.array([row["iteration"] for row in history], dtype=float)
    cost = np.array([row["cost"] for row in history], dtype=float)
    if cost.size < 2:
        return it[:0], cost[:0]
    return it[1:], np.abs(np.diff(cost)) / np.maximum(np.abs(cost[1:]), 1e-300)


def history_figure(history: list[dict], tol: float | None = None, stop_reason: str | None = None):
    """Left: the cost itself (½·deviance + penalties, as in history.csv) against iteration,
    linear axis. Right: its relative change between reports on a log axis, with the
    stopping tolerance ``tol`` when given. Nothing is shifted by the cost's own minimum (that
    makes the last point plunge and any run look converged)."""
    fig = _new_figure((8.4, 3.4))
    it = [row["iteration"] for row in history]
    cost = np.array([row["cost"] for row in history], dtype=float)
    ax = fig.add_subplot(1, 2, 1)
    ax.plot(it, cost, marker=".", lw=0.8)
    ax.set_xlabel("iteration", fontsize=8)
    ax.set_ylabel("cost (½ deviance + penalties)", fontsize=8)
    ax.set_title("cost", fontsize=9)
    _sci(ax.yaxis)
    ax.tick_params(labelsize=7)
    ax.yaxis.get_offset_text().set_fontsize(7)
    ax2 = fig.add_subplot(1, 2, 2, sharex=ax)
    rit, change = relative_changes(history)
    positive = change > 0
    ax2.semilogy(rit[positive], change[positive], marker=".", lw=0.8)
    if tol is not None and tol > 0:
        ax2.axhline(tol, color="0.4", ls="--", lw=0.8)
        ax2.text(0.02, tol, f"tol = {tol:g}: the run stops below", color="0.3", fontsize=7, va="bottom",
                 transform=ax2.get_yaxis_transform())
    ax2.set_xlabel("iteration", fontsize=8)
    ax2.set_ylabel("|Δcost| / |cost| between reports", fontsize=8)
    ax2.set_title("relative cost change", fontsize=9)
    ax2.tick_params(labelsize=7)
    if not positive.any():
        ax2.text(0.5, 0.5, "fewer than two reports" if change.size == 0 else "no change between reports",
                 transform=ax2.transAxes, ha="center", va="center", fontsize=8)
    if stop_reason:
        fig.suptitle(f"{len(it) and it[-1]} iterations: {stop_reason}", fontsize=9)
    return fig


def plot_history(path: Path, history: list[dict], tol: float | None = None, stop_reason: str | None = None) -> Path:
    """:func:`history_figure` written to ``path``."""
    return save_figure(history_figure(history, tol, stop_reason), path)
