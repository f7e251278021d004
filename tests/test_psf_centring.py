"""PSF images are centred on their peak, not on the middle of the array (issue 24 item 3):
an even-sized image centred on its middle used to give a kernel shifted by half a pixel."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.io import fits

from xhsi.instruments import load_instrument
from xhsi.instruments.response import image_peak_centre, resample_axis

INSTRUMENT = """\
[instrument]
name = "toy_psf"
references = ["made up for tests"]

[channels]
min_kev = 1.0
max_kev = 3.0
count = 4

[spectral_response]
kind = "gaussian"
fwhm_ev = 100.0

[effective_area]
kind = "constant"
cm2 = 100.0

[spatial]
pixel_arcsec = 1.0

[psf]
kind = "image"
file = "psf.fits"
image_pixel_arcsec = 1.0
"""


def gaussian_image(shape, centre_yx, sigma=1.2) -> np.ndarray:
    """A Gaussian integrated over each pixel (exact), its centre ``centre_yx`` in pixels from the
    outer edge (a pixel centre is at k + 0.5)."""
    from scipy.special import ndtr

    def axis(n, c):
        e = np.arange(n + 1) - c
        return np.diff(ndtr(e / sigma))

    return np.outer(axis(shape[0], centre_yx[0]), axis(shape[1], centre_yx[1]))


def kernel_of(tmp_path, image) -> np.ndarray:
    fits.PrimaryHDU(image).writeto(tmp_path / "psf.fits", overwrite=True)
    (tmp_path / "toy.toml").write_text(INSTRUMENT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the even-size and normalisation notices
        return load_instrument(tmp_path / "toy.toml").psf_image(1.0)


def centroid(kernel) -> tuple[float, float]:
    yy, xx = np.indices(kernel.shape)
    return float((kernel * yy).sum() / kernel.sum()), float((kernel * xx).sum() / kernel.sum())


def test_shifted_even_psf_image_gives_a_kernel_centred_on_its_peak(tmp_path):
    # 12 x 12 image whose peak is the centre of pixel (4, 7), not the array's middle (6, 6).
    image = gaussian_image((12, 12), (4.5, 7.5), sigma=0.9)  # 5 sigma inside the nearest edge
    kernel = kernel_of(tmp_path, image)
    ky, kx = kernel.shape
    assert ky % 2 == 1 and kx % 2 == 1
    assert np.unravel_index(kernel.argmax(), kernel.shape) == (ky // 2, kx // 2)
    # Centred exactly: the centroid is the middle pixel, and the kernel is the same Gaussian
    # sampled about its centre (compare with an odd image of it, centred by construction).
    np.testing.assert_allclose(centroid(kernel), (ky // 2, kx // 2), atol=1e-6)
    reference = gaussian_image((ky, kx), (ky / 2.0, kx / 2.0), sigma=0.9)
    np.testing.assert_allclose(kernel, reference / reference.sum(), atol=1e-6)


def test_even_psf_image_centred_on_its_middle_keeps_that_centre(tmp_path):
    # A PSF symmetric about the middle corner of a 10 x 10 array: the four central pixels are
    # equal, and the kernel is centred on that corner, as before.
    kernel = kernel_of(tmp_path, gaussian_image((10, 10), (5.0, 5.0)))
    ky, kx = kernel.shape
    np.testing.assert_allclose(centroid(kernel), (ky // 2, kx // 2), atol=1e-12)
    np.testing.assert_allclose(kernel, kernel[::-1, ::-1], atol=1e-15)


def test_image_peak_centre_and_resample_axis():
    assert image_peak_centre(gaussian_image((10, 10), (5.0, 5.0))) == pytest.approx((5.0, 5.0), abs=1e-12)
    assert image_peak_centre(gaussian_image((9, 12), (3.5, 8.5), sigma=0.8)) == pytest.approx((3.5, 8.5), abs=0.02)
    # A second, fainter source above half the maximum but not connected to the peak is ignored.
    image = gaussian_image((16, 16), (4.5, 4.5), 0.8) + 0.7 * gaussian_image((16, 16), (12.5, 12.5), 0.8)
    assert image_peak_centre(image) == pytest.approx((4.5, 4.5), abs=0.02)
    # resample_axis about a centre: a unit input pixel centred there maps onto the middle output pixel.
    r = resample_axis(6, 1.0, 3, 1.0, centre_in=2.5)
    np.testing.assert_allclose(r, [[0, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0], [0, 0, 0, 1, 0, 0]], atol=1e-15)
    np.testing.assert_allclose(resample_axis(6, 1.0, 3, 1.0), resample_axis(6, 1.0, 3, 1.0, centre_in=3.0))
