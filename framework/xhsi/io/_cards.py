"""Header cards every FITS file xhsi writes carries: when and by what it was written
(``DATE``, ``CREATOR``), its data unit (``BUNIT``, a string ``astropy.units`` parses), and
the caller's own cards (with ``HISTORY`` / ``COMMENT`` lists)."""
from __future__ import annotations

import functools
from datetime import datetime, timezone
from importlib import metadata
from typing import Any, Mapping

#: Cards that hold free text, one card per line, and may repeat.
TEXT_CARDS = ("HISTORY", "COMMENT")


@functools.lru_cache(maxsize=1)
def software_version() -> str:
    """The installed xhsi version (``0+unknown`` from a source tree that is not installed)."""
    try:
        return metadata.version("xhsi")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def creation_cards() -> dict[str, tuple[str, str]]:
    """``DATE`` (the UTC time of writing, ISO 8601, FITS standard §4.4.2.1) and ``CREATOR``
    (``xhsi <version>``, the OGIP keyword for the software that wrote the file)."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return {"DATE": (now, "file creation date (UTC)"),
            "CREATOR": (f"xhsi {software_version()}", "software that wrote this file")}


def bunit_card(unit: str | None, what: str = "") -> tuple[str, str]:
    """(``BUNIT`` value, comment) for a unit written as text. A unit that astropy.units
    parses ("photon / (s cm2)", "keV", "count", "" for dimensionless) is the value; any other
    text ("solar", "sigma": ratios and significances, dimensionless) goes to the comment
    of an empty (dimensionless) BUNIT, so that a reader that parses BUNIT never fails."""
    from astropy import units

    text = (unit or "").strip()
    try:
        units.Unit(text)
    except ValueError:
        return "", f"[{text}] {what}".strip()[:46]
    return text, (what or "physical unit of the data")[:46]


def add_cards(header, cards: Mapping[str, Any] | None) -> None:
    """Set ``cards`` on ``header``: values or (value, comment) pairs; None skipped; for
    ``HISTORY`` and ``COMMENT`` a string or a list of strings, one card each."""
    for key, value in (cards or {}).items():
        if value is None:
            continue
        if key.upper() in TEXT_CARDS:
            for line in [value] if isinstance(value, str) else value:
                header.add_history(line) if key.upper() == "HISTORY" else header.add_comment(line)
        else:
            header[key] = value
