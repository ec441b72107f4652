"""One document per patient for EHR integrations: the business API's answer to `$everything`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.analytics.schemas import InstrumentTrendRead, RecommendationRead
from app.analytics.service import AnalyticsService
from app.core.db import utcnow
from app.courses.models import Course
from app.courses.repository import CourseRepository
from app.courses.schemas import CourseRead, FrequencyChangeRead
from app.patients.models import Patient
from app.patients.schemas import PatientRead
from app.summary.schemas import CourseSummary, PatientSummary
from app.treatment_sessions.models import TreatmentSession
from app.treatment_sessions.schemas import SessionRead


class SummaryService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.analytics = AnalyticsService(session)
        self.courses = CourseRepository(session)

    async def summarise(self, patient: Patient) -> PatientSummary:
        now = utcnow()
        stmt = (
            select(Course)
            .where(Course.patient_id == patient.id)
            .order_by(Course.start_date.desc(), Course.created_at.desc())
        )
        courses = list((await self.session.scalars(stmt)).all())
        # A handful of courses per patient: a few queries each is bounded and clear.
        summaries = [await self._course(course, now) for course in courses]
        return PatientSummary(
            patient=PatientRead.model_validate(patient), courses=summaries, generated_at=now
        )

    async def _course(self, course: Course, now: datetime) -> CourseSummary:
        analysis = await self.analytics.analyse(course.id, now)
        history = await self.courses.history(course.id)
        last = await self.session.scalar(
            select(TreatmentSession)
            .where(TreatmentSession.course_id == course.id)
            .order_by(TreatmentSession.performed_at.desc(), TreatmentSession.number.desc())
            .limit(1)
        )
        return CourseSummary(
            **CourseRead.model_validate(course).model_dump(),
            frequency_history=[FrequencyChangeRead.model_validate(h) for h in history],
            last_session=SessionRead.model_validate(last) if last else None,
            response_status=analysis.status,
            instruments=InstrumentTrendRead.of(analysis),
            recommendation=RecommendationRead.of(course.id, analysis.recommendation, now),
        )
