from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from app.audit.service import audit_subject
from app.core.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from app.patients.dependencies import PatientDep, PatientServiceDep
from app.patients.models import Patient
from app.patients.schemas import PatientCreate, PatientRead, PatientUpdate

router = APIRouter(prefix="/patients", tags=["patients"])


ServiceDep = PatientServiceDep


@router.post("", status_code=status.HTTP_201_CREATED, response_model=PatientRead)
async def create_patient(request: Request, body: PatientCreate, service: ServiceDep) -> Patient:
    patient = await service.create(body)
    audit_subject(request, resource_id=patient.id, patient_id=patient.id)
    return patient


@router.get("", response_model=Page[PatientRead])
async def list_patients(
    service: ServiceDep,
    external_id: Annotated[str | None, Query(max_length=100)] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[PatientRead]:
    rows, next_cursor = await service.page(external_id=external_id, limit=limit, cursor=cursor)
    return Page(items=[PatientRead.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get("/{patient_id}", response_model=PatientRead)
async def get_patient(patient: PatientDep) -> Patient:
    return patient


@router.patch("/{patient_id}", response_model=PatientRead)
async def update_patient(
    patient_id: uuid.UUID, body: PatientUpdate, service: ServiceDep
) -> Patient:
    return await service.update(patient_id, body)
