"""A realistic dataset, loaded straight into the database (not through thousands of POSTs).

``cohort`` makes the benchmark's patients: each with one active course (its initial frequency
row, the sessions performed so far, ``sessions_done`` and ``last_session_at`` kept consistent)
and pain (NRS) and function (ODI) values from two weeks before the course's start until now,
improving as a responder's would, each attributed to the course it fits as the service
attributes a value that names none (app/analytics/attribution.py: pain scores to the course,
ODI to a lumbar one only). Rows are written in time order across patients, as a live
service receives them, so one patient's values are spread over the table, not clustered.

``top_up`` grows a PostgreSQL database to the large scale (10k patients, 1M observations) with
COPY: more patients like the first ones, and for the benchmark's own patients an older history
(values from 4 to 13 months ago, outside any current course window). Whatever the size of the
table, a trend read of one of the benchmark's patients reads the same values: only the access
path can make it slower.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import asyncpg
from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.engine import make_url

from app.analytics.attribution import CourseSpan, candidates
from app.analytics.registry import policies
from app.auth.service import TokenService
from app.core.config import Settings
from app.core.db import create_engine, create_sessionmaker
from app.courses.models import Course, FrequencyChange
from app.courses.schedule import phase_for
from app.observations.models import Observation
from app.patients.models import Patient
from app.treatment_sessions.models import TreatmentSession
from bench.databases import asyncpg_dsn

INDICATIONS = (
    ("lumbar disc herniation", "lumbar", "paravertebral"),
    ("lumbar spondylosis", "lumbar", "paravertebral"),
    ("cervical radiculopathy", "cervical", "paravertebral"),
    ("knee osteoarthritis", "knee", "intra-articular"),
    ("myofascial pain", "trapezius", "intramuscular"),
)
SITES = {"lumbar": "L4-L5", "cervical": "C5-C6", "knee": "knee", "trapezius": "trapezius"}
COPY_CHUNK = 50_000


@dataclass
class Cohort:
    """Rows of each table, as dicts keyed by column name."""

    patients: list[dict[str, Any]] = field(default_factory=list)
    courses: list[dict[str, Any]] = field(default_factory=list)
    frequency_changes: list[dict[str, Any]] = field(default_factory=list)
    sessions: list[dict[str, Any]] = field(default_factory=list)
    observations: list[dict[str, Any]] = field(default_factory=list)

    def tables(self) -> Iterator[tuple[Table, list[dict[str, Any]]]]:
        yield Patient.__table__, self.patients  # type: ignore[misc]
        yield Course.__table__, self.courses  # type: ignore[misc]
        yield FrequencyChange.__table__, self.frequency_changes  # type: ignore[misc]
        yield TreatmentSession.__table__, self.sessions  # type: ignore[misc]
        yield Observation.__table__, self.observations  # type: ignore[misc]


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _spread(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal whole numbers."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _patient_and_course(rng: random.Random, index: int, now: datetime, cohort: Cohort) -> Any:
    """One patient with an active course started 1–8 weeks ago and its sessions so far."""
    pid = _uuid(rng)
    start = (now - timedelta(days=rng.uniform(7, 56))).date()
    created = datetime.combine(start, time(8), tzinfo=UTC)
    cohort.patients.append(
        {
            "id": pid,
            "external_id": f"BENCH-{index:06d}",
            "name": None,
            "birth_date": date(rng.randint(1940, 2000), rng.randint(1, 12), rng.randint(1, 28)),
            "sex": rng.choice(("female", "male")),
            "condition": None,
            "created_at": created - timedelta(days=14),
            "updated_at": created - timedelta(days=14),
        }
    )
    indication, region, technique = rng.choice(INDICATIONS)
    per_week = rng.choice((3, 3, 2))
    course_id = _uuid(rng)
    performed = []
    at = created + timedelta(hours=1)
    while at < now - timedelta(hours=1):
        performed.append(at)
        at += timedelta(days=7 / per_week)
    course = {
        "id": course_id,
        "patient_id": pid,
        "indication": indication,
        "region": region,
        "technique": technique,
        "start_date": start,
        "sessions_per_week": per_week,
        "adjustment": rng.choice(("auto", "confirm")),
        "max_sessions": None,
        "status": "active",
        "phase": phase_for(per_week),
        "sessions_done": len(performed),
        "last_session_at": performed[-1] if performed else None,
        "paused_at": None,
        "resumed_at": None,
        "ended_at": None,
        "notes": None,
        "policy": "standard-v1",
        "created_at": created,
        "updated_at": performed[-1] if performed else created,
    }
    cohort.courses.append(course)
    cohort.frequency_changes.append(
        {
            "id": _uuid(rng),
            "course_id": course_id,
            "sessions_per_week": per_week,
            "phase": course["phase"],
            "changed_at": created,
            "source": "initial",
            "rule": None,
            "reason": f"initial prescription: {per_week} sessions a week",
        }
    )
    for number, performed_at in enumerate(performed, start=1):
        cohort.sessions.append(
            {
                "id": _uuid(rng),
                "course_id": course_id,
                "patient_id": pid,
                "number": number,
                "performed_at": performed_at,
                "technique": technique,
                "sites": [SITES[region]],
                "ozone_concentration_ug_ml": float(rng.choice((10, 15, 20, 25))),
                "volume_ml": float(rng.choice((5, 10, 15))),
                "injection_points": rng.randint(2, 6),
                "pain_before": None,
                "pain_after": None,
                "adverse_events": [],
                "notes": None,
                "created_at": performed_at,
            }
        )
    return pid, start


def _values(
    rng: random.Random, pid: uuid.UUID, since: datetime, until: datetime, count: int
) -> Iterator[dict[str, Any]]:
    """``count`` values between two moments: 3 in 4 pain NRS, the others ODI; a responder's
    improvement with noise (values within the instruments' ranges)."""
    baseline, response = rng.uniform(6, 9), rng.uniform(0.2, 0.7)
    span = (until - since).total_seconds()
    for k in range(count):
        fraction = (k + rng.random()) / count
        recorded_at = since + timedelta(seconds=span * fraction)
        level = baseline * (1 - response * fraction)
        if k % 4 == 3:
            instrument, value = "odi", round(min(100.0, max(0.0, level * 6 + rng.gauss(0, 3))), 1)
        else:
            instrument, value = "pain-nrs", float(min(10, max(0, round(level + rng.gauss(0, 1)))))
        yield {
            "id": _uuid(rng),
            "patient_id": pid,
            "instrument": instrument,
            "value": value,
            "recorded_at": recorded_at,
            "received_at": recorded_at + timedelta(seconds=rng.uniform(1, 600)),
            "course_id": None,
            "session_id": None,
            "context": rng.choice((None, "rest", "movement")),
            "source": "patient",
            "note": None,
        }


def cohort(patients: int, observations: int, *, seed: int = 1, first: int = 0) -> Cohort:
    """``patients`` with active courses and ``observations`` values in their course windows."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    result = Cohort()
    if patients == 0:
        return result
    for index, count in enumerate(_spread(observations, patients), start=first):
        pid, start = _patient_and_course(rng, index, now, result)
        since = datetime.combine(start - timedelta(days=14), time(7), tzinfo=UTC)
        result.observations.extend(_values(rng, pid, since, now - timedelta(minutes=10), count))
    _attribute(result.observations, result.courses)
    result.observations.sort(key=lambda row: row["received_at"])
    return result


def _attribute(values: list[dict[str, Any]], courses: Sequence[dict[str, Any]]) -> None:
    """Each value's ``course_id``: the one of ``courses`` (open, one per patient) it fits, as
    the service attributes a value recorded without a course; None when it fits none (before
    the course's window, or a measure of another region)."""
    windows = {p.id: p.window_days_before_start for p in policies().values()}
    spans = {
        c["patient_id"]: CourseSpan(
            id=c["id"],
            region=c["region"],
            start_date=c["start_date"],
            window_days=windows[c["policy"]],
            ended_at=c["ended_at"],
        )
        for c in courses
    }
    for value in values:
        span = spans.get(value["patient_id"])
        found = candidates([span], value["instrument"], value["recorded_at"]) if span else []
        value["course_id"] = found[0] if len(found) == 1 else None


async def write(url: str, data: Cohort) -> None:
    """Insert every row (PostgreSQL: COPY; SQLite: one executemany per table)."""
    if make_url(url).get_backend_name() == "postgresql":
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            for table, rows in data.tables():
                await copy_rows(conn, table, rows)
        finally:
            await conn.close()
        return
    engine = create_engine(Settings(database_url=url))
    try:
        async with engine.begin() as conn:
            for table, rows in data.tables():
                if rows:
                    await conn.execute(insert(table), rows)
    finally:
        await engine.dispose()


async def copy_rows(conn: asyncpg.Connection, table: Table, rows: Iterable[dict[str, Any]]) -> int:
    """COPY dict rows into ``table`` in chunks (JSON columns as text); the number copied."""
    columns = [c.name for c in table.columns]
    json_columns = {c.name for c in table.columns if c.type.__class__.__name__ == "JSON"}
    done = 0
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(tuple(json.dumps(row[c]) if c in json_columns else row[c] for c in columns))
        if len(chunk) >= COPY_CHUNK:
            await conn.copy_records_to_table(table.name, records=chunk, columns=columns)
            done, chunk = done + len(chunk), []
    if chunk:
        await conn.copy_records_to_table(table.name, records=chunk, columns=columns)
        done += len(chunk)
    return done


async def top_up(
    url: str,
    probe_ids: Sequence[uuid.UUID],
    patients: int,
    observations: int,
    *,
    seed: int = 2,
    progress: Any = None,
) -> None:
    """Grow a PostgreSQL database that holds ``probe_ids`` (the benchmark's patients) to
    ``patients`` patients and ``observations`` observations."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        have_patients = await conn.fetchval("SELECT count(*) FROM patients")
        have_obs = await conn.fetchval("SELECT count(*) FROM observations")
        extra_patients = max(0, patients - have_patients)
        extra_obs = max(0, observations - have_obs)
        # The benchmark's own patients get an older history: 4-13 months ago, before any
        # current course window, so their trends read the same values at any scale.
        history_each = min(30, extra_obs // max(1, 4 * len(probe_ids)))
        rng = random.Random(seed)
        now = datetime.now(UTC)
        old: list[dict[str, Any]] = []
        for pid in probe_ids:
            since = now - timedelta(days=rng.uniform(300, 400))
            old.extend(_values(rng, pid, since, now - timedelta(days=120), history_each))
        rest = extra_obs - len(old)
        more = cohort(extra_patients, 0, seed=seed + 1, first=have_patients)
        for table, rows in more.tables():
            if rows:
                await copy_rows(conn, table, rows)
        if progress:
            progress(f"{extra_patients:,} more patients with courses and sessions")
        # The new patients' values: a year of history each, most of it before their course.
        new_ids = [
            (p["id"], c["start_date"]) for p, c in zip(more.patients, more.courses, strict=True)
        ]
        counts = _spread(rest, len(new_ids)) if new_ids else []
        rows = old
        for (pid, start), count in zip(new_ids, counts, strict=True):
            in_window = count // 3
            window = datetime.combine(start - timedelta(days=14), time(7), tzinfo=UTC)
            rows.extend(_values(rng, pid, now - timedelta(days=365), window, count - in_window))
            rows.extend(_values(rng, pid, window, now - timedelta(minutes=10), in_window))
        _attribute(rows, more.courses)  # the benchmark's own patients' history fits no window
        rows.sort(key=lambda row: row["received_at"])
        if progress:
            progress(f"{len(rows):,} observations generated; copying")
        done = await copy_rows(conn, Observation.__table__, rows)  # type: ignore[arg-type]
        if progress:
            progress(f"{done:,} observations copied")
    finally:
        await conn.close()


async def vacuum_analyze(url: str) -> None:
    """What autovacuum would have done on a live database: statistics and visibility maps."""
    if make_url(url).get_backend_name() == "postgresql":
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await conn.execute("VACUUM (ANALYZE)")
        finally:
            await conn.close()
        return
    engine = create_engine(Settings(database_url=url))
    try:
        async with engine.connect() as conn:
            await conn.execute(text("ANALYZE"))
    finally:
        await engine.dispose()


async def issue_tokens(url: str, patient_ids: Sequence[uuid.UUID]) -> list[str]:
    """One patient-bound token per patient, through the service's own TokenService."""
    engine = create_engine(Settings(database_url=url))
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            service = TokenService(session)
            return [(await service.issue("patient", pid)).token for pid in patient_ids]
    finally:
        await engine.dispose()


async def issue_staff_token(url: str, role: str = "clinician") -> str:
    engine = create_engine(Settings(database_url=url))
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            return (await TokenService(session).issue(role)).token
    finally:
        await engine.dispose()


async def counts(url: str) -> dict[str, int]:
    engine = create_engine(Settings(database_url=url))
    try:
        async with engine.connect() as conn:
            result = {}
            for model in (Patient, Course, TreatmentSession, Observation):
                stmt = select(func.count()).select_from(model)
                result[model.__tablename__] = int((await conn.execute(stmt)).scalar_one())
            return result
    finally:
        await engine.dispose()


__all__ = ["Cohort", "cohort", "counts", "issue_tokens", "top_up", "vacuum_analyze", "write"]
