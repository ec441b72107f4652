from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from app.analytics.schemas import (
    CohortSummaryRead,
    InstrumentTrendRead,
    RecommendationRead,
    TrendsRead,
)
from app.analytics.service import AnalyticsService, CourseAnalysis
from app.core.db import SessionDep, utcnow
from app.core.schemas import IsoDate
from app.courses.schemas import Technique
from app.observations.schemas import InstrumentCode

router = APIRouter(tags=["analytics"])


async def get_analytics_service(request: Request, session: SessionDep) -> AnalyticsService:
    return AnalyticsService(session, request.app.state.raw_pool)


ServiceDep = Annotated[AnalyticsService, Depends(get_analytics_service)]


@router.get("/patients/{patient_id}/trends", response_model=TrendsRead)
async def patient_trends(
    patient_id: uuid.UUID,
    service: ServiceDep,
    request: Request,
    course_id: Annotated[
        uuid.UUID | None, Query(description="Default: the active course, else the latest.")
    ] = None,
    instrument: Annotated[InstrumentCode | None, Query(description="Only this instrument.")] = None,
) -> TrendsRead:
    """Each instrument's response trend within a course (definitions in docs/analytics.md)."""
    # Its audit row is written with the read (request.state.access: set by `authorize`).
    analysis = await service.trends(patient_id, course_id, request.state.access)
    if analysis is None:
        return TrendsRead(
            patient_id=patient_id, course_id=None, status="insufficient-data", instruments=[]
        )
    return TrendsRead(
        patient_id=patient_id,
        course_id=analysis.course.id,
        status=analysis.status,  # the primary instrument's, whatever `instrument` selects
        instruments=InstrumentTrendRead.of(analysis, instrument),
    )


@router.get("/courses/{course_id}/recommendation", response_model=RecommendationRead)
async def course_recommendation(course_id: uuid.UUID, service: ServiceDep) -> RecommendationRead:
    """What the course's frequency policy says now, with the rule, a rationale and the evidence.

    Reading it changes nothing: an `auto` course applies a change when new data is recorded.
    """
    analysis: CourseAnalysis = await service.recommendation(course_id)
    return RecommendationRead.of(course_id, analysis.recommendation, utcnow())


@router.get("/cohort/summary", response_model=CohortSummaryRead)
async def cohort_summary(
    service: ServiceDep,
    indication: Annotated[
        str | None, Query(max_length=200, description="Case-insensitive.")
    ] = None,
    technique: Annotated[Technique | None, Query()] = None,
    since: Annotated[
        IsoDate | None, Query(description="Courses starting on or after this date.")
    ] = None,
    until: Annotated[
        IsoDate | None, Query(description="Courses starting on or before this date.")
    ] = None,
) -> CohortSummaryRead:
    """Courses by response status, responder rate and mean improvement by week of course."""
    summary = await service.cohort(
        indication=indication, technique=technique, since=since, until=until
    )
    return CohortSummaryRead.model_validate(summary)
