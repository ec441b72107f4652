"""Reusable patient dependencies for any domain's routes."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends

from app.core.db import SessionDep
from app.patients.models import Patient
from app.patients.service import PatientService


async def get_patient_service(session: SessionDep) -> PatientService:
    return PatientService(session)


PatientServiceDep = Annotated[PatientService, Depends(get_patient_service)]


async def valid_patient(patient_id: uuid.UUID, service: PatientServiceDep) -> Patient:
    """The patient named in the path, or a 404."""
    return await service.get(patient_id)


PatientDep = Annotated[Patient, Depends(valid_patient)]
