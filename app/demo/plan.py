"""The plan: a seed and a date give the whole cohort as data (pure, no database)."""

from __future__ import annotations

import math
import random
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TypeVar

from app.demo.cohort import (
    ADJUSTMENT_SHARES,
    ADVERSE_EVENT_RATE,
    ADVERSE_EVENTS,
    ARCHETYPE_SHARES,
    AT_HOME_SCORE_RATE,
    CONSOLIDATION_GAPS,
    FEMALE_NAMES,
    FUNCTION_INSTRUMENT,
    INDICATIONS,
    INDUCTION_DAYS,
    INDUCTION_OFFSETS,
    LEVELS,
    MALE_NAMES,
    MAX_COURSE_DAYS,
    MIN_COURSE_DAYS,
    MISSED_SESSION_RATE,
    MOBILITY_INSTRUMENTS,
    MUSCLES,
    STEP,
    SURNAMES,
    Archetype,
    Indication,
    Region,
)
from app.observations.catalogue import BY_CODE

EXTERNAL_ID_FORMAT = "DEMO-{:04d}"
MAX_PATIENTS = 9999  # the width of the external id

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PlannedObservation:
    id: uuid.UUID
    instrument: str
    value: float
    recorded_at: datetime
    source: str
    context: str | None = None
    session_index: int | None = None  # linked to that session once the API has given it an id


@dataclass(frozen=True, slots=True)
class PlannedSession:
    performed_at: datetime
    technique: str
    sites: tuple[str, ...]
    ozone_concentration_ug_ml: float
    volume_ml: float
    injection_points: int
    pain_before: int
    pain_after: int
    adverse_events: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PlannedCourse:
    indication: str
    region: Region
    technique: str
    start_date: date
    adjustment: str
    max_sessions: int | None
    sessions: tuple[PlannedSession, ...]
    observations: tuple[PlannedObservation, ...]

    @property
    def reached_max_sessions(self) -> bool:
        return self.max_sessions is not None and len(self.sessions) >= self.max_sessions


@dataclass(frozen=True, slots=True)
class PlannedPatient:
    external_id: str
    name: str
    birth_date: date
    sex: str
    condition: str
    archetype: Archetype
    course: PlannedCourse


@dataclass(frozen=True, slots=True)
class Trajectory:
    """How a patient's symptoms move over the course, as a share of the baseline burden.

    ``relief(day)`` is the fraction of baseline pain gone by that day (negative when worse).
    The curve saturates early: an early pain drop is what predicts response (Busso 2020).
    """

    pain_baseline: int
    final_relief: float
    tau_days: float

    def relief(self, day: float) -> float:
        if day <= 0:
            return 0.0
        horizon = 1 - math.exp(-42 / self.tau_days)
        return self.final_relief * min(1.0, (1 - math.exp(-day / self.tau_days)) / horizon)


def build_plan(patients: int, seed: int, today: date) -> list[PlannedPatient]:
    """The whole cohort as data: the same arguments always give the same cohort."""
    if not 1 <= patients <= MAX_PATIENTS:
        raise ValueError(f"patients must be between 1 and {MAX_PATIENTS}")
    rng = random.Random(seed)
    archetypes = allocate([(a, share) for a, share in ARCHETYPE_SHARES], patients, rng)
    indications = allocate([(i, i.share) for i in INDICATIONS], patients, rng)
    adjustments = allocate(ADJUSTMENT_SHARES, patients, rng)
    return [
        _plan_patient(rng, number, archetype, indication, adjustment, today)
        for number, (archetype, indication, adjustment) in enumerate(
            zip(archetypes, indications, adjustments, strict=True), start=1
        )
    ]


def allocate(shares: Sequence[tuple[T, float]], n: int, rng: random.Random) -> list[T]:
    """``n`` items in the given shares (largest remainder), in a seeded random order."""
    exact = [share * n for _, share in shares]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(shares)), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    items = [item for (item, _), count in zip(shares, counts, strict=True) for _ in range(count)]
    rng.shuffle(items)
    return items


def _weighted(rng: random.Random, options: Sequence[tuple[T, float]]) -> T:
    return rng.choices([o for o, _ in options], weights=[w for _, w in options])[0]


def _new_id(rng: random.Random) -> uuid.UUID:
    # From the seeded generator, not uuid4: the same seed gives the same client ids.
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _plan_patient(
    rng: random.Random,
    number: int,
    archetype: Archetype,
    indication: Indication,
    adjustment: str,
    today: date,
) -> PlannedPatient:
    sex = _weighted(rng, (("female", 0.55), ("male", 0.45)))
    first = rng.choice(FEMALE_NAMES if sex == "female" else MALE_NAMES)
    name = f"{first} {rng.choice(SURNAMES)} {rng.choice(SURNAMES)}"
    age_days = rng.randint(indication.ages[0] * 365, indication.ages[1] * 365)
    region = _weighted(rng, indication.regions)
    level = rng.choice(LEVELS[region])  # the one spinal level the condition and sites name
    course = _plan_course(rng, archetype, indication, adjustment, region, level, today)
    return PlannedPatient(
        external_id=EXTERNAL_ID_FORMAT.format(number),
        name=name,
        birth_date=today - timedelta(days=age_days),
        sex=sex,
        condition=_condition(indication.name, region, level),
        archetype=archetype,
        course=course,
    )


def _condition(indication: str, region: Region, level: str) -> str:
    vertebra = level.split("-")[1]  # a compaction is of one vertebra: T11-T12 → T12
    texts = {
        "lumbar muscle contracture": "Low back pain with paravertebral muscle contracture",
        "post-discectomy pain": f"Persistent {region} pain after {level} discectomy",
        "spondylosis": f"{region.capitalize()} spondylosis with facet arthropathy, {level}",
        "vertebral compaction": f"Osteoporotic vertebral compaction fracture, {vertebra}",
    }
    return texts[indication]


def _trajectory(rng: random.Random, archetype: Archetype) -> Trajectory:
    baseline = rng.randint(6, 9) if archetype != "worsening" else rng.randint(5, 7)
    if archetype == "responder":
        relief = (baseline - rng.randint(0, 2)) / baseline  # ends at ≤ 2 on the NRS
    elif archetype == "partial-responder":
        relief = rng.uniform(0.35, 0.45)
    elif archetype == "non-responder":
        relief = rng.uniform(-0.05, 0.15)
    else:
        relief = -rng.uniform(2.5, 3.5) / baseline  # two or more points worse, past the noise
    return Trajectory(baseline, relief, rng.uniform(3.5, 7.0))


def _session_days(rng: random.Random, course_days: int) -> list[int]:
    """Day offsets of the sessions: 3 a week for two weeks, then 2 a week, before today.

    Planned before anything is posted, so the dates do not follow the policy: a course that
    steps down early in the second week still has that week's third session.
    """
    days = [d for d in INDUCTION_OFFSETS if d < course_days]
    day, visit = INDUCTION_DAYS, 0
    while day < course_days:
        if rng.random() >= MISSED_SESSION_RATE:
            days.append(day)
        day += CONSOLIDATION_GAPS[visit % 2]
        visit += 1
    return days


def _plan_course(
    rng: random.Random,
    archetype: Archetype,
    indication: Indication,
    adjustment: str,
    region: Region,
    level: str,
    today: date,
) -> PlannedCourse:
    course_days = rng.randint(MIN_COURSE_DAYS, MAX_COURSE_DAYS)
    start = today - timedelta(days=course_days)
    technique = _technique(rng, indication)
    max_sessions: int | None = _weighted(rng, ((None, 0.5), (10, 0.3), (12, 0.2)))
    days = _session_days(rng, course_days)
    if max_sessions is not None:
        days = days[:max_sessions]
    trajectory = _trajectory(rng, archetype)
    slot = time(rng.randint(8, 17), rng.choice((0, 15, 30, 45)), tzinfo=UTC)
    sites = _sites(rng, technique, region, level)
    sessions = _plan_sessions(rng, trajectory, technique, sites, start, days, slot)
    observations = _plan_observations(rng, trajectory, region, start, days, sessions, course_days)
    return PlannedCourse(
        indication=indication.name,
        region=region,
        technique=technique,
        start_date=start,
        adjustment=adjustment,
        max_sessions=max_sessions,
        sessions=tuple(sessions),
        observations=tuple(observations),
    )


def _technique(rng: random.Random, indication: Indication) -> str:
    options: list[tuple[str, float]] = [("paravertebral", 0.6), ("intramuscular", 0.4)]
    if indication.name == "spondylosis":
        options.append(("intra-articular", 0.1))  # facet joints
    return _weighted(rng, options)


def _sites(rng: random.Random, technique: str, region: Region, level: str) -> tuple[str, ...]:
    sides = _weighted(rng, ((("left",), 0.3), (("right",), 0.3), (("left", "right"), 0.4)))
    if technique == "intramuscular":
        where = f"{rng.choice(MUSCLES[region])} trigger point"
    elif technique == "intra-articular":
        where = f"{level} facet joint"
    else:
        where = f"{level} paravertebral"
    return tuple(f"{where} {side}" for side in sides)


def _plan_sessions(
    rng: random.Random,
    trajectory: Trajectory,
    technique: str,
    sites: tuple[str, ...],
    start: date,
    days: Sequence[int],
    slot: time,
) -> list[PlannedSession]:
    points_per_site = rng.choice((1, 2))
    # Start low and raise the concentration weekly to a ceiling within 10–30 µg/mL.
    first_ug_ml = rng.choice((10.0, 15.0, 20.0))
    ceiling_ug_ml = max(first_ug_ml, rng.choice((20.0, 25.0, 30.0)))
    ml_per_point = rng.choice((2.5, 3.0, 4.0, 5.0))
    sessions = []
    for day in days:
        points = len(sites) * points_per_site
        pain_before = _pain(rng, trajectory, day)
        # The immediate relief after an infiltration is larger in those who respond.
        drops = (1, 1, 2, 2, 3) if trajectory.final_relief > 0.3 else (0, 1, 1, 2)
        relief_now = rng.choice(drops)
        jitter = timedelta(minutes=rng.choice((-30, -15, 0, 0, 15, 30)))
        sessions.append(
            PlannedSession(
                performed_at=datetime.combine(start + timedelta(days=day), slot) + jitter,
                technique=technique,
                sites=sites,
                ozone_concentration_ug_ml=min(ceiling_ug_ml, first_ug_ml + 5.0 * (day // 7)),
                volume_ml=min(20.0, max(5.0, points * ml_per_point)),
                injection_points=points,
                pain_before=pain_before,
                pain_after=max(0, pain_before - relief_now),
                adverse_events=(
                    (rng.choice(ADVERSE_EVENTS),) if rng.random() < ADVERSE_EVENT_RATE else ()
                ),
            )
        )
    return sessions


def clamp_to_instrument(code: str, value: float) -> float:
    """``value`` rounded to the clinic's step and held inside the instrument's range."""
    instrument = BY_CODE[code]
    step = STEP.get(code, 1.0)
    rounded = round(value / step) * step
    held = min(instrument.max, max(instrument.min, rounded))
    return float(round(held)) if instrument.integer else held


def _pain(rng: random.Random, trajectory: Trajectory, day: float) -> int:
    expected = trajectory.pain_baseline * (1 - trajectory.relief(day))
    return int(clamp_to_instrument("pain-nrs", expected + rng.gauss(0, 0.5)))


def _measure(rng: random.Random, code: str, baseline: float, relief: float) -> float:
    """A function or mobility value: it follows pain relief, a little damped, towards normal."""
    instrument = BY_CODE[code]
    target = instrument.best
    if code in ("odi", "ndi"):
        noise = rng.gauss(0, 3.0)
    elif code == "schober":
        noise = rng.gauss(0, 0.3)
    else:
        noise = rng.gauss(0, 2.0)
    # Stiffness recovers a little less than pain, and worsens far less than pain can.
    follow = 0.85 if relief >= 0 else 0.4
    return clamp_to_instrument(code, baseline + follow * relief * (target - baseline) + noise)


def _measure_baselines(rng: random.Random) -> dict[str, float]:
    return {
        "odi": rng.uniform(30, 60),
        "ndi": rng.uniform(28, 56),
        "schober": rng.uniform(1.8, 3.5),  # restricted: < 5 cm of excursion
        "finger-floor": rng.uniform(18, 45),
        "rom-cervical-rotation": rng.uniform(40, 65),
    }


def _plan_observations(
    rng: random.Random,
    trajectory: Trajectory,
    region: Region,
    start: date,
    days: Sequence[int],
    sessions: Sequence[PlannedSession],
    course_days: int,
) -> list[PlannedObservation]:
    def at_home(day: int, context: str | None, value: float) -> PlannedObservation:
        moment = datetime.combine(
            start + timedelta(days=day), time(rng.randint(19, 21), tzinfo=UTC)
        )
        return PlannedObservation(_new_id(rng), "pain-nrs", value, moment, "patient", context)

    # The patient's own score at home in the days before the first session: the baseline.
    baseline_day = -rng.randint(1, 7)
    observations = [at_home(baseline_day, "rest", float(trajectory.pain_baseline))]

    baselines = _measure_baselines(rng)
    measured_weeks: set[int] = set()
    for index, (day, session) in enumerate(zip(days, sessions, strict=True)):
        before = session.performed_at - timedelta(minutes=10)
        observations.append(
            PlannedObservation(
                _new_id(rng), "pain-nrs", float(session.pain_before), before, "patient", "rest",
                session_index=index,
            )
        )  # fmt: skip
        # Function and mobility once a week, at the week's first visit (week 0: the baseline).
        if day // 7 not in measured_weeks:
            measured_weeks.add(day // 7)
            measured_at = session.performed_at - timedelta(minutes=20)
            for code in (FUNCTION_INSTRUMENT[region], *MOBILITY_INSTRUMENTS[region]):
                relief = trajectory.relief(day)
                source = "patient" if code in ("odi", "ndi") else "clinician"
                observations.append(
                    PlannedObservation(
                        _new_id(rng), code, _measure(rng, code, baselines[code], relief),
                        measured_at, source, session_index=index,
                    )
                )  # fmt: skip

    session_days = set(days)
    last_day = min(course_days - 1, (days[-1] if days else 0) + 7)
    for day in range(1, last_day + 1):
        if day not in session_days and rng.random() < AT_HOME_SCORE_RATE:
            context = rng.choice(("rest", "movement", "night", "morning"))
            observations.append(at_home(day, context, float(_pain(rng, trajectory, day))))
    observations.sort(key=lambda o: o.recorded_at)
    return observations


@dataclass(frozen=True, slots=True)
class Step:
    """One request of a course's timeline: a session, or one day's observations as a batch."""

    day: date
    session_index: int | None = None
    observations: tuple[PlannedObservation, ...] = ()


def timeline(course: PlannedCourse) -> list[Step]:
    """The course's posts in time order, one session or one day's observations at a time.

    On a session day the session goes first: that day's scores and measures are taken in the
    clinic just before it and name it, so it must exist when they are posted.
    """
    sessions = {s.performed_at.date(): index for index, s in enumerate(course.sessions)}
    by_day: dict[date, list[PlannedObservation]] = defaultdict(list)
    for observation in course.observations:
        by_day[observation.recorded_at.date()].append(observation)
    steps = []
    for day in sorted(sessions.keys() | by_day.keys()):
        if day in sessions:
            steps.append(Step(day, session_index=sessions[day]))
        if day in by_day:
            steps.append(Step(day, observations=tuple(by_day[day])))
    return steps
