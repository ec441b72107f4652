from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import paginate
from app.patients.models import Patient


class PatientRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, patient_id: uuid.UUID) -> Patient | None:
        return await self.session.get(Patient, patient_id)

    async def external_id_taken(
        self, external_id: str, *, other_than: uuid.UUID | None = None
    ) -> bool:
        stmt = select(Patient.id).where(Patient.external_id == external_id)
        if other_than is not None:
            stmt = stmt.where(Patient.id != other_than)
        return (await self.session.scalar(stmt.limit(1))) is not None

    async def page(
        self, *, external_id: str | None, limit: int, cursor: str | None
    ) -> tuple[list[Patient], str | None]:
        stmt = select(Patient)
        if external_id is not None:
            stmt = stmt.where(Patient.external_id == external_id)
        return await paginate(self.session, stmt, [Patient.created_at, Patient.id], limit, cursor)

    async def add(self, patient: Patient) -> None:
        self.session.add(patient)
        await self.session.flush()
