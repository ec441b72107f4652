"""Which course an observation belongs to (docs/analytics.md, "Which values belong to a
course"). Pure: courses and a value in, candidate course ids out.

A patient can have two courses at once (a lumbar and a cervical one): each course is steered
by its own values only. An observation that names a course (or a session of one) belongs to
it; one that names neither is attributed when it is recorded, to the one course whose window
holds its time and whose region fits the measure. None fits: it is stored without a course.
Two or more fit: the client must say which (a 422 on `course_id`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from app.analytics.trends import window_opens

Region = Literal["lumbar", "cervical"]

# The region a measure is about; pain scores (absent here) fit a course of any region.
INSTRUMENT_REGIONS: dict[str, Region] = {
    "odi": "lumbar",
    "schober": "lumbar",
    "finger-floor": "lumbar",
    "rom-lumbar-flexion": "lumbar",
    "rom-lumbar-extension": "lumbar",
    "ndi": "cervical",
    "rom-cervical-flexion": "cervical",
    "rom-cervical-rotation": "cervical",
}

# A course's region is free text ("lumbar", "L4-L5 paravertebral", "neck"...): these words say
# which spine region it treats.
_REGION_WORDS: dict[Region, tuple[str, ...]] = {
    "lumbar": ("lumbar", "lumbosacral", "low back", "lower back"),
    "cervical": ("cervical", "neck"),
}


def region_of(region: str) -> Region | None:
    """The spine region a course's free-text region names, if exactly one."""
    text = region.lower()
    found = [kind for kind, words in _REGION_WORDS.items() if any(w in text for w in words)]
    return found[0] if len(found) == 1 else None


@dataclass(frozen=True, slots=True)
class CourseSpan:
    """What attribution reads of a course."""

    id: uuid.UUID
    region: str
    start_date: date
    window_days: int  # its policy's window_days_before_start
    ended_at: datetime | None  # completed or discontinued; None while open


def fits(course: CourseSpan, instrument: str, recorded_at: datetime) -> bool:
    """Whether a value of ``instrument`` recorded at ``recorded_at`` could be the course's."""
    if recorded_at < window_opens(course.start_date, course.window_days):
        return False
    if course.ended_at is not None and recorded_at > course.ended_at:
        return False
    wanted = INSTRUMENT_REGIONS.get(instrument)
    return wanted is None or region_of(course.region) == wanted


def candidates(
    courses: Sequence[CourseSpan], instrument: str, recorded_at: datetime
) -> list[uuid.UUID]:
    """The courses a value naming none could belong to."""
    return [c.id for c in courses if fits(c, instrument, recorded_at)]


def ambiguity(count: int) -> str:
    """The 422's message when ``count`` (≥ 2) courses fit."""
    return f"required: this patient has {count} courses this measure could belong to"
