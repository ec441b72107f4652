"""``outcomes demo``: a realistic synthetic cohort, written through the public API.

Two halves. ``build_plan`` is pure: a seed and a date give the whole cohort as data (patients,
courses, session logs, pain and mobility values), so its shape is tested without a database.
``load_cohort`` posts that plan through the HTTP API in-process, so every demo record passes
the same validation as a real client's and the demo keeps working as the service grows.

Each patient's data is posted in time order (``timeline``): one session at a time, and each
day's observations as one batch. Every one of those requests runs the course's frequency policy
once, so the policy sees the course unfold as it would in the clinic: ``auto`` courses step down
by themselves (history rows with source ``policy``), ``confirm`` courses only recommend, and
after the last post the demo's clinician confirms a recommendation to change the frequency.
The policy runs on the server's clock, not the data's: "days since the last change" counts from
the course's start date until the first change, and from the real time of the change after it,
so a replay steps a course down at most once (a later worsening may still put it back up).

Everything is dated strictly before ``today`` (at most yesterday): the API refuses future
timestamps, and a plan that stopped at "now" would change with the time of day.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, TypeVar

import httpx

from app.auth.service import TokenService
from app.core.config import Settings
from app.core.migrations import upgrade
from app.observations.catalogue import BY_CODE

API = "/api/v1"
EXTERNAL_ID_FORMAT = "DEMO-{:04d}"
MAX_PATIENTS = 9999  # the width of the external id
BATCH_LIMIT = 500  # the observations batch endpoint's maximum

T = TypeVar("T")

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


# --------------------------------------------------------------------------- the plan (pure)


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


# --------------------------------------------------------------------------- the writer (HTTP)


class DemoError(RuntimeError):
    """The API answered a demo request with a status the demo did not expect."""


REVIEW_RULES = ("non-response", "worsening", "adverse-event")
COMPLETE_RULES = ("max-sessions", "remission")
POLICY_RULES = ("response-step-down", "induction-complete", "worsening")
STATUSES = ("responder", "partial-responder", "non-responder", "worsening", "insufficient-data")


@dataclass(frozen=True, slots=True)
class CourseOutcome:
    """What the policy did with one course, as the API reports it after the last post."""

    policy_rules: tuple[str, ...]  # the rules of the course's `policy` history rows
    rule: str  # the recommendation read after the last post (before any clinician action)
    action: str
    confirmed: bool  # a clinician applied that recommendation (confirm courses)


@dataclass(frozen=True, slots=True)
class DemoSummary:
    patients: int
    courses: int
    sessions: int
    observations: int
    completed_courses: int
    archetypes: dict[str, int]
    policy_changes: dict[str, int]  # by rule, applied by the service in auto courses
    confirmed_changes: dict[str, int]  # by rule, applied by a clinician in confirm courses
    reviews: dict[str, int]  # recommendations `review`, by rule
    completes: dict[str, int]  # recommendations `complete`, by rule
    cohort_courses: int
    by_status: dict[str, int]
    responder_rate: float | None

    def lines(self) -> list[str]:
        rate = "n/a" if self.responder_rate is None else f"{100 * self.responder_rate:.0f}%"
        return [
            f"demo cohort loaded: {self.patients} patients, {self.courses} courses, "
            f"{self.sessions} sessions, {self.observations} observations",
            f"archetypes: {_counts(self.archetypes)}",
            f"policy changes applied (auto courses): {sum(self.policy_changes.values())} "
            f"({_counts(self.policy_changes)})",
            f"recommendations confirmed by a clinician (confirm courses): "
            f"{sum(self.confirmed_changes.values())} ({_counts(self.confirmed_changes)})",
            f"recommendations to review: {sum(self.reviews.values())} ({_counts(self.reviews)})",
            f"recommendations to complete: {sum(self.completes.values())} "
            f"({_counts(self.completes)}); courses the demo completed at max_sessions: "
            f"{self.completed_courses}",
            f"cohort summary ({self.cohort_courses} courses in the database): "
            f"{_counts(self.by_status)}; responder rate {rate}",
        ]


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items()) or "none"


def _by_rule(rules: Sequence[str], known: Sequence[str]) -> dict[str, int]:
    """Counts in the order of ``known`` (zeros included), then any other rule seen."""
    counts = Counter(rules)
    return {rule: counts[rule] for rule in known} | {
        rule: n for rule, n in sorted(counts.items()) if rule not in known
    }


def summarise(
    plan: Sequence[PlannedPatient], outcomes: Sequence[CourseOutcome], cohort: dict[str, Any]
) -> DemoSummary:
    archetypes = Counter(p.archetype for p in plan)
    return DemoSummary(
        patients=len(plan),
        courses=len(plan),
        sessions=sum(len(p.course.sessions) for p in plan),
        observations=sum(len(p.course.observations) for p in plan),
        completed_courses=sum(1 for p in plan if p.course.reached_max_sessions),
        archetypes={name: archetypes[name] for name, _ in ARCHETYPE_SHARES},
        policy_changes=_by_rule([r for o in outcomes for r in o.policy_rules], POLICY_RULES),
        confirmed_changes=_by_rule([o.rule for o in outcomes if o.confirmed], POLICY_RULES),
        reviews=_by_rule([o.rule for o in outcomes if o.action == "review"], REVIEW_RULES),
        completes=_by_rule([o.rule for o in outcomes if o.action == "complete"], COMPLETE_RULES),
        cohort_courses=int(cohort["courses"]),
        by_status={s: int(cohort["by_status"].get(s, 0)) for s in STATUSES},
        responder_rate=cohort["responder_rate"],
    )


def _problem_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("detail") or body)
    return str(body)[:200]


async def _call(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    expected: int,
    body: dict[str, Any] | None = None,
    params: dict[str, str] | None = None,
) -> dict[str, Any]:
    response = await client.request(method, path, json=body, params=params)
    if response.status_code != expected:
        raise DemoError(
            f"{method} {path} answered {response.status_code}, expected {expected}: "
            f"{_problem_detail(response)}"
        )
    answer: dict[str, Any] = response.json()
    return answer


def _session_body(session: PlannedSession) -> dict[str, Any]:
    body: dict[str, Any] = {
        "performed_at": session.performed_at.isoformat(),
        "technique": session.technique,
        "sites": list(session.sites),
        "ozone_concentration_ug_ml": session.ozone_concentration_ug_ml,
        "volume_ml": session.volume_ml,
        "injection_points": session.injection_points,
        "pain_before": session.pain_before,
        "pain_after": session.pain_after,
    }
    if session.adverse_events:
        body["adverse_events"] = list(session.adverse_events)
    return body


def _observation_body(
    observation: PlannedObservation, course_id: str, session_ids: Sequence[str]
) -> dict[str, Any]:
    value: float | int = observation.value
    if BY_CODE[observation.instrument].integer:
        value = int(observation.value)  # 7, not 7.0, for an integer scale
    body: dict[str, Any] = {
        "id": str(observation.id),
        "instrument": observation.instrument,
        "value": value,
        "recorded_at": observation.recorded_at.isoformat(),
        "course_id": course_id,
        "source": observation.source,
    }
    if observation.context is not None:
        body["context"] = observation.context
    if observation.session_index is not None:
        body["session_id"] = session_ids[observation.session_index]
    return body


async def _post_session(client: httpx.AsyncClient, course_id: str, session: PlannedSession) -> str:
    path = f"{API}/courses/{course_id}/sessions"
    created = await _call(client, "POST", path, 201, _session_body(session))
    return str(created["id"])


async def _post_observations(
    client: httpx.AsyncClient, patient_id: str, bodies: Sequence[dict[str, Any]]
) -> None:
    path = f"{API}/patients/{patient_id}/observations/batch"
    for first in range(0, len(bodies), BATCH_LIMIT):
        chunk = list(bodies[first : first + BATCH_LIMIT])
        answer = await _call(client, "POST", path, 200, {"observations": chunk})
        refused = [r for r in answer["results"] if r["status"] != "created"]
        if refused:
            raise DemoError(f"POST {path}: item {refused[0]['index']} was {refused[0]}")


async def write_patient(client: httpx.AsyncClient, planned: PlannedPatient) -> CourseOutcome:
    """Post one patient's data in time order, then act on the policy as a clinician would."""
    patient = await _call(
        client,
        "POST",
        f"{API}/patients",
        201,
        {
            "external_id": planned.external_id,
            "name": planned.name,
            "birth_date": planned.birth_date.isoformat(),
            "sex": planned.sex,
            "condition": planned.condition,
        },
    )
    patient_id = str(patient["id"])
    course_plan = planned.course
    course_body: dict[str, Any] = {
        "indication": course_plan.indication,
        "region": course_plan.region,
        "technique": course_plan.technique,
        "start_date": course_plan.start_date.isoformat(),
        "sessions_per_week": 3,
        "adjustment": course_plan.adjustment,
    }
    if course_plan.max_sessions is not None:
        course_body["max_sessions"] = course_plan.max_sessions
    course = await _call(client, "POST", f"{API}/patients/{patient_id}/courses", 201, course_body)
    course_id = str(course["id"])

    # Each post runs the course's policy once: an auto course steps down as its scores improve.
    session_ids: list[str] = []
    for step in timeline(course_plan):
        if step.session_index is not None:
            session = course_plan.sessions[step.session_index]
            session_ids.append(await _post_session(client, course_id, session))
        else:
            bodies = [_observation_body(o, course_id, session_ids) for o in step.observations]
            await _post_observations(client, patient_id, bodies)

    rec = await _call(client, "GET", f"{API}/courses/{course_id}/recommendation", 200)
    # A confirm course changes only when a clinician says so: the demo's clinician agrees.
    confirmed = course_plan.adjustment == "confirm" and rec["action"] in ("decrease", "increase")
    if confirmed:
        change = {
            "sessions_per_week": rec["recommended_sessions_per_week"],
            "reason": f"confirmed policy recommendation ({rec['rule']})",
        }
        await _call(client, "POST", f"{API}/courses/{course_id}/frequency", 200, change)
    history = await _call(client, "GET", f"{API}/courses/{course_id}/frequency-history", 200)
    if course_plan.reached_max_sessions:
        closing = {"status": "completed", "notes": f"{course_plan.max_sessions} sessions done"}
        await _call(client, "PATCH", f"{API}/courses/{course_id}", 200, closing)
    return CourseOutcome(
        policy_rules=tuple(str(r["rule"]) for r in history["items"] if r["source"] == "policy"),
        rule=str(rec["rule"]),
        action=str(rec["action"]),
        confirmed=confirmed,
    )


async def _already_loaded(client: httpx.AsyncClient, external_id: str) -> bool:
    page = await _call(client, "GET", f"{API}/patients", 200, params={"external_id": external_id})
    return bool(page["items"])


async def load_cohort(settings: Settings, plan: Sequence[PlannedPatient]) -> DemoSummary | None:
    """Post ``plan`` through the API; None when the demo cohort is already there."""
    # Imported here: the app imports every domain, which the pure plan does not need.
    from app.main import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        # The demo acts as a clinician, with a token of its own that it revokes when done.
        async with app.state.sessionmaker() as session, session.begin():
            issued = await TokenService(session).issue("clinician", expires_in_days=1)
        # A server error comes back as a 500 response (and the app's own error log), so the
        # demo stops with the request that failed rather than a traceback from inside the app.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        headers = {"Authorization": f"Bearer {issued.token}"}
        try:
            async with httpx.AsyncClient(
                transport=transport, base_url="http://demo", headers=headers
            ) as client:
                if plan and await _already_loaded(client, plan[0].external_id):
                    return None
                outcomes = [await write_patient(client, planned) for planned in plan]
                cohort = await _call(client, "GET", f"{API}/cohort/summary", 200)
        finally:
            async with app.state.sessionmaker() as session, session.begin():
                await TokenService(session).revoke(issued.row.id)
    return summarise(plan, outcomes, cohort)


def run_demo(settings: Settings, *, patients: int, seed: int, today: date) -> int:
    """``outcomes demo``: migrate, then load the cohort and print what was written."""
    upgrade(settings.database_url)
    plan = build_plan(patients, seed, today)
    # A log line per demo request (the app's access log, httpx's) would bury the summary.
    quiet = [logging.getLogger(name) for name in ("app.access", "httpx")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.WARNING)
    try:
        summary = asyncio.run(load_cohort(settings, plan))
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)
    if summary is None:
        print(f"the demo cohort is already loaded ({plan[0].external_id} exists): nothing written")
        return 0
    for line in summary.lines():
        print(line)
    return 0
