from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import case, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import utcnow
from app.core.pagination import paginate
from app.courses.models import Course
from app.treatment_sessions.models import TreatmentSession


class SessionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim_number(self, course_id: uuid.UUID, performed_at: datetime) -> int | None:
        """Count a new session on an active course and return its number, in one statement.

        The row lock of the UPDATE serialises concurrent posts on one course, so numbers never
        collide; None when the course is missing or not active.
        """
        stmt = (
            update(Course)
            .where(Course.id == course_id, Course.status == "active")
            .values(
                sessions_done=Course.sessions_done + 1,
                last_session_at=case(
                    (Course.last_session_at.is_(None), performed_at),
                    (Course.last_session_at < performed_at, performed_at),
                    else_=Course.last_session_at,
                ),
                updated_at=utcnow(),
            )
            .returning(Course.sessions_done)
            .execution_options(synchronize_session=False)
        )
        number: int | None = await self.session.scalar(stmt)
        return number

    async def add(self, treatment_session: TreatmentSession) -> None:
        self.session.add(treatment_session)
        await self.session.flush()

    async def page_for_course(
        self, course_id: uuid.UUID, *, limit: int, cursor: str | None
    ) -> tuple[list[TreatmentSession], str | None]:
        stmt = select(TreatmentSession).where(TreatmentSession.course_id == course_id)
        order = [TreatmentSession.performed_at, TreatmentSession.id]
        return await paginate(self.session, stmt, order, limit, cursor)
