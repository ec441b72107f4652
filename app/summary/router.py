from __future__ import annotations

from fastapi import APIRouter

from app.core.db import SessionDep
from app.patients.dependencies import PatientDep
from app.summary.schemas import PatientSummary
from app.summary.service import SummaryService

router = APIRouter(tags=["ehr"])


@router.get("/patients/{patient_id}/summary", response_model=PatientSummary)
async def patient_summary(patient: PatientDep, session: SessionDep) -> PatientSummary:
    """Everything about a patient's courses in one document, for EHR integrations: the patient,
    each course with its frequency history, sessions done and the last session, the latest value
    and trend of each instrument, and the current recommendation with its rationale."""
    return await SummaryService(session).summarise(patient)
