from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status

from app.core.db import SessionDep
from app.core.errors import PROBLEM_MEDIA_TYPE
from app.core.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from app.core.schemas import Timestamp
from app.observations.fast_record import fast_recorder
from app.observations.schemas import (
    BatchResult,
    InstrumentCode,
    InstrumentRead,
    ObservationBatchCreate,
    ObservationCreate,
    ObservationRead,
)
from app.observations.service import ObservationService, list_instruments
from app.patients.dependencies import PatientDep

router = APIRouter(tags=["observations"])

_conflict: dict[int | str, dict[str, Any]] = {
    409: {
        "description": "The client id is already stored with different content",
        "content": {PROBLEM_MEDIA_TYPE: {}},
    }
}


async def get_observation_service(session: SessionDep) -> ObservationService:
    return ObservationService(session)


ServiceDep = Annotated[ObservationService, Depends(get_observation_service)]


@router.get("/instruments", tags=["instruments"], response_model=Page[InstrumentRead])
async def list_instrument_catalogue() -> Page[InstrumentRead]:
    """Every measure the service accepts, with its range and clinical thresholds."""
    items = [InstrumentRead.model_validate(i) for i in list_instruments()]
    return Page(items=items, next_cursor=None)


@router.post(
    "/patients/{patient_id}/observations",
    status_code=status.HTTP_201_CREATED,
    response_model=ObservationRead,
    responses={
        200: {"model": ObservationRead, "description": "A replay of a stored client id"},
        **_conflict,
    },
)
async def create_observation(
    patient_id: uuid.UUID,
    body: ObservationCreate,
    service: ServiceDep,
    request: Request,
    response: Response,
) -> Any:
    """Record one pain score or mobility measure (201; 200 when replaying a client `id`)."""
    observation, created = await service.record(patient_id, body, fast_recorder(request))
    if not created:
        response.status_code = status.HTTP_200_OK
    return observation  # a stored row: the response model reads its columns


@router.post(
    "/patients/{patient_id}/observations/batch",
    response_model=BatchResult,
    response_model_exclude_unset=True,
)
async def create_observation_batch(
    patient_id: uuid.UUID, body: ObservationBatchCreate, service: ServiceDep, request: Request
) -> BatchResult:
    """Record up to 500 observations (offline sync). Each item succeeds or fails on its own;
    the valid ones are stored together in one transaction."""
    return await service.record_batch(patient_id, body.observations, fast_recorder(request))


@router.get("/patients/{patient_id}/observations", response_model=Page[ObservationRead])
async def list_observations(
    patient: PatientDep,
    service: ServiceDep,
    instrument: Annotated[InstrumentCode | None, Query(description="An instrument code.")] = None,
    since: Annotated[
        Timestamp | None,
        Query(description="Recorded at or after this moment (inclusive; RFC 3339 with offset)."),
    ] = None,
    until: Annotated[
        Timestamp | None,
        Query(description="Recorded before this moment (exclusive; RFC 3339 with offset)."),
    ] = None,
    course_id: Annotated[uuid.UUID | None, Query(description="Only this course's.")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[ObservationRead]:
    """The patient's observations, oldest `recorded_at` first."""
    rows, next_cursor = await service.page(
        patient.id,
        instrument=instrument,
        since=since,
        until=until,
        course_id=course_id,
        limit=limit,
        cursor=cursor,
    )
    return Page(items=[ObservationRead.model_validate(r) for r in rows], next_cursor=next_cursor)
