"""The routes whose work is the recording pipeline's: observations (one or a batch), logging
a session (which runs the policy), and trend reads. Matched first: they are most of the
traffic."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status

from app.analytics.schemas import InstrumentTrendRead, TrendsRead
from app.auth.rules import AccessRecord
from app.core.db import SessionDep, utcnow
from app.core.errors import PROBLEM_MEDIA_TYPE
from app.core.state import app_state
from app.idempotency.middleware import CLAIM
from app.observations.schemas import (
    BatchResult,
    InstrumentCode,
    ObservationBatchCreate,
    ObservationCreate,
    ObservationRead,
)
from app.recording.pg_store import PgStore
from app.recording.service import RecordingService
from app.recording.session_store import SessionStore
from app.recording.store import RecordingStore
from app.treatment_sessions.models import TreatmentSession
from app.treatment_sessions.schemas import SessionCreate, SessionRead
from app.treatment_sessions.service import SessionService

router = APIRouter()


def recording_store(request: Request, session: SessionDep) -> RecordingStore:
    """The request's store: the plain pool on PostgreSQL, unless an Idempotency-Key must
    commit with the write in the session's transaction; the session on SQLite."""
    now = utcnow()
    pool = app_state(request).raw_pool
    if pool is not None and CLAIM not in request.scope.get("state", {}):
        access: AccessRecord = request.state.access  # set by `authorize`
        return PgStore(pool, access, now)
    return SessionStore(session, now)


async def get_recording_service(
    store: Annotated[RecordingStore, Depends(recording_store)],
) -> RecordingService:
    return RecordingService(store)


ServiceDep = Annotated[RecordingService, Depends(get_recording_service)]

_conflict: dict[int | str, dict[str, Any]] = {
    409: {
        "description": "The client id is already stored with different content",
        "content": {PROBLEM_MEDIA_TYPE: {}},
    }
}


@router.post(
    "/patients/{patient_id}/observations",
    tags=["observations"],
    status_code=status.HTTP_201_CREATED,
    response_model=ObservationRead,
    responses={
        200: {"model": ObservationRead, "description": "A replay of a stored client id"},
        **_conflict,
    },
)
async def create_observation(
    patient_id: uuid.UUID, body: ObservationCreate, service: ServiceDep, response: Response
) -> Any:
    """Record one pain score or mobility measure (201; 200 when replaying a client `id`)."""
    observation, created = await service.record(patient_id, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return observation  # the stored row: the response model reads its columns


@router.post(
    "/patients/{patient_id}/observations/batch",
    tags=["observations"],
    response_model=BatchResult,
    response_model_exclude_unset=True,
)
async def create_observation_batch(
    patient_id: uuid.UUID, body: ObservationBatchCreate, service: ServiceDep
) -> BatchResult:
    """Record up to 500 observations (offline sync). Each item succeeds or fails on its own;
    the valid ones are stored together in one transaction."""
    return await service.record_batch(patient_id, body.observations)


@router.get("/patients/{patient_id}/trends", tags=["analytics"], response_model=TrendsRead)
async def patient_trends(
    patient_id: uuid.UUID,
    service: ServiceDep,
    course_id: Annotated[
        uuid.UUID | None, Query(description="Default: the active course, else the latest.")
    ] = None,
    instrument: Annotated[InstrumentCode | None, Query(description="Only this instrument.")] = None,
) -> TrendsRead:
    """Each instrument's response trend within a course (definitions in docs/analytics.md)."""
    analysis = await service.trends(patient_id, course_id)
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


@router.post(
    "/courses/{course_id}/sessions",
    tags=["sessions"],
    status_code=status.HTTP_201_CREATED,
    response_model=SessionRead,
    responses={409: {"description": "The course is not active"}},
)
async def log_session(
    course_id: uuid.UUID, body: SessionCreate, session: SessionDep
) -> TreatmentSession:
    """Log a session; it gets the next `number` within the course. The course's policy then
    runs, in the same transaction."""
    treatment_session = await SessionService(session).log(course_id, body)
    recording = RecordingService(SessionStore(session, utcnow()))
    await recording.after_session(treatment_session.patient_id, course_id)
    return treatment_session
