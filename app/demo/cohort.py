"""Who the demo clinic treats, and how: archetypes and their shares, indications, spinal
levels and sites, the schedule, the instruments each region is followed by, names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Archetype = Literal["responder", "partial-responder", "non-responder", "worsening"]
Region = Literal["lumbar", "cervical", "thoracic"]

# Fixed shares, not independent draws, so a cohort of 60 has exactly 27/15/12/6.
ARCHETYPE_SHARES: tuple[tuple[Archetype, float], ...] = (
    ("responder", 0.45),
    ("partial-responder", 0.25),
    ("non-responder", 0.20),
    ("worsening", 0.10),
)
# Who applies the policy's frequency changes: the service at once, or a clinician.
ADJUSTMENT_SHARES: tuple[tuple[str, float], ...] = (("auto", 0.7), ("confirm", 0.3))

INDUCTION_DAYS = 14  # 3 a week for the first two weeks, then 2 a week (docs/analytics.md)
INDUCTION_OFFSETS = (0, 2, 4, 7, 9, 11)  # Monday/Wednesday/Friday
CONSOLIDATION_GAPS = (3, 4)  # twice a week: Monday/Thursday
MIN_COURSE_DAYS, MAX_COURSE_DAYS = 14, 56  # courses started 2–8 weeks ago
ADVERSE_EVENT_RATE = 0.03
ADVERSE_EVENTS = ("transient local pain", "vasovagal reaction", "local haematoma")
MISSED_SESSION_RATE = 0.05  # patients miss the odd consolidation session
AT_HOME_SCORE_RATE = 0.25  # ≈ 1–2 at-home pain scores a week between sessions
# Measurement steps as recorded in clinic: ODI/NDI in 2% steps (10 items × 5 points),
# Schober to the half centimetre, fingertip-to-floor to the centimetre, goniometer to the degree.
STEP = {
    "pain-nrs": 1.0,
    "odi": 2.0,
    "ndi": 2.0,
    "schober": 0.5,
    "finger-floor": 1.0,
    "rom-cervical-rotation": 1.0,
}


@dataclass(frozen=True, slots=True)
class Indication:
    name: str
    share: float
    regions: tuple[tuple[Region, float], ...]
    ages: tuple[int, int]


INDICATIONS: tuple[Indication, ...] = (
    Indication("lumbar muscle contracture", 0.35, (("lumbar", 1.0),), (25, 62)),
    Indication("post-discectomy pain", 0.20, (("lumbar", 0.8), ("cervical", 0.2)), (35, 68)),
    Indication("spondylosis", 0.30, (("lumbar", 0.6), ("cervical", 0.4)), (50, 82)),
    # Osteoporotic compaction fractures cluster at the thoracolumbar junction in older patients.
    Indication("vertebral compaction", 0.15, (("thoracic", 0.6), ("lumbar", 0.4)), (60, 88)),
)

LEVELS: dict[Region, tuple[str, ...]] = {
    "lumbar": ("L3-L4", "L4-L5", "L5-S1"),
    "cervical": ("C4-C5", "C5-C6", "C6-C7"),
    "thoracic": ("T10-T11", "T11-T12", "T12-L1"),
}
MUSCLES: dict[Region, tuple[str, ...]] = {
    "lumbar": ("quadratus lumborum", "lumbar erector spinae", "gluteus medius"),
    "cervical": ("upper trapezius", "levator scapulae", "splenius capitis"),
    "thoracic": ("thoracic erector spinae", "rhomboid major", "lower trapezius"),
}
FUNCTION_INSTRUMENT: dict[Region, str] = {"lumbar": "odi", "thoracic": "odi", "cervical": "ndi"}
# Schober measures lumbar excursion only; a thoracic fracture is followed by fingertip-to-floor.
MOBILITY_INSTRUMENTS: dict[Region, tuple[str, ...]] = {
    "lumbar": ("schober", "finger-floor"),
    "thoracic": ("finger-floor",),
    "cervical": ("rom-cervical-rotation",),
}

FEMALE_NAMES = (
    "María", "Lucía", "Carmen", "Elena", "Giulia", "Francesca", "Anna", "Sofía", "Laura",
    "Marta", "Isabel", "Chiara", "Paola", "Rosa", "Teresa", "Claire", "Ingrid", "Nadia",
)  # fmt: skip
MALE_NAMES = (
    "José", "Antonio", "Javier", "Marco", "Luca", "Giuseppe", "Pablo", "Manuel", "David",
    "Andrea", "Carlos", "Miguel", "Paolo", "Thomas", "Jorge", "Stefano", "Pedro", "Omar",
)  # fmt: skip
SURNAMES = (
    "García", "Rossi", "Fernández", "Bianchi", "López", "Romano", "Martínez", "Ricci",
    "Sánchez", "Colombo", "Pérez", "Moretti", "Gómez", "Conti", "Díaz", "Ferrari", "Ruiz",
    "Esposito", "Navarro", "Greco", "Molina", "Bruno", "Ortega", "Gallo", "Castro", "Marino",
)  # fmt: skip
