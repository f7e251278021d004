"""A joint per-pixel metric for unmixing's PALM (``[problem] joint_metric = true``): a step
over every map at once in each pixel's Fisher information, so that PALM does not crawl along
directions where a pixel's variables are correlated (kT and the thermal amplitude; Γ and the
thermal continuum under the synchrotron).

PALM updates one map at a time in a diagonal metric (``xhsi.problems.unmixing``): where two
variables of a pixel are correlated, each block update moves along its own axis of a long,
tilted valley of the pixel's likelihood, and many sweeps make little progress along it.
After each sweep PALM tries one joint step (``xhsi.solvers.palm``, "Joint steps"): with
g_p the gradients of every block at pixel p, the direction d_p = M_p⁻¹ g_p, M_p the P × P
Fisher information of the pixel's variables (amplitudes in the solver's units, then the
maps), the pixel-local scoring step of a Levenberg–Marquardt fit; each block's prox then
acts at the trial point in its own diagonal metric, and PALM keeps the trial only where
the objective f + Σ g_i decreases.

M_p is the per-pixel Fisher information of the problem's per-pixel fits (``PixelFitter``,
PSF neglected, as the diagonal metric) at the current maps, recomputed every ``refresh``
directions, summed over the fitters with the weights of their curvature in the diagonal
metric (``finest_scale_weights``), each fitter's detector block spread over its model
pixels (an amplitude is the block's sum, a parameter its mean), and its diagonal floored at
the blocks' diagonal metrics (which floor the curvature of faint pixels and weakly
constrained maps).
"""
from __future__ import annotations

import numpy as np

from ..backend import array_namespace, to_numpy


class JointPixelMetric:
    """``direction(xs, gradients)``: the per-pixel scoring direction M_p⁻¹ g_p over PALM's
    blocks ``xs`` (amplitude blocks, then map blocks, each (ny, nx)); see the module
    docstring. ``problem``: the Unmixing (its per-pixel fitters, their weights
    ``_fisher_optics`` and its maps), ``mixture`` its mixture, ``floors`` the blocks' diagonal
    metrics."""

    def __init__(self, problem, mixture, floors: list, refresh: int = 10):
        self.problem, self.mixture = problem, mixture
        self.floors = [np.asarray(to_numpy(f), dtype=np.float64).reshape(-1) for f in floors]
        self.refresh = int(refresh)
        self._calls, self._matrix = 0, None
        comps = problem.components
        # the fitters' variables: every component's amplitude, then the maps; the blocks'
        # amplitudes are those of the components whose amplitude is fitted, in slot order
        fitted = sorted((c.amplitude_slot, j) for j, c in enumerate(comps) if c.amplitude_slot is not None)
        self.columns = [j for _, j in fitted] + [len(comps) + i for i in range(len(problem.map_blocks))]

    def matrix(self, xs) -> np.ndarray:
        """M (npix, P, P), host float64, at the blocks ``xs``."""
        problem, mixture = self.problem, self.mixture
        maps = problem._maps(mixture, xs)
        scale = np.asarray(to_numpy(mixture.scale), dtype=np.float64)
        ny, nx = problem.grid.ny, problem.grid.nx
        scale = np.broadcast_to(scale, (ny, nx)).reshape(-1)
        n_amp, cols = mixture.n_amp, self.columns
        total = None
        for fitter, (_, weight) in zip(problem._fisher_fitters(), problem._fisher_optics):
            if weight <= 0.0:
                continue
            _, fisher = fitter.fisher_at_maps(maps)
            f = np.asarray(to_numpy(fisher), dtype=np.float64)[:, cols][:, :, cols]  # (nblocks, P, P)
            factor = fitter.factor
            by, bx = ny // factor, nx // factor
            f = f.reshape(by, 1, bx, 1, len(cols), len(cols))
            f = np.broadcast_to(f, (by, factor, bx, factor, len(cols), len(cols))).reshape(ny * nx, len(cols), len(cols))
            # d(block amplitude)/d(x_p) = scale_p (a block's amplitude is the sum of its
            # pixels'); d(block parameter)/d(θ_p) = 1/f² (its mean), taken as 1/f as the
            # diagonal metric does (the block's rank-one coupling, by rows)
            t = np.concatenate([scale[:, None] * np.ones((1, n_amp)),
                                np.full((ny * nx, len(cols) - n_amp), 1.0 / factor)], axis=1)
            part = weight * f * t[:, :, None] * t[:, None, :]
            total = part if total is None else total + part
        floors = np.stack(self.floors, axis=1)  # (npix, P)
        if total is None:
            total = np.zeros(floors.shape + (floors.shape[1],))
        idx = np.arange(len(cols))
        diag = total[:, idx, idx]
        total[:, idx, idx] = np.maximum(diag, floors) * (1.0 + 1e-9)
        return total

    def direction(self, xs, gradients) -> list:
        """[M_p⁻¹ g_p per block], on the blocks' backend and dtype; M recomputed every
        ``refresh`` calls (the first included)."""
        if self._matrix is None or self._calls % self.refresh == 0:
            xp = array_namespace(xs[0])
            self._matrix = xp.asarray(self.matrix(xs), dtype=xs[0].dtype)
        self._calls += 1
        xp = array_namespace(xs[0])
        shape = xs[0].shape
        g = xp.stack([xp.reshape(gi, (-1,)) for gi in gradients], axis=1)[..., None]  # (npix, P, 1)
        d = xp.linalg.solve(self._matrix, g)[..., 0]
        return [xp.reshape(d[:, i], shape) for i in range(len(gradients))]
