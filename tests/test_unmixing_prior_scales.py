"""Thresholds per starlet scale from pieces of information about block means of different
sizes (``block_transfer``, ``shared_coefficient_sigma``): what a coarse spectrometer's
pixels add to the unmixing prior of a fine grid (problem ``fusion_unmixing``)."""
import numpy as np
import pytest

from xhsi.problems.unmixing_prior import (block_transfer, coefficient_sigma, information_shares,
                                          shared_coefficient_sigma)
from xhsi.sparsity.wavelets import starlet2d


def _exact_transfer(scales, factor, side):
    """trace(B_jᵀ P B_j) / trace(B_jᵀ B_j): B_j the scale-j starlet band as a matrix (applied to
    every unit image), P the orthogonal projection onto block-constant images."""
    eye = np.eye(side * side).reshape(side * side, side, side)
    bands = np.asarray(starlet2d(eye, scales))  # (J + 1, side², side, side): column k of B_j
    n = side // factor
    means = bands.reshape(scales + 1, side * side, n, factor, n, factor).mean(axis=(3, 5))
    return (means ** 2).sum(axis=(1, 2, 3)) * factor ** 2 / (bands ** 2).sum(axis=(1, 2, 3))


@pytest.mark.parametrize("factor", [2, 3])
def test_block_transfer_is_the_fraction_of_each_band_that_block_means_keep(factor):
    side, scales = 6 * factor, 2
    exact = _exact_transfer(scales, factor, side)
    estimate = block_transfer(scales, factor, draws=4000, side=side)
    np.testing.assert_allclose(estimate, exact, rtol=0.05, atol=0.005)
    assert np.all(np.diff(exact) > 0) and exact[0] < 0.2 and exact[-1] > 0.5  # fine bands are lost, coarse kept


def test_block_transfer_of_the_model_pixels_themselves_is_one_and_falls_with_the_block():
    np.testing.assert_array_equal(block_transfer(3, 1), np.ones(4))
    two, five = block_transfer(3, 2), block_transfer(3, 5)
    assert np.all(five < two) and np.all((0 < five) & (two <= 1.0))


def test_pieces_of_one_block_size_are_coefficient_sigma_itself():
    rng = np.random.default_rng(0)
    s = rng.uniform(0.5, 2.0, (12, 12))
    w = rng.uniform(0.0, 1.0, s.shape)
    for shares in ([(np.ones_like(s), 1)], [(w, 1), (1.0 - w, 1)], [(np.ones_like(s), 3)]):
        np.testing.assert_array_equal(shared_coefficient_sigma(s, shares, 2, seed=3), coefficient_sigma(s, 2, seed=3))


def test_a_coarse_piece_adds_its_information_to_each_scale_by_what_its_pixels_keep_of_it():
    """The penalty k·s·D grows as √(information): at a fixed metric s² adds over the pieces,
    a coarse one's × ρ_j."""
    s = np.ones((12, 12))
    shares = [(np.full_like(s, 0.2), 1), (np.full_like(s, 0.8), 3)]  # the imager holds a fifth of the information
    both = shared_coefficient_sigma(s, shares, 2, seed=1)
    whole = coefficient_sigma(s, 2, seed=1)
    rho = block_transfer(2, 3, seed=1)
    np.testing.assert_allclose(both, whole * np.sqrt(0.2 + 0.8 * rho)[:, None, None], rtol=1e-10)
    # finest scale: about the imager's fifth alone (s / √5), coarse: about the whole
    assert 1 / np.sqrt(5) <= float(np.median(both[0] / whole[0])) < 0.5 and float(np.median(both[-1] / whole[-1])) > 0.9


def test_information_shares_split_each_pixel_by_inverse_variance():
    fine, coarse = np.array([[1.0, np.inf], [2.0, np.nan]]), np.array([[1.0, 2.0], [np.inf, np.nan]])
    (w1, f1), (w2, f2) = information_shares([(fine, 1), (coarse, 3)])
    assert (f1, f2) == (1, 3)
    np.testing.assert_allclose(w1, [[0.5, 0.0], [1.0, 1.0]])  # no information anywhere: the finest piece
    np.testing.assert_allclose(w2, [[0.5, 1.0], [0.0, 0.0]])


def test_shared_thresholds_on_every_backend(backend):
    """The noise levels stay on the run's backend and dtype and equal numpy's."""
    from array_api_compat import array_namespace

    from xhsi.backend import to_numpy

    s = np.random.default_rng(2).uniform(0.5, 2.0, (12, 12))
    shares = [(np.full_like(s, 0.3), 1), (np.full_like(s, 0.7), 3)]
    out = shared_coefficient_sigma(backend.asarray(s), shares, 2, seed=4)
    assert array_namespace(out) == backend.xp and out.dtype == backend.dtype
    ref = shared_coefficient_sigma(s, shares, 2, seed=4)
    np.testing.assert_allclose(to_numpy(out), ref, rtol=1e-4 if backend.dtype_name == "float32" else 1e-10)


def _gaussian_psf(sigma_px: float, half: int) -> np.ndarray:
    r = np.arange(-half, half + 1)
    k = np.exp(-0.5 * (r[:, None] ** 2 + r[None, :] ** 2) / sigma_px ** 2)
    return k / k.sum()


def _exact_blurred_transfer(scales, factor, side, psf):
    """As ``_exact_transfer``, the bands circularly blurred by ``psf`` before the block means."""
    eye = np.eye(side * side).reshape(side * side, side, side)
    bands = np.asarray(starlet2d(eye, scales))
    h = psf.shape[0] // 2
    padded = np.zeros((side, side))
    padded[:psf.shape[0], :psf.shape[1]] = psf
    padded = np.roll(padded, (-h, -h), axis=(0, 1))
    seen = np.fft.irfft2(np.fft.rfft2(bands) * np.fft.rfft2(padded), s=(side, side))
    n = side // factor
    means = seen.reshape(scales + 1, side * side, n, factor, n, factor).mean(axis=(3, 5))
    return (means ** 2).sum(axis=(1, 2, 3)) * factor ** 2 / (bands ** 2).sum(axis=(1, 2, 3))


def test_block_transfer_behind_a_psf_is_the_fraction_of_each_band_blurred_block_means_keep():
    side, scales, factor = 18, 2, 3
    psf = _gaussian_psf(1.5, 4)
    exact = _exact_blurred_transfer(scales, factor, side, psf)
    estimate = block_transfer(scales, factor, draws=4000, side=side, psf=psf)
    np.testing.assert_allclose(estimate, exact, rtol=0.05, atol=0.002)
    unblurred = _exact_transfer(scales, factor, side)
    assert np.all(exact < unblurred) and np.all(np.diff(exact) > 0)


def test_a_point_psf_changes_nothing_and_a_wider_one_keeps_less_of_every_scale():
    point = np.zeros((5, 5))
    point[2, 2] = 1.0
    np.testing.assert_allclose(block_transfer(2, 3, psf=point), block_transfer(2, 3), rtol=1e-12)
    np.testing.assert_allclose(block_transfer(2, 1, psf=point), np.ones(3), rtol=1e-12)
    narrow, wide = block_transfer(2, 1, psf=_gaussian_psf(1.0, 5)), block_transfer(2, 1, psf=_gaussian_psf(4.0, 16))
    assert np.all(wide < narrow) and np.all(narrow < 1.0)


def test_finest_scale_weights_count_a_blurred_coarse_observation_by_what_it_keeps_of_the_finest_scale():
    from xhsi.problems.unmixing_prior import finest_scale_weights

    sharp, blurred = _gaussian_psf(0.7, 3), _gaussian_psf(6.0, 24)
    assert finest_scale_weights([(1, sharp)]) == [1.0]
    assert finest_scale_weights([(1, sharp), (1, sharp)]) == [1.0, 1.0]
    one, coarse = finest_scale_weights([(1, sharp), (3, blurred)])
    rho = block_transfer(1, 3, psf=blurred)[0] / block_transfer(1, 1, psf=sharp)[0]
    assert one == 1.0 and coarse == pytest.approx(rho) and coarse < 0.01


def test_thresholds_count_each_piece_through_its_psf_relative_to_the_sharpest():
    s = np.ones((12, 12))
    sharp, blurred = _gaussian_psf(0.7, 3), _gaussian_psf(3.0, 12)
    shares = [(np.full_like(s, 0.4), 1, sharp), (np.full_like(s, 0.6), 3, blurred)]
    both = shared_coefficient_sigma(s, shares, 2, seed=2)
    whole = coefficient_sigma(s, 2, seed=2)
    ratio = block_transfer(2, 3, seed=2, psf=blurred) / block_transfer(2, 1, seed=2, psf=sharp)
    np.testing.assert_allclose(both, whole * np.sqrt(np.clip(0.4 + 0.6 * ratio, 0, 1))[:, None, None], rtol=1e-10)
    # without the PSFs the coarse piece would weigh more on every scale
    plain = shared_coefficient_sigma(s, [(w, f) for w, f, _ in shares], 2, seed=2)
    assert np.all(both <= plain * (1 + 1e-12)) and np.any(both < 0.95 * plain)
    (w1, f1, p1), (w2, f2, p2) = information_shares([(np.ones((2, 2)), 1, sharp), (np.ones((2, 2)), 3, blurred)])
    assert (f1, f2) == (1, 3) and p1 is sharp and p2 is blurred


def test_band_energy_is_each_band_of_an_impulse_and_the_white_noise_gain():
    from xhsi.problems.unmixing_prior import band_energy

    energy = band_energy(2)
    assert 0.7 < energy[0] < 0.9 and energy[1] < energy[0] / 10  # the finest band keeps most of an impulse
    noise = coefficient_sigma(np.ones((64, 64)), 2, seed=5, draws=400)
    np.testing.assert_allclose(np.median(noise ** 2, axis=(1, 2)), energy, rtol=0.1)


def test_local_thresholds_are_the_noise_level_where_it_is_uniform_and_fall_beside_noisier_pixels():
    from xhsi.problems.unmixing_prior import local_thresholds

    flat = np.ones((32, 32))
    sig = coefficient_sigma(flat, 2, seed=1, draws=400)
    ratio = local_thresholds(sig, flat, 2)[:2] / sig[:2]  # ‖ψ‖²·s²/c² = 1 up to the draws' sampling error
    np.testing.assert_allclose(np.median(ratio, axis=(1, 2)), 1.0, rtol=0.03)
    # a bright half (s = 1) beside a faint one (s = 100), penalties λ = T·D with D = 1/s²
    s = np.ones((32, 32))
    s[:, 16:] = 100.0
    sig = coefficient_sigma(s, 2, seed=1, draws=400)
    old, new = sig / s ** 2, local_thresholds(sig, s, 2) / s ** 2
    edge, inside = (slice(None), 15), (slice(None), 6)
    assert np.median(old[0][edge]) > 10 * np.median(old[0][inside])  # the neighbours' noise at the pixel's curvature
    assert np.median(new[0][edge]) <= 1.1 * np.median(new[0][inside])
