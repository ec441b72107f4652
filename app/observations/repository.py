from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import Insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import paginate
from app.courses.models import Course
from app.observations.models import Observation
from app.treatment_sessions.models import TreatmentSession


class ObservationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _insert_unless_id_exists(self, rows: list[dict[str, Any]]) -> Insert:
        """One INSERT of ``rows`` that skips a row whose id is already stored.

        The primary key decides, inside the database: two concurrent posts of one client id
        cannot both insert, and neither fails (the loser sees the winner's row afterwards).
        """
        dialect = self.session.get_bind().dialect.name
        if dialect == "postgresql":
            return (
                postgresql.insert(Observation)
                .values(rows)
                .on_conflict_do_nothing(index_elements=["id"])
            )
        if dialect == "sqlite":
            return (
                sqlite.insert(Observation)
                .values(rows)
                .on_conflict_do_nothing(index_elements=["id"])
            )
        raise NotImplementedError(f"no insert-or-skip for {dialect}")

    async def insert_one(self, row: dict[str, Any]) -> Observation | None:
        """The stored observation, or None when its id was already taken."""
        stmt = self._insert_unless_id_exists([row]).returning(Observation)
        return (await self.session.scalars(stmt)).one_or_none()

    async def insert_many(self, rows: list[dict[str, Any]]) -> set[uuid.UUID]:
        """Insert ``rows`` in one statement; the ids that were new (and are now stored)."""
        if not rows:
            return set()
        stmt = self._insert_unless_id_exists(rows).returning(Observation.id)
        return set((await self.session.scalars(stmt)).all())

    async def get(self, observation_id: uuid.UUID) -> Observation | None:
        return await self.session.get(Observation, observation_id)

    async def get_many(self, ids: Collection[uuid.UUID]) -> dict[uuid.UUID, Observation]:
        if not ids:
            return {}
        rows = await self.session.scalars(select(Observation).where(Observation.id.in_(ids)))
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
