from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Unprocessable
from app.courses.errors import CourseNotActive
from app.courses.service import CourseService
from app.treatment_sessions.models import TreatmentSession
from app.treatment_sessions.repository import SessionRepository
from app.treatment_sessions.schemas import SessionCreate

# performed_at is UTC and start_date is the clinic's local date: allow a day either side.
_START_DATE_SLACK = timedelta(days=1)


class SessionService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repo = SessionRepository(session)
        self.courses = CourseService(session)

    async def log(self, course_id: uuid.UUID, data: SessionCreate) -> TreatmentSession:
        course = await self.courses.get(course_id)
        if course.status != "active":
            raise CourseNotActive(course.status)
        if data.performed_at.date() < course.start_date - _START_DATE_SLACK:
            raise Unprocessable.at(["body", "performed_at"], "is before the course's start_date")
        number = await self.repo.claim_number(course_id, data.performed_at)
        if number is None:  # the course was closed by a concurrent request
            refreshed = await self.courses.get(course_id)
            raise CourseNotActive(refreshed.status)
        fields = data.model_dump()
        fields["technique"] = data.technique or course.technique
        treatment_session = TreatmentSession(
            course_id=course_id, patient_id=course.patient_id, number=number, **fields
        )
        await self.repo.add(treatment_session)  # flushed: the policy's read sees it
        return treatment_session

    async def page_for_course(
        self, course_id: uuid.UUID, *, limit: int, cursor: str | None
    ) -> tuple[list[TreatmentSession], str | None]:
        await self.courses.get(course_id)
        return await self.repo.page_for_course(course_id, limit=limit, cursor=cursor)
