from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from app.core.db import SessionDep
from app.core.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from app.courses.models import Course, FrequencyChange
from app.courses.schemas import (
    CourseCreate,
    CourseRead,
    CourseStatus,
    CourseUpdate,
    FrequencyChangeCreate,
    FrequencyChangeRead,
    FrequencyHistory,
)
from app.courses.service import CourseService

router = APIRouter(tags=["courses"])


async def get_course_service(session: SessionDep) -> CourseService:
    return CourseService(session)


ServiceDep = Annotated[CourseService, Depends(get_course_service)]


@router.post(
    "/patients/{patient_id}/courses", status_code=status.HTTP_201_CREATED, response_model=CourseRead
)
async def create_course(patient_id: uuid.UUID, body: CourseCreate, service: ServiceDep) -> Course:
    return await service.create(patient_id, body)


@router.get("/patients/{patient_id}/courses", response_model=Page[CourseRead])
async def list_courses(
    patient_id: uuid.UUID,
    service: ServiceDep,
    status: Annotated[CourseStatus | None, Query()] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[CourseRead]:
    rows, next_cursor = await service.page_for_patient(
        patient_id, status=status, limit=limit, cursor=cursor
    )
    return Page(items=[CourseRead.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get("/courses/{course_id}", response_model=CourseRead)
async def get_course(course_id: uuid.UUID, service: ServiceDep) -> Course:
    return await service.get(course_id)


@router.patch("/courses/{course_id}", response_model=CourseRead)
async def update_course(course_id: uuid.UUID, body: CourseUpdate, service: ServiceDep) -> Course:
    return await service.update(course_id, body)


@router.post("/courses/{course_id}/frequency", response_model=CourseRead)
async def change_frequency(
    course_id: uuid.UUID, body: FrequencyChangeCreate, service: ServiceDep
) -> Course:
    """A clinician sets the session frequency; recorded in the history with source `clinician`."""
    return await service.change_frequency(course_id, body)


@router.get("/courses/{course_id}/frequency-history", response_model=FrequencyHistory)
async def frequency_history(course_id: uuid.UUID, service: ServiceDep) -> FrequencyHistory:
    rows: list[FrequencyChange] = await service.history(course_id)
    return FrequencyHistory(items=[FrequencyChangeRead.model_validate(r) for r in rows])
