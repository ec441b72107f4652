from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.core.db import SessionDep
from app.core.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from app.core.schemas import Timestamp
from app.observations.schemas import InstrumentCode, InstrumentRead, ObservationRead
from app.observations.service import ObservationService, list_instruments
from app.patients.dependencies import PatientDep

router = APIRouter(tags=["observations"])


async def get_observation_service(session: SessionDep) -> ObservationService:
    return ObservationService(session)


ServiceDep = Annotated[ObservationService, Depends(get_observation_service)]


@router.get("/instruments", tags=["instruments"], response_model=Page[InstrumentRead])
async def list_instrument_catalogue() -> Page[InstrumentRead]:
    """Every measure the service accepts, with its range and clinical thresholds."""
    items = [InstrumentRead.model_validate(i) for i in list_instruments()]
    return Page(items=items, next_cursor=None)


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
