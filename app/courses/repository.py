from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import paginate
from app.courses.models import Course, FrequencyChange


class CourseRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, course_id: uuid.UUID) -> Course | None:
        return await self.session.get(Course, course_id)

    async def get_for_update(self, course_id: uuid.UUID) -> Course | None:
        """The course, its row locked until the transaction ends (PostgreSQL; SQLite has one
        writer at a time anyway), read afresh: changes made under the lock follow each other
        in the order they take it."""
        return await self.session.get(
            Course, course_id, with_for_update=True, populate_existing=True
        )

    async def page_for_patient(
        self, patient_id: uuid.UUID, *, status: str | None, limit: int, cursor: str | None
    ) -> tuple[list[Course], str | None]:
        stmt = select(Course).where(Course.patient_id == patient_id)
        if status is not None:
            stmt = stmt.where(Course.status == status)
        return await paginate(self.session, stmt, [Course.created_at, Course.id], limit, cursor)

    async def history(self, course_id: uuid.UUID) -> list[FrequencyChange]:
        stmt = (
            select(FrequencyChange)
            .where(FrequencyChange.course_id == course_id)
            .order_by(FrequencyChange.changed_at, FrequencyChange.id)
        )
        return list((await self.session.scalars(stmt)).all())

    async def add(self, *objects: Course | FrequencyChange) -> None:
        self.session.add_all(objects)
        await self.session.flush()
