"""The instrument TOML schema (reference: docs/instruments.md): typed sections, energy
tables ``{ energies_kev = [...], values = [...] }`` (linear in energy, clamped beyond their
ends), and :func:`parse_instrument`, which checks a file's tables and units."""
from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..schema import Context, from_dict, option

@dataclass(kw_only=True)
class EnergyTable:
    """A quantity tabulated against energy; linear in energy, clamped at both ends."""

    energies_kev: list[float] = option(unit="keV", min=0.0, doc="energies of the tabulated values, increasing")
    values: list[float] = option(doc="the quantity at those energies, in the unit of the key holding the table")

    def check(self):
        if len(self.energies_kev) != len(self.values) or not self.values:
            raise ValueError(f"`energies_kev` ({len(self.energies_kev)} values) and `values` ({len(self.values)}) "
                             "must be non-empty and of the same length.")
        if any(b <= a for a, b in zip(self.energies_kev, self.energies_kev[1:])):
            raise ValueError("`energies_kev` must be strictly increasing.")

    def __call__(self, energies_kev) -> np.ndarray:
        return np.interp(np.asarray(energies_kev, dtype=np.float64), self.energies_kev, self.values)


@dataclass(kw_only=True)
class InstrumentInfo:
    name: str = option(doc="the name run configs use (`instrument = \"...\"`)")
    mission: str = option("", doc="observatory, e.g. XMM-Newton")
    detector: str = option("", doc="detector, e.g. EPIC-pn")
    references: list[str] = option([], doc="sources of the numbers in this file")
    description: str = option("", doc="a paragraph shown by `xhsi instruments NAME`")


@dataclass(kw_only=True)
class ChannelsSection:
    min_kev: float | None = option(None, unit="keV", min=0.0,
                                   doc="lower edge of the first channel (gaussian) / of the band kept (rmf)")
    max_kev: float | None = option(None, unit="keV", min=0.0, exclusive_min=True,
                                   doc="upper edge of the last channel (gaussian) / of the band kept (rmf)")
    count: int | None = option(None, min=1, unit="channels",
                               doc="number of channels (gaussian: equal widths; rmf: optional check)")

    def check(self):
        if self.min_kev is not None and self.max_kev is not None and self.max_kev <= self.min_kev:
            raise ValueError(f"`max_kev` ({self.max_kev}) must be larger than `min_kev` ({self.min_kev}).")


SPECTRAL_KINDS = ("gaussian", "rmf")
AREA_KINDS = ("table", "arf", "constant")
PSF_KINDS = ("gaussian", "king", "image")


@dataclass(kw_only=True)
class SpectralResponseSection:
    kind: str = option(choices=SPECTRAL_KINDS, doc="gaussian: FWHM(E) law; rmf: an OGIP RMF file")
    fwhm_ev: float | dict | None = option(None, unit="eV", min=0.0, exclusive_min=True,
                                          doc="gaussian: FWHM, a number or an energy table")
    file: Path | None = option(None, doc="rmf: OGIP RMF, relative to this TOML")

    def check(self):
        if self.kind == "gaussian":
            if self.fwhm_ev is None:
                raise ValueError("`fwhm_ev` is required when kind = \"gaussian\".")
            if self.file is not None:
                raise ValueError("`file` is for kind = \"rmf\"; remove it or set kind = \"rmf\".")
        else:
            if self.file is None:
                raise ValueError("`file` (an OGIP RMF) is required when kind = \"rmf\".")
            if self.fwhm_ev is not None:
                raise ValueError("`fwhm_ev` is for kind = \"gaussian\"; an RMF sets the resolution itself.")


@dataclass(kw_only=True)
class EffectiveAreaSection:
    kind: str = option(choices=AREA_KINDS, doc="table: cm² against energy; arf: OGIP ARF file; constant")
    energies_kev: list[float] | None = option(None, unit="keV", min=0.0, doc="table: energies, increasing")
    cm2: float | list[float] | None = option(None, unit="cm²", doc="table: areas; constant: one area")
    file: Path | None = option(None, doc="arf: OGIP ARF, relative to this TOML")

    def check(self):
        if self.kind == "table":
            if self.energies_kev is None or not isinstance(self.cm2, list):
                raise ValueError("kind = \"table\" needs `energies_kev` and `cm2`, two arrays of the same length.")
            if len(self.energies_kev) != len(self.cm2) or not self.cm2:
                raise ValueError(f"`energies_kev` ({len(self.energies_kev)} values) and `cm2` ({len(self.cm2)}) "
                                 "must be non-empty and of the same length.")
            if any(b <= a for a, b in zip(self.energies_kev, self.energies_kev[1:])):
                raise ValueError("`energies_kev` must be strictly increasing.")
            if any(a < 0 for a in self.cm2):
                raise ValueError(f"`cm2` holds a negative area ({min(self.cm2)} cm²); areas must be >= 0 cm².")
        elif self.kind == "constant":
            if not isinstance(self.cm2, float) or self.energies_kev is not None:
                raise ValueError("kind = \"constant\" needs one number `cm2` (cm²) and no `energies_kev`.")
            if self.cm2 < 0:
                raise ValueError(f"`cm2` is negative ({self.cm2} cm²); an area must be >= 0 cm².")
        else:
            if self.file is None:
                raise ValueError("`file` (an OGIP ARF) is required when kind = \"arf\".")
            if self.cm2 is not None or self.energies_kev is not None:
                raise ValueError("kind = \"arf\" takes only `file`; remove `cm2`/`energies_kev`.")
        if self.kind != "arf" and self.file is not None:
            raise ValueError(f"`file` is for kind = \"arf\", not \"{self.kind}\".")


@dataclass(kw_only=True)
class SpatialSection:
    pixel_arcsec: float = option(unit="arcsec", min=0.0, exclusive_min=True, doc="detector pixel size on the sky")
    field_of_view_arcmin: float | None = option(None, unit="arcmin", min=0.0, exclusive_min=True,
                                                doc="field of view (side or diameter), for listings")


@dataclass(kw_only=True)
class PsfSection:
    kind: str = option(choices=PSF_KINDS, doc="gaussian | king (1 + (r/r0)²)^(−alpha) | image (FITS)")
    fwhm_arcsec: float | dict | None = option(None, unit="arcsec", min=0.0, exclusive_min=True,
                                              doc="gaussian: FWHM, a number or an energy table")
    r0_arcsec: float | dict | None = option(None, unit="arcsec", min=0.0, exclusive_min=True,
                                            doc="king: core radius, a number or an energy table")
    alpha: float | dict | None = option(None, min=0.0, exclusive_min=True,
                                        doc="king: slope (dimensionless), a number or an energy table")
    file: Path | None = option(None, doc="image: FITS image (ky, kx) or cube (n_e, ky, kx), relative to this TOML")
    image_pixel_arcsec: float | None = option(None, unit="arcsec", min=0.0, exclusive_min=True,
                                              doc="image: pixel size of the file (default: from its CDELT)")
    energies_kev: list[float] | None = option(None, unit="keV", min=0.0,
                                              doc="image cube: energy of each plane, increasing")
    radius_arcsec: float | None = option(None, unit="arcsec", min=0.0, exclusive_min=True,
                                         doc="kernel half-width (default: 3 FWHM, king: 95% of the flux, "
                                             "image: its own extent)")

    def check(self):
        needs = {"gaussian": ("fwhm_arcsec",), "king": ("r0_arcsec", "alpha"), "image": ("file",)}[self.kind]
        for key in needs:
            if getattr(self, key) is None:
                raise ValueError(f"`{key}` is required when kind = \"{self.kind}\".")
        allowed = set(needs) | {"radius_arcsec"} | ({"image_pixel_arcsec", "energies_kev"} if self.kind == "image" else set())
        for key in ("fwhm_arcsec", "r0_arcsec", "alpha", "file", "image_pixel_arcsec", "energies_kev"):
            if getattr(self, key) is not None and key not in allowed:
                raise ValueError(f"`{key}` does not apply to kind = \"{self.kind}\"; remove it.")
        if self.energies_kev is not None and any(b <= a for a, b in zip(self.energies_kev, self.energies_kev[1:])):
            raise ValueError("`energies_kev` must be strictly increasing.")


@dataclass(kw_only=True)
class BackgroundSection:
    rate: float = option(0.0, unit="counts / s / keV / arcmin²", min=0.0, doc="flat background")


@dataclass(kw_only=True)
class InstrumentFile:
    """The whole instrument TOML."""

    instrument: InstrumentInfo = option()
    channels: ChannelsSection | None = option(None, doc="required for gaussian responses; optional band for rmf")
    spectral_response: SpectralResponseSection = option()
    effective_area: EffectiveAreaSection = option()
    spatial: SpatialSection = option()
    psf: PsfSection = option()
    background: BackgroundSection = option(BackgroundSection())

    def check(self):
        if self.spectral_response.kind == "gaussian":
            ch = self.channels
            if ch is None or ch.min_kev is None or ch.max_kev is None or ch.count is None:
                raise ValueError("a gaussian spectral response needs `[channels]` with `min_kev`, `max_kev` and `count`.")


# Keys that hold a number or an energy table, with the unit of the table's values.
_TABLE_KEYS = {("spectral_response", "fwhm_ev"): "eV", ("psf", "fwhm_arcsec"): "arcsec",
               ("psf", "r0_arcsec"): "arcsec", ("psf", "alpha"): ""}


def _unitless_keys(data: Any, cls: type, ctx: Context, path: str = "") -> None:
    """Reject a key that is a valid key without its unit suffix (``pixel`` for
    ``pixel_arcsec``): the unit is part of every xhsi key that holds a physical number."""
    if not isinstance(data, dict) or not is_dataclass(cls):
        return
    import typing

    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    for key, value in data.items():
        sub = f"{path}.{key}" if path else key
        if key in names:
            tp = hints[key]
            for arg in (typing.get_args(tp) or (tp,)):
                if is_dataclass(arg):
                    _unitless_keys(value, arg, ctx, sub)
            continue
        with_unit = [n for n in names if n.startswith(f"{key}_")]
        if with_unit and isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ctx.error(sub, f"a number without a unit; write `{with_unit[0]}` (its unit is in the key name).")


def parse_instrument(data: dict, file: str = "<instrument>", base_dir: Path = Path(".")) -> InstrumentFile:
    """Validate a parsed instrument TOML; ConfigError names the file and the dotted key."""
    ctx = Context(file=file, base_dir=base_dir)
    _unitless_keys(data, InstrumentFile, ctx)
    spec = from_dict(InstrumentFile, data, ctx)
    for (section, key), unit in _TABLE_KEYS.items():
        obj = getattr(spec, section)
        value = getattr(obj, key)
        if isinstance(value, dict):
            table = from_dict(EnergyTable, value, ctx, f"{section}.{key}")
            if any(v <= 0 for v in table.values):
                raise ctx.error(f"{section}.{key}.values", f"must all be > 0{(' ' + unit) if unit else ''}, "
                                                          f"got {min(table.values)}.")
            setattr(obj, key, table)
    return spec

