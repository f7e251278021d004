"""OGIP spectra (PHA) as observations: a spectrum with its header's RESPFILE, ANCRFILE and
BACKFILE fitted by ``pixelfit`` from a config naming only the PHA, against an independent
C-stat fit written here (own RMF/ARF/PHA reading with astropy, own grouping, background
scaling and folding, scipy minimisation, errors from the inverse Hessian); GROUPING,
QUALITY and notice ranges; bad inputs refused by ``xhsi validate``."""
from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from scipy import optimize

from xhsi import cli
from xhsi.config import load_config
from xhsi.io.ogip import AncillaryResponse, ResponseMatrix, write_arf, write_rmf
from xhsi.io.pha import read_pha, write_pha
from xhsi.runner import prepare, run
from xhsi.spectral import spectra

EDGES = np.linspace(0.3, 10.0, 195)       # true-energy grid of RMF, ARF and [model], keV
CHANNELS = np.linspace(0.3, 10.0, 98)      # channel edges, keV (97 channels)
TRUTH = {"amplitude": 4e-3, "index": 1.8, "nh": 0.6}  # ph / s / cm² over the grid; Γ; 1e22 cm⁻²
EXPOSURE, BACKSCAL_SRC, BACKSCAL_BKG = 2.0e4, 1.0, 4.0
BKG_PER_CHANNEL = 24.0                     # expected counts of the background spectrum per channel
QUALITY_BAD = [40, 41]                     # channel indices flagged bad
NOTICE = [[0.5, 8.0]]


def _rmf_matrix() -> np.ndarray:
    from scipy.stats import norm

    centres = 0.5 * (EDGES[:-1] + EDGES[1:])
    sigma = 0.06 * np.sqrt(centres)[:, None]
    cdf = norm.cdf((CHANNELS[None, :] - centres[:, None]) / sigma)
    m = np.diff(cdf, axis=1) * 0.98
    m[m < 1e-6] = 0.0
    return m


def _grouping() -> np.ndarray:
    g = np.ones(CHANNELS.size - 1, dtype=int)
    g[61::2] = -1  # channels 60+61, 62+63, ..., 94+95 grouped in pairs; 96 alone
    return g


def write_dataset(folder, *, respfile="src.rmf", rmf_channels=None, seed=1, backscal_bkg=BACKSCAL_BKG) -> dict:
    """Source PHA (grouped, two bad channels) + RMF + ARF + background PHA in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    matrix = _rmf_matrix()
    ch = CHANNELS if rmf_channels is None else np.linspace(0.3, 10.0, rmf_channels + 1)
    if rmf_channels is not None:
        matrix = np.ones((EDGES.size - 1, rmf_channels)) / rmf_channels
    write_rmf(folder / "src.rmf", ResponseMatrix(EDGES[:-1], EDGES[1:], ch[:-1], ch[1:], matrix))
    centres = 0.5 * (EDGES[:-1] + EDGES[1:])
    area = 400.0 * np.exp(-0.5 * ((centres - 1.5) / 2.5) ** 2) + 20.0
    write_arf(folder / "src.arf", AncillaryResponse(EDGES[:-1], EDGES[1:], area))
    rng = np.random.default_rng(seed)
    flux = TRUTH["amplitude"] * spectra.absorption(EDGES, TRUTH["nh"]) * spectra.powerlaw(EDGES, TRUTH["index"])
    source = (EXPOSURE * area * flux) @ _rmf_matrix()
    bkg_mean = np.full(CHANNELS.size - 1, BKG_PER_CHANNEL)
    bkg = rng.poisson(bkg_mean)
    counts = rng.poisson(source + bkg_mean * BACKSCAL_SRC / backscal_bkg)
    quality = np.zeros(counts.size, dtype=int)
    quality[QUALITY_BAD] = 5
    write_pha(folder / "bkg.pha", bkg, EXPOSURE, backscal=backscal_bkg)
    write_pha(folder / "src.pha", counts, EXPOSURE, backscal=BACKSCAL_SRC, quality=quality, grouping=_grouping(),
              respfile=respfile, ancrfile="src.arf", backfile="bkg.pha")
    return {"area": area}


CONFIG = """\
[run]
problem = "pixelfit"
output = "out"
dtype = "float64"
quicklook = false

[model]
energy = {{ min_kev = 0.3, max_kev = 10.0, bins = 194 }}
pixels = [1, 1]
pixel_arcsec = 1.0

[[observations]]
name = "src"
spectrum = "data/src.pha"
notice_kev = {notice}
{extra}

[[components]]
name = "src"
model = "absorption * powerlaw"
init = {{ index = 2.2, nh = 0.3 }}

[solver]
name = "palm"
max_iter = 60
"""


def write_config(tmp_path, notice=NOTICE, extra="") -> str:
    path = tmp_path / "spec.toml"
    path.write_text(CONFIG.format(notice=notice, extra=extra))
    return str(path)


# -- the independent fit ------------------------------------------------------------------
def _read_rmf_dense(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(matrix (n_e, n_chan), e_min, e_max) from an OGIP RMF, one row at a time."""
    with fits.open(path) as hdul:
        mat, eb = hdul["MATRIX"], hdul["EBOUNDS"]
        n_chan = len(eb.data)
        first = int(mat.header.get("TLMIN4", 1))
        out = np.zeros((len(mat.data), n_chan))
        for i, row in enumerate(mat.data):
            values = np.asarray(row["MATRIX"], dtype=float)
            pos = 0
            for f, n in zip(np.atleast_1d(row["F_CHAN"])[: row["N_GRP"]], np.atleast_1d(row["N_CHAN"])[: row["N_GRP"]]):
                out[i, f - first: f - first + n] = values[pos: pos + n]
                pos += n
        return out, np.asarray(eb.data["E_MIN"], float), np.asarray(eb.data["E_MAX"], float)


def independent_fit(folder, wstat: bool = False) -> dict:
    """C-stat (Cash 1979) fit of the absorbed power law with the background spectrum scaled
    and fixed (``wstat``: XSPEC's W-stat formula instead); errors from the inverse of the
    numerical Hessian of C/2."""
    matrix, e_min, e_max = _read_rmf_dense(folder / "src.rmf")
    with fits.open(folder / "src.arf") as hdul:
        area = np.asarray(hdul["SPECRESP"].data["SPECRESP"], float)
    with fits.open(folder / "src.pha") as hdul:
        d, h = hdul["SPECTRUM"].data, hdul["SPECTRUM"].header
        counts, quality, grouping = (np.asarray(d[k], float) for k in ("COUNTS", "QUALITY", "GROUPING"))
        t_src, bs_src = h["EXPOSURE"], h["BACKSCAL"]
    with fits.open(folder / "bkg.pha") as hdul:
        bkg = np.asarray(hdul["SPECTRUM"].data["COUNTS"], float)
        t_bkg, bs_bkg = hdul["SPECTRUM"].header["EXPOSURE"], hdul["SPECTRUM"].header["BACKSCAL"]
    group = np.cumsum(grouping != -1) - 1
    n_groups = group[-1] + 1
    summed = lambda v: np.bincount(group, weights=v, minlength=n_groups)  # noqa: E731
    lo = np.array([e_min[group == g][0] for g in range(n_groups)])
    hi = np.array([e_max[group == g][-1] for g in range(n_groups)])
    good = (summed(quality != 0) == 0) & ((lo + hi) / 2 >= NOTICE[0][0]) & ((lo + hi) / 2 < NOTICE[0][1])
    y = summed(counts)[good]
    alpha = (bs_src * t_src) / (bs_bkg * t_bkg)
    b = summed(bkg * alpha)[good]
    b_raw = summed(bkg)[good]
    fold = matrix @ np.eye(matrix.shape[1])[:, :]  # (n_e, n_chan)
    fold = np.stack([summed(row) for row in fold])[:, good]

    def mu(p):
        log_a, index, nh = p
        flux = np.exp(log_a) * spectra.absorption(EDGES, nh) * spectra.powerlaw(EDGES, index)
        return (t_src * area * flux) @ fold + (0.0 if wstat else b)

    def cstat(p):
        m = mu(p)
        if wstat:
            return _xspec_wstat(m, y, b_raw, alpha)
        return 2.0 * np.sum(m - y * np.log(m))

    start = np.array([np.log(1e-3), 2.2, 0.3])
    best = optimize.minimize(cstat, start, method="Nelder-Mead",
                             options={"xatol": 1e-7, "fatol": 1e-7, "maxiter": 20000, "maxfev": 20000}).x
    best = optimize.minimize(cstat, best, method="BFGS", options={"gtol": 1e-6}).x
    # Hessian of C/2 = −log L by central differences; a = exp(log a), so σ_a = a σ_log a.
    step = np.array([1e-3, 1e-3, 1e-3])
    hess = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            ei, ej = np.eye(3)[i] * step[i], np.eye(3)[j] * step[j]
            hess[i, j] = (cstat(best + ei + ej) - cstat(best + ei - ej) - cstat(best - ei + ej)
                          + cstat(best - ei - ej)) / (4 * step[i] * step[j]) / 2.0
    sigma = np.sqrt(np.diag(np.linalg.inv(hess)))
    return {"amplitude": (np.exp(best[0]), np.exp(best[0]) * sigma[0]), "index": (best[1], sigma[1]),
            "nh": (best[2], sigma[2])}


# -- tests --------------------------------------------------------------------------------
def test_pha_fit_agrees_with_an_independent_cstat_fit(tmp_path):
    write_dataset(tmp_path / "data")
    result = run(load_config(write_config(tmp_path)), quiet=True)
    mine = independent_fit(tmp_path / "data")
    for name, key in (("amplitude", "src.amplitude"), ("index", "src.index"), ("nh", "src.nh")):
        value, sigma = float(np.ravel(result.maps[key])[0]), float(np.ravel(result.map_errors[key])[0])
        ref, ref_sigma = mine[name]
        assert abs(value - ref) < 0.5 * ref_sigma, (name, value, sigma, ref, ref_sigma)
        assert sigma == pytest.approx(ref_sigma, rel=0.05), (name, sigma, ref_sigma)
        assert abs(value - TRUTH[name]) < 4 * sigma, (name, value, sigma, TRUTH[name])


def test_grouping_quality_notice_and_background_scaling(tmp_path):
    write_dataset(tmp_path / "data")
    cfg = load_config(write_config(tmp_path))
    obs = prepare(cfg).observations[0]
    spec = read_pha(tmp_path / "data" / "src.pha")
    bkg = read_pha(tmp_path / "data" / "bkg.pha")
    # 97 channels: 60 single ones, 18 pairs, one single -> 79 groups
    edges = obs.forward.channel_edges_kev
    assert edges.size - 1 == 60 + 18 + 1
    centres = 0.5 * (edges[:-1] + edges[1:])
    keep = obs.forward.channel_keep
    assert np.all((centres[keep] >= 0.5) & (centres[keep] < 8.0))
    assert 40 not in keep and 41 not in keep and 39 in keep
    pair = int(np.nonzero(keep == 61)[0][0])  # group 61: channels 62 and 63
    assert float(np.ravel(obs.counts)[pair]) == spec.counts[62] + spec.counts[63]
    assert float(np.ravel(obs.background)[pair]) == pytest.approx(
        (bkg.counts[62] + bkg.counts[63]) * BACKSCAL_SRC / BACKSCAL_BKG)
    assert obs.forward.shape_out == (keep.size, 1, 1) == tuple(obs.counts.shape)
    # background_model = "none" ignores BACKFILE
    cfg = load_config(write_config(tmp_path, extra='background_model = "none"'))
    assert prepare(cfg).observations[0].background is None


def test_select_operator_dot_test():
    from xhsi.operators.crop import Select
    from xhsi.testing import dot_test

    dot_test(Select((6, 2, 1), [0, 2, 5]))


@pytest.mark.parametrize("change, fragment", [
    ("missing_rmf", "RESPFILE names .*nothing.rmf, which does not exist"),
    ("channels", r"97 channels .* do not match the 50 channels"),
    ("notice", r"notice_kev\[0\]: \[0.1, 8.0\] keV reaches outside the channels"),
    ("pixels", "a spectrum is one pixel"),
])
def test_bad_spectra_are_refused_by_validate(tmp_path, capsys, change, fragment):
    write_dataset(tmp_path / "data", respfile="nothing.rmf" if change == "missing_rmf" else "src.rmf",
                  rmf_channels=50 if change == "channels" else None)
    cfg = write_config(tmp_path, notice=[[0.1, 8.0]] if change == "notice" else NOTICE)
    if change == "pixels":
        text = open(cfg).read().replace("pixels = [1, 1]", "pixels = [2, 2]")
        open(cfg, "w").write(text)
    assert cli.main(["validate", cfg]) == 2
    import re

    err = " ".join(capsys.readouterr().err.split())  # the message is wrapped to the terminal
    assert re.search(fragment, err), (fragment, err)


# -- W-stat: the background spectrum profiled out --------------------------------------------
def _xspec_wstat(rate_counts, counts, bkg, alpha):
    """W-stat as XSPEC's manual (appendix B, "Poisson data with Poisson background") writes
    it, with t_s = 1 (the model in source counts) and t_b = 1 / α."""
    from scipy.special import xlogy

    ts, tb = 1.0, 1.0 / alpha
    m, s, b = rate_counts, counts, bkg
    d = np.sqrt(((ts + tb) * m - s - b) ** 2 + 4 * (ts + tb) * b * m)
    f = (s + b - (ts + tb) * m + d) / (2 * (ts + tb))
    return 2 * np.sum(ts * m + (ts + tb) * f - xlogy(s, ts * m + ts * f) - xlogy(b, tb * f)
                      - s * (1 - np.log(np.where(s > 0, s, 1.0))) - b * (1 - np.log(np.where(b > 0, b, 1.0))))


def test_wstat_value_background_and_gradient():
    from xhsi.likelihoods import wstat_background, wstat_value

    rng = np.random.default_rng(3)
    mu = rng.uniform(0.0, 20.0, 40)
    mu[:3] = 0.0
    n, b = rng.poisson(mu + 3.0).astype(float), rng.poisson(6.0, 40).astype(float)
    n[3:6], b[6:9] = 0.0, 0.0
    alpha = rng.uniform(0.1, 2.0, 40)
    value, beta = wstat_value(mu, n, b, alpha)
    assert np.all(beta >= 0) and np.all(value >= -1e-12)
    # the same statistic as XSPEC's formula (zero counts in either spectrum included)
    full = mu > 0
    assert 2 * value[full].sum() == pytest.approx(_xspec_wstat(mu[full], n[full], b[full], alpha[full]), rel=1e-9)
    # β̂ maximises the joint likelihood: brute force per channel
    for i in range(10, 14):
        nll = lambda x: (mu[i] + alpha[i] * x) - n[i] * np.log(mu[i] + alpha[i] * x) + x - b[i] * np.log(max(x, 1e-300))  # noqa: E731
        best = optimize.minimize_scalar(nll, bounds=(0.0, 100.0), method="bounded", options={"xatol": 1e-10}).x
        assert beta[i] == pytest.approx(best, rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(wstat_background(mu, n, b, alpha), beta)
    # d(½W)/dμ = 1 − n/(μ + α β̂), by central differences
    h = 1e-6
    up, _ = wstat_value(mu[full] + h, n[full], b[full], alpha[full])
    down, _ = wstat_value(mu[full] - h, n[full], b[full], alpha[full])
    np.testing.assert_allclose((up - down) / (2 * h), 1 - n[full] / (mu[full] + alpha[full] * beta[full]),
                               rtol=1e-5, atol=1e-7)


def test_wstat_fit_agrees_with_an_independent_fit(tmp_path):
    # α = 1: the background's own noise adds as much as its counts to the errors (with the
    # information 1/m of a fixed background, the amplitude's came out 10 % too small)
    write_dataset(tmp_path / "data", backscal_bkg=BACKSCAL_SRC)
    result = run(load_config(write_config(tmp_path, extra='background_model = "wstat"')), quiet=True)
    mine = independent_fit(tmp_path / "data", wstat=True)
    for name, key in (("amplitude", "src.amplitude"), ("index", "src.index"), ("nh", "src.nh")):
        value, sigma = float(np.ravel(result.maps[key])[0]), float(np.ravel(result.map_errors[key])[0])
        ref, ref_sigma = mine[name]
        assert abs(value - ref) < 0.5 * ref_sigma, (name, value, sigma, ref, ref_sigma)
        assert sigma == pytest.approx(ref_sigma, rel=0.05), (name, sigma, ref_sigma)


def test_type_ii_rows_and_rate(tmp_path):
    from xhsi.errors import DataError

    rates = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    hdu = fits.BinTableHDU.from_columns([
        fits.Column("SPEC_NUM", "J", array=[7, 8]),
        fits.Column("CHANNEL", "3J", array=np.tile([1, 2, 3], (2, 1))),
        fits.Column("RATE", "3E", array=rates),
        fits.Column("EXPOSURE", "E", array=[10.0, 20.0]),
        fits.Column("BACKSCAL", "E", array=[0.5, 0.25]),
        fits.Column("RESPFILE", "20A", array=["a.rmf", "b.rmf{2}"]),
    ], name="SPECTRUM")
    hdu.header.update({"HDUCLAS4": "TYPE:II", "POISSERR": True, "ANCRFILE": "none", "BACKFILE": "none"})
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp_path / "two.pha")
    spec = read_pha(tmp_path / "two.pha", row=8)
    np.testing.assert_allclose(spec.counts, [80.0, 100.0, 120.0])
    assert spec.exposure == 20.0 and np.all(spec.backscal == 0.25)
    assert spec.response == tmp_path / "b.rmf" and spec.background is None
    with pytest.raises(DataError, match="type II PHA file .*spectrum_row"):
        read_pha(tmp_path / "two.pha")
    with pytest.raises(DataError, match="no row with SPEC_NUM = 3"):
        read_pha(tmp_path / "two.pha", row=3)
