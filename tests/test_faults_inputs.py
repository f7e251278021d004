"""Faults in what a user gives xhsi (issue 23, items 1, 3, 4, 5): each case is refused with
exit 2 and one paragraph that names the file or key and what to do (no traceback), and
leaves every input file and the output location as they were. Grouped by kind: inputs
destroyed, tracebacks, size guard, cross-checks, unclear messages."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from conftest import unwrapped
from xhsi import cli
from xhsi.cli import main
from fakes import TOY_INSTRUMENT
from xhsi.problems import checks

CONFIG = """\
[run]
problem = "fusion"
output = "out"
dtype = "float64"
quicklook = false

[model]
energy = {{ min_kev = 5.5, max_kev = 7.5, bins = 40 }}
pixels = [12, 12]
pixel_arcsec = 4.1
{model}

[[observations]]
name = "xmm"
instrument = "xmm_epic_pn"
spectral_rebin = 4
{xmm}

[[observations]]
name = "xrism"
instrument = "xrism_resolve"
spatial_rebin = 3
{xrism}

[solver]
name = "fista"
max_iter = 2
tol = 0.0
report_every = 1
{extra}
"""
SIMULATE = '\n[simulate]\nscene = "casa_like"\n'
EXPOSURE = {"xmm": 5.0e4, "xrism": 1.0e5}
PIXEL = {"xmm": 4.1, "xrism": 12.3}  # detector pixels, arcsec
CENTER = (83.633, 22.0145)  # RA, Dec (deg) of every counts cube unless a case moves one



# -- helpers ------------------------------------------------------------------------------
def config_text(xmm: str = "", xrism: str = "", extra: str = "", model: str = "") -> str:
    """The tiny fusion config (pn + Resolve, 40 bins × 12 × 12) with lines added to its
    observations, its [model] and after its [solver]."""
    return CONFIG.format(xmm=xmm, xrism=xrism, extra=extra, model=model)


def write_config(folder: Path, name: str = "run.toml", **parts) -> Path:
    path = folder / name
    path.write_text(config_text(**parts))
    return path


def listing(folder: Path) -> dict:
    """Every path under ``folder`` with its kind, size, modification time and content hash."""
    out = {}
    for path in sorted(folder.rglob("*")):
        stat = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() else None
        out[str(path.relative_to(folder))] = (path.is_dir(), path.is_symlink(), stat.st_size, stat.st_mtime_ns, digest)
    return out


def refused(argv, capsys, command: str, *words: str) -> str:
    """Run ``xhsi ARGV`` in-process: exit 2, one ``xhsi COMMAND: error:`` paragraph holding
    every one of ``words``, no traceback. Returns the message (whitespace unwrapped)."""
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines and lines[0].startswith(f"xhsi {command}: error: "), err
    assert "Traceback" not in err and sum(line.startswith("xhsi ") for line in lines) == 1, err
    message = unwrapped(err)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


def refused_unchanged(argv, capsys, folder: Path, command: str, *words: str) -> str:
    """:func:`refused`, and nothing under ``folder`` (inputs, outputs) created or changed."""
    before = listing(folder)
    message = refused(argv, capsys, command, *words)
    assert listing(folder) == before
    return message


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> dict:
    """Simulated counts of the two observations (data, channel bounds), once per module."""
    from xhsi.config import load_config
    from xhsi.io.cubes import read_cube
    from xhsi.runner import simulate

    folder = tmp_path_factory.mktemp("sim")
    simulate(load_config(write_config(folder, extra=SIMULATE, xmm="exposure_s = 5.0e4",
                                      xrism="exposure_s = 1.0e5")), folder / "sim")
    out = {}
    for name in EXPOSURE:
        cube = read_cube(folder / "sim" / f"{name}_counts.fits")
        out[name] = (np.asarray(cube.data), cube.e_min, cube.e_max)
    return out


def counts_file(path: Path, sim: dict, name: str, *, center=CENTER, pixel_arcsec=None, data=None,
                header: dict | None = None, drop=()) -> Path:
    """A counts cube of observation ``name`` written with astropy alone: primary HDU with a
    TAN WCS centred on ``center`` (deg), EXPOSURE, INSTRUME/TELESCOP of its instrument
    (``header`` adds or replaces cards; ``drop`` removes some), then EBOUNDS."""
    counts, e_min, e_max = sim[name]
    counts = counts if data is None else data
    pix = (pixel_arcsec or PIXEL[name]) / 3600.0
    n, ny, nx = counts.shape
    primary = fits.PrimaryHDU(np.asarray(counts, dtype=np.int32))
    h = primary.header
    cards = {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CUNIT1": "deg", "CUNIT2": "deg",
             "CRPIX1": (nx + 1) / 2.0, "CRPIX2": (ny + 1) / 2.0, "CRVAL1": center[0], "CRVAL2": center[1],
             "CDELT1": -pix, "CDELT2": pix, "EXPOSURE": EXPOSURE[name], "BUNIT": "count",
             "TELESCOP": "XMM" if name == "xmm" else "XRISM", "INSTRUME": "EPN" if name == "xmm" else "RESOLVE"}
    cards.update(header or {})
    for key, value in cards.items():
        if key not in drop:
            h[key] = value
    ebounds = fits.BinTableHDU.from_columns([
        fits.Column("CHANNEL", "J", array=np.arange(1, n + 1)),
        fits.Column("E_MIN", "D", unit="keV", array=e_min),
        fits.Column("E_MAX", "D", unit="keV", array=e_max)], name="EBOUNDS")
    fits.HDUList([primary, ebounds]).writeto(path)
    return path


GIVEN = {"xmm": "exposure_s = 5.0e4", "xrism": "exposure_s = 1.0e5"}


def files_config(tmp_path: Path, sim: dict, xmm_lines: str = GIVEN["xmm"], xrism_lines: str = GIVEN["xrism"],
                 **cube_options) -> Path:
    """A fusion config reading both counts files (xmm.fits and xrism.fits in ``tmp_path``),
    with the exposures of the files unless a case says otherwise (``""``: left out);
    ``cube_options`` = {name: counts_file options} for the one a case alters."""
    for name in EXPOSURE:
        counts_file(tmp_path / f"{name}.fits", sim, name, **cube_options.get(name, {}))
    return write_config(tmp_path, xmm=f'counts = "xmm.fits"\n{xmm_lines}',
                        xrism=f'counts = "xrism.fits"\n{xrism_lines}')


def events_file(path: Path, n: int = 50, columns=("X", "Y", "ENERGY"), xy_wcs=True) -> Path:
    """An event list of ``n`` photons at 1-5 keV over 20 x 20 pixels (X/Y with the column
    WCS keywords of HEASARC event files unless ``xy_wcs`` is False)."""
    rng = np.random.default_rng(1)
    values = {"X": rng.uniform(1, 21, n), "Y": rng.uniform(1, 21, n), "ENERGY": rng.uniform(1.0, 5.0, n),
              "RA": 83.6 + rng.uniform(0, 0.005, n), "DEC": 22.0 + rng.uniform(0, 0.005, n),
              "PI": rng.integers(1, 100, n)}
    formats = {"X": "E", "Y": "E", "ENERGY": "E", "RA": "D", "DEC": "D", "PI": "J"}
    hdu = fits.BinTableHDU.from_columns([fits.Column(c, formats[c], unit="keV" if c == "ENERGY" else None,
                                                     array=values[c]) for c in columns], name="EVENTS")
    if xy_wcs and "X" in columns:
        for i, ctype, crval, cdelt in ((1, "RA---TAN", 83.6, -2.0 / 3600), (2, "DEC--TAN", 22.0, 2.0 / 3600)):
            hdu.header.update({f"TCTYP{i}": ctype, f"TCRPX{i}": 10.5, f"TCRVL{i}": crval, f"TCDLT{i}": cdelt})
    hdu.header["EXPOSURE"] = 1000.0
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    return path


@pytest.fixture
def events(tmp_path) -> Path:
    (tmp_path / "toy.toml").write_text(TOY_INSTRUMENT)
    return events_file(tmp_path / "events.fits")


def bin_args(tmp_path: Path, events: Path, out, *extra) -> list:
    return ["bin", events, "--instrument", tmp_path / "toy.toml", "--out", out, *extra]


# == 1. inputs destroyed ==================================================================
def test_bin_refuses_to_write_over_its_own_event_file(tmp_path, capsys, events):
    refused_unchanged(bin_args(tmp_path, events, events), capsys, tmp_path, "bin",
                      "is the event file being binned", "would destroy it")
    refused_unchanged(bin_args(tmp_path, events, events, "--overwrite"), capsys, tmp_path, "bin",
                      "with or without --overwrite")


def test_bin_refuses_a_hard_link_to_the_event_file_even_with_overwrite(tmp_path, capsys, events):
    os.link(events, tmp_path / "cube.fits")  # same inode, another name
    refused_unchanged(bin_args(tmp_path, events, tmp_path / "cube.fits", "--overwrite"), capsys, tmp_path, "bin",
                      "is the event file being binned")


def test_bin_refuses_a_symbolic_link_to_the_event_file(tmp_path, capsys, events):
    (tmp_path / "link.fits").symlink_to(events)
    refused_unchanged(bin_args(tmp_path, events, tmp_path / "link.fits", "--overwrite"), capsys, tmp_path, "bin",
                      "is the event file being binned")


def test_bin_refuses_an_existing_output_without_overwrite(tmp_path, capsys, events):
    (tmp_path / "cube.fits").write_bytes(b"an earlier cube")
    refused_unchanged(bin_args(tmp_path, events, tmp_path / "cube.fits"), capsys, tmp_path, "bin",
                      "cube.fits exists: pass --overwrite to replace it")


def test_bin_replaces_an_existing_output_with_overwrite(tmp_path, capsys, events):
    (tmp_path / "cube.fits").write_bytes(b"an earlier cube")
    before = events.read_bytes()
    assert main([str(a) for a in bin_args(tmp_path, events, tmp_path / "cube.fits", "--overwrite")]) == 0
    assert "50 counts" in capsys.readouterr().out
    assert fits.getdata(tmp_path / "cube.fits").sum() == 50 and events.read_bytes() == before


def test_bin_refuses_a_folder_as_output(tmp_path, capsys, events):
    (tmp_path / "cubes").mkdir()
    refused_unchanged(bin_args(tmp_path, events, tmp_path / "cubes"), capsys, tmp_path, "bin",
                      "is a folder; --out names the cube FITS file to write")


def test_simulate_refuses_existing_files_without_overwrite(tmp_path, capsys):
    config = write_config(tmp_path, extra=SIMULATE, xmm="exposure_s = 5.0e4", xrism="exposure_s = 1.0e5")
    (tmp_path / "sim").mkdir()
    (tmp_path / "sim" / "truth.fits").write_bytes(b"an earlier truth")
    (tmp_path / "sim" / "xrism_counts.fits").write_bytes(b"earlier counts")
    refused_unchanged(["simulate", config, "--out", tmp_path / "sim"], capsys, tmp_path, "simulate",
                      "truth.fits", "xrism_counts.fits exist: pass --overwrite to replace them")


def test_simulate_never_writes_over_a_file_the_config_reads(tmp_path, capsys, sim):
    # The xmm background is the cube simulate would write as xmm_counts.fits: refused even
    # with --overwrite, and by inode (the config names it through a symbolic link).
    (tmp_path / "sim").mkdir()
    counts_file(tmp_path / "sim" / "xmm_counts.fits", sim, "xmm")
    (tmp_path / "background.fits").symlink_to(tmp_path / "sim" / "xmm_counts.fits")
    config = write_config(tmp_path, extra=SIMULATE, xmm='exposure_s = 5.0e4\nbackground = "background.fits"',
                          xrism="exposure_s = 1.0e5")
    refused_unchanged(["simulate", config, "--out", tmp_path / "sim", "--overwrite"], capsys, tmp_path, "simulate",
                      "xmm_counts.fits is", "background.fits, which is read as observations[0].background",
                      "would destroy an input")


def test_simulate_never_writes_over_its_scene_file(tmp_path, capsys, sim):
    from xhsi.io.cubes import write_cube

    (tmp_path / "sim").mkdir()
    write_cube(tmp_path / "sim" / "truth.fits", np.ones((40, 12, 12)), np.linspace(5.5, 7.5, 41), pixel_arcsec=4.1)
    scene = '\n[simulate]\nscene = "fits"\noptions = { path = "sim/truth.fits" }\n'
    config = write_config(tmp_path, extra=scene, xmm="exposure_s = 5.0e4", xrism="exposure_s = 1.0e5")
    refused_unchanged(["simulate", config, "--out", tmp_path / "sim", "--overwrite"], capsys, tmp_path, "simulate",
                      "truth.fits, which is read as simulate.options.path")


def test_simulate_replaces_its_own_earlier_files_with_overwrite(tmp_path, capsys):
    config = write_config(tmp_path, extra=SIMULATE, xmm="exposure_s = 5.0e4", xrism="exposure_s = 1.0e5")
    (tmp_path / "sim").mkdir()
    (tmp_path / "sim" / "truth.fits").write_bytes(b"an earlier truth")
    assert main(["simulate", str(config), "--out", str(tmp_path / "sim"), "--overwrite"]) == 0
    assert fits.getdata(tmp_path / "sim" / "truth.fits").shape == (40, 12, 12)


# == 3. tracebacks where exit 2 and a message are promised ==================================
def test_bin_output_under_a_regular_file(tmp_path, capsys, events):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    refused_unchanged(bin_args(tmp_path, events, tmp_path / "notes.txt" / "sub" / "cube.fits"), capsys, tmp_path,
                      "bin", "lies under", "notes.txt, which is a file, not a folder")


def test_simulate_output_under_a_regular_file(tmp_path, capsys):
    config = write_config(tmp_path, extra=SIMULATE, xmm="exposure_s = 5.0e4", xrism="exposure_s = 1.0e5")
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    refused_unchanged(["simulate", config, "--out", tmp_path / "notes.txt" / "sim"], capsys, tmp_path, "simulate",
                      "the simulate output folder (--out)", "notes.txt, which is a file")


def test_bin_output_in_a_read_only_folder(tmp_path, capsys, events, monkeypatch):
    (tmp_path / "locked").mkdir()
    if os.geteuid() != 0:  # root writes anywhere: the refusal is then shown through os.access
        (tmp_path / "locked").chmod(0o555)
    else:
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p).name == "locked" else real(p, mode))
    try:
        refused_unchanged(bin_args(tmp_path, events, tmp_path / "locked" / "cube.fits"), capsys, tmp_path, "bin",
                          "locked is not writable")
    finally:
        (tmp_path / "locked").chmod(0o755)


def test_run_output_under_a_regular_file_is_a_message_not_a_traceback(tmp_path, capsys):
    config = write_config(tmp_path, extra=SIMULATE, xmm="exposure_s = 5.0e4", xrism="exposure_s = 1.0e5")
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    # refused by the output-folder check, before anything is computed (not after the solve,
    # naming the hidden staging folder)
    refused_unchanged(["run", config, "--quiet", "--out", tmp_path / "notes.txt" / "out"], capsys, tmp_path, "run",
                      "notes.txt", "is a file, not a folder")


def test_truncated_counts_file_is_refused_by_validate_from_its_headers(tmp_path, capsys, sim):
    config = files_config(tmp_path, sim)
    data = (tmp_path / "xmm.fits").read_bytes()
    (tmp_path / "xmm.fits").write_bytes(data[: len(data) // 2])
    refused_unchanged(["validate", config], capsys, tmp_path, "validate",
                      "xmm.fits: the file is truncated", "cut short")
    refused_unchanged(["run", config, "--quiet"], capsys, tmp_path, "run", "xmm.fits: the file is truncated")


def test_truncated_compressed_counts_file_is_not_mistaken_for_one_without_ebounds(tmp_path, capsys, sim):
    import gzip

    counts_file(tmp_path / "full.fits", sim, "xmm")
    packed = gzip.compress((tmp_path / "full.fits").read_bytes())
    (tmp_path / "xmm.fits.gz").write_bytes(packed[: len(packed) - 40])  # the cube intact, EBOUNDS cut
    counts_file(tmp_path / "xrism.fits", sim, "xrism")
    config = write_config(tmp_path, xmm=f'counts = "xmm.fits.gz"\n{GIVEN["xmm"]}',
                          xrism=f'counts = "xrism.fits"\n{GIVEN["xrism"]}')
    for command in ("validate", "run"):
        message = refused_unchanged([command, config], capsys, tmp_path, command,
                                    "xmm.fits.gz: the file is truncated or damaged: its gzip stream ends early",
                                    "cut short")
        assert "no EBOUNDS" not in message


def test_truncated_event_file_is_refused_by_bin(tmp_path, capsys):
    (tmp_path / "toy.toml").write_text(TOY_INSTRUMENT)
    events = events_file(tmp_path / "events.fits", n=2000)
    data = events.read_bytes()
    events.write_bytes(data[: len(data) - 9000])
    refused_unchanged(bin_args(tmp_path, events, tmp_path / "cube.fits"), capsys, tmp_path, "bin",
                      "events.fits: the file is truncated")


def test_listing_into_a_closed_pipe_ends_quietly():
    """``xhsi plugins --json | head -c 10``: the reader is gone before xhsi writes."""
    proc = subprocess.Popen([sys.executable, "-m", "xhsi", "plugins", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == cli.EXIT_BROKEN_PIPE, err
    assert "Traceback" not in err and "BrokenPipeError" not in err and err == "", err


def test_broken_pipe_in_process(monkeypatch, capsys):
    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["instruments", "--json"]) == cli.EXIT_BROKEN_PIPE
    assert capsys.readouterr().err == ""


# == 4. size guard ==========================================================================
def test_bin_with_a_huge_crop_is_refused_before_allocating(tmp_path, capsys, events):
    message = refused_unchanged(bin_args(tmp_path, events, tmp_path / "cube.fits", "--crop", 0, 2e6, 0, 2e6),
                                capsys, tmp_path, "bin", "binning into 8 planes x 2000000 x 2000000 pixels needs about",
                                "GiB of memory, more than the", "available now", "--crop XMIN XMAX YMIN YMAX",
                                "--spatial-bin", "--ignore-memory-check")
    assert "crop=" not in message and "memory_limit_bytes" not in message


def test_bin_memory_check_can_be_overridden(tmp_path, capsys, events, monkeypatch):
    monkeypatch.setattr(checks, "available_memory_bytes", lambda backend: 1000)
    refused_unchanged(bin_args(tmp_path, events, tmp_path / "cube.fits"), capsys, tmp_path, "bin",
                      "more than the 0.000954 MiB available now")
    assert main([str(a) for a in bin_args(tmp_path, events, tmp_path / "cube.fits", "--ignore-memory-check")]) == 0


def test_run_memory_check_names_its_override_and_the_override_works(tmp_path, capsys, monkeypatch):
    config = write_config(tmp_path, extra=SIMULATE, xmm="exposure_s = 5.0e4", xrism="exposure_s = 1.0e5")
    monkeypatch.setattr(checks, "available_memory_bytes", lambda backend: 1000)
    refused_unchanged(["validate", config], capsys, tmp_path, "validate", "this run needs about",
                      "set [run] memory_check = false (--set run.memory_check=false) to run anyway")
    assert main(["validate", str(config), "--set", "run.memory_check=false"]) == 0


def test_simulate_is_refused_a_grid_too_large_for_memory(tmp_path, capsys):
    config = write_config(tmp_path, extra=SIMULATE, xmm="exposure_s = 5.0e4", xrism="exposure_s = 1.0e5")
    refused_unchanged(["simulate", config, "--out", tmp_path / "sim", "--set", "model.energy.bins=100000000"],
                      capsys, tmp_path, "simulate", "needs about", "GiB of memory, more than the",
                      "--set run.memory_check=false")


def test_memory_check_is_not_part_of_the_config_digest(tmp_path):
    from xhsi.config import load_config

    config = write_config(tmp_path, extra=SIMULATE, xmm="exposure_s = 5.0e4", xrism="exposure_s = 1.0e5")
    assert load_config(config).digest() == load_config(config, ["run.memory_check=false"]).digest()


# == 5. cross-checks of the user's data ======================================================
def test_exposure_differing_from_the_file_is_refused(tmp_path, capsys, sim):
    config = files_config(tmp_path, sim, xmm_lines="exposure_s = 2.5e4")
    refused_unchanged(["validate", config], capsys, tmp_path, "validate", "observations[0] (`xmm`).exposure_s = 25000 s",
                      "xmm.fits says EXPOSURE = 50000 s", "ratio 0.5", "Leave exposure_s out")
    refused_unchanged(["run", config, "--quiet"], capsys, tmp_path, "run", "EXPOSURE = 50000 s")


def test_exposure_within_the_tolerance_is_accepted(tmp_path, capsys, sim):
    config = files_config(tmp_path, sim, xmm_lines="exposure_s = 5.02e4")
    assert main(["validate", str(config)]) == 0


def test_exposure_is_read_from_the_counts_file_when_left_out(tmp_path, capsys, sim):
    config = files_config(tmp_path, sim, xmm_lines="", xrism_lines="")
    assert main(["validate", str(config), "--show-defaults"]) == 0
    shown = capsys.readouterr().out
    assert "exposure_s = 50000.0" in shown and "exposure_s = 100000.0" in shown


def test_exposure_left_out_and_absent_from_the_file(tmp_path, capsys, sim):
    config = files_config(tmp_path, sim, xrism_lines="", xrism={"drop": ("EXPOSURE",)})
    refused_unchanged(["validate", config], capsys, tmp_path, "validate", "observations[1] (`xrism`).exposure_s",
                      "xrism.fits has no EXPOSURE key", "give exposure_s")


def test_exposure_is_required_for_simulated_counts(tmp_path, capsys):
    config = write_config(tmp_path, extra=SIMULATE, xmm="exposure_s = 5.0e4")
    refused_unchanged(["validate", config], capsys, tmp_path, "validate", "observations[1] (`xrism`).exposure_s",
                      "is required when the counts are simulated")
    refused_unchanged(["simulate", config, "--out", tmp_path / "sim"], capsys, tmp_path, "simulate",
                      "is required when the counts are simulated")


def test_a_bad_exposure_key_is_refused(tmp_path, capsys, sim):
    config = files_config(tmp_path, sim, xmm_lines="", xmm={"header": {"EXPOSURE": -10.0}})
    refused_unchanged(["validate", config], capsys, tmp_path, "validate",
                      "xmm.fits: EXPOSURE = -10.0 is not a positive number of seconds")


def test_counts_pixel_size_differing_from_the_observation(tmp_path, capsys, sim):
    config = files_config(tmp_path, sim, xmm={"pixel_arcsec": 10.0})
    refused_unchanged(["validate", config], capsys, tmp_path, "validate",
                      "xmm.fits: the counts cube of observation `xmm` has pixels of 10 arcsec",
                      "detector pixels are 4.1 arcsec ([model] pixel_arcsec = 4.1 × spatial_rebin = 1)")


def test_background_pixel_size_differing_from_the_observation(tmp_path, capsys, sim):
    files_config(tmp_path, sim)
    counts_file(tmp_path / "bkg.fits", sim, "xrism", pixel_arcsec=30.0)
    config = write_config(tmp_path, xmm=f'counts = "xmm.fits"\n{GIVEN["xmm"]}',
                          xrism=f'counts = "xrism.fits"\nbackground = "bkg.fits"\n{GIVEN["xrism"]}')
    refused_unchanged(["validate", config], capsys, tmp_path, "validate",
                      "bkg.fits: the background cube of observation `xrism` has pixels of 30 arcsec",
                      "detector pixels are 12.3 arcsec")


def test_counts_of_another_instrument_are_refused(tmp_path, capsys, sim):
    config = files_config(tmp_path, sim, xmm={"header": {"INSTRUME": "xrism_resolve", "TELESCOP": "XRISM"}})
    refused_unchanged(["validate", config], capsys, tmp_path, "validate",
                      "xmm.fits: the counts cube of observation `xmm` says TELESCOP = 'XRISM'",
                      "instrument `xmm_epic_pn` is on XMM-Newton")


def test_instrume_naming_another_detector_is_refused(tmp_path, capsys, sim):
    config = files_config(tmp_path, sim, xmm={"drop": ("TELESCOP",), "header": {"INSTRUME": "ACIS"}})
    # 'ACIS' names both shipped ACIS instruments (chandra_acis_i, chandra_acis_s): either is named.
    refused_unchanged(["validate", config], capsys, tmp_path, "validate", "says INSTRUME = 'ACIS', which is "
                      "`chandra_acis_", "observation's instrument is `xmm_epic_pn`")


def test_mission_keywords_that_agree_are_accepted(tmp_path, capsys, sim):
    # XMM / EPN and XRISM / RESOLVE (the keys of real files) and the xhsi names both pass.
    assert main(["validate", str(files_config(tmp_path, sim))]) == 0
    other = tmp_path / "xhsi_names"
    other.mkdir()
    config = files_config(other, sim, xmm={"header": {"INSTRUME": "EPIC-pn", "XHSIINST": "xmm_epic_pn",
                                                      "TELESCOP": "XMM-NEWTON"}},
                          xrism={"header": {"INSTRUME": "xrism_resolve"}})
    assert main(["validate", str(config)]) == 0


def test_observations_pointing_at_different_sky_positions(tmp_path, capsys, sim):
    config = files_config(tmp_path, sim, xrism={"center": (CENTER[0], CENTER[1] + 60.0 / 3600.0)})
    refused_unchanged(["validate", config], capsys, tmp_path, "validate",
                      "observations `xmm`", "and `xrism`", "point at different sky positions",
                      "their field centres are 60 arcsec apart (14.6 model pixels, 122% of the 49.2 arcsec [model] "
                      "field", "xhsi does not reproject cubes")


def test_observations_a_fraction_of_a_pixel_apart_are_accepted(tmp_path, capsys, sim):
    config = files_config(tmp_path, sim, xrism={"center": (CENTER[0], CENTER[1] + 1.0 / 3600.0)})
    assert main(["validate", str(config)]) == 0


# == unclear messages =========================================================================
@pytest.mark.parametrize("value, words", [
    ("-4.5", ("`spectral_response.fwhm_ev`: must be > 0 eV, got -4.5.",)),
    ('"4.5"', ("`spectral_response.fwhm_ev`: expected a number or a table in eV, got string '4.5'",)),
], ids=["negative", "string"])
def test_instrument_schema_errors_say_what_is_wrong(tmp_path, capsys, value, words):
    instrument = tmp_path / "toy.toml"
    instrument.write_text(TOY_INSTRUMENT.replace("fwhm_ev = 100.0", f"fwhm_ev = {value}"))
    message = refused_unchanged(["instruments", instrument], capsys, tmp_path, "instruments", str(instrument), *words)
    assert "expected float" not in message and "or nothing" not in message


def test_all_zero_counts_are_refused_before_solving(tmp_path, capsys, sim):
    config = files_config(tmp_path, sim, xmm={"data": np.zeros_like(sim["xmm"][0])})
    message = refused_unchanged(["run", config, "--quiet"], capsys, tmp_path, "run",
                                "xmm.fits: the counts cube of observation `xmm` is all zeros",
                                "nothing to fit")
    assert "cost is nan" not in message and not (tmp_path / "out").exists()


def test_a_cube_in_an_image_extension_is_found(tmp_path, capsys, sim):
    config = files_config(tmp_path, sim, xmm_lines="")  # EXPOSURE read from the primary header
    with fits.open(tmp_path / "xmm.fits") as hdul:
        cube = fits.ImageHDU(hdul[0].data, header=hdul[0].header, name="COUNTS")
        spare = fits.ImageHDU(np.ones((3, 3)), name="MASK")
        primary = fits.PrimaryHDU()
        primary.header["EXPOSURE"] = hdul[0].header["EXPOSURE"]
        del cube.header["EXPOSURE"]  # in the primary header only, as OGIP files often have it
        fits.HDUList([primary, spare, cube, hdul["EBOUNDS"].copy()]).writeto(tmp_path / "ext.fits")
    config.write_text(config.read_text().replace('counts = "xmm.fits"', 'counts = "ext.fits"'))
    assert main(["validate", str(config), "--show-defaults"]) == 0
    assert "exposure_s = 50000.0" in capsys.readouterr().out
    from xhsi.io.cubes import read_cube

    assert read_cube(tmp_path / "ext.fits").data.shape == sim["xmm"][0].shape


def test_a_file_without_a_cube_says_which_hdus_hold_what(tmp_path, capsys, sim):
    config = files_config(tmp_path, sim)
    with fits.open(tmp_path / "xmm.fits") as hdul:
        image = fits.PrimaryHDU(hdul[0].data.sum(axis=0))
        fits.HDUList([image, fits.ImageHDU(hdul[0].data, name="SCI"), fits.ImageHDU(hdul[0].data, name="SCI2"),
                      hdul["EBOUNDS"].copy()]).writeto(tmp_path / "two.fits")
    config.write_text(config.read_text().replace('counts = "xmm.fits"', 'counts = "two.fits"'))
    message = refused_unchanged(["validate", config], capsys, tmp_path, "validate",
                                "HDU 0 (PRIMARY): an image of 2 axes (12 x 12)",
                                "HDU 1 (SCI): an image of 3 axes (10 x 12 x 12)", "HDU 3 (EBOUNDS): a table of 10 rows")
    assert "got shape None" not in message


def test_bin_messages_name_the_command_line_options(tmp_path, capsys):
    (tmp_path / "toy.toml").write_text(TOY_INSTRUMENT)
    radec = events_file(tmp_path / "radec.fits", columns=("RA", "DEC", "ENERGY"))
    pi = events_file(tmp_path / "pi.fits", columns=("X", "Y", "PI"))
    bare = events_file(tmp_path / "bare.fits", xy_wcs=False)
    cases = [
        (["bin", radec, "--out", tmp_path / "c.fits"], ("need a pixel size: pass --pixel-arcsec or --instrument",)),
        (["bin", bare, "--out", tmp_path / "c.fits"], ("no TCRPX/TCRVL/TCDLT keywords",
                                                       "pass --pixel-arcsec or --instrument")),
        (["bin", pi, "--out", tmp_path / "c.fits"], ("binning the PI column", "no instrument was given",
                                                     "pass --instrument with an RMF instrument",
                                                     "an ENERGY column (--energy-column)")),
        (["bin", bare, "--pixel-arcsec", "2", "--out", tmp_path / "c.fits"],
         ("give --energy-range with --energy-step or --instrument to bin the ENERGY column",)),
        (bin_args(tmp_path, bare, tmp_path / "c.fits", "--spatial-bin", "0"), ("--spatial-bin must be a positive",)),
        (bin_args(tmp_path, bare, tmp_path / "c.fits", "--energy-bin", "100"), ("--energy-bin = 100 is larger",)),
        (bin_args(tmp_path, bare, tmp_path / "c.fits", "--energy-range", "20", "30"),
         ("no energy bin lies in --energy-range (20.0, 30.0) keV; the bins span 1-5 keV",)),
        (bin_args(tmp_path, bare, tmp_path / "c.fits", "--crop", "5", "1", "0", "10"),
         ("--crop XMIN XMAX YMIN YMAX must be",)),
    ]
    options = {opt for action in _bin_parser()._actions for opt in action.option_strings}
    for argv, words in cases:
        message = refused_unchanged(argv, capsys, tmp_path, "bin", *words)
        for python_name in ("pixel_arcsec", "energy_edges_kev", "spatial_bin", "energy_bin", "position_columns",
                            "energy_column", "energy_range_kev"):
            assert python_name not in message, message
        for flag in {w.rstrip(",.;)") for w in message.split() if w.startswith("--")}:
            assert flag in options, (flag, message)
    assert main(["bin", str(bare), "--pixel-arcsec", "2", "--instrument", str(tmp_path / "toy.toml"),
                 "--out", str(tmp_path / "c.fits")]) == 0


def _bin_parser():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices["bin"]


def test_every_option_bin_names_in_its_messages_exists():
    options = {opt for action in _bin_parser()._actions for opt in action.option_strings}
    for key, spelled in cli.BIN_OPTIONS.items():
        if spelled is not None:
            assert spelled.split()[0] in options, key
