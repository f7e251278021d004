"""Per-operator timings at the published toy size (2400 × 45 × 45, float32, numpy): each
observation's compiled forward operator (apply and adjoint), the plain four-operator chain
it replaces, the FFT passes alone (the floor of one application), and the forward operator
restricted to the rank-3 spectral basis (``spectral_basis_forward``).

The cupy column needs a CUDA GPU; without one those cases skip (the GPU column of the table
stays empty: no numbers are made up)."""
from __future__ import annotations

import numpy as np
import pytest

from benchlib import backends, blur_parts, fft_passes, median_s, plain_forward, record

OBS = ["xmm", "xrism"]
BACKENDS = backends()


def _obs(published, name):
    cfg, prep = published
    return next(o for o in prep.observations if o.name == name), prep


def _cube(shape, seed=0):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def _on(backend: str, published, name):
    """(forward operator, prepared) on ``backend`` (numpy: the session's; cupy: recompiled)."""
    obs, prep = _obs(published, name)
    if backend == "numpy":
        return obs.forward, prep
    from xhsi.backend import Backend
    from xhsi.instruments import compile_forward

    be = Backend(backend, "float32")
    fwd = obs.forward
    cfg = published[0]
    o_cfg = next(o for o in cfg.observations if o.name == name)
    op = compile_forward(fwd.instrument, fwd.model_energy_edges_kev, fwd.shape_in[1:], fwd.model_pixel_arcsec,
                         fwd.exposure_s, spatial_rebin=o_cfg.spatial_rebin, spectral_rebin=o_cfg.spectral_rebin,
                         backend=be)
    return op, prep


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", OBS)
@pytest.mark.parametrize("direction", ["apply", "adjoint"])
def test_forward_operator(benchmark, published, name, direction, backend):
    op, prep = _on(backend, published, name)
    be = prep.backend if backend == "numpy" else None
    xp = op.namespace()
    x = xp.asarray(_cube(op.shape_in if direction == "apply" else op.shape_out))
    fn = op.apply if direction == "apply" else op.adjoint
    sync = (lambda: None) if backend == "numpy" else __import__("cupy").cuda.get_current_stream().synchronize

    def run():
        fn(x)
        sync()

    benchmark.group = f"operator {name}"
    benchmark.pedantic(run, rounds=7, warmup_rounds=1)
    record(f"op/{name}/{direction}/{backend}", {"ms": 1e3 * median_s(benchmark), "operator": repr(op)})
    assert be is None or x.dtype == be.dtype


@pytest.mark.parametrize("name", OBS)
@pytest.mark.parametrize("direction", ["apply", "adjoint"])
def test_plain_chain_before_issue8(benchmark, published, name, direction):
    """The SpatialRebin ∘ SpectralResponse ∘ SpatialConvolution ∘ Diagonal chain the fused
    operators replace (same map), for the speed-up ratio in one run."""
    obs, prep = _obs(published, name)
    op = plain_forward(obs, prep.grid)
    x = _cube(op.shape_in if direction == "apply" else op.shape_out)
    fast = obs.forward.apply(x) if direction == "apply" else obs.forward.adjoint(x)
    slow = op.apply(x) if direction == "apply" else op.adjoint(x)
    scale = float(np.max(np.abs(slow)))
    assert float(np.max(np.abs(fast - slow))) <= 1e-4 * scale, "fused and plain operators disagree"
    fn = op.apply if direction == "apply" else op.adjoint
    benchmark.group = f"operator {name}"
    benchmark.pedantic(fn, args=(x,), rounds=5, warmup_rounds=1)
    record(f"op/{name}/{direction}/plain", {"ms": 1e3 * median_s(benchmark), "operator": repr(op)})


@pytest.mark.parametrize("name", OBS)
@pytest.mark.parametrize("direction", ["apply", "adjoint"])
def test_fft_floor_of_one_application(benchmark, published, name, direction):
    """Only the FFTs one application needs (same shapes, grids and workers), on
    preallocated arrays: nothing else can make it faster on this library."""
    obs, _ = _obs(published, name)
    passes = [fft_passes(p) for p in blur_parts(obs.forward)]
    fns = [fwd if direction == "apply" else adj for fwd, adj in passes]

    def run():
        for fn in fns:
            fn()

    benchmark.group = f"operator {name}"
    benchmark.pedantic(run, rounds=7, warmup_rounds=1)
    record(f"op/{name}/{direction}/fft_floor", {"ms": 1e3 * median_s(benchmark)})


@pytest.mark.parametrize("name", OBS)
@pytest.mark.parametrize("direction", ["apply", "adjoint"])
def test_forward_on_rank_maps(benchmark, published, name, direction):
    """A ∘ W on 3 rank maps (spectral_basis_forward): what the low-rank set-ups need per
    application once the problem uses it (proposed change to problems/imaging.py)."""
    from xhsi.operators.lowrank import spectral_basis_forward

    obs, _ = _obs(published, name)
    w = np.linalg.qr(np.random.default_rng(1).random((obs.forward.shape_in[0], 3)))[0].astype(np.float32)
    op = spectral_basis_forward(obs.forward, w)
    assert op is not None
    x = _cube(op.shape_in if direction == "apply" else op.shape_out)
    fn = op.apply if direction == "apply" else op.adjoint
    benchmark.group = f"operator {name}"
    benchmark.pedantic(fn, args=(x,), rounds=15, warmup_rounds=2)
    record(f"op/{name}/{direction}/rank_maps", {"ms": 1e3 * median_s(benchmark), "operator": repr(op)})
