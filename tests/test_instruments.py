"""Instrument TOML files: schema and its error messages, the shipped instruments, spectral
redistribution, effective area and PSF numerics, compilation into forward operators, a line
fit through a real RMF + ARF, and the "new instrument" walkthrough."""
from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from scipy.optimize import minimize
from scipy.special import ndtr

import xhsi
from xhsi.backend import to_numpy
from xhsi.errors import ConfigError, DataError, ShapeError
from xhsi.instruments import (
    FWHM_PER_SIGMA, Instrument, compile_forward, describe, gaussian_redistribution, load_instrument,
    parse_instrument, summary_rows,
)
from xhsi.operators.base import vdot
from xhsi.testing import rtol_for
from xhsi.tomlio import loads_toml

SHIPPED = ["xmm_epic_pn", "chandra_acis_s", "xrism_resolve", "athena_xifu"]
INSTRUMENTS_DIR = Path(__file__).resolve().parents[1] / "instruments"

TOY = """
[instrument]
name = "toy"
mission = "Test"
detector = "T"
references = ["made up for tests"]

[channels]
min_kev = 1.0
max_kev = 3.0
count = 40

[spectral_response]
kind = "gaussian"
fwhm_ev = { energies_kev = [1.0, 3.0], values = [60.0, 120.0] }

[effective_area]
kind = "table"
energies_kev = [0.5, 2.0, 4.0]
cm2 = [100.0, 300.0, 200.0]

[spatial]
pixel_arcsec = 2.0

[psf]
kind = "gaussian"
fwhm_arcsec = 4.0

[background]
rate = 0.01
"""


def toy(tmp_path, text=TOY, name="toy.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new)


# ----------------------------------------------------------------------------- shipped files
def test_shipped_instruments_are_registered_and_listed():
    assert set(SHIPPED) <= set(xhsi.available("instrument"))
    rows = {row["name"]: row for row in summary_rows()}
    for name in SHIPPED:
        row = rows[name]
        assert set(row) >= {"name", "mission", "detector", "band_kev", "resolution_fwhm_ev_at_6kev",
                            "pixel_arcsec", "psf_fwhm_arcsec"}
        assert row["band_kev"][0] < 6.0 < row["band_kev"][1]
    # Resolutions at 6 keV: CCDs ~100-200 eV (measured on the real RMFs), calorimeters a few eV.
    assert 150 < rows["xmm_epic_pn"]["resolution_fwhm_ev_at_6kev"] < 250
    assert 120 < rows["chandra_acis_s"]["resolution_fwhm_ev_at_6kev"] < 200
    assert rows["xrism_resolve"]["resolution_fwhm_ev_at_6kev"] < 7
    assert rows["athena_xifu"]["resolution_fwhm_ev_at_6kev"] < 3


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_instrument_has_sources_and_a_description(name):
    inst = load_instrument(name)
    assert inst.name == name and inst.references
    text = describe(name)
    assert name in text and "references" in text and "PSF" in text
    # Every response file of a shipped instrument is inside the installed package.
    from importlib import resources

    shipped = Path(str(resources.files("xhsi_instruments"))) / "responses"
    for f in (inst.spec.spectral_response.file, inst.spec.effective_area.file):
        if f is not None:
            assert Path(f).resolve().parent == shipped.resolve() and Path(f).is_file()


@pytest.mark.parametrize("name, edges, kwargs", [
    ("xmm_epic_pn", np.linspace(5.5, 7.5, 21), {}),
    ("chandra_acis_s", np.linspace(5.5, 7.5, 21), {"spectral_rebin": 2, "spatial_rebin": 2}),
    ("xrism_resolve", np.linspace(6.5, 6.7, 41), {"spectral_rebin": 4}),
    ("athena_xifu", np.linspace(6.5, 6.7, 41), {"spectral_rebin": 2, "spatial_rebin": 2}),
])
def test_shipped_instrument_compiles_and_passes_the_dot_test(name, edges, kwargs, backend):
    pixel = load_instrument(name).pixel_arcsec / kwargs.get("spatial_rebin", 1)
    op = compile_forward(name, edges, (6, 8), pixel, 1.0e4, backend=backend, **kwargs)
    assert op.shape_in == (edges.size - 1, 6, 8)
    assert op.shape_out[0] == op.channel_edges_kev.size - 1
    rng = np.random.default_rng(0)
    x = backend.asarray(rng.random(op.shape_in))
    y = backend.asarray(rng.random(op.shape_out))
    ax = op.apply(x)
    assert ax.dtype == backend.dtype and tuple(ax.shape) == op.shape_out
    lhs, rhs = vdot(ax, y), vdot(x, op.adjoint(y))
    assert abs(lhs - rhs) <= 10 * rtol_for(backend.dtype_name) * abs(lhs)
    assert compile_forward(name, edges, (6, 8), pixel, 1.0e4, backend=backend, **kwargs) is op  # cached


# ----------------------------------------------------------------------------- schema and bad input
def test_toy_file_loads_with_its_values(tmp_path):
    inst = load_instrument(toy(tmp_path))
    assert inst.name == "toy" and inst.pixel_arcsec == 2.0 and inst.background_rate == 0.01
    np.testing.assert_allclose(inst.channel_edges(), np.linspace(1.0, 3.0, 41))
    np.testing.assert_allclose(inst.fwhm_ev([0.5, 1.0, 2.0, 3.0, 9.0]), [60.0, 60.0, 90.0, 120.0, 120.0])  # clamped
    np.testing.assert_allclose(inst.effective_area([0.1, 1.25, 3.0, 5.0]), [100.0, 200.0, 250.0, 200.0])


@pytest.mark.parametrize("old, new, pattern", [
    ("pixel_arcsec = 2.0", "pixel = 2.0", r"`spatial\.pixel`: a number without a unit; write `pixel_arcsec`"),
    ("fwhm_arcsec = 4.0", "fwhm_arcsecs = 4.0", r"`psf\.fwhm_arcsecs`: unknown key \(did you mean `fwhm_arcsec`\?\)"),
    ("pixel_arcsec = 2.0", 'pixel_arcsec = "2 arcsec"', r"`spatial\.pixel_arcsec`: expected a number in arcsec, got string"),
    ("kind = \"gaussian\"\nfwhm_arcsec", "kind = \"gausian\"\nfwhm_arcsec", r"`psf\.kind`: `gausian` is not one of .*did you mean `gaussian`"),
    ("cm2 = [100.0, 300.0, 200.0]", "cm2 = [100.0, -300.0, 200.0]", r"`effective_area`: `cm2` holds a negative area"),
    ("values = [60.0, 120.0]", "values = [60.0]", r"`spectral_response\.fwhm_ev`: `energies_kev` \(2 values\) and `values` \(1\)"),
    ("values = [60.0, 120.0]", "values = [60.0, -1.0]", r"`spectral_response\.fwhm_ev\.values`: must all be > 0 eV"),
    ("count = 40", "", r"a gaussian spectral response needs `\[channels\]`"),
    ("[background]\nrate = 0.01", "[background]\nrate = -1.0", r"`background\.rate`: must be >= 0"),
])
def test_bad_values_name_the_file_and_the_key(tmp_path, old, new, pattern):
    path = toy(tmp_path, edit(textwrap.dedent(TOY), old, new))
    with pytest.raises(ConfigError, match=pattern) as info:
        load_instrument(path)
    assert str(path) in str(info.value)


def test_unknown_instrument_name_suggests_the_nearest():
    with pytest.raises(ConfigError, match=r"did you mean `xmm_epic_pn`.*path to an instrument TOML"):
        load_instrument("xmm_epic_pm")


def _rmf_toml(tmp_path, rmf: str, arf: str, channels: str = "") -> Path:
    text = f"""
        [instrument]
        name = "custom"
        {channels}
        [spectral_response]
        kind = "rmf"
        file = "{rmf}"
        [effective_area]
        kind = "arf"
        file = "{arf}"
        [spatial]
        pixel_arcsec = 4.1
        [psf]
        kind = "gaussian"
        fwhm_arcsec = 6.0
    """
    return toy(tmp_path, text, "custom.toml")


def test_missing_response_file(tmp_path):
    path = _rmf_toml(tmp_path, "nowhere/pn.rmf", str(INSTRUMENTS_DIR / "responses" / "PN.arf"))
    with pytest.raises(ConfigError, match=r"custom\.toml: `spectral_response\.file`: the file .*pn\.rmf does not exist"):
        load_instrument(path)


def test_rmf_and_arf_grids_that_do_not_match(tmp_path):
    r = INSTRUMENTS_DIR / "responses"
    path = _rmf_toml(tmp_path, str(r / "PN.rmf.gz"), str(r / "acisf04487_001N022_r0009_arf3.fits.gz"))
    with pytest.raises(DataError, match=r"custom\.toml: `effective_area\.file` .*arf3.* and `spectral_response\.file` "
                                        r".*PN\.rmf\.gz have different true-energy grids"):
        load_instrument(path)


def test_channels_outside_the_rmf(tmp_path):
    r = INSTRUMENTS_DIR / "responses"
    path = _rmf_toml(tmp_path, str(r / "acisf04487_001N022_r0009_rmf3.fits.gz"),
                     str(r / "acisf04487_001N022_r0009_arf3.fits.gz"), "[channels]\nmin_kev = 0.5\nmax_kev = 25.0")
    with pytest.raises(DataError, match=r"custom\.toml: `channels\.max_kev` = 25\.0 keV is outside the channels"):
        load_instrument(path)


def test_model_grid_outside_the_rmf_and_ungroupable_channels():
    inst = load_instrument("chandra_acis_s")  # true energies 0.3-9.3 keV
    with pytest.raises(DataError, match=r"model energies 8.*12 keV reach outside .*rmf3"):
        inst.redistribution(np.linspace(8.0, 12.0, 5))
    with pytest.raises(DataError, match="can only be grouped, not split"):
        inst.redistribution(np.linspace(2.0, 3.0, 5), channel_edges_kev=[2.0, 2.0001, 3.0])
    with pytest.raises(DataError, match="reach outside"):
        inst.mean_effective_area(np.linspace(0.1, 1.0, 4))


def test_psf_image_even_size_and_unnormalised_is_fixed_with_warnings(tmp_path):
    yy, xx = np.mgrid[:10, :10] - 4.5
    image = 50.0 * np.exp(-0.5 * (xx ** 2 + yy ** 2) / 1.5 ** 2)
    fits.PrimaryHDU(image).writeto(tmp_path / "psf.fits")
    text = edit(textwrap.dedent(TOY), 'kind = "gaussian"\nfwhm_arcsec = 4.0',
                'kind = "image"\nfile = "psf.fits"\nimage_pixel_arcsec = 1.0')
    inst = load_instrument(toy(tmp_path, text))
    with pytest.warns(UserWarning) as record:
        kernel = inst.psf_image(1.0)
    messages = " ".join(str(w.message) for w in record)
    assert "even size" in messages and "normalised to 1" in messages and "`psf.file`" in messages
    assert kernel.shape[0] % 2 == 1 and kernel.shape[1] % 2 == 1
    assert kernel.sum() == pytest.approx(1.0, rel=1e-12)
    # Resampled onto pixels twice as large: still centred and normalised, sharper in pixels.
    big = inst.psf_image(2.0)
    assert big.sum() == pytest.approx(1.0) and np.unravel_index(big.argmax(), big.shape) == (big.shape[0] // 2,) * 2


# ----------------------------------------------------------------------------- numerics
def test_gaussian_redistribution_against_brute_force():
    model = np.array([5.990, 6.000, 6.010, 6.030])  # 10 and 20 eV bins, wider than σ = 1.06 eV
    channels = np.linspace(5.98, 6.04, 61)  # 1 eV channels
    fwhm = np.full(3, 2.5e-3)
    matrix = gaussian_redistribution(model, channels, fwhm)
    # Brute force: photons uniform in each bin, each spread by the Gaussian, integrated on channels.
    sigma = 2.5e-3 / FWHM_PER_SIGMA
    for i in range(3):
        e = np.linspace(model[i], model[i + 1], 4001)[:, None]
        cdf = ndtr((channels[None, :] - e) / sigma).mean(axis=0)  # ≈ the average over the bin
        np.testing.assert_allclose(matrix[i], np.diff(cdf), atol=2e-4)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-9)  # the channels cover every bin ±10σ


def test_gaussian_redistribution_moments_on_a_toy(tmp_path):
    inst = load_instrument(toy(tmp_path))
    model = np.linspace(1.5, 2.5, 11)
    m = inst.redistribution(model, spectral_rebin=None)  # onto the 40 [channels] of 50 eV
    centres = 0.5 * (inst.channel_edges()[:-1] + inst.channel_edges()[1:])
    mean = (m * centres).sum(axis=1) / m.sum(axis=1)
    np.testing.assert_allclose(mean, 0.5 * (model[:-1] + model[1:]), atol=2e-3)
    var = (m * (centres - mean[:, None]) ** 2).sum(axis=1) / m.sum(axis=1)
    sigma = inst.fwhm_ev(0.5 * (model[:-1] + model[1:])) / 1000 / FWHM_PER_SIGMA
    expected = sigma ** 2 + 0.1 ** 2 / 12 + 0.05 ** 2 / 12  # line, model bin and channel widths
    np.testing.assert_allclose(var, expected, rtol=0.05)
    # spectral_rebin = k: channels are the model bins grouped k at a time.
    assert inst.redistribution(model, spectral_rebin=3).shape == (10, 3)
    np.testing.assert_allclose(inst.detector_channels(model, 3), model[[0, 3, 6, 9]])


def test_rmf_resampling_on_its_own_grid_and_on_merged_bins():
    inst = load_instrument("chandra_acis_s")
    r = inst.rmf
    i0 = int(np.searchsorted(r.energ_lo, 6.0))
    own = r.energy_edges[i0: i0 + 9]
    numbers, lo, hi = inst.channel_table()
    cols = numbers - r.first_channel
    exact = r.matrix[i0: i0 + 8][:, cols].toarray()
    np.testing.assert_allclose(inst.redistribution(own).toarray(), exact, rtol=1e-12, atol=1e-15)
    merged = inst.redistribution(own[::2]).toarray()
    widths = np.diff(own)
    expect = (exact[0::2] * widths[0::2, None] + exact[1::2] * widths[1::2, None]) / (widths[0::2] + widths[1::2])[:, None]
    np.testing.assert_allclose(merged, expect, rtol=1e-10, atol=1e-15)
    native = inst.channel_edges()
    n = (native.size - 1) // 3
    grouped = inst.redistribution(own, channel_edges_kev=native[: 3 * n + 1: 3]).toarray()
    np.testing.assert_allclose(grouped, exact[:, : 3 * n].reshape(8, n, 3).sum(axis=2), rtol=1e-12, atol=1e-15)


def test_rmf_channels_follow_the_model_grid_with_spectral_rebin():
    inst = load_instrument("xmm_epic_pn")  # 5 eV channels near 2-8 keV
    model = np.linspace(2.0, 8.0, 241)  # 25 eV bins
    edges = inst.detector_channels(model, spectral_rebin=8)  # 30 channels of ≈ 200 eV
    assert edges.size == 31
    np.testing.assert_allclose(edges, model[::8], atol=0.0026)  # within half a pn channel
    assert set(np.round(edges, 6)) <= set(np.round(np.union1d(inst.rmf.e_min, inst.rmf.e_max), 6))
    m = inst.redistribution(model, spectral_rebin=8).toarray()
    native = inst.redistribution(model, spectral_rebin=None).toarray()
    centres = 0.5 * (inst.channel_edges()[:-1] + inst.channel_edges()[1:])
    inside = (centres >= edges[0]) & (centres < edges[-1])
    np.testing.assert_allclose(m.sum(axis=1), native[:, inside].sum(axis=1), rtol=1e-12)
    with pytest.raises(ShapeError, match="narrower than the channels"):
        load_instrument("chandra_acis_s").detector_channels(np.linspace(6.0, 6.1, 11), spectral_rebin=1)


def test_arf_mean_area_on_its_own_grid_is_the_arf():
    inst = load_instrument("xmm_epic_pn")
    a = inst.arf
    edges = a.energy_edges[100:131]
    np.testing.assert_allclose(inst.mean_effective_area(edges), a.specresp[100:130], rtol=1e-12)


def test_gaussian_psf_kernel_width_and_normalisation(tmp_path):
    inst = load_instrument(toy(tmp_path))
    kernel = inst.psf_image(0.5)  # FWHM 4 arcsec on 0.5 arcsec pixels
    assert kernel.shape[0] % 2 == 1 and kernel.shape == kernel.shape[::-1]
    assert kernel.sum() == pytest.approx(1.0, rel=1e-12)
    c = kernel.shape[0] // 2
    r = (np.arange(kernel.shape[0]) - c) * 0.5
    var = (kernel.sum(axis=0) * r ** 2).sum()
    assert var == pytest.approx((4.0 / FWHM_PER_SIGMA) ** 2 + 0.5 ** 2 / 12, rel=0.01)


def test_king_psf_is_energy_dependent_and_batched():
    inst = load_instrument("xmm_epic_pn")
    assert inst.psf_energy_dependent
    kernels = inst.psf_image(4.1, [1.0, 6.0, 10.0])
    assert kernels.ndim == 3 and kernels.shape[0] == 3
    np.testing.assert_allclose(kernels.sum(axis=(1, 2)), 1.0, rtol=1e-12)
    c = kernels.shape[1] // 2
    assert kernels[0, c, c] < kernels[1, c, c] < kernels[2, c, c]  # r0 shrinks with energy (Saxton 2002)
    # FWHM from the King parameters: 2 r0 sqrt(2^(1/α) − 1), r0 = 6.636 − 0.305 E, α = 1.525 − 0.015 E.
    r0, alpha = 6.636 - 0.305 * 1.0, 1.525 - 0.015 * 1.0
    assert inst.psf_fwhm_arcsec(1.0) == pytest.approx(2 * r0 * np.sqrt(2 ** (1 / alpha) - 1), rel=1e-4)


def test_forward_operator_conserves_a_point_source(tmp_path):
    inst = load_instrument(toy(tmp_path))
    edges = np.linspace(1.8, 2.2, 9)
    op = compile_forward(inst, edges, (41, 41), 1.0, 1000.0, spectral_rebin=None)
    x = np.zeros(op.shape_in)
    x[4, 20, 20] = 1.0  # 1 photon / s / cm² in one bin at the centre
    counts = to_numpy(op.apply(x))
    area = inst.mean_effective_area(edges)[4]
    assert counts.sum() == pytest.approx(1000.0 * area, rel=1e-6)
    assert np.unravel_index(counts.sum(axis=0).argmax(), (41, 41)) == (20, 20)
    np.testing.assert_allclose(op.background_counts().ravel(), 0.01 * 0.05 * (1.0 / 60) ** 2 * 1000.0)
    assert op.detector_pixel_arcsec == 1.0 and op.parts[0].__class__.__name__ == "Diagonal"


def test_psf_size_crops_the_kernel_of_the_forward_operator(tmp_path):
    inst = load_instrument(toy(tmp_path))  # FWHM 4 arcsec: a kernel wider than 5 x 5 pixels of 0.5 arcsec
    edges = np.linspace(1.8, 2.2, 5)
    full = compile_forward(inst, edges, (41, 41), 0.5, 1000.0)
    cut = compile_forward(inst, edges, (41, 41), 0.5, 1000.0, psf_size=5)
    x = np.zeros(full.shape_in)
    x[2, 20, 20] = 1.0
    image_full, image_cut = to_numpy(full.apply(x)).sum(axis=0), to_numpy(cut.apply(x)).sum(axis=0)
    assert np.count_nonzero(image_cut > 1e-12 * image_cut.max()) == 25  # 5 x 5 pixels, nothing outside
    kernel = inst.psf_image(0.5)
    c = kernel.shape[0] // 2
    assert c > 2
    core = kernel[c - 2: c + 3, c - 2: c + 3]
    # the flux outside the 5 x 5 core is dropped, not renormalised into it
    assert image_cut.sum() / image_full.sum() == pytest.approx(core.sum(), rel=1e-6) and core.sum() < 0.99
    with pytest.raises(ShapeError, match="odd"):
        compile_forward(inst, edges, (41, 41), 0.5, 1000.0, psf_size=4)


# ----------------------------------------------------------------------------- line fit
@pytest.mark.parametrize("name", ["chandra_acis_s", "xmm_epic_pn"])
def test_gaussian_line_is_recovered_through_a_real_rmf_and_arf(name):
    """A 6.4 keV line (σ 5 eV) on a power law, folded through the real RMF + ARF with Poisson
    noise, is fitted back by Poisson maximum likelihood: line energy within 5 eV (the
    statistical error with ~3×10⁴ line counts is < 1 eV; one channel is 5 eV (pn), 14.6 eV (ACIS))."""
    inst = load_instrument(name)
    edges = np.linspace(5.0, 8.0, 301)  # 10 eV model bins
    op = compile_forward(name, edges, (1, 1), inst.pixel_arcsec, 1.0e5, spectral_rebin=None)  # native channels
    centre = 0.5 * (edges[:-1] + edges[1:])

    def spectrum(e_line, norm_line, norm_cont):
        line = np.diff(ndtr((edges - e_line) / 0.005)) * norm_line
        return line + norm_cont * centre ** -2 * np.diff(edges)

    def fold(theta):
        return to_numpy(op.apply(spectrum(*theta)[:, None, None])).ravel()

    truth = (6.4, 1e-3, 3e-3)
    counts = np.random.default_rng(1).poisson(fold(truth))
    # Check of the decode itself, independent of the fit (which uses the same response): the
    # centroid of the continuum-subtracted counts, in channel energies (EBOUNDS), is the line
    # energy within 3 eV (statistical error ≈ 1 eV; a one-channel shift would move it 5-15 eV).
    channel_centres = 0.5 * (op.channel_edges_kev[:-1] + op.channel_edges_kev[1:])
    window = np.abs(channel_centres - 6.4) < 0.3
    excess = (counts - fold((6.4, 0.0, 3e-3)))[window]
    assert abs((excess * channel_centres[window]).sum() / excess.sum() - 6.4) < 0.003

    def deviance(p):
        mu = fold((p[0], np.exp(p[1]), np.exp(p[2]))) + 1e-12
        return 2 * np.sum(mu - counts + np.where(counts > 0, counts * np.log(np.maximum(counts, 1) / mu), 0.0))

    best = min((deviance([e, np.log(1e-3), np.log(3e-3)]), e) for e in np.arange(6.0, 6.8, 0.02))[1]
    fit = minimize(deviance, [best, np.log(0.5e-3), np.log(2e-3)], method="Nelder-Mead",
                   options={"xatol": 1e-5, "fatol": 1e-4, "maxiter": 2000})
    assert abs(fit.x[0] - 6.4) < 0.005, fit.x
    assert np.exp(fit.x[1]) == pytest.approx(1e-3, rel=0.05)


# ----------------------------------------------------------------------------- walkthrough
def test_new_instrument_walkthrough(tmp_path):
    """docs/instruments.md: copy a shipped TOML, change the name and three numbers, run on it."""
    text = (INSTRUMENTS_DIR / "xrism_resolve.toml").read_text()
    text = re.sub(r'name = "xrism_resolve"', 'name = "my_calorimeter"', text)
    text = re.sub(r"fwhm_ev = 4\.5", "fwhm_ev = 2.0", text)  # 1: resolution (eV)
    text = re.sub(r"pixel_arcsec = 30\.0", "pixel_arcsec = 10.0", text)  # 2: pixel (arcsec)
    text = re.sub(r"fwhm_arcsec = 78\.0", "fwhm_arcsec = 15.0", text)  # 3: PSF (arcsec)
    path = tmp_path / "my_calorimeter.toml"
    path.write_text(text)
    inst = load_instrument(path)  # the ARF path "responses/..." is found in the shipped folder
    assert (inst.name, inst.resolution_ev(), inst.pixel_arcsec, inst.psf_fwhm_arcsec()) == ("my_calorimeter", 2.0, 10.0, 15.0)
    op = compile_forward(str(path), np.linspace(6.6, 6.8, 41), (8, 8), 5.0, 2.0e4, spatial_rebin=2, spectral_rebin=2)
    assert op.shape_out == (20, 4, 4) and op.detector_pixel_arcsec == 10.0
    x = np.ones(op.shape_in)
    y = np.random.default_rng(0).random(op.shape_out)
    assert vdot(op.apply(x), y) == pytest.approx(vdot(x, op.adjoint(y)), rel=1e-10)
    # The copy can also sit in a config's folder and be referenced by path.
    cfg_dir = tmp_path / "run"
    cfg_dir.mkdir()
    shutil.copy(path, cfg_dir / "mine.toml")
    assert load_instrument(cfg_dir / "mine.toml").name == "my_calorimeter"


def test_parse_instrument_from_a_dict():
    spec = parse_instrument(loads_toml(TOY), "inline.toml")
    inst = Instrument(spec)
    assert inst.name == "toy" and inst.psf_image(2.0).shape[0] % 2 == 1
    with pytest.raises(ShapeError, match="spectral_rebin"):
        inst.redistribution(np.linspace(1.5, 2.5, 11), spectral_rebin=0)


@pytest.mark.needs_shared
def test_chandra_psf_image_from_the_research_folder(tmp_path, responses_dir):
    """The MARX on-axis PSF (52 × 52 counts at 0.246″, not shipped: no licence) used as an image PSF."""
    text = edit(textwrap.dedent(TOY), 'kind = "gaussian"\nfwhm_arcsec = 4.0',
                f'kind = "image"\nfile = "{responses_dir / "psf_0.0_00_bin0.5.img"}"')
    inst = load_instrument(toy(tmp_path, text))
    with pytest.warns(UserWarning) as record:
        kernel = inst.psf_image(0.492)  # pixel size from the file's CDELT: 0.246 arcsec
    messages = " ".join(str(w.message) for w in record)
    assert "sums to 2.53" in messages and "even size (52, 52)" in messages
    assert kernel.shape == (27, 27) and kernel.sum() == pytest.approx(1.0)
    assert kernel[13, 13] == kernel.max()
    assert 0.3 < inst.psf_fwhm_arcsec() < 1.0  # on-axis HRMA + ACIS, arcsec


def test_psf_image_cube_is_interpolated_in_energy(tmp_path):
    yy, xx = np.mgrid[:11, :11] - 5.0
    planes = np.stack([np.exp(-0.5 * (xx ** 2 + yy ** 2) / s ** 2) for s in (1.0, 2.0)])
    planes /= planes.sum(axis=(1, 2), keepdims=True)
    fits.PrimaryHDU(planes).writeto(tmp_path / "cube.fits")
    text = edit(textwrap.dedent(TOY), 'kind = "gaussian"\nfwhm_arcsec = 4.0',
                'kind = "image"\nfile = "cube.fits"\nimage_pixel_arcsec = 1.0\nenergies_kev = [1.0, 3.0]')
    inst = load_instrument(toy(tmp_path, text))
    assert inst.psf_energy_dependent
    kernels = inst.psf_image(1.0, [0.5, 1.0, 2.0, 3.0, 4.0])
    assert kernels.shape == (5, 11, 11)
    np.testing.assert_allclose(kernels[0], planes[0], atol=1e-15)  # clamped below 1 keV
    np.testing.assert_allclose(kernels[2], 0.5 * (planes[0] + planes[1]), atol=1e-15)  # linear in energy
    np.testing.assert_allclose(kernels[4], planes[1], atol=1e-15)
    bad = edit(text, "image_pixel_arcsec = 1.0\nenergies_kev = [1.0, 3.0]", "image_pixel_arcsec = 1.0\nenergies_kev = [1.0]")
    with pytest.raises(ConfigError, match=r"`psf\.energies_kev`: .* has 2 planes"):
        load_instrument(toy(tmp_path, bad, "bad.toml")).psf_image(1.0, [1.0])


def test_overlap_matrix_sparse_path_matches_the_dense_one():
    from xhsi import instruments as mod

    rng = np.random.default_rng(5)
    src = np.cumsum(rng.uniform(0.001, 0.01, 3000))
    dst = np.sort(rng.uniform(src[0] - 0.05, src[-1] + 0.05, 1500))
    dense = mod.overlap_matrix(src[:300], dst[:200]).toarray()  # small: dense branch
    brute = np.clip(np.minimum(dst[1:200, None], src[None, 1:300]) - np.maximum(dst[:199, None], src[None, :299]), 0, None)
    np.testing.assert_allclose(dense, brute, atol=1e-15)
    big = mod.overlap_matrix(src, dst)  # 3000 × 1500 > 4e6: sparse branch
    brute = np.clip(np.minimum(dst[1:, None], src[None, 1:]) - np.maximum(dst[:-1, None], src[None, :-1]), 0, None)
    np.testing.assert_allclose(big.toarray(), brute, atol=1e-15)
    # Each destination bin inside the source range is fully covered.
    inside = (dst[:-1] >= src[0]) & (dst[1:] <= src[-1])
    np.testing.assert_allclose(np.asarray(big.sum(axis=1)).ravel()[inside], np.diff(dst)[inside], rtol=1e-12)
