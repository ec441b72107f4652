"""Keeping ``value_days`` (docs/analytics.md, "Bounded cost"): each stale day recomputed from
its values with the trend's own reduction (``trends.median_point``), so a reduced day is
exactly what the trend would have computed from the values.

Triggers mark a day stale in the transaction that changes its values (migration 0011); until
it is recomputed, reads take that day's values as they are (repository.reduced_values_of), so
a stale row is never used. Every process recomputes settled days (marked at least
``value_days_settle_seconds`` ago: a day still receiving values is recomputed once it has
been quiet that long, not after every value) in the background:

- a day is recomputed under a lock of its own (PostgreSQL: a transaction advisory lock,
  taken or skipped; SQLite: the one writer), so two processes never write one day at once;
- its stale marks are read before its values and only those are deleted: a value committed
  after the read leaves its mark, and its day is recomputed again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from datetime import UTC, datetime, time, timedelta
from functools import partial
from typing import Any

from sqlalchemy import (
    Row,
    String,
    Uuid,
    and_,
    bindparam,
    cast,
    delete,
    func,
    literal,
    select,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.analytics.models import NO_COURSE
from app.analytics.repository import DAYS, OBSERVATIONS, SESSIONS, STALE
from app.analytics.trends import Point, median_point
from app.core.background import repeating
from app.core.db import UTCDateTime, utcnow

logger = logging.getLogger(__name__)
_ROUND = 200  # days recomputed in one transaction

_KEY = (STALE.c.patient_id, STALE.c.instrument, STALE.c.day, STALE.c.course_key)
# The days with a mark older than ``settled_by``, the oldest first.
SETTLED = (
    select(*_KEY)
    .where(STALE.c.marked_at <= bindparam("settled_by", type_=UTCDateTime()))
    .group_by(*_KEY)
    .order_by(func.min(STALE.c.seq))
    .limit(bindparam("limit"))
)
_OF_KEY = and_(
    STALE.c.patient_id == bindparam("patient_id"),
    STALE.c.instrument == bindparam("instrument"),
    STALE.c.day == bindparam("day"),
    STALE.c.course_key == bindparam("course_key"),
)
MARKS = select(STALE.c.seq).where(_OF_KEY)
UNMARK = delete(STALE).where(STALE.c.seq.in_(bindparam("seqs", expanding=True)))


def _day_values() -> Any:
    """The values of one day (``opens`` to ``closes``) of one key, as (recorded_at, id, value)
    in (recorded_at, id) order: the patient's observations of the instrument belonging to
    the course (none: ``NO_COURSE``), and for pain-nrs the course's sessions' pain_before
    unless a pain-nrs observation names the session (repository.values_of's rule)."""
    o = OBSERVATIONS
    opens = bindparam("opens", type_=UTCDateTime())
    closes = bindparam("closes", type_=UTCDateTime())
    course_key = bindparam("course_key", type_=Uuid())
    observed = select(o.c.recorded_at, o.c.id, o.c.value).where(
        o.c.patient_id == bindparam("patient_id"),
        o.c.instrument == bindparam("instrument"),
        o.c.recorded_at >= opens,
        o.c.recorded_at < closes,
        func.coalesce(o.c.course_id, literal(NO_COURSE)) == course_key,
    )
    named = (
        select(o.c.id)
        .where(o.c.session_id == SESSIONS.c.id, o.c.instrument == "pain-nrs")
        .correlate(SESSIONS)
    )
    s = SESSIONS
    before = select(s.c.performed_at, s.c.id, cast(s.c.pain_before, o.c.value.type)).where(
        bindparam("instrument", type_=String()) == "pain-nrs",
        s.c.course_id == course_key,
        s.c.pain_before.is_not(None),
        s.c.performed_at >= opens,
        s.c.performed_at < closes,
        ~named.exists(),
    )
    both = union_all(observed, before).subquery("day_values")
    return select(*both.c).order_by(both.c.recorded_at, both.c.id)


DAY_VALUES = _day_values()
FORGET = delete(DAYS).where(
    DAYS.c.patient_id == bindparam("patient_id"),
    DAYS.c.instrument == bindparam("instrument"),
    DAYS.c.day == bindparam("day"),
    DAYS.c.course_key == bindparam("course_key"),
)
_COLUMNS = ("n", "recorded_at", "value", "last_at", "id")
UPSERT = {
    name: (
        dialect.insert(DAYS)
        .values({c.key: bindparam(c.key, type_=c.type) for c in DAYS.columns})
        .on_conflict_do_update(
            index_elements=[c for c in DAYS.primary_key.columns],
            set_={name: bindparam(name, type_=DAYS.c[name].type) for name in _COLUMNS},
        )
    )
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


def reduce_day(values: Sequence[tuple[datetime, float]]) -> dict[str, Any]:
    """The row of one day's values (time-ordered): as trends.daily_medians reduces a day."""
    point = median_point([Point(at, value) for at, value in values])
    return {
        "n": len(values),
        "recorded_at": point.recorded_at,
        "value": point.value,
        "last_at": values[-1][0],
        "id": uuid.uuid4(),
    }


async def lock_day(session: AsyncSession, key: Row[Any, Any, Any, Any]) -> bool:
    """Whether this transaction may recompute ``key`` (PostgreSQL: another process is not)."""
    if session.get_bind().dialect.name != "postgresql":
        return True  # the transaction holds SQLite's write lock (BEGIN IMMEDIATE)
    text = f"{key.patient_id}|{key.instrument}|{key.day}|{key.course_key}"
    lock = func.pg_try_advisory_xact_lock(func.hashtextextended(text, 0))
    return bool(await session.scalar(select(lock)))


async def recompute(session: AsyncSession, day: Row[Any, Any, Any, Any]) -> None:
    """Recompute one stale day in the session's transaction (under its lock)."""
    params = dict(day._mapping)
    opens = datetime.combine(params["day"], time.min, tzinfo=UTC)
    marks = list((await session.scalars(MARKS, params)).all())  # before the values
    rows = (
        await session.execute(
            DAY_VALUES, {**params, "opens": opens, "closes": opens + timedelta(days=1)}
        )
    ).all()
    if rows:
        reduced = reduce_day([(at, value) for at, _, value in rows])
        dialect = session.get_bind().dialect.name
        await session.execute(UPSERT[dialect], {**params, **reduced})
    else:
        await session.execute(FORGET, params)
    await session.execute(UNMARK, {"seqs": marks})


async def recompute_settled(
    sessionmaker: async_sessionmaker[AsyncSession],
    settle_seconds: float,
    limit: int = _ROUND,
    now: datetime | None = None,
    reader: async_sessionmaker[AsyncSession] | None = None,
) -> int:
    """Recompute up to ``limit`` stale days marked at least ``settle_seconds`` before ``now``,
    in one transaction: how many were looked at (``limit``: there may be more). With a
    ``reader`` (sessions without a transaction), a round with nothing to do writes nothing:
    on SQLite it does not take the write lock."""
    params = {"settled_by": (now or utcnow()) - timedelta(seconds=settle_seconds), "limit": 1}
    if reader is not None:
        async with reader() as session:
            if (await session.execute(SETTLED, params)).first() is None:
                return 0
    async with sessionmaker() as session, session.begin():
        days = (await session.execute(SETTLED, params | {"limit": limit})).all()
        for day in days:
            if await lock_day(session, day):
                await recompute(session, day)
    return len(days)


async def _refresh(
    sessionmaker: async_sessionmaker[AsyncSession],
    reader: async_sessionmaker[AsyncSession],
    settle_seconds: float,
) -> None:
    """Every settled day, a round (one transaction) at a time: requests get their turn
    between rounds."""
    while await recompute_settled(sessionmaker, settle_seconds, reader=reader) == _ROUND:
        pass


def refreshing_in_background(
    sessionmaker: async_sessionmaker[AsyncSession],
    reader: async_sessionmaker[AsyncSession],
    every_seconds: float,
    settle_seconds: float,
) -> AbstractAsyncContextManager[asyncio.Task[None] | None]:
    """Recompute settled stale days every ``every_seconds`` while the app runs (0: never)."""
    if every_seconds <= 0:
        return nullcontext()
    job = partial(_refresh, sessionmaker, reader, settle_seconds)
    return repeating("recomputing value days", every_seconds, job, logger)
