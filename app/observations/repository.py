from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Insert, Row, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import paginate
from app.courses.models import Course
from app.observations import bulk
from app.observations.models import Observation
from app.treatment_sessions.models import TreatmentSession


class ObservationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert_one(self, row: dict[str, Any]) -> Row[Any] | None:
        """The stored observation (every column), or None when its id was already taken.

        The primary key decides, inside the database: two concurrent posts of one client id
        cannot both insert, and neither fails (the loser sees the winner's row afterwards).
        """
        stmt = _INSERT_ONE[self.session.get_bind().dialect.name]
        return (await self.session.execute(stmt, row)).first()

    async def insert_many(
        self,
        patient_id: uuid.UUID,
        received_at: datetime,
        items: Sequence[Mapping[str, Any]],
    ) -> set[uuid.UUID]:
        """Store the patient's ``items`` (each with every column of ``bulk.ITEM_COLUMNS``)
        unless their id is already stored; the ids that were new (and are now stored).

        Whatever the number of items, the SQL is the same: SQLAlchemy compiles it once, and
        asyncpg prepares it once per connection (app/observations/bulk.py). As with
        ``insert_one``, the primary key decides, inside the database.
        """
        if not items:
            return set()
        dialect = self.session.get_bind().dialect.name
        if dialect == "postgresql":
            # INSERT … SELECT … FROM unnest(…): one array per column, items in id order.
            params: dict[str, Any] = {"patient_id": patient_id, "received_at": received_at}
            params.update(bulk.unnest_columns(items))
            return set((await self.session.scalars(bulk.insert_unnest(), params)).all())
        if dialect == "sqlite":
            # One row's INSERT for every item (SQLAlchemy's insertmanyvalues: a few multi-row
            # statements, each RETURNING the ids it stored).
            batch = {"patient_id": patient_id, "received_at": received_at}
            result = await self.session.execute(bulk.insert_row(), [{**i, **batch} for i in items])
            return set(result.scalars().all())
        raise NotImplementedError(f"no bulk insert-or-skip for {dialect}")

    async def get(self, observation_id: uuid.UUID) -> Row[Any] | None:
        return (await self.session.execute(_GET, {"id": observation_id})).first()

    async def get_many(self, ids: Collection[uuid.UUID]) -> dict[uuid.UUID, Row[Any]]:
        """The stored rows (every column, by attribute) of those of ``ids`` that exist."""
        if not ids:
            return {}
        dialect = self.session.get_bind().dialect.name
        stmt = bulk.select_by_ids(dialect)
        rows = await self.session.execute(stmt, {"ids": list(ids)})
        return {row.id: row for row in rows}

    async def course_ids_of_patient(
        self, patient_id: uuid.UUID, ids: Collection[uuid.UUID]
    ) -> set[uuid.UUID]:
        """Those of ``ids`` that are courses of the patient."""
        if not ids:
            return set()
        stmt = select(Course.id).where(Course.patient_id == patient_id, Course.id.in_(ids))
        return set((await self.session.scalars(stmt)).all())

    async def session_courses_of_patient(
        self, patient_id: uuid.UUID, ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, uuid.UUID]:
        """Session id → course id, for those of ``ids`` that are sessions of the patient."""
        if not ids:
            return {}
        stmt = select(TreatmentSession.id, TreatmentSession.course_id).where(
            TreatmentSession.patient_id == patient_id, TreatmentSession.id.in_(ids)
        )
        return {session_id: course_id for session_id, course_id in await self.session.execute(stmt)}

    async def page(
        self,
        patient_id: uuid.UUID,
        *,
        instrument: str | None,
        since: datetime | None,
        until: datetime | None,
        course_id: uuid.UUID | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[Observation], str | None]:
        stmt = select(Observation).where(Observation.patient_id == patient_id)
        if instrument is not None:
            stmt = stmt.where(Observation.instrument == instrument)
        if since is not None:
            stmt = stmt.where(Observation.recorded_at >= since)
        if until is not None:
            stmt = stmt.where(Observation.recorded_at < until)
        if course_id is not None:
            stmt = stmt.where(Observation.course_id == course_id)
        return await paginate(
            self.session, stmt, [Observation.recorded_at, Observation.id], limit, cursor
        )


# One observation's statements, built once (they run on every POST): a single-row INSERT that
# skips a stored id, per dialect (the SQL is the same; the ON CONFLICT construct is not).
_INSERT_ONE: dict[str, Insert] = {
    "postgresql": postgresql.insert(bulk.TABLE)
    .on_conflict_do_nothing(index_elements=[bulk.TABLE.c.id])
    .returning(*bulk.TABLE.c),
    "sqlite": sqlite.insert(bulk.TABLE)
    .on_conflict_do_nothing(index_elements=[bulk.TABLE.c.id])
    .returning(*bulk.TABLE.c),
}
_GET = select(bulk.TABLE).where(bulk.TABLE.c.id == bindparam("id"))
