from __future__ import annotations

import uuid

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.patients.errors import ExternalIdTaken, PatientNotFound
from app.patients.models import Patient
from app.patients.repository import PatientRepository
from app.patients.schemas import PatientCreate, PatientUpdate


class PatientService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repo = PatientRepository(session)

    async def get(self, patient_id: uuid.UUID) -> Patient:
        patient = await self.repo.get(patient_id)
        if patient is None:
            raise PatientNotFound(patient_id)
        return patient

    async def page(
        self, *, external_id: str | None, limit: int, cursor: str | None
    ) -> tuple[list[Patient], str | None]:
        return await self.repo.page(external_id=external_id, limit=limit, cursor=cursor)

    async def create(self, data: PatientCreate) -> Patient:
        if data.external_id is not None and await self.repo.external_id_taken(data.external_id):
            raise ExternalIdTaken()
        patient = Patient(**data.model_dump())
        await self._flush_unique(patient)
        return patient

    async def update(self, patient_id: uuid.UUID, data: PatientUpdate) -> Patient:
        patient = await self.get(patient_id)
        changes = data.model_dump(exclude_unset=True)
        new_external_id = changes.get("external_id")
        if new_external_id is not None and await self.repo.external_id_taken(
            new_external_id, other_than=patient_id
        ):
            raise ExternalIdTaken()
        for field, value in changes.items():
            setattr(patient, field, value)
        await self._flush_unique(patient)
        return patient

    async def _flush_unique(self, patient: Patient) -> None:
        # The unique key is the guard; the look-up above only gives the common case a clean error.
        try:
            await self.repo.add(patient)
        except IntegrityError as exc:
            raise ExternalIdTaken() from exc
