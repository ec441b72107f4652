"""The instrument catalogue: every measure the service accepts, as reviewable data.

Each threshold carries its source next to it, and ``mcid_source`` serves the MCID's source with
the catalogue (full references at the end of docs/analytics.md):
- Farrar 2001 (Pain 94:149): NRS 2 points / 30% ≈ "much improved".
- Dworkin 2008 (IMMPACT, J Pain 9:105): ≥30% moderately, ≥50% substantially important.
- Ostelo 2008 (Spine 33:90): LBP consensus MCIDs: NRS 2, VAS 15 mm, ODI 10 points, or 30%.
- Young 2009 (Spine J 9:802): NDI MCID 7.5 of 50 points, MDC 10.2; the authors recommend
  10 points (20%) as the MCID.
- Robinson & Mengshoel 2014 (Spine 39:E270): Schober SDC 1.8 cm, fingertip-to-floor SDC 9.8 cm.
- Saur 1996 (Spine 21:1332): inclinometer lumbar flexion SEM ≈ 4.6°.
- J Orthop Sports Phys Ther 2008;38(10):640 (CROM intrarater reliability, with and without neck
  pain): MDC from 5.4° (left rotation, no neck pain) to 9.6° (flexion, neck pain); SEM 2.3–4.0°
  without and 2.5–4.1° with neck pain.
- Lindell 2007 (BMC Musculoskelet Disord 8:31): inter-rater SEM in 30 patients with prolonged
  back and neck pain, cervical rotation 6° (right) and 7° (left).
ROM, Schober and finger-floor MCIDs are product defaults derived from those measurement errors
(MDC95 = 1.96 · √2 · SEM, rounded up: a smaller change cannot be told from measurement error);
where no published value was found the default stays and ``mcid_source`` says so. Clinics may
change any of them. Remission values are product defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["pain", "mobility", "function"]
Better = Literal["lower", "higher"]

NO_PUBLISHED_VALUE = "product default: no published value found"


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
    mcid_source: str  # a short citation for mcid_abs, or NO_PUBLISHED_VALUE

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


# Catalogue v2 (docs/analytics.md, "Instruments"). mcid_pct is 30% for every instrument
# (Farrar 2001; Dworkin 2008; Ostelo 2008). Remission values are product defaults.
CATALOGUE: tuple[Instrument, ...] = (
    Instrument(
        code="pain-nrs",
        name="Pain intensity, 0–10 numeric rating scale",
        kind="pain",
        unit="{score}",
        min=0,
        max=10,
        integer=True,
        better="lower",
        best=0,
        mcid_abs=2,  # 2 points (Farrar 2001; Ostelo 2008)
        mcid_pct=30,
        remission=2,
        # "Pain severity - 0-10 verbal numeric rating [Score] - Reported"
        loinc="72514-3",
        mcid_source="Farrar 2001; Ostelo 2008",
    ),
    Instrument(
        code="pain-vas",
        name="Pain intensity, visual analogue scale",
        kind="pain",
        unit="mm",
        min=0,
        max=100,
        integer=False,
        better="lower",
        best=0,
        mcid_abs=15,  # 15 mm (Ostelo 2008)
        mcid_pct=30,
        remission=20,
        loinc=None,  # no LOINC code for the 100 mm VAS
        mcid_source="Ostelo 2008",
    ),
    Instrument(
        code="odi",
        name="Oswestry Disability Index",
        kind="function",
        unit="%",
        min=0,
        max=100,
        integer=False,
        better="lower",
        best=0,
        mcid_abs=10,  # 10 points (Ostelo 2008)
        mcid_pct=30,
        remission=20,
        # To be verified before FHIR export relies on it (docs/analytics.md, "Instruments").
        loinc="97909-6",
        mcid_source="Ostelo 2008",
    ),
    Instrument(
        code="ndi",
        name="Neck Disability Index (% of 50)",
        kind="function",
        unit="%",
        min=0,
        max=100,
        integer=False,
        better="lower",
        best=0,
        # v2: 10 of 50 points = 20%. Young 2009 report an MCID of 7.5 points (15%, v1's value)
        # below their MDC of 10.2, and recommend 10 points as the MCID.
        mcid_abs=20,
        mcid_pct=30,
        remission=8,
        loinc=None,
        mcid_source="Young 2009 (10 of 50 points)",
    ),
    Instrument(
        code="schober",
        name="Modified Schober test, excursion of the 15 cm mark",
        kind="mobility",
        unit="cm",
        min=0,
        max=15,
        integer=False,
        better="higher",
        best=5,  # the normal excursion
        mcid_abs=2,  # SDC 1.8 cm (Robinson & Mengshoel 2014), rounded up
        mcid_pct=30,
        remission=5,
        loinc=None,
        mcid_source="product default from SDC 1.8 cm (Robinson & Mengshoel 2014)",
    ),
    Instrument(
        code="finger-floor",
        name="Fingertip-to-floor distance",
        kind="mobility",
        unit="cm",
        min=0,
        max=80,
        integer=False,
        better="lower",
        best=0,
        mcid_abs=10,  # SDC 9.8 cm (Robinson & Mengshoel 2014), rounded up
        mcid_pct=30,
        remission=5,
        loinc=None,
        mcid_source="product default from SDC 9.8 cm (Robinson & Mengshoel 2014)",
    ),
    Instrument(
        code="rom-lumbar-flexion",
        name="Lumbar flexion range of motion (inclinometer)",
        kind="mobility",
        unit="deg",
        min=0,
        max=120,
        integer=False,
        better="higher",
        best=60,  # normal lumbar flexion
        # v2: MDC95 of Saur 1996's inclinometer SEM 4.6° = 1.96 · √2 · 4.6 = 12.8°, rounded up
        # (v1's 10° was below the measure's own MDC95).
        mcid_abs=13,
        mcid_pct=30,
        remission=55,
        loinc=None,
        mcid_source="product default from MDC95 (Saur 1996 SEM 4.6°)",
    ),
    Instrument(
        code="rom-lumbar-extension",
        name="Lumbar extension range of motion",
        kind="mobility",
        unit="deg",
        min=0,
        max=60,
        integer=False,
        better="higher",
        best=25,  # normal lumbar extension
        # Product default. No published SEM/MDC in degrees for inclinometer lumbar extension was
        # found (the sources found report ICCs or correlations only, e.g. Saur 1996).
        mcid_abs=5,
        mcid_pct=30,
        remission=22,
        loinc=None,
        mcid_source=NO_PUBLISHED_VALUE,
    ),
    Instrument(
        code="rom-cervical-flexion",
        name="Cervical flexion range of motion",
        kind="mobility",
        unit="deg",
        min=0,
        max=90,
        integer=False,
        better="higher",
        best=50,  # normal cervical flexion
        # v2: J Orthop Sports Phys Ther 2008;38(10):640 (CROM device, subjects with neck pain)
        # report an MDC of 9.6° for flexion. That MDC is at 90% confidence: the paper's MDCs
        # are 1.645 · √2 times its SEMs at both ends of their ranges (9.6 / 4.1 and 5.4 / 2.3
        # ≈ 2.34), so flexion's SEM is ≈ 4.1°, and MDC95 = 1.96 · √2 · 4.1 = 11.4°, rounded up.
        mcid_abs=12,
        mcid_pct=30,
        remission=45,
        loinc=None,
        mcid_source="product default from MDC95 "
        "(J Orthop Sports Phys Ther 2008;38:640: flexion MDC90 9.6°, SEM 4.1°, neck pain)",
    ),
    Instrument(
        code="rom-cervical-rotation",
        name="Cervical rotation range of motion (one side)",
        kind="mobility",
        unit="deg",
        min=0,
        max=110,
        integer=False,
        better="higher",
        best=80,  # normal rotation to one side
        # v2: Lindell 2007 (BMC Musculoskelet Disord 8:31, Table 1), 30 patients with prolonged
        # back and neck pain: cervical rotation SEM 6° right, 7° left (inter-rater: a
        # physiotherapist and a research assistant). One side, either side: the larger,
        # MDC95 = 1.96 · √2 · 7 = 19.4°, rounded up (v1's 10° was within that error). Inter-rater,
        # like the Schober and fingertip-to-floor SDCs above. JOSPT 2008;38:640 gives no rotation
        # value for neck pain (its neck-pain SEMs, 2.5°–4.1° over all movements, would bound an
        # intra-rater MDC95 by 11.4°): for clinical review.
        mcid_abs=20,
        mcid_pct=30,
        remission=70,
        loinc=None,
        mcid_source="product default from MDC95 (Lindell 2007 SEM 7°, inter-rater)",
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
