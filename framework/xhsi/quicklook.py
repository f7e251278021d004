"""Quicklook PNGs of a run: broad-band images, spectra of a few pixels, cost curve.

Plots use matplotlib's Agg backend (no screen needed) and are written atomically."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np

from .atomic import atomic_write_bytes


def _figure(*args, **kwargs):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt, plt.figure(*args, **kwargs)


def _save(plt, fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def plot_images(path: Path, images: Sequence[tuple[str, np.ndarray]], unit: str = "",
                columns: int | None = None) -> Path:
    """One panel per (title, 2-D image), each with its own colour bar, in rows of
    ``columns`` panels (default: one row)."""
    n = len(images)
    cols = columns or n
    rows = -(-n // cols)
    plt, fig = _figure(figsize=(3.2 * cols, 3.0 * rows))
    for i, (title, image) in enumerate(images):
        ax = fig.add_subplot(rows, cols, i + 1)
        im = ax.imshow(image, origin="lower", cmap="magma")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).set_label(unit, fontsize=7)
    return _save(plt, fig, path)


def pick_pixels(image: np.ndarray, n: int = 3) -> list[tuple[int, int]]:
    """Pixels at the brightest, the median and a faint (20th percentile) level of an image."""
    flat = image.ravel()
    order = np.argsort(flat)
    picks = [order[-1], order[len(order) // 2], order[len(order) // 5]][:n]
    return [tuple(int(v) for v in np.unravel_index(p, image.shape)) for p in picks]


def plot_spectra(path: Path, energies_kev: np.ndarray, curves: dict[str, np.ndarray],
                 pixels: Sequence[tuple[int, int]], unit: str = "") -> Path:
    """Spectra at ``pixels`` of each named cube (n_e, ny, nx) on one energy grid."""
    plt, fig = _figure(figsize=(4.0 * len(pixels), 3.0))
    for i, (y, x) in enumerate(pixels):
        ax = fig.add_subplot(1, len(pixels), i + 1)
        for label, cube in curves.items():
            ax.plot(energies_kev, cube[:, y, x], label=label, lw=0.9)
        ax.set_title(f"pixel (y={y}, x={x})", fontsize=9)
        ax.set_xlabel("energy [keV]")
        if i == 0:
            ax.set_ylabel(unit, fontsize=8)
            ax.legend(fontsize=7)
    return _save(plt, fig, path)


def plot_history(path: Path, history: list[dict]) -> Path:
    """Cost (deviance) against iteration, log scale when positive."""
    plt, fig = _figure(figsize=(4.5, 3.0))
    ax = fig.add_subplot(1, 1, 1)
    it = [row["iteration"] for row in history]
    cost = np.array([row["cost"] for row in history], dtype=float)
    if len(cost):
        shifted = cost - cost.min() + 1e-12 * max(1.0, abs(cost.min()))
        ax.semilogy(it, shifted, marker=".", lw=0.8)
    ax.set_xlabel("iteration")
    ax.set_ylabel("cost − min(cost)")
    ax.set_title("convergence", fontsize=9)
    return _save(plt, fig, path)
