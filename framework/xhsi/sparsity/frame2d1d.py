"""The 2D-1D starlet of a cube, streamed: one band at a time, never all bands together.

The 2D-1D transform (Starck et al. 2009, A&A 504, 641) is a 2-D starlet of every energy
slice followed by a 1-D starlet along energy (axis −3) of every 2-D band:
c_lj = starlet1d(starlet2d(x, J)_j, L)_l, (L+1)(J+1) bands of the cube's size, coarse last in
both l and j (``xhsi.sparsity.wavelets``; Starck, Fadili & Murtagh 2007). Materialising them costs
(L+1)(J+1) cubes (20 for the default 3 × 4 scales); the functions here produce each band from
c_{j−1} → c_j (2-D detail w_j = c_{j−1} − c_j) and, for each w_j, from the 1-D smoothings along
energy, and consume it at once:

* ``shrink(x, J, L, τ, reweight)``: Σ_lj soft(c_lj, τ_lj), the prox of the ``starlet2d1d_l1``
  regulariser (soft-threshold every band, synthesis by the sum of the bands), computed as
  x − Σ_lj clip(c_lj, −τ_lj, τ_lj) since the bands sum to x; bands with τ = 0 are skipped;
  τ_lj is one number per band or one per band and sky pixel (a (ny, nx) map);
* ``l1_norms(x, J, L)``: ‖c_lj‖₁ per band (the regulariser's value), or per band and sky pixel;
* ``bands(x, J, L)``: the bands themselves, one 2-D scale at a time (MAD calibration);
* ``analysis(x, J, L)`` and ``adjoint(c, J, L)``: Φx, all bands in one array
  (L+1, J+1, *x.shape), and Φᵀc, for the exact prox (``xhsi.sparsity.analysis_prox``), which needs
  them both every dual iteration. The adjoint uses that a B3 smoothing S with the
  whole-sample mirror boundary is self-adjoint for the weights w = (½, 1, …, 1, ½) along
  its axis (its symmetric extension is periodic, as for the DCT-I): Sᵀ = W S W⁻¹, so
  Φᵀc = W·Ψ(W⁻¹c) with Ψ the Horner form of the adjoint (``wavelets._starlet_adjoint``)
  built from the forward smoothings, W = w ⊗ w ⊗ w over (energy, y, x). The fast forward
  smoothings then serve the adjoint too, streamed like the analysis: the energy stage per
  pixel block into J + 1 cubes, the 2-D stage on energy chunks.

numpy path (float32/float64 cubes whose axes are longer than the largest dilation): the 2-D
smoothing runs on chunks of ``CHUNK_E`` energy slices, the energy stage on column blocks of
``BLOCK_PX`` pixels of the (n_e, ny·nx) view, so a band exists only as a block
(n_e × BLOCK_PX samples) in a reused buffer; chunks and blocks are spread over ``WORKERS``
threads (numpy releases the GIL in its loops). Full-size arrays: c_j and s_j (two cubes), plus
the output of ``shrink``. Every other namespace (array_api_strict, cupy) takes the generic path,
whole-cube array-API operations one band at a time (~7 cubes alive at once).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from array_api_compat import device

from ..backend import array_namespace, to_numpy
from ..errors import ShapeError
from .wavelets import (_check_scales, _smooth, _smooth_numpy, _tap3_numpy, starlet1d, starlet1d_adjoint, starlet2d,
                       starlet2d_adjoint)

__all__ = ["adjoint", "analysis", "bands", "l1_norms", "shrink", "wanted_bands", "BLOCK_PX", "CHUNK_E", "WORKERS"]

#: Pixels per block of the energy stage (numpy path). On the 2400 × 45 × 45 float32 cube
#: (2 cores, AMD EPYC, 1 MiB L2 per core) 128 was the fastest of 16–256: smaller blocks pay
#: numpy's per-row overhead (rows of BLOCK_PX samples), larger ones leave the cache.
BLOCK_PX = 128
#: Energy slices per chunk of the 2-D stage (numpy path): 64 was faster than 16 or 256 on the
#: 2400 × 45 × 45 cube (fewer numpy calls per slice; 3 chunk buffers of ~0.5 MiB).
CHUNK_E = 64
#: Threads of the numpy path; None: the CPUs this process may run on.
WORKERS: int | None = None


def _check(x, scales_2d, scales_1d):
    if x.ndim < 3:
        raise ShapeError(f"the 2D-1D starlet needs a cube (..., n_e, ny, nx), got shape {tuple(x.shape)}.")
    return _check_scales(scales_2d), _check_scales(scales_1d)


def _n_workers() -> int:
    if WORKERS is not None:
        return max(1, int(WORKERS))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}


def _pool(workers: int) -> ThreadPoolExecutor | None:
    """The process's pool of ``workers`` threads (None for one), created once: starting
    threads on every call cost more than the work on small cubes (the exact prox calls
    Φ and Φᵀ thousands of times). Keyed by process id, as a forked child has no threads."""
    if workers <= 1:
        return None
    key = (os.getpid(), workers)
    if key not in _POOLS:
        _POOLS[key] = ThreadPoolExecutor(workers, thread_name_prefix="xhsi-starlet")
    return _POOLS[key]


def _numpy_fast(x, scales_2d: int, scales_1d: int) -> bool:
    """The numpy path reflects once at each border: every dilation must be below its axis."""
    n_e, ny, nx = x.shape[-3:]
    return (isinstance(x, np.ndarray) and x.dtype in (np.float32, np.float64)
            and 2 ** (scales_2d - 1) < min(ny, nx) and 2 ** (scales_1d - 1) < n_e)


# ------------------------------------------------------------------------------- generic
def _bands_generic(x, scales_2d: int, scales_1d: int):
    """Yield ``(l, j, band)``, j-major, each band a new array; any namespace."""
    xp = array_namespace(x)
    ay, ax, ae = x.ndim - 2, x.ndim - 1, x.ndim - 3
    c = x
    for j in range(scales_2d + 1):
        if j < scales_2d:
            s = _smooth(_smooth(c, 2 ** j, ay, xp), 2 ** j, ax, xp)
            d = c - s
        else:
            d = c
        for ell in range(scales_1d + 1):
            if ell < scales_1d:
                e = _smooth(d, 2 ** ell, ae, xp)
                yield ell, j, d - e
                d = e
            else:
                yield ell, j, d
        if j < scales_2d:
            c = s


# --------------------------------------------------------------------------------- numpy
class _Engine:
    """The numpy path for one C-contiguous cube (n_e, ny, nx): ``run`` computes the 2-D stage
    of each scale j into a full buffer, then calls ``per_block(j, p0, p1, blocks)`` for every
    pixel block (in worker threads), ``blocks`` iterating over the ``(l, band_block)`` of the
    wanted bands of that block; it yields ``(j, [per_block results])`` after each scale."""

    #: Block buffers per thread: 4 for the walk, the rest for the consumer.
    N_BUFS = 8

    def __init__(self, cube, scales_2d: int, scales_1d: int):
        self.x, self.J, self.L = cube, scales_2d, scales_1d
        self.n_e, ny, nx = cube.shape
        self.npx = ny * nx
        self.blk = min(BLOCK_PX, self.npx)
        self.workers = min(_n_workers(), -(-self.npx // self.blk))
        self.local = threading.local()

    def bufs(self):
        """This thread's block buffers (n_e, BLOCK_PX), allocated once per thread and call."""
        b = getattr(self.local, "bufs", None)
        if b is None:
            b = self.local.bufs = [np.empty((self.n_e, self.blk), self.x.dtype) for _ in range(self.N_BUFS)]
        return b

    def _chunk_bufs(self):
        b = getattr(self.local, "chunk", None)
        if b is None:
            shape = (min(CHUNK_E, self.n_e),) + self.x.shape[1:]
            b = self.local.chunk = tuple(np.empty(shape, self.x.dtype) for _ in range(3))
        return b

    def _smooth2d_chunk(self, c, d: int, out, e0: int) -> None:
        """out = S_x S_y c on energy slices [e0, e0 + CHUNK_E): four 3-tap passes (see
        ``wavelets._smooth_numpy``) in cache, one 1/256 scale."""
        e1 = min(e0 + CHUNK_E, self.n_e)
        t, u, a = (b[: e1 - e0] for b in self._chunk_bufs())
        o = out[e0:e1]
        _tap3_numpy(c[e0:e1], d, 1, t, a)
        _tap3_numpy(t, d, 1, u, a)
        _tap3_numpy(u, d, 2, t, a)
        _tap3_numpy(t, d, 2, o, a)
        np.multiply(o, 1.0 / 256.0, out=o)

    def _blocks(self, c2, s2, j: int, p0: int, p1: int, wanted):
        """The wanted bands (l, j) of pixels [p0, p1): 2-D detail c − s of the block (or the
        coarse c_J itself), then the 1-D starlet along energy in ping-pong buffers. Each
        yielded block is overwritten on resumption and must not be written to."""
        k = p1 - p0
        ping0, ping1, tb, bb = (b[:, :k] for b in self.bufs()[:4])
        ping = (ping0, ping1)
        if s2 is not None:
            d, cur = np.subtract(c2[:, p0:p1], s2[:, p0:p1], out=ping0), 0
        else:
            d, cur = c2[:, p0:p1], 1  # read only
        for ell in range(self.L + 1):
            if ell < self.L:
                cur = 1 - cur
                e = _smooth_numpy(d, 2 ** ell, 0, out=ping[cur], scratch=(tb, bb))
                if wanted[ell, j]:
                    yield ell, np.subtract(d, e, out=bb)
                d = e
            elif wanted[ell, j]:
                yield ell, d

    def _map(self, pool, fn, items):
        return list(pool.map(fn, items)) if pool is not None else [fn(i) for i in items]

    def run(self, wanted, per_block):
        n_e, npx = self.n_e, self.npx
        pool = _pool(self.workers)
        cubes = [np.empty_like(self.x), np.empty_like(self.x)]
        c = self.x
        for j in range(self.J + 1):
            s = None
            if j < self.J:
                s = cubes[j % 2]
                self._map(pool, lambda e0, c=c, s=s, d=2 ** j: self._smooth2d_chunk(c, d, s, e0),
                          range(0, n_e, CHUNK_E))
            c2 = c.reshape(n_e, npx)
            s2 = None if s is None else s.reshape(n_e, npx)

            def task(p0, j=j, c2=c2, s2=s2):
                p1 = min(p0 + self.blk, npx)
                return per_block(j, p0, p1, self._blocks(c2, s2, j, p0, p1, wanted))

            yield j, self._map(pool, task, range(0, npx, self.blk))
            if s is not None:
                c = s


def _cubes(x):
    """``x`` as a C-contiguous numpy array (batch, n_e, ny, nx) (a view when possible)."""
    return np.ascontiguousarray(x).reshape((-1,) + tuple(x.shape[-3:]))


def _shrink_numpy(cube, out, scales_2d, scales_1d, tau, reweight: int) -> None:
    """``shrink`` of one cube into ``out``: per pixel block the clipped bands are summed in a
    block accumulator, subtracted from x (or from out) once per 2-D scale."""
    eng = _Engine(cube, scales_2d, scales_1d)
    n_e = cube.shape[0]
    x2, o2 = cube.reshape(n_e, eng.npx), out.reshape(n_e, eng.npx)
    per_pixel = tau.ndim == 4
    if per_pixel:
        tau = tau.reshape(tau.shape[:2] + (eng.npx,))  # τ of a block: a row broadcast over energy
    wanted = wanted_bands(tau)

    def per_block(j, p0, p1, blocks):
        k = p1 - p0
        acc, clip, w, r = (b[:, :k] for b in eng.bufs()[4:8])
        started = False
        for ell, b in blocks:
            target = clip if started else acc
            t = tau[ell, j, p0:p1] if per_pixel else tau[ell, j]
            if reweight:
                # τ ← τ²/(τ + |soft(c, τ_prev)|), |soft(c, τ)| = max(|c| − τ, 0)
                np.abs(b, out=r)
                np.subtract(r, t, out=w)
                for i in range(reweight):
                    if i:
                        np.subtract(r, w, out=w)
                    np.maximum(w, 0, out=w)
                    np.add(w, t, out=w)
                    np.divide(t * t, w, out=w, where=w > 0)  # τ = 0 (a pixel's map): w stays 0
                np.negative(w, out=r)
                np.clip(b, r, w, out=target)
            else:
                np.clip(b, -t, t, out=target)
            if started:
                np.add(acc, target, out=acc)
            started = True
        o = o2[:, p0:p1]
        if j == 0 and started:
            np.subtract(x2[:, p0:p1], acc, out=o)
        elif j == 0:
            np.copyto(o, x2[:, p0:p1])
        elif started:
            np.subtract(o, acc, out=o)

    for _ in eng.run(wanted, per_block):
        pass


def wanted_bands(tau) -> np.ndarray:
    """(L+1, J+1) bool: the bands whose thresholds τ ((L+1, J+1), or per sky pixel
    (L+1, J+1, ny, nx)) are > 0 somewhere; the others are skipped."""
    return (tau > 0).reshape(tau.shape[:2] + (-1,)).any(axis=-1)


# ---------------------------------------------------------------------------------- public
def shrink(x, scales_2d: int, scales_1d: int, thresholds, reweight: int = 0):
    """Σ_lj soft(c_lj, τ_lj) for the 2D-1D starlet bands c_lj of ``x`` (..., n_e, ny, nx):
    soft-threshold every band by its τ_lj ≥ 0 (``thresholds``, host array (L+1, J+1), coarse
    last on both axes, in the units of x; or (L+1, J+1, ny, nx), one τ per band and sky
    pixel, the same at every energy) and sum the bands, streamed (module docstring).
    ``reweight`` passes first re-weight each band's threshold, τ ← τ²/(τ + |soft(c, τ_prev)|)
    (Candès, Wakin & Boyd 2008, J. Fourier Anal. Appl. 14, 877). Same dtype and namespace as x."""
    scales_2d, scales_1d = _check(x, scales_2d, scales_1d)
    tau = np.asarray(thresholds, dtype=np.float64)
    bands_shape = (scales_1d + 1, scales_2d + 1)
    if tau.shape not in (bands_shape, bands_shape + tuple(x.shape[-2:])):
        raise ShapeError(f"thresholds must have shape {bands_shape} or {bands_shape + tuple(x.shape[-2:])} "
                         f"(per sky pixel), got {tau.shape}.")
    if _numpy_fast(x, scales_2d, scales_1d):
        xb = _cubes(x)
        out = np.empty_like(xb)
        for cube, res in zip(xb, out):
            # τ in x's dtype, as the materialised prox computed it
            _shrink_numpy(cube, res, scales_2d, scales_1d, tau.astype(x.dtype), reweight)
        return out.reshape(x.shape)
    xp = array_namespace(x)
    wanted = wanted_bands(tau)
    out = x
    for ell, j, b in _bands_generic(x, scales_2d, scales_1d):
        if not wanted[ell, j]:
            continue
        t = float(tau[ell, j]) if tau.ndim == 2 else xp.asarray(tau[ell, j], dtype=x.dtype, device=device(x))
        if reweight:
            ab = xp.abs(b)
            w = t
            for _ in range(reweight):
                r = ab - w
                den = t + xp.where(r > 0, r, xp.zeros_like(r))
                w = (t * t) / xp.where(den > 0, den, xp.ones_like(den))
            out = out - xp.clip(b, min=-w, max=w)
        else:
            out = out - xp.clip(b, min=-t, max=t)
    return out


def l1_norms(x, scales_2d: int, scales_1d: int, wanted=None, per_pixel: bool = False) -> np.ndarray:
    """‖c_lj‖₁ of the 2D-1D starlet bands of ``x``, summed in float64 over all voxels (and
    leading axes): host array (L+1, J+1), 0 where ``wanted`` (bool, same shape) is False.
    ``per_pixel``: summed over energy (and leading axes) only, (L+1, J+1, ny, nx)."""
    scales_2d, scales_1d = _check(x, scales_2d, scales_1d)
    shape = (scales_1d + 1, scales_2d + 1)
    wanted = np.ones(shape, dtype=bool) if wanted is None else np.asarray(wanted, dtype=bool)
    ny, nx = x.shape[-2:]
    norms = np.zeros(shape + (ny * nx,))
    if _numpy_fast(x, scales_2d, scales_1d):
        for cube in _cubes(x):
            eng = _Engine(cube, scales_2d, scales_1d)

            def per_block(j, p0, p1, blocks, eng=eng):
                part = np.zeros((shape[0], p1 - p0))
                absb = eng.bufs()[4][:, : p1 - p0]
                for ell, b in blocks:
                    part[ell] = np.sum(np.abs(b, out=absb), axis=0, dtype=np.float64)
                return part

            for j, parts in eng.run(wanted, per_block):
                norms[:, j] += np.concatenate(parts, axis=1)
    else:
        xp = array_namespace(x)
        lead = tuple(range(x.ndim - 2))
        for ell, j, b in _bands_generic(x, scales_2d, scales_1d):
            if wanted[ell, j]:
                norms[ell, j] = to_numpy(xp.sum(xp.abs(b), axis=lead)).reshape(-1)
    return norms.reshape(shape + (ny, nx)) if per_pixel else norms.sum(axis=-1)


def bands(x, scales_2d: int, scales_1d: int):
    """Yield ``(l, j, band)`` for every band of the 2D-1D starlet of ``x``, j-major (the L + 1
    bands of 2-D scale j, then j + 1), each a new array of x's shape. Memory: on numpy the
    L + 1 bands of one 2-D scale plus two cubes; elsewhere ~6 cubes."""
    scales_2d, scales_1d = _check(x, scales_2d, scales_1d)
    xb = _cubes(x) if _numpy_fast(x, scales_2d, scales_1d) else None
    if xb is None or xb.shape[0] != 1:  # a batch of cubes: the generic path
        yield from _bands_generic(x, scales_2d, scales_1d)
        return
    cube = xb[0]
    eng = _Engine(cube, scales_2d, scales_1d)
    n_e = cube.shape[0]
    full = [None]

    def per_block(j, p0, p1, blocks):
        for ell, b in blocks:
            full[0][ell][:, p0:p1] = b

    def fresh():
        full[0] = [np.empty((n_e, eng.npx), x.dtype) for _ in range(scales_1d + 1)]

    fresh()
    for j, _ in eng.run(np.ones((scales_1d + 1, scales_2d + 1), dtype=bool), per_block):
        done, full[0] = full[0], None
        for ell in range(scales_1d + 1):
            yield ell, j, done[ell].reshape(x.shape)
        del done  # before the next scale's bands are allocated
        if j < scales_2d:
            fresh()


# ----------------------------------------------------------------------- analysis, adjoint
def analysis(x, scales_2d: int, scales_1d: int):
    """Φx: the 2D-1D starlet bands of ``x`` (..., n_e, ny, nx) in one array
    (L+1, J+1, ..., n_e, ny, nx), coarse last on both axes (the layout of
    ``xhsi.operators.starlet2d1d``); streamed on numpy, each band block written once;
    elsewhere the materialised transforms of ``xhsi.sparsity.wavelets``."""
    scales_2d, scales_1d = _check(x, scales_2d, scales_1d)
    bands_shape = (scales_1d + 1, scales_2d + 1)
    if not _numpy_fast(x, scales_2d, scales_1d):
        return starlet1d(starlet2d(x, scales_2d), scales_1d, axis=-3)
    xb = _cubes(x)
    n_e, npx = xb.shape[1], xb.shape[2] * xb.shape[3]
    out = np.empty(bands_shape + xb.shape, dtype=x.dtype)
    flat = out.reshape(bands_shape + (xb.shape[0], n_e, npx))
    wanted = np.ones(bands_shape, dtype=bool)
    for i, cube in enumerate(xb):
        def per_block(j, p0, p1, blocks, i=i):
            for ell, b in blocks:
                flat[ell, j, i, :, p0:p1] = b

        for _ in _Engine(cube, scales_2d, scales_1d).run(wanted, per_block):
            pass
    return out.reshape(bands_shape + tuple(x.shape))


def adjoint(coeffs, scales_2d: int, scales_1d: int):
    """Φᵀc for coefficients ``coeffs`` (L+1, J+1, ..., n_e, ny, nx) of ``analysis``: the
    cube (..., n_e, ny, nx). Streamed on numpy (module docstring: Sᵀ = W S W⁻¹); elsewhere
    the materialised adjoints of ``xhsi.sparsity.wavelets``."""
    scales_2d, scales_1d = _check_scales(scales_2d), _check_scales(scales_1d)
    bands_shape = (scales_1d + 1, scales_2d + 1)
    if tuple(coeffs.shape[:2]) != bands_shape or coeffs.ndim < 5:
        raise ShapeError(f"the 2D-1D coefficients must have shape {bands_shape} + (..., n_e, ny, nx), "
                         f"got {tuple(coeffs.shape)}.")
    shape = tuple(coeffs.shape[2:])
    template = coeffs[0, 0, ...]
    if not _numpy_fast(template, scales_2d, scales_1d):
        return starlet2d_adjoint(starlet1d_adjoint(coeffs, axis=-3))
    c = np.ascontiguousarray(coeffs).reshape(bands_shape + (-1,) + shape[-3:])
    out = np.empty((c.shape[2],) + shape[-3:], dtype=coeffs.dtype)
    for i in range(c.shape[2]):
        _adjoint_numpy(c[:, :, i], out[i], scales_2d, scales_1d)
    return out.reshape(shape)


def _scale_ends(a, axes, factor: float) -> None:
    """Multiply the first and last samples of ``a`` along each of ``axes`` by ``factor``,
    in place: W⁻¹ (factor 2) and W (factor ½) of the mirror weights (module docstring)."""
    for ax in axes:
        for k in (0, -1):
            idx = [slice(None)] * a.ndim
            idx[ax] = k
            a[tuple(idx)] *= factor


def _adjoint_numpy(c, out, scales_2d: int, scales_1d: int) -> None:
    """Φᵀc of one cube's coefficients ``c`` (L+1, J+1, n_e, ny, nx) into ``out``:
    g_j = w_e·Σ_l E_l(w_e⁻¹ c_lj) along energy per pixel block (Horner: E_l are the 1-D
    bands, built from the forward smoothings), then W_s·Σ_j P_j-Horner(W_s⁻¹ g_j) over the
    sky on energy chunks, W_s = w_y ⊗ w_x."""
    J, L = scales_2d, scales_1d
    n_e = out.shape[0]
    eng = _Engine(out, J, L)
    npx = eng.npx
    c2 = c.reshape(c.shape[:3] + (npx,))
    g = np.empty((J + 1, n_e, npx), dtype=out.dtype)

    def energy(p0):
        p1 = min(p0 + eng.blk, npx)
        k = p1 - p0
        r, s, t, a, e = (b[:, :k] for b in eng.bufs()[:5])
        for j in range(J + 1):
            y = c2[:, j, :, p0:p1]
            np.subtract(y[L], y[L - 1], out=r)
            _scale_ends(r, (0,), 2.0)
            for ell in range(L - 1, -1, -1):
                r, s = _smooth_numpy(r, 2 ** ell, 0, out=s, scratch=(t, a)), r
                if ell:
                    np.subtract(y[ell], y[ell - 1], out=e)
                else:
                    np.copyto(e, y[0])
                _scale_ends(e, (0,), 2.0)
                np.add(r, e, out=r)
            _scale_ends(r, (0,), 0.5)
            g[j, :, p0:p1] = r

    pool = _pool(eng.workers)
    eng._map(pool, energy, range(0, npx, eng.blk))
    cubes = g.reshape((J + 1,) + out.shape)
    _scale_ends(cubes, (2, 3), 2.0)
    r, s = out, np.empty_like(out)
    np.subtract(cubes[J], cubes[J - 1], out=r)
    for j in range(J - 1, -1, -1):
        eng._map(pool, lambda e0, src=r, dst=s, d=2 ** j: eng._smooth2d_chunk(src, d, dst, e0),
                 range(0, n_e, CHUNK_E))
        r, s = s, r
        if j:
            np.add(r, cubes[j], out=r)
            np.subtract(r, cubes[j - 1], out=r)
        else:
            np.add(r, cubes[0], out=r)
    if r is not out:
        np.copyto(out, r)
    _scale_ends(out, (1, 2), 0.5)
