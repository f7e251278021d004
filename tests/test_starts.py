"""The data-only fused start ``ratio_channels`` (xhsi.problems.starts): exact channel fluxes
from noise-free counts, the broad-band limit, and the moment estimate of its prior."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xhsi.backend import to_numpy
from xhsi.operators.diagonal import Diagonal
from xhsi.operators.rebin import SpatialRebin, SpectralRebin
from xhsi.problems.base import ObservationData
from xhsi.problems.starts import backprojection, channel_ratio_shape, ratio_channels, ratio_fusion

ROOT = Path(__file__).resolve().parents[1]
N_E, NY, NX, PER_CHANNEL = 12, 6, 6, 4


def _sky(rng) -> np.ndarray:
    """Two components whose spectra differ from channel to channel and within channels,
    mixed in maps that vary on the imager's pixels."""
    e = np.linspace(1.0, 3.0, N_E)
    line = np.exp(-0.5 * ((e - 2.2) / 0.15) ** 2)
    a, b = rng.uniform(0.2, 1.0, (2, NY, NX))
    return a[None] * e[:, None, None] ** -2.0 + b[None] * (0.3 + line)[:, None, None]


def _observations(xp, sky, imager_counts=None, spectrometer_counts=None):
    """An imager (4 energy bins per channel, every pixel) and a spectrometer (every bin,
    3 × 3 pixels per detector pixel), each with its exposure × area; counts noise-free
    unless given."""
    imager = SpectralRebin((N_E, NY, NX), PER_CHANNEL) @ Diagonal(xp.asarray(200.0), (N_E, NY, NX))
    spectrometer = SpatialRebin((N_E, NY, NX), 3) @ Diagonal(xp.asarray(50.0), (N_E, NY, NX))
    z = xp.asarray(sky)
    out = []
    for name, op, counts in (("imager", imager, imager_counts), ("spectrometer", spectrometer, spectrometer_counts)):
        y = op.apply(z) if counts is None else xp.asarray(counts)
        out.append(ObservationData(name, op, y))
    return out


def _channels(cube: np.ndarray) -> np.ndarray:
    return cube.reshape(N_E // PER_CHANNEL, PER_CHANNEL, NY, NX).sum(axis=1)


def test_noise_free_counts_give_the_imager_channel_fluxes_and_the_spectrometer_shape_within_them(xp):
    sky = _sky(np.random.default_rng(0))
    obs = _observations(xp, sky)
    z = to_numpy(ratio_channels(obs, xp, alpha=0.0))
    b_spec = to_numpy(backprojection([obs[1]], xp))
    # every imager channel of every pixel holds the sky's flux there ...
    np.testing.assert_allclose(_channels(z), _channels(sky), rtol=1e-5)
    # ... spread over its bins as the spectrometer's spectrum of that pixel is
    shape = z.reshape(N_E // PER_CHANNEL, PER_CHANNEL, NY, NX) / _channels(z)[:, None]
    shape_spec = b_spec.reshape(N_E // PER_CHANNEL, PER_CHANNEL, NY, NX) / _channels(b_spec)[:, None]
    np.testing.assert_allclose(shape, shape_spec, rtol=1e-5)
    # the broad-band start (ratio_fusion) does not have the channel fluxes: the spectrometer
    # mixes the two components over its 3 x 3 pixels
    assert np.max(np.abs(_channels(to_numpy(ratio_fusion(obs, xp))) / _channels(sky) - 1)) > 0.05


def test_without_channel_information_it_is_the_broad_band_start(xp):
    sky = _sky(np.random.default_rng(1))
    obs = _observations(xp, sky)
    np.testing.assert_allclose(to_numpy(ratio_channels(obs, xp, alpha=float("inf"))),
                               to_numpy(ratio_fusion(obs, xp)), rtol=1e-5, atol=1e-12)
    # one observation finest in both: its own back-projection
    np.testing.assert_array_equal(to_numpy(ratio_channels(obs[:1], xp)), to_numpy(backprojection(obs[:1], xp)))


@pytest.mark.parametrize("alpha", [2.0, 8.0, 30.0])
def test_the_prior_shape_is_recovered_from_the_moments_of_the_counts(alpha):
    rng = np.random.default_rng(int(alpha))
    expected = rng.uniform(20.0, 80.0, 200_000)
    ratios = rng.gamma(alpha, 1.0 / alpha, expected.size)  # mean 1, CV² = 1/alpha
    counts = rng.poisson(expected * ratios).astype(float)
    assert channel_ratio_shape(counts, expected) == pytest.approx(alpha, rel=0.1)


def test_counts_that_vary_as_poisson_noise_alone_give_no_channel_departures():
    rng = np.random.default_rng(3)
    expected = rng.uniform(1.0, 30.0, 100_000)
    assert channel_ratio_shape(rng.poisson(expected).astype(float), expected) > 200.0
    assert channel_ratio_shape(expected, expected) == float("inf")


@pytest.mark.parametrize("scale", [0.03, 1.0])
def test_the_shrunk_ratios_are_as_good_as_the_better_limit_at_every_count_level(scale):
    """A channel's ratio from few counts is mostly noise, from many it is the sky's: over 20
    noise draws (~1e3 imager counts at scale 0.03, ~5e4 at 1), the start with the prior's
    shape from the moments is closer to the sky than both the per-channel (α = 0) and the
    broad-band (α = ∞) start at low counts, and as close as the per-channel one at high."""
    errors = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        sky = _sky(rng) * scale
        exact = _observations(np, sky)
        noisy = _observations(np, sky, *(rng.poisson(o.counts).astype(float) for o in exact))
        errors.append([float(np.sum(np.abs(ratio_channels(noisy, np, alpha=a) - sky)) / np.sum(sky))
                       for a in (0.0, None, float("inf"))])
    per_channel, shrunk, broad_band = np.mean(errors, axis=0)
    if scale < 1:
        assert shrunk < 0.98 * min(per_channel, broad_band), (per_channel, shrunk, broad_band)
    else:
        assert shrunk < 1.02 * per_channel and shrunk < 0.8 * broad_band, (per_channel, shrunk, broad_band)


def test_a_fusion_config_starts_from_it_when_asked():
    from xhsi import plugins
    from xhsi.config import load_config
    from xhsi.problems.imaging import Fusion
    from xhsi.problems.starts import host_observation
    from xhsi.runner import prepare

    cfg = load_config(ROOT / "configs" / "fusion_xmm_xrism_small.toml",
                      ['problem.start="ratio_channels"', "run.quicklook=false"])
    prep = prepare(cfg)
    fusion = Fusion(cfg, prep.backend, prep.grid, prep.observations, [], plugins.get("likelihood", "poisson"),
                    cfg.problem)
    host = [host_observation(o) for o in prep.observations]
    np.testing.assert_array_equal(fusion.initial_cube(), np.asarray(ratio_channels(host, np), dtype=np.float64))
    assert np.max(np.abs(fusion.initial_cube() - np.asarray(ratio_fusion(host, np), dtype=np.float64))) > 0
