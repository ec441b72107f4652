"""Shared test data for tests/observations: the instrument catalogue's contract.

``CONTRACT`` is the design's "Instruments" table (catalogue v2) written out by hand, NOT derived
from app code: it is the independent copy that test_catalogue_contract.py compares the Python
catalogue and ``GET /api/v1/instruments`` with, field by field and in order, and that
test_catalogue_boundaries.py takes its boundaries from. A deliberate catalogue change updates
this table in the same commit, with its source.

Where this table departs from the design table's numbers, the design's "v2 thresholds" paragraph
asked for it: ``rom-cervical-flexion`` is 12° and ``rom-cervical-rotation`` 20° (the design
table still shows the v1 defaults 8° and 10°) because a published MDC or SEM was found for them;
``rom-lumbar-extension`` (5°) keeps its default because none was found.
"""

from __future__ import annotations

from typing import Any

NO_SOURCE = "product default: no published value found"

# fmt: off
CONTRACT: tuple[dict[str, Any], ...] = (
    {
        "code": "pain-nrs", "name": "Pain intensity, 0–10 numeric rating scale",
        "kind": "pain", "unit": "{score}", "min": 0, "max": 10, "integer": True,
        "better": "lower", "best": 0, "mcid_abs": 2, "mcid_pct": 30, "remission": 2,
        "loinc": "72514-3", "mcid_source": "Farrar 2001; Ostelo 2008",
    },
    {
        "code": "pain-vas", "name": "Pain intensity, visual analogue scale",
        "kind": "pain", "unit": "mm", "min": 0, "max": 100, "integer": False,
        "better": "lower", "best": 0, "mcid_abs": 15, "mcid_pct": 30, "remission": 20,
        "loinc": None, "mcid_source": "Ostelo 2008",
    },
    {
        "code": "odi", "name": "Oswestry Disability Index",
        "kind": "function", "unit": "%", "min": 0, "max": 100, "integer": False,
        "better": "lower", "best": 0, "mcid_abs": 10, "mcid_pct": 30, "remission": 20,
        "loinc": "97909-6", "mcid_source": "Ostelo 2008",
    },
    {
        "code": "ndi", "name": "Neck Disability Index (% of 50)",
        "kind": "function", "unit": "%", "min": 0, "max": 100, "integer": False,
        "better": "lower", "best": 0, "mcid_abs": 20, "mcid_pct": 30, "remission": 8,
        "loinc": None, "mcid_source": "Young 2009 (10 of 50 points)",
    },
    {
        "code": "schober", "name": "Modified Schober test, excursion of the 15 cm mark",
        "kind": "mobility", "unit": "cm", "min": 0, "max": 15, "integer": False,
        "better": "higher", "best": 5, "mcid_abs": 2, "mcid_pct": 30, "remission": 5,
        "loinc": None,
        "mcid_source": "product default from SDC 1.8 cm (Robinson & Mengshoel 2014)",
    },
    {
        "code": "finger-floor", "name": "Fingertip-to-floor distance",
        "kind": "mobility", "unit": "cm", "min": 0, "max": 80, "integer": False,
        "better": "lower", "best": 0, "mcid_abs": 10, "mcid_pct": 30, "remission": 5,
        "loinc": None,
        "mcid_source": "product default from SDC 9.8 cm (Robinson & Mengshoel 2014)",
    },
    {
        "code": "rom-lumbar-flexion", "name": "Lumbar flexion range of motion (inclinometer)",
        "kind": "mobility", "unit": "deg", "min": 0, "max": 120, "integer": False,
        "better": "higher", "best": 60, "mcid_abs": 13, "mcid_pct": 30, "remission": 55,
        "loinc": None, "mcid_source": "product default from MDC95 (Saur 1996 SEM 4.6°)",
    },
    {
        "code": "rom-lumbar-extension", "name": "Lumbar extension range of motion",
        "kind": "mobility", "unit": "deg", "min": 0, "max": 60, "integer": False,
        "better": "higher", "best": 25, "mcid_abs": 5, "mcid_pct": 30, "remission": 22,
        "loinc": None, "mcid_source": NO_SOURCE,
    },
    {
        "code": "rom-cervical-flexion", "name": "Cervical flexion range of motion",
        "kind": "mobility", "unit": "deg", "min": 0, "max": 90, "integer": False,
        "better": "higher", "best": 50, "mcid_abs": 12, "mcid_pct": 30, "remission": 45,
        "loinc": None,
        "mcid_source": "product default from MDC95 (J Orthop Sports Phys Ther 2008;38:640: "
                       "flexion MDC90 9.6°, SEM 4.1°, neck pain)",
    },
    {
        "code": "rom-cervical-rotation", "name": "Cervical rotation range of motion (one side)",
        "kind": "mobility", "unit": "deg", "min": 0, "max": 110, "integer": False,
        "better": "higher", "best": 80, "mcid_abs": 20, "mcid_pct": 30, "remission": 70,
        "loinc": None,
        "mcid_source": "product default from MDC95 (Lindell 2007 SEM 7°, inter-rater)",
    },
)
# fmt: on

CONTRACT_BY_CODE: dict[str, dict[str, Any]] = {row["code"]: row for row in CONTRACT}
FIELDS = (
    "code", "name", "kind", "unit", "min", "max", "integer", "better", "best",
    "mcid_abs", "mcid_pct", "remission", "loinc", "mcid_source",
)  # fmt: skip
