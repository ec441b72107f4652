from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import paginate
from app.observations.models import Observation


class ObservationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def page(
        self,
        patient_id: uuid.UUID,
        *,
        instrument: str | None,
        since: datetime | None,
        until: datetime | None,
        course_id: uuid.UUID | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[Observation], str | None]:
        stmt = select(Observation).where(Observation.patient_id == patient_id)
        if instrument is not None:
            stmt = stmt.where(Observation.instrument == instrument)
        if since is not None:
            stmt = stmt.where(Observation.recorded_at >= since)
        if until is not None:
            stmt = stmt.where(Observation.recorded_at < until)
        if course_id is not None:
            stmt = stmt.where(Observation.course_id == course_id)
        return await paginate(
            self.session, stmt, [Observation.recorded_at, Observation.id], limit, cursor
        )
