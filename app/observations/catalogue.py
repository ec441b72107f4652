"""The instrument catalogue: every measure the service accepts, as reviewable data.

Each threshold carries its source (full references at the end of docs/analytics.md):
- Farrar 2001 (Pain 94:149): NRS 2 points / 30% ≈ "much improved".
- Dworkin 2008 (IMMPACT, J Pain 9:105): ≥30% moderately, ≥50% substantially important.
- Ostelo 2008 (Spine 33:90): LBP consensus MCIDs: NRS 2, VAS 15 mm, ODI 10 points, or 30%.
- Young 2009 (Spine J 9:802): NDI MCID 7.5 of 50 points = 15%.
- Robinson & Mengshoel 2014 (Spine 39:E270): Schober SDC 1.8 cm, fingertip-to-floor SDC 9.8 cm.
- Saur 1996 (Spine 21:1332): inclinometer lumbar flexion SEM ≈ 4.6°.
ROM, Schober and finger-floor MCIDs are product defaults derived from those measurement
errors (MDC/SDC); clinics may change them. Remission values are product defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["pain", "mobility", "function"]
Better = Literal["lower", "higher"]


@dataclass(frozen=True, slots=True)
class Instrument:
    code: str
    name: str
    kind: Kind
    unit: str  # UCUM
    min: float
    max: float
    integer: bool
    better: Better
    best: float  # the healthy end improvement_pct is measured against
    mcid_abs: float
    mcid_pct: float
    remission: float  # "≤" where lower is better, "≥" where higher is better
    loinc: str | None

    def accepts(self, value: float) -> str | None:
        """Why ``value`` is not a valid reading of this instrument, or None if it is."""
        if not self.min <= value <= self.max:
            unit = "" if self.unit.startswith("{") else f" {self.unit}"  # UCUM {score}: no unit
            return f"must be between {_fmt(self.min)} and {_fmt(self.max)}{unit} for {self.code}"
        if self.integer and not float(value).is_integer():
            return f"must be a whole number for {self.code}"
        return None


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


CATALOGUE: tuple[Instrument, ...] = (
    # NRS: MCID 2 points / 30% (Farrar 2001; Ostelo 2008). LOINC 72514-3
    # "Pain severity - 0-10 verbal numeric rating [Score] - Reported".
    Instrument(
        "pain-nrs",
        "Pain intensity, 0–10 numeric rating scale",
        "pain",
        "{score}",
        0,
        10,
        True,
        "lower",
        0,
        2,
        30,
        2,
        "72514-3",
    ),
    # VAS 0–100 mm: MCID 15 mm / 30% (Ostelo 2008). No LOINC code for the 100 mm VAS.
    Instrument(
        "pain-vas",
        "Pain intensity, visual analogue scale",
        "pain",
        "mm",
        0,
        100,
        False,
        "lower",
        0,
        15,
        30,
        20,
        None,
    ),
    # ODI: MCID 10 points / 30% (Ostelo 2008). LOINC 97909-6 is to be verified before
    # FHIR export relies on it (docs/analytics.md, "Instruments").
    Instrument(
        "odi",
        "Oswestry Disability Index",
        "function",
        "%",
        0,
        100,
        False,
        "lower",
        0,
        10,
        30,
        20,
        "97909-6",
    ),
    # NDI as % of 50: MCID 7.5/50 points = 15% (Young 2009).
    Instrument(
        "ndi",
        "Neck Disability Index (% of 50)",
        "function",
        "%",
        0,
        100,
        False,
        "lower",
        0,
        15,
        30,
        8,
        None,
    ),
    # Modified Schober excursion of the 15 cm mark: SDC 1.8 cm (Robinson & Mengshoel 2014),
    # rounded to a 2 cm MCID; 5 cm is the normal excursion.
    Instrument(
        "schober",
        "Modified Schober test, excursion of the 15 cm mark",
        "mobility",
        "cm",
        0,
        15,
        False,
        "higher",
        5,
        2,
        30,
        5,
        None,
    ),
    # Fingertip-to-floor: SDC 9.8 cm (Robinson & Mengshoel 2014), rounded to 10 cm.
    Instrument(
        "finger-floor",
        "Fingertip-to-floor distance",
        "mobility",
        "cm",
        0,
        80,
        False,
        "lower",
        0,
        10,
        30,
        5,
        None,
    ),
    # Inclinometer lumbar flexion: SEM ≈ 4.6° (Saur 1996) → MDC95 ≈ 12.8°, product MCID 10°.
    Instrument(
        "rom-lumbar-flexion",
        "Lumbar flexion range of motion (inclinometer)",
        "mobility",
        "deg",
        0,
        120,
        False,
        "higher",
        60,
        10,
        30,
        55,
        None,
    ),
    # Lumbar extension: product default 5° from the inclinometer's measurement error.
    Instrument(
        "rom-lumbar-extension",
        "Lumbar extension range of motion",
        "mobility",
        "deg",
        0,
        60,
        False,
        "higher",
        25,
        5,
        30,
        22,
        None,
    ),
    # Cervical flexion: product default 8° from goniometric measurement error.
    Instrument(
        "rom-cervical-flexion",
        "Cervical flexion range of motion",
        "mobility",
        "deg",
        0,
        90,
        False,
        "higher",
        50,
        8,
        30,
        45,
        None,
    ),
    # Cervical rotation (one side): product default 10° from goniometric measurement error.
    Instrument(
        "rom-cervical-rotation",
        "Cervical rotation range of motion (one side)",
        "mobility",
        "deg",
        0,
        110,
        False,
        "higher",
        80,
        10,
        30,
        70,
        None,
    ),
)

BY_CODE: dict[str, Instrument] = {instrument.code: instrument for instrument in CATALOGUE}


def get_instrument(code: str) -> Instrument | None:
    return BY_CODE.get(code)


def value_check_sql() -> str:
    """The database CHECK that holds every stored value to its instrument's range.

    Generated from the catalogue; a catalogue change that alters a range needs a migration
    carrying the new expression (tests compare the two).
    """
    clauses = []
    for ins in CATALOGUE:
        clause = (
            f"(instrument = '{ins.code}' AND value >= {_fmt(ins.min)} AND value <= {_fmt(ins.max)}"
        )
        if ins.integer:
            clause += " AND value = round(value)"
        clauses.append(clause + ")")
    return " OR ".join(clauses)
