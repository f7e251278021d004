"""Which events of a Chandra or XMM-Newton event list to bin, and their exposure.

Standard event screening (on by default; ``xhsi bin --no-event-filter`` turns it off), chosen
by the event header's TELESCOP / INSTRUME:

- Chandra ACIS: ``GRADE`` in the ASCA grade set {0, 2, 3, 4, 6} and ``STATUS == 0`` (no
  status bit set), as in the standard level-2 processing (Chandra Proposers' Observatory
  Guide, ACIS chapter, "event grades"; CIAO thread "Create a New Level=2 Event File").
- XMM-Newton EPIC pn (INSTRUME ``EPN``): ``PATTERN <= 4`` (singles and doubles); EPIC MOS
  (``EMOS1``/``EMOS2``): ``PATTERN <= 12``; both ``FLAG == 0`` (XMM-Newton ABC Guide,
  "Filter the event file"; SAS ``evselect`` threads).
A file of another mission, or without those columns, is not screened.

Exposure (:func:`gti_exposure`): the good time intervals of the chips whose events are
binned. Chandra writes one GTI extension per CCD (keyword ``CCD_ID``), XMM-Newton one
``STDGTInn`` per CCD (keyword ``CCDNR``); a chip's exposure is the total length of its GTIs
times the dead-time correction ``DTCOR`` of the event header (1 when absent). Chips whose
exposures agree within :data:`GTI_TOLERANCE` give the exposure of the chip holding most of the
binned events, and every chip's exposure is written to the cube header (``EXPOSURn``);
chips that differ more, or a chip without GTI among chips with GTIs, are an error (pass an
exposure, or select chips). Without per-chip GTIs the header's EXPOSURE (else LIVETIME,
ONTIME) is used.
"""
from __future__ import annotations

import numpy as np
from astropy.io import fits

from ..errors import DataError

__all__ = ["GTI_TOLERANCE", "chip_column", "chip_gtis", "gti_exposure", "screen_events"]

#: ASCA grades kept for Chandra ACIS (the standard level-2 set).
CHANDRA_GRADES = (0, 2, 3, 4, 6)
#: Highest PATTERN kept for XMM-Newton EPIC pn / MOS.
XMM_MAX_PATTERN = {"EPN": 4, "EMOS1": 12, "EMOS2": 12}
#: Relative difference of the chips' exposures up to which they count as one exposure.
GTI_TOLERANCE = 0.01
_CHIP_COLUMNS = ("CCD_ID", "CCDNR")
_CHIP_KEYS = ("CCD_ID", "CCDNR")


def chip_column(names: list[str]) -> str | None:
    """The chip-number column of an event table (Chandra CCD_ID, XMM CCDNR), or None."""
    return next((c for c in _CHIP_COLUMNS if c in names), None)


def screen_events(data, names: list[str], header) -> tuple[np.ndarray, str]:
    """(mask of the events the standard screening keeps, a one-line description)."""
    n = len(data)
    keep = np.ones(n, dtype=bool)
    telescope = str(header.get("TELESCOP", "")).strip().upper()
    instrument = str(header.get("INSTRUME", "")).strip().upper()
    done = []
    if telescope == "CHANDRA":
        if "GRADE" in names:
            keep &= np.isin(np.asarray(data.field("GRADE")), CHANDRA_GRADES)
            done.append("GRADE in 0,2,3,4,6")
        if "STATUS" in names:
            status = np.asarray(data.field("STATUS"))
            keep &= ~(status.reshape(n, -1) != 0).any(axis=1)  # 32X bit columns read as (n, 32) booleans
            done.append("STATUS=0")
    elif telescope == "XMM" and instrument in XMM_MAX_PATTERN:
        if "PATTERN" in names:
            keep &= np.asarray(data.field("PATTERN")) <= XMM_MAX_PATTERN[instrument]
            done.append(f"PATTERN<={XMM_MAX_PATTERN[instrument]}")
        if "FLAG" in names:
            keep &= np.asarray(data.field("FLAG")) == 0
            done.append("FLAG=0")
    return keep, " ".join(done)


def chip_gtis(hdul) -> dict[int, float]:
    """{chip: total GTI length in s} of the GTI extensions that name their chip."""
    out = {}
    for hdu in hdul:
        name = hdu.name.upper()
        if not isinstance(hdu, fits.BinTableHDU) or not (name == "GTI" or name.startswith("STDGTI")):
            continue
        chip = next((hdu.header[k] for k in _CHIP_KEYS if hdu.header.get(k) is not None), None)
        if chip is None:
            continue
        cols = [c.upper() for c in hdu.columns.names]
        if "START" not in cols or "STOP" not in cols:
            continue
        start = np.asarray(hdu.data.field("START"), dtype=np.float64)
        stop = np.asarray(hdu.data.field("STOP"), dtype=np.float64)
        out[int(chip)] = out.get(int(chip), 0.0) + float(np.clip(stop - start, 0.0, None).sum())
    return out


def gti_exposure(gtis: dict[int, float], header, chips: np.ndarray | None, path, exposure_option: str,
                 chip_option: str):
    """(exposure s or None, header cards saying where it came from) for the binned events,
    whose chip numbers are ``chips`` (None: no chip column); ``gtis`` from :func:`chip_gtis`."""
    dtcor = float(header.get("DTCOR", 1.0) or 1.0)
    if gtis and chips is not None and chips.size:
        ids, counts = np.unique(chips, return_counts=True)
        missing = [int(i) for i in ids if int(i) not in gtis]
        if missing:
            raise DataError(f"{path}: mismatched GTIs: the binned events lie on chips {', '.join(map(str, ids))} but "
                            f"there is no GTI extension for chip(s) {', '.join(map(str, missing))} (GTIs found for "
                            f"{', '.join(map(str, sorted(gtis)))}). Select chips with {chip_option} or give the "
                            f"exposure with {exposure_option}.")
        per_chip = {int(i): gtis[int(i)] * dtcor for i in ids}
        lo, hi = min(per_chip.values()), max(per_chip.values())
        if hi <= 0:
            raise DataError(f"{path}: the GTIs of chip(s) {', '.join(map(str, ids))} add up to 0 s. Give the exposure "
                            f"with {exposure_option}.")
        if hi - lo > GTI_TOLERANCE * hi:
            listing = ", ".join(f"chip {c}: {e:.6g} s" for c, e in per_chip.items())
            raise DataError(f"{path}: mismatched GTIs: the chips of the binned events have exposures differing by more "
                            f"than {GTI_TOLERANCE:.0%} ({listing}); a cube has one exposure. Select chips with "
                            f"{chip_option} or give the exposure with {exposure_option}.")
        main = int(ids[np.argmax(counts)])
        cards = {f"EXPOSUR{c}": round(e, 3) for c, e in per_chip.items() if 0 <= c <= 9}
        cards["XHSIEXPO"] = f"GTI of chip {main} (most events) x DTCOR {dtcor:.6g}"[:68]
        return per_chip[main], cards
    exposure = next((float(header[k]) for k in ("EXPOSURE", "LIVETIME", "ONTIME") if header.get(k)), None)
    return exposure, {}
