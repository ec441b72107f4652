from __future__ import annotations

from datetime import datetime

from app.analytics.schemas import InstrumentTrendRead, RecommendationRead
from app.analytics.trends import Status
from app.core.schemas import ResponseModel
from app.courses.schemas import CourseRead, FrequencyChangeRead
from app.patients.schemas import PatientRead
from app.treatment_sessions.schemas import SessionRead


class CourseSummary(CourseRead):
    """A course with everything an EHR needs to file it: frequency history, the last session,
    the response trend of each instrument and what the policy recommends now."""

    frequency_history: list[FrequencyChangeRead]
    last_session: SessionRead | None
    response_status: Status
    instruments: list[InstrumentTrendRead]
    recommendation: RecommendationRead


class PatientSummary(ResponseModel):
    patient: PatientRead
    courses: list[CourseSummary]
    generated_at: datetime
