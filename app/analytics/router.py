from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.analytics.schemas import CohortSummaryRead, RecommendationRead
from app.analytics.service import AnalyticsService, CourseAnalysis
from app.core.db import SessionDep, utcnow
from app.core.schemas import IsoDate
from app.courses.schemas import Technique

router = APIRouter(tags=["analytics"])


async def get_analytics_service(session: SessionDep) -> AnalyticsService:
    return AnalyticsService(session)


ServiceDep = Annotated[AnalyticsService, Depends(get_analytics_service)]


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
