"""One FISTA iteration (``solver.step()`` of the default solver) at the published toy size,
float32, numpy, for the four published regulariser set-ups, and the FFT floor of each
measured in the same run.

Floor of a set-up = Σ over observations of (forward applications per iteration × FFT time
of one forward application + adjoint applications × FFT time of one adjoint), with the
application counts measured during the timed iterations (backtracking trials included)
and the FFT times measured here on preallocated arrays. For operators that use the
matrix (separable) method the floor keeps the FFT passes the Fourier method would need:
the floor is "what the FFTs alone would cost", the issue's yardstick.

Low-rank set-ups are timed twice: as shipped (the problem composes A_k ∘ W, so every
application still touches the 2400 slices) and with ``collapse`` (A_k ∘ W folded onto the
rank maps by ``xhsi.operators.lowrank.spectral_basis_forward``: the change proposed for
``problems/imaging.py``)."""
from __future__ import annotations

import time

import pytest

from benchlib import (PUBLISHED_S, SETUPS, blur_parts, build_fista, fft_passes, fusion_config, median_s,
                      record)

# (set-up, collapse): the low-rank problems now fold the basis into the operators
# themselves, so the former "+collapse" cases (benchlib.build_fista(collapse=True)) time
# the same thing and are no longer run.
CASES = [("none", False), ("lowrank_sobolev", False), ("lowrank_starlet2d", False), ("lowrank_sobolev_nmf24", False),
         ("lowrank_starlet2d_nmf24", False), ("starlet2d1d", False)]
ROUNDS = {"none": 5, "starlet2d1d": 3}


def _fft_times(prep, rounds: int = 5) -> dict[str, tuple[float, float]]:
    """Median seconds of the FFT passes of one forward and one adjoint application, per
    observation (full-cube operators)."""
    out = {}
    for obs in prep.observations:
        passes = [fft_passes(p) for p in blur_parts(obs.forward)]
        times = []
        for which in (0, 1):
            samples = []
            for _ in range(rounds + 1):
                t0 = time.perf_counter()
                for p in passes:
                    p[which]()
                samples.append(time.perf_counter() - t0)
            samples = sorted(samples[1:])
            times.append(samples[len(samples) // 2])
        out[obs.name] = (times[0], times[1])
    return out


@pytest.mark.parametrize("setup, collapse", CASES, ids=[f"{s}{'+collapse' if c else ''}" for s, c in CASES])
def test_fista_iteration(benchmark, published, setup, collapse):
    _, prep = published
    cfg = fusion_config(SETUPS[setup])
    t0 = time.perf_counter()
    solver, problem, counters = build_fista(prep, cfg, setup, collapse=collapse)
    build_s = time.perf_counter() - t0
    solver.step()  # first iteration: thresholds, caches, norm estimates
    for c in counters:
        c.reset()
    rounds = ROUNDS.get(setup, 3 if not collapse else 20)
    benchmark.group = "fista iteration, 2400x45x45 float32 numpy"
    benchmark.pedantic(solver.step, rounds=rounds, warmup_rounds=0)
    iterations = rounds
    per_iter = median_s(benchmark)

    # FFT floor of the same iteration (same counts), measured right after, same process.
    if collapse:
        floor = None  # rank-map operators: 3 maps, the FFTs are negligible (see the operator table)
    else:
        fft = _fft_times(prep)
        floor = sum(c.applies / iterations * fft[o.name][0] + c.adjoints / iterations * fft[o.name][1]
                    for c, o in zip(counters, prep.observations))
    lo, hi = PUBLISHED_S[setup]
    key = f"iter/{setup}{'+collapse' if collapse else ''}"
    record(key, {
        "setup": setup, "collapse": collapse, "ms_per_iteration": 1e3 * per_iter,
        "fft_floor_ms": None if floor is None else 1e3 * floor,
        "over_floor": None if floor is None else per_iter / floor,
        "speedup_vs_published": [lo / per_iter, hi / per_iter],
        "applications_per_iteration": {o.name: [c.applies / iterations, c.adjoints / iterations]
                                       for c, o in zip(counters, prep.observations)},
        "build_s": build_s, "variable_shape": list(solver.state.x.shape), "dtype": str(solver.state.x.dtype),
        "step": solver.current_step(),
    })
    benchmark.extra_info.update(record_key=key, fft_floor_ms=None if floor is None else 1e3 * floor)
    assert str(solver.state.x.dtype) == "float32"
