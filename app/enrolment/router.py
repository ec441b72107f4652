"""Enrolment codes and the devices they enrolled, per patient. The codes are exchanged at the
token endpoint (app/enrolment/grants.py)."""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Body, Depends, Request, Response, status

from app.audit.service import audit_subject
from app.auth.access import PrincipalDep
from app.auth.service import TokenService
from app.auth.state import auth_state
from app.core.db import SessionDep
from app.enrolment.schemas import DeviceList, DeviceRead, EnrolmentCreate, EnrolmentIssued
from app.enrolment.service import EnrolmentService
from app.patients.dependencies import PatientDep

router = APIRouter(prefix="/patients/{patient_id}", tags=["enrolment"])

APP_LINK = "outcomes://enrol"


async def get_enrolment_service(request: Request, session: SessionDep) -> EnrolmentService:
    return EnrolmentService(session, TokenService(session, auth_state(request).token_cache))


ServiceDep = Annotated[EnrolmentService, Depends(get_enrolment_service)]


@router.post("/enrolments", status_code=status.HTTP_201_CREATED, response_model=EnrolmentIssued)
async def create_enrolment(
    request: Request,
    patient: PatientDep,
    principal: PrincipalDep,
    service: ServiceDep,
    body: Annotated[EnrolmentCreate | None, Body()] = None,
) -> EnrolmentIssued:
    """A single-use code the patient types into the app (or opens as `uri`) to enrol it. The
    code is in this response only."""
    expires_in_hours = (body or EnrolmentCreate()).expires_in_hours
    new = await service.create_code(patient.id, expires_in_hours, principal.token_id)
    audit_subject(request, resource_id=new.row.id, patient_id=patient.id)
    server = str(request.base_url).rstrip("/")
    return EnrolmentIssued(
        id=new.row.id,
        code=new.code,
        expires_at=new.row.expires_at,
        uri=f"{APP_LINK}?{urlencode({'server': server, 'code': new.code})}",
    )


@router.get("/devices", response_model=DeviceList)
async def list_devices(patient: PatientDep, service: ServiceDep) -> DeviceList:
    """The patient's enrolled apps, oldest first, revoked ones included."""
    devices = await service.devices(patient.id)
    return DeviceList(items=[DeviceRead.model_validate(device) for device in devices])


@router.delete(
    "/devices/{device_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response
)
async def revoke_device(device_id: uuid.UUID, patient: PatientDep, service: ServiceDep) -> Response:
    """Revoke the device: its refresh tokens and access tokens stop at once, in every process.
    Revoking it again is a 204 too."""
    await service.revoke_device(patient.id, device_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
