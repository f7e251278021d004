"""Metrics on hand-computed cases and against a per-slice SSIM reference."""
from __future__ import annotations

import math

import numpy as np
import pytest

from xhsi import metrics
from xhsi.errors import ShapeError


# -- PSNR -----------------------------------------------------------------------------
def test_psnr_of_a_constant_error(xp):
    truth = np.zeros((2, 3, 4))
    truth[1, 2, 3] = 2.0  # peak 2
    est = truth + 0.1     # MSE = 0.01
    got = metrics.psnr(xp.asarray(est), xp.asarray(truth))
    assert got == pytest.approx(10 * math.log10(4.0 / 0.01))  # 26.0206 dB


def test_psnr_identical_is_infinite():
    a = np.ones((2, 3, 3))
    assert metrics.psnr(a, a) == math.inf


# -- ASAM -----------------------------------------------------------------------------
def test_asam_hand_cases(xp):
    truth = np.zeros((2, 1, 4))
    est = np.zeros((2, 1, 4))
    truth[:, 0, 0], est[:, 0, 0] = [1, 0], [0, 3]      # orthogonal: 90°
    truth[:, 0, 1], est[:, 0, 1] = [1, 2], [2, 4]      # parallel: 0°
    truth[:, 0, 2], est[:, 0, 2] = [1, 0], [1, 1]      # 45°
    truth[:, 0, 3], est[:, 0, 3] = [0, 0], [5, 5]      # zero truth: excluded
    got = metrics.asam(xp.asarray(est), xp.asarray(truth))
    assert got == pytest.approx((90 + 0 + 45) / 3)


def test_asam_identical_and_orthogonal():
    rng = np.random.default_rng(0)
    t = rng.uniform(0.1, 1.0, (5, 4, 4))
    assert metrics.asam(t, t) == pytest.approx(0.0, abs=1e-5)
    a = np.zeros((2, 2, 2)); a[0] = 1.0
    b = np.zeros((2, 2, 2)); b[1] = 1.0
    assert metrics.asam(a, b) == pytest.approx(90.0)


def test_asam_zero_estimate_counts_as_orthogonal():
    t = np.ones((3, 2, 2))
    e = t.copy(); e[:, 0, 0] = 0.0
    assert metrics.asam(e, t) == pytest.approx(90.0 / 4)


# -- SSIM -----------------------------------------------------------------------------
def _ssim_reference(est, truth, data_range):
    """Per-slice, per-window SSIM straight from Wang et al. 2004 (7×7 Gaussian σ=1.5, valid windows)."""
    r = 3
    g = np.exp(-(np.arange(-r, r + 1) ** 2) / (2 * 1.5 ** 2))
    w = np.outer(g, g)
    w /= w.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    out = []
    for x, y in zip(est, truth):
        values = []
        for i in range(r, x.shape[0] - r):
            for j in range(r, x.shape[1] - r):
                px, py = x[i - r:i + r + 1, j - r:j + r + 1], y[i - r:i + r + 1, j - r:j + r + 1]
                mx, my = (w * px).sum(), (w * py).sum()
                vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
                cxy = (w * (px - mx) * (py - my)).sum()
                values.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2)))
        out.append(np.mean(values))
    return np.array(out)


def test_ssim_matches_per_slice_reference():
    rng = np.random.default_rng(3)
    truth = rng.uniform(0.0, 2.0, (3, 11, 12))
    est = truth + rng.normal(0.0, 0.3, truth.shape)
    got = metrics.ssim_per_bin(est, truth)
    ref = _ssim_reference(est, truth, truth.max() - truth.min())
    np.testing.assert_allclose(got, ref, rtol=1e-10)
    assert metrics.mean_ssim(est, truth) == pytest.approx(ref.mean(), rel=1e-10)
    assert metrics.acssim(est, truth) == pytest.approx(1 - ref.mean(), rel=1e-10)
    np.testing.assert_allclose(metrics.ssim_per_bin(est, truth, data_range=5.0),
                               _ssim_reference(est, truth, 5.0), rtol=1e-10)


def test_ssim_of_identical_images_is_one(xp):
    t = xp.asarray(np.random.default_rng(1).uniform(size=(4, 9, 9)))
    np.testing.assert_allclose(metrics.ssim_per_bin(t, t), 1.0, rtol=1e-12)
    assert metrics.acssim(t, t) == pytest.approx(0.0, abs=1e-12)


def test_ssim_needs_7x7_images():
    with pytest.raises(ShapeError, match="7 x 7"):
        metrics.ssim_per_bin(np.ones((2, 6, 9)), np.ones((2, 6, 9)))


def test_asam_bright_keeps_only_pixels_above_the_flux_fraction(xp):
    truth = np.zeros((2, 1, 3))
    truth[:, 0, 0] = [1, 0]      # flux 1: the brightest
    truth[:, 0, 1] = [0, 0.05]   # flux 0.05: kept at f = 0.05, dropped at f = 0.1
    truth[:, 0, 2] = [0.001, 0]  # flux 0.001: dropped
    est = truth.copy()
    est[:, 0, 1] = [0.05, 0]     # orthogonal: 90°
    est[:, 0, 2] = [0, 0.001]    # orthogonal: 90°
    e, t = xp.asarray(est), xp.asarray(truth)
    assert metrics.asam(e, t) == pytest.approx(60.0)
    assert metrics.asam(e, t, min_flux_fraction=0.05) == pytest.approx(45.0)
    assert metrics.asam(e, t, min_flux_fraction=0.1) == pytest.approx(0.0, abs=1e-6)
    assert metrics.BRIGHT_FRACTION == 0.01


def test_asam_by_flux_splits_the_pixels_into_classes_of_true_flux(xp):
    """Four pixels of flux 1, 0.2, 0.02 and 0.001 of the peak, estimated at 0°, 90°, 60° and
    90°: classes [0, 0.01), [0.01, 0.1), [0.1, 1], with one empty class [0.1, 0.15)."""
    truth = np.zeros((2, 2, 2))
    truth[:, 0, 0] = [1, 0]
    truth[:, 0, 1] = [0.2, 0]
    truth[:, 1, 0] = [0.02, 0]
    truth[:, 1, 1] = [0, 0.001]
    est = truth.copy()
    est[:, 0, 1] = [0, 0.2]                               # 90°
    est[:, 1, 0] = [0.01, 0.01 * np.sqrt(3)]              # 60°
    est[:, 1, 1] = [0.001, 0]                             # 90°
    got = metrics.asam_by_flux(xp.asarray(est), xp.asarray(truth), edges=(0.01, 0.1, 0.15))
    assert [c["pixels"] for c in got] == [1, 1, 0, 2]
    assert [c["min_fraction"] for c in got] == [0.0, 0.01, 0.1, 0.15]
    assert [c["max_fraction"] for c in got] == [0.01, 0.1, 0.15, None]
    assert got[0]["asam_deg"] == pytest.approx(90.0)
    assert got[1]["asam_deg"] == pytest.approx(60.0)
    assert math.isnan(got[2]["asam_deg"])
    assert got[3]["asam_deg"] == pytest.approx(45.0)
    # the classes partition the pixels: their pixel-weighted mean is the all-pixel ASAM
    full = metrics.asam_by_flux(xp.asarray(est), xp.asarray(truth))
    assert sum(c["pixels"] for c in full) == 4
    mean = sum(c["pixels"] * c["asam_deg"] for c in full if c["pixels"]) / 4
    assert mean == pytest.approx(metrics.asam(xp.asarray(est), xp.asarray(truth)))


def test_asam_by_flux_refuses_edges_that_do_not_increase():
    t = np.ones((2, 2, 2))
    for edges in ((0.1, 0.01), (0.0, 0.1), (0.1, 0.1)):
        with pytest.raises(ValueError, match="increasing"):
            metrics.asam_by_flux(t, t, edges=edges)


# -- relative errors ------------------------------------------------------------------
def test_relative_errors_by_hand(xp):
    truth = np.zeros((2, 1, 3))
    truth[:, 0, 0] = [3, 4]    # ‖z‖ = 5
    truth[:, 0, 1] = [1, 0]    # ‖z‖ = 1
    est = truth.copy()
    est[:, 0, 0] = [3, 5]      # error 1 → 0.2
    est[:, 0, 1] = [0, 0]      # error 1 → 1.0
    est[:, 0, 2] = [1, 1]      # zero truth: excluded per pixel, counted per voxel
    per_pixel = metrics.relative_error_per_pixel(xp.asarray(est), xp.asarray(truth))
    np.testing.assert_allclose(np.sort(per_pixel), [0.2, 1.0])
    # Σ|ẑ - z| = 1 + 1 + 2 = 4; Σ|z| = 8.
    assert metrics.relative_error_per_voxel(xp.asarray(est), xp.asarray(truth)) == pytest.approx(0.5)


# -- all_metrics ----------------------------------------------------------------------
def test_all_metrics_layout_and_values(xp):
    rng = np.random.default_rng(5)
    truth = rng.uniform(0.5, 1.0, (3, 8, 8))
    est = truth * 1.1
    out = metrics.all_metrics(xp.asarray(est), xp.asarray(truth))
    assert list(out) == ["psnr_db", "asam_deg", "asam_bright_deg", "mean_ssim", "acssim", "rel_error_pixel_median",
                         "rel_error_pixel_p90", "rel_error_voxel"]
    assert all(isinstance(v, float) for v in out.values())
    assert out["asam_deg"] == pytest.approx(0.0, abs=1e-5)          # a scaled spectrum has the same direction
    assert out["asam_bright_deg"] == pytest.approx(0.0, abs=1e-5)
    assert out["rel_error_pixel_median"] == pytest.approx(0.1)
    assert out["rel_error_pixel_p90"] == pytest.approx(0.1)
    assert out["rel_error_voxel"] == pytest.approx(0.1)
    assert out["acssim"] == pytest.approx(1.0 - out["mean_ssim"])
    assert out["psnr_db"] == pytest.approx(metrics.psnr(est, truth))


def test_metrics_reject_mismatched_shapes():
    with pytest.raises(ShapeError, match="same grid"):
        metrics.all_metrics(np.ones((2, 8, 8)), np.ones((3, 8, 8)))


def test_all_metrics_of_images_smaller_than_the_ssim_window():
    """A tile or a few binned pixels: SSIM is undefined (NaN), the other metrics are not, and
    nothing raises after a run's solve."""
    rng = np.random.default_rng(2)
    truth = rng.uniform(1.0, 2.0, (5, 4, 4))
    out = metrics.all_metrics(truth * 1.1, truth)
    assert math.isnan(out["mean_ssim"]) and math.isnan(out["acssim"])
    assert out["psnr_db"] > 0 and out["rel_error_voxel"] == pytest.approx(0.1)
    with pytest.raises(ShapeError, match="SSIM needs images"):
        metrics.mean_ssim(truth, truth)
